"""The bridge between PyTorch and the NumPy engine: build a NumPy twin of a ``torch.nn.Module``
and compare the two layer by layer.

``from_torch`` traces the module with ``torch.fx``, so whatever its ``forward`` does with the
layers — a straight ``nn.Sequential``, a residual ``x + f(x)``, a ``torch.cat`` of branches —
becomes a :class:`~cnnlab.scratch.network.Network` of scratch layers with the weights copied;
the twin of each layer comes from :mod:`.bridge_layers`. A module marked ``fx_leaf = True``
stays one call in the trace. This module and :mod:`.bridge_layers` are the only ones of
``cnnlab.scratch`` that import torch.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx
from torch import nn
from torch.nn import functional as F

from .._tracing import tracing
from ..errors import CnnlabError
from ..model_interface import is_fx_leaf
from .bridge_layers import (
    UnsupportedLayerError,
    argument,
    function_twin,
    method_twin,
    module_converter,
    require,
    supported_layers,
)
from .losses import MSE, SoftmaxCrossEntropy
from .network import Network, Node

__all__ = [
    "Comparison",
    "LayerDifference",
    "UnsupportedLayerError",
    "compare",
    "from_torch",
    "trace",
]

TORCH_DTYPES = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}


# ------------------------------------------------------------------------------------ tracing


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (
            module_converter(m) is not None or is_fx_leaf(m) or super().is_leaf_module(m, qualname)
        )


def trace(module: nn.Module) -> torch.fx.GraphModule:
    """``torch.fx`` trace in which every module with a NumPy twin stays one call."""
    try:
        with tracing():  # torch.fx patches nn.Module.__call__ process-wide while it traces
            graph = _Tracer().trace(module)
    except Exception as error:  # torch.fx raises many types for untraceable code
        raise CnnlabError(
            f"could not trace {type(module).__name__} with torch.fx ({type(error).__name__}: "
            f"{error}); the NumPy twin needs a forward without branches on tensor values"
        ) from error
    return torch.fx.GraphModule(module, graph)


def from_torch(module: nn.Module, dtype: np.dtype | type = np.float64) -> Network:
    """A NumPy twin of ``module``: same layers, same wiring, weights (and BatchNorm running
    statistics) copied as ``dtype``, in the same train/eval mode. A bare supported layer
    (``nn.Conv2d(...)`` not wrapped in a container) becomes a one-node network whose parameters
    keep torch's names (``"weight"``, ``"bias"``).

    Raises :class:`UnsupportedLayerError` naming the first layer or operation the engine has no
    twin for, with its type.
    """
    dtype = np.dtype(dtype)
    if module_converter(module) is not None:
        return _bare_layer_twin(module, dtype)
    gm = trace(module)
    modules = dict(gm.named_modules())
    nodes: list[Node] = []
    shapes: dict[str, tuple] = {}  # x.size(d) / x.shape[d] results: (source node, axis)
    input_name = output_name = None
    used_with_parameters: set[str] = set()
    for fx_node in gm.graph.nodes:
        name = fx_node.name
        if fx_node.op == "placeholder":
            require(name, module, input_name is None, "one input tensor")
            input_name = name
        elif fx_node.op == "output":
            out = fx_node.args[0]
            require(name, module, isinstance(out, torch.fx.Node), "one output tensor")
            output_name = out.name
        elif fx_node.op == "get_attr":
            raise UnsupportedLayerError(
                f"{name!r} reads the tensor attribute {fx_node.target!r} directly; the NumPy "
                "twin supports parameters only inside layers"
            )
        elif not _record_shape(fx_node, shapes):
            nodes.append(_twin_node(fx_node, modules, shapes, dtype, used_with_parameters))
    twin = Network(nodes, input_name, output_name)
    twin.training = module.training
    return twin


def _bare_layer_twin(module: nn.Module, dtype: np.dtype) -> Network:
    """A one-node network around a bare layer, its parameters named as torch's."""
    kind = type(module).__name__
    layer = module_converter(module)(module, kind, dtype)
    layer.train(module.training)
    twin = Network([Node(kind.lower(), layer, ("x",), kind, "")], "x", kind.lower())
    twin.training = module.training
    return twin


def _record_shape(fx_node: torch.fx.Node, shapes: dict[str, tuple]) -> bool:
    """Note a size read (``x.size(d)``, ``x.shape``, ``x.shape[d]``) in ``shapes`` as (source
    node, axis); False when the node is not one."""
    name = fx_node.name
    if fx_node.op == "call_method" and fx_node.target == "size":
        shapes[name] = (fx_node.args[0].name, argument(fx_node, 1, "dim", None))
    elif fx_node.op == "call_function" and fx_node.target is getattr:
        require(name, fx_node.target, fx_node.args[1] == "shape", "x.shape")
        shapes[name] = (fx_node.args[0].name, None)
    elif fx_node.op == "call_function" and fx_node.target is operator.getitem:
        source, axis = shapes.get(fx_node.args[0].name, (None, 0))
        require(name, fx_node.target, source is not None and axis is None, "x.shape[d]")
        shapes[name] = (source, fx_node.args[1])
    else:
        return False
    return True


def _twin_node(
    fx_node: torch.fx.Node,
    modules: dict[str, nn.Module],
    shapes: dict[str, tuple],
    dtype: np.dtype,
    used_with_parameters: set[str],
) -> Node:
    """The engine's node for one call of a layer, a tensor method or a function."""
    module_path = None
    if fx_node.op == "call_module":
        module_path = fx_node.target
        layer, kind = _layer_twin(module_path, modules[module_path], dtype, used_with_parameters)
    elif fx_node.op == "call_method":
        layer, kind = method_twin(fx_node, shapes)
    else:
        layer, kind = function_twin(fx_node)
    return Node(fx_node.name, layer, _tensor_inputs(fx_node, shapes), kind, module_path)


def _layer_twin(
    path: str, sub: nn.Module, dtype: np.dtype, used_with_parameters: set[str]
) -> tuple[Any, str]:
    """The twin of the layer at ``path`` with its weights copied, and its kind; a layer with
    weights may be called once only."""
    convert = module_converter(sub)
    if convert is None:
        raise UnsupportedLayerError(
            f"layer {path!r} ({type(sub).__module__}.{type(sub).__name__}) "
            f"has no NumPy twin; supported layers: "
            f"{', '.join(supported_layers())}"
        )
    if any(True for _ in sub.parameters()):
        require(
            path,
            sub,
            path not in used_with_parameters,
            "one call per module with weights (no weight sharing)",
        )
        used_with_parameters.add(path)
    layer = convert(sub, path, dtype)
    layer.train(sub.training)
    return layer, type(sub).__name__


def _tensor_inputs(node: torch.fx.Node, shapes: dict[str, tuple]) -> tuple[str, ...]:
    """The array inputs of a call (sizes such as ``x.size(0)`` are folded into the layer)."""
    first = node.args[0]
    if isinstance(first, (list, tuple)):  # torch.cat([a, b], dim)
        return tuple(a.name for a in first)
    return tuple(a.name for a in node.args if isinstance(a, torch.fx.Node) and a.name not in shapes)


# --------------------------------------------------------------------------------- comparing


def _difference(got: np.ndarray | None, want: torch.Tensor | None) -> tuple[float, float]:
    """(max absolute difference, that divided by the largest magnitude of PyTorch's value)."""
    want_np = np.zeros_like(got) if want is None else want.detach().cpu().numpy()
    got = np.zeros_like(want_np) if got is None else got
    if got.shape != want_np.shape:
        return float("inf"), float("inf")
    absolute = float(np.abs(got - want_np).max()) if got.size else 0.0
    scale = float(np.abs(want_np).max()) if want_np.size else 0.0
    return absolute, absolute / scale if scale > 0 else absolute


@dataclass
class LayerDifference:
    """How far the NumPy twin is from PyTorch at one node: its output (activation), the
    gradient of the loss with respect to that output, and each parameter's gradient, as
    ``(max absolute, relative)``; relative is to the largest magnitude of PyTorch's tensor (for
    parameters: of the layer's largest parameter gradient). The input gradient of a layer is the
    output gradient of the node that feeds it, so the gradient column covers both."""

    name: str
    kind: str
    module: str | None
    shape: tuple[int, ...]
    activation: tuple[float, float]
    gradient: tuple[float, float]
    parameters: dict[str, tuple[float, float]] = field(default_factory=dict)

    def worst(self) -> float:
        rels = [self.activation[1], self.gradient[1], *(r for _, r in self.parameters.values())]
        return max(rels)


@dataclass
class Comparison:
    """The result of :func:`compare`: one row per node, plus the loss and the gradient with
    respect to the model's input."""

    dtype: str
    mode: str
    loss: tuple[float, float]  # (PyTorch, NumPy)
    input_gradient: tuple[float, float]
    layers: list[LayerDifference]
    notes: list[str] = field(default_factory=list)

    def worst(self) -> float:
        """The largest relative difference anywhere (activations, gradients, parameters)."""
        return max([self.input_gradient[1], *(row.worst() for row in self.layers)])

    def to_dicts(self) -> list[dict[str, Any]]:
        rows = []
        for row in self.layers:
            rows.append(
                {
                    "name": row.name,
                    "kind": row.kind,
                    "module": row.module,
                    "shape": list(row.shape),
                    "activation_abs": row.activation[0],
                    "activation_rel": row.activation[1],
                    "gradient_abs": row.gradient[0],
                    "gradient_rel": row.gradient[1],
                    "parameters": {k: {"abs": a, "rel": r} for k, (a, r) in row.parameters.items()},
                }
            )
        return rows

    def __str__(self) -> str:
        head = (
            f"NumPy engine vs PyTorch, {self.dtype}, {self.mode} mode; loss {self.loss[0]:.8g} "
            f"(torch) vs {self.loss[1]:.8g} (numpy)"
        )
        lines = [head, *self.notes]
        lines.append(
            f"{'layer':<28} {'kind':<18} {'output shape':<18} {'activation':>19} "
            f"{'dL/d output':>19} {'parameter grads':>19}"
        )
        lines.append(f"{'':<66} {'max abs   rel':>19} {'max abs   rel':>19} {'max abs   rel':>19}")
        for row in self.layers:
            params = "-"
            if row.parameters:
                a = max(v[0] for v in row.parameters.values())
                r = max(v[1] for v in row.parameters.values())
                params = f"{a:9.2e} {r:9.2e}"
            lines.append(
                f"{(row.module or row.name)[:28]:<28} {row.kind[:18]:<18} "
                f"{'x'.join(map(str, row.shape)):<18} "
                f"{row.activation[0]:9.2e} {row.activation[1]:9.2e} "
                f"{row.gradient[0]:9.2e} {row.gradient[1]:9.2e} {params:>19}"
            )
        a, r = self.input_gradient
        lines.append(f"{'(model input)':<28} {'dL/d x':<18} {'':<18} {'':>19} {a:9.2e} {r:9.2e}")
        lines.append(f"largest relative difference: {self.worst():.2e}")
        return "\n".join(lines)


class _Recorder(torch.fx.Interpreter):
    """Runs the traced module and keeps every intermediate tensor with its gradient."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[str, torch.Tensor] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        out = super().run_node(n)
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.retain_grad()
            self.values[n.name] = out
        return out


def compare(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    dtype: np.dtype | type = np.float64,
    train: bool = False,
) -> Comparison:
    """Run ``model`` and its NumPy twin forward and backward on ``x`` and report, node by node,
    how far apart their activations, gradients and parameter gradients are.

    The loss is softmax cross-entropy for integer ``target`` (class indices) and mean squared
    error for a float ``target`` shaped like the output. ``model`` is not modified: the
    comparison runs on a copy in ``dtype``. With ``train=True`` BatchNorm uses batch statistics
    (and its backward includes them); dropout is switched off on both sides because the two
    engines cannot draw the same random masks.
    """
    dtype = np.dtype(dtype)
    if dtype not in TORCH_DTYPES:
        raise CnnlabError(f"dtype {dtype}: expected float32 or float64")
    if module_converter(model) is not None:  # a bare layer: compare it as a one-layer network ("0")
        model = nn.Sequential(model)
    twin_model, notes = _comparable_copy(model, dtype, train)
    twin = from_torch(twin_model, dtype)

    x_np = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x).astype(dtype)
    target_np = np.asarray(target.detach().cpu() if isinstance(target, torch.Tensor) else target)
    gm = _trace_out_of_place(twin_model)
    xt = torch.tensor(x_np, requires_grad=True)
    recorder = _Recorder(gm)
    out_t = recorder.run(xt)
    out_np = twin(x_np)
    loss_t, loss_fn, loss_np = _losses(out_t, out_np, target_np, dtype)
    loss_t.backward()
    dx = twin.backward(loss_fn.backward())

    torch_params = dict(gm.named_parameters())
    rows = [_layer_difference(node, twin, recorder.values, torch_params) for node in twin.nodes]
    return Comparison(
        dtype=str(dtype),
        mode="train" if train else "eval",
        loss=(loss_t.item(), float(loss_np)),
        input_gradient=_difference(dx, xt.grad),
        layers=rows,
        notes=sorted(set(notes)),
    )


def _comparable_copy(model: nn.Module, dtype: np.dtype, train: bool) -> tuple[nn.Module, list]:
    """A CPU copy of ``model`` in ``dtype`` and mode ``train``, with nothing in place and no
    dropout, and the notes that say so."""
    twin_model = copy.deepcopy(model).to(device="cpu", dtype=TORCH_DTYPES[dtype])
    twin_model.train(train)
    notes = []
    for sub in twin_model.modules():
        if hasattr(sub, "inplace"):
            sub.inplace = False  # keep every intermediate tensor intact for the comparison
        if train and isinstance(sub, nn.Dropout) and sub.p > 0:
            sub.eval()
            notes.append("dropout is off on both sides (random masks cannot be shared)")
    return twin_model, notes


def _trace_out_of_place(model: nn.Module) -> torch.fx.GraphModule:
    """The trace of ``model`` with every ``inplace=True`` call made out of place."""
    gm = trace(model)
    for node in gm.graph.nodes:
        if "inplace" in node.kwargs:
            node.kwargs = {**node.kwargs, "inplace": False}
    gm.recompile()
    return gm


def _losses(
    out_t: torch.Tensor, out_np: np.ndarray, target_np: np.ndarray, dtype: np.dtype
) -> tuple[torch.Tensor, Any, Any]:
    """(torch loss, the engine's loss function, its loss): cross-entropy for class indices,
    mean squared error for a float target."""
    if np.issubdtype(target_np.dtype, np.integer):
        loss_t = F.cross_entropy(out_t, torch.as_tensor(target_np, dtype=torch.long))
        loss_fn = SoftmaxCrossEntropy()
        return loss_t, loss_fn, loss_fn(out_np, target_np)
    loss_t = F.mse_loss(out_t, torch.as_tensor(target_np.astype(dtype)))
    loss_fn = MSE()
    return loss_t, loss_fn, loss_fn(out_np, target_np.astype(dtype))


def _layer_difference(
    node: Node,
    twin: Network,
    torch_values: dict[str, torch.Tensor],
    torch_params: dict[str, nn.Parameter],
) -> LayerDifference:
    """One node's row: its activation, output gradient and parameter gradients, compared."""
    want = torch_values.get(node.name)
    got = twin.values[node.name]
    want_grad = None if want is None else want.grad
    row = LayerDifference(
        node.name,
        node.kind,
        node.module,
        tuple(got.shape),
        _difference(got, want),
        _difference(twin.grads.get(node.name), want_grad),
    )
    # relative to the layer's largest parameter gradient: a bias in front of BatchNorm has
    # a gradient of exactly zero in exact arithmetic, so its own magnitude is round-off
    pairs = {
        key: (param.grad, torch_params[f"{node.module}.{key}"].grad.numpy())
        for key, param in node.layer.named_parameters().items()
    }
    scale = max((float(np.abs(want).max()) for _, want in pairs.values()), default=0.0)
    for key, (got_grad, want_grad) in pairs.items():
        absolute = float(np.abs(got_grad - want_grad).max())
        row.parameters[key] = (absolute, absolute / scale if scale > 0 else absolute)
    return row
