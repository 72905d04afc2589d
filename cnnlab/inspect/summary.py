"""``cnnlab summary``: Keras's ``model.summary()`` / torchinfo for any ``nn.Module``, plus the
formula of every output size, the arithmetic of every parameter and multiply-add count, and the
receptive field of every layer.

Nothing real is computed: the model runs once on PyTorch's *meta* device (tensors with a shape
and no memory), with its weights swapped for meta tensors by ``torch.func.functional_call``, so
a VGG-16 summary allocates no activations and leaves the model untouched. The layer graph comes
from a ``torch.fx`` trace, which is what lets receptive fields follow residual branches; models
that cannot be traced fall back to forward hooks (shapes and counts, no receptive fields).

Multiply-adds count what torchvision's published "GFLOPS" figures count (they are
multiply-adds): convolutions, fully connected layers once per position they run at (a ViT's
197 tokens, a ConvNeXt block's 56x56 pixels), and attention's matrix products (``Q K^T`` and
``A V`` of ``nn.MultiheadAttention`` and ``scaled_dot_product_attention``, and any
``matmul``/``@``/``bmm`` in a traced forward), each with its formula. Products inside other
calls (``einsum``, a ``torch.fx.wrap``-ed helper such as Swin's window attention) are counted
by ``torch.utils.flop_counter``'s formulas. Left out, as in torchvision's figures: bias
additions, normalization, activations, softmax, pooling and other element-wise arithmetic.
Models that cannot be traced (the forward-hook fallback) get the layers' counts only.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch import nn

from .._tracing import model_call, tracing
from ..arithmetic import as_tuple
from ..errors import CnnlabError
from ..model_interface import is_fx_leaf
from . import table as T
from .arithmetic import axis_size
from .hooks import forward_hooks
from .layer_specs import lp_pool_text, parse_shape
from .macs import ShapeRecorder, count_products, node_values, numel


@dataclass
class SummaryReport:
    model: str
    input_shape: tuple[int, ...]
    rows: list[T.Row]
    total_params: int
    trainable_params: int
    unused: dict[str, int] = field(default_factory=dict)  # module -> params never called
    notes: list[str] = field(default_factory=list)
    # parameters the forward uses itself, not through a layer (ViT's class token, ConvNeXt's
    # layer scales): in the total, in no row
    direct: dict[str, int] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def layer_names(self) -> list[str]:
        return [r.name for r in self.rows]

    def to_dicts(self) -> list[dict[str, Any]]:
        return [row.to_dict() for row in self.rows]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "layers": self.to_dicts(),
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "macs": self.macs,
            "unused": self.unused,
            "notes": self.notes,
            "direct_params": self.direct,
        }

    def __str__(self) -> str:
        activations = sum(numel(r.output_shape) for r in self.rows if r.output_shape)
        footer = [
            f"parameters: {T.fmt(self.total_params)} ({T.fmt(self.trainable_params)} trainable, "
            f"{T.fmt(self.total_params - self.trainable_params)} frozen), "
            f"{self.total_params * 4 / 2**20:.2f} MiB as float32",
            f"multiply-adds: {T.fmt(self.macs)} per image = {self.macs / 1e9:.3f} G (the figure "
            "torchvision publishes as GFLOPS: convolutions, fully connected layers at every "
            "position, attention's Q.K^T and T.V and other matrix products; not counted: "
            "biases, normalization, activations, softmax, pooling)",
            f"layer outputs: {T.fmt(activations)} values per image = "
            f"{activations * 4 / 2**20:.2f} MiB as float32 (kept for backward when training)",
        ]
        for module, count in self.unused.items():
            footer.append(f"not called by this forward: {module} ({T.fmt(count)} parameters)")
        if self.direct:
            names = ", ".join(list(self.direct)[:4]) + (", ..." if len(self.direct) > 4 else "")
            footer.append(
                f"used by forward directly, in no layer's row: {len(self.direct)} parameter "
                f"tensor(s), {T.fmt(sum(self.direct.values()))} values ({names})"
            )
        footer += self.notes
        title = f"{self.model} on input {T.dims_text(self.input_shape)} (batch axis left out)"
        return T.format_table(self.rows, title, footer)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def _meta_state(module: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    state = {}
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        state[prefix + name] = torch.empty_like(tensor, device="meta")
    return state


class _LeafTracer(torch.fx.Tracer):
    """Keeps modules marked ``fx_leaf = True`` (forwards that look at the input's size, such
    as LeNet-5's ``FitTo32``) as single calls, so the rest of the model can still be traced."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_fx_leaf(m) or super().is_leaf_module(m, qualname)


class _Runner(nn.Module):
    """Holds the traced graph so that ``functional_call`` can swap its weights for meta ones."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__()
        self.gm = gm
        self.recorder: ShapeRecorder | None = None

    def forward(self, x: torch.Tensor) -> Any:
        self.recorder = ShapeRecorder(self.gm)
        return self.recorder.run(x)


def _shape(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape[1:])
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return tuple(value[0].shape[1:])
    return None


def _flat_nodes(arg: Any) -> list[torch.fx.Node]:
    if isinstance(arg, torch.fx.Node):
        return [arg]
    if isinstance(arg, (list, tuple)):
        return [n for a in arg for n in _flat_nodes(a)]
    return []


def summary(
    model: nn.Module,
    input_size: str | Sequence[int],
    name: str | None = None,
    expected: str | None = None,
) -> SummaryReport:
    """The layer table of ``model`` for one input of ``input_size`` (``"3x224x224"`` or
    ``(3, 224, 224)``, no batch axis). Layer names are the module paths PyTorch uses
    (``features.0``, ``layer1.0.conv1``); functions in ``forward`` appear under their
    ``torch.fx`` names (``add``, ``flatten``). ``expected`` (e.g. ``"1x32x32"``), the input
    the model was made for, is named in the one-line error when the input does not fit."""
    if not isinstance(model, nn.Module):
        raise CnnlabError(
            f"{name or repr(model)[:40]} is a {type(model).__name__}, not a torch.nn.Module; "
            "give a model"
        )
    shape = parse_shape(input_size)
    x = torch.empty((1, *shape), device="meta")
    label = name or type(model).__name__
    direct: dict[str, int] = {}
    with _eval_mode(model):
        try:
            with tracing():  # torch.fx patches nn.Module.__call__ process-wide meanwhile
                gm = torch.fx.GraphModule(model, _LeafTracer().trace(model))
        except Exception as error:  # untraceable forward: hooks give shapes without the graph
            with model_call():  # runs the modules: never while another thread traces
                rows, notes = _rows_from_hooks(model, x, label, expected)
            notes.append(
                f"receptive fields need a torch.fx trace, which failed ({type(error).__name__})"
            )
        else:
            runner = _Runner(gm)
            try:
                with model_call():  # the meta run calls modules: never during a trace
                    torch.func.functional_call(runner, _meta_state(gm, "gm."), (x,))
            except Exception as error:
                raise _does_not_fit(label, shape, error, expected) from error
            recorder = runner.recorder
            rows = _rows_from_graph(gm, recorder.outputs, len(shape) - 1, recorder.flops)
            notes = []
            direct = _direct_parameters(gm)
    params = {id(p): p for p in model.parameters()}
    return SummaryReport(
        label,
        shape,
        rows,
        total_params=sum(p.numel() for p in params.values()),
        trainable_params=sum(p.numel() for p in params.values() if p.requires_grad),
        unused=_unused_children(model, {row.name for row in rows}),
        notes=notes,
        direct=direct,
    )


def _direct_parameters(gm: torch.fx.GraphModule) -> dict[str, int]:
    """The parameters the forward reads itself (``get_attr``), not through a layer: sizes."""
    own = dict(gm.named_parameters())
    return {
        node.target: own[node.target].numel()
        for node in gm.graph.nodes
        if node.op == "get_attr" and node.target in own
    }


def _unused_children(model: nn.Module, called: set[str]) -> dict[str, int]:
    """The model's children with parameters that no row called, and their parameter counts."""
    unused = {}
    for module_name, module in model.named_children():
        if not any(c == module_name or c.startswith(module_name + ".") for c in called):
            count = sum(p.numel() for p in module.parameters())
            if count:
                unused[module_name] = count
    return unused


def _module_row(
    name: str, module: nn.Module, in_shape, out_shape, field_in: T.Field, first_call: bool
) -> tuple[T.Row, T.Field]:
    """One layer call's row and the receptive field after it (a repeat shares parameters)."""
    kind = type(module).__name__
    conv = isinstance(module, nn.modules.conv._ConvNd) and not module.transposed
    pools = nn.modules.pooling
    pool = isinstance(module, (pools._MaxPoolNd, pools._AvgPoolNd, pools._LPPoolNd))
    if conv and in_shape is not None:
        row, field_out = T.window_row(
            name,
            kind,
            in_shape,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            field_in,
            out_channels=module.out_channels,
            groups=module.groups,
            bias=module.bias is not None,
        )
    elif pool and in_shape is not None:
        row, field_out = _pool_row(name, module, in_shape, field_in)
    elif isinstance(module, nn.Linear):
        positions = numel(in_shape[:-1]) if in_shape and len(in_shape) > 1 else 1
        row = T.linear_row(
            name, module.in_features, module.out_features, module.bias is not None, positions
        )
        field_out = None if positions == 1 else field_in  # per position: the field stays
    else:
        row, field_out = _plain_row(name, module, in_shape, out_shape, field_in)
    # in a built model a remainder is PyTorch's floor at work (a stride-2 layer on an even
    # size), worth knowing, not an error
    row.notes += [p for p in row.problems if "not a whole number" in p]
    row.problems = [p for p in row.problems if "not a whole number" not in p]
    if not first_call:
        row.name += " (again)"
        row.params, row.params_formula = 0, "shared with the first call"
    row.input_shape, row.output_shape = in_shape, out_shape
    return row, field_out


def _pool_row(name: str, module: nn.Module, in_shape, field_in: T.Field) -> tuple[T.Row, T.Field]:
    """A max, average or Lp pooling window's row; ceil_mode rounds its output size up."""
    dims = len(in_shape) - 1
    stride = module.stride if module.stride is not None else module.kernel_size
    row, field_out = T.window_row(
        name,
        type(module).__name__,
        in_shape,
        as_tuple(module.kernel_size, dims, "kernel"),
        as_tuple(stride, dims, "stride"),
        as_tuple(getattr(module, "padding", 0), dims, "padding"),  # LPPool has none
        as_tuple(getattr(module, "dilation", 1), dims, "dilation"),
        field_in,
    )
    if isinstance(module, nn.LPPool2d):
        row.notes.append(lp_pool_text(module.norm_type))
    if getattr(module, "ceil_mode", False):
        row.formula += "  [ceil_mode: rounded up]"
        row.problems = [p for p in row.problems if "not a whole number" not in p]
    return row, field_out


def _plain_row(
    name: str, module: nn.Module, in_shape, out_shape, field_in: T.Field
) -> tuple[T.Row, T.Field]:
    """A layer with no window and no weight matrix: its parameters and formula, if any."""
    row, field_out = T.Row(name, type(module).__name__, in_shape, out_shape), field_in
    own = sum(p.numel() for p in module.parameters())
    if isinstance(module, nn.modules.batchnorm._NormBase) and module.affine:
        row.params = own
        row.params_formula = (
            f"2*{module.num_features} = {T.fmt(own)} (scale and shift per channel; running "
            "mean/variance are buffers)"
        )
    elif own:
        row.params, row.params_formula = own, f"{T.fmt(own)} (not broken down)"
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and in_shape:
        row.formula = f"{T.dims_text(in_shape[1:])} -> {T.dims_text(out_shape[1:])} (adaptive bins)"
        field_out = _adaptive_field(field_in, in_shape[1:], out_shape[1:])
    elif isinstance(module, nn.Flatten):
        row.formula = f"{' * '.join(map(str, in_shape))} = {T.fmt(numel(in_shape))}"
        field_out = None
    elif isinstance(module, nn.Dropout):
        row.formula = f"p = {module.p} (training only)"
    return row, field_out


def _adaptive_field(field_in: T.Field, sizes, outs) -> T.Field:
    if field_in is None or all(o == 1 for o in outs):
        return None  # one bin per channel: every input pixel
    if tuple(sizes) == tuple(outs):
        return field_in
    if all(s % o == 0 for s, o in zip(sizes, outs)):
        axes = [axis_size(s, s // o, s // o, (0, 0), 1) for s, o in zip(sizes, outs)]
        return T.grow_field(field_in, axes)
    return None


def _rows_from_graph(
    gm: torch.fx.GraphModule,
    outputs: dict[str, Any],
    spatial_dims: int,
    flops: dict[str, int] | None = None,
) -> list[T.Row]:
    fields: dict[str, T.Field] = {}
    rows: list[T.Row] = []
    seen_modules: set[str] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            fields[node.name] = T.start_field(spatial_dims)
            continue
        if node.op in ("output", "get_attr"):
            continue
        out_shape = _shape(outputs.get(node.name))
        inputs = [
            n for n in _flat_nodes(node.args) if isinstance(outputs.get(n.name), torch.Tensor)
        ]
        if out_shape is None:  # sizes, shape tuples: no row
            fields[node.name] = None
            continue
        in_shape = _shape(outputs[inputs[0].name]) if inputs else None
        field_in = T.merge_fields([fields.get(n.name) for n in inputs]) if inputs else None
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            row, field_out = _module_row(
                node.target, module, in_shape, out_shape, field_in, node.target not in seen_modules
            )
            seen_modules.add(node.target)
            count_products(row, module, *node_values(node, outputs), outputs.get(node.name))
        else:
            kind = node.target if isinstance(node.target, str) else node.target.__name__
            row = T.Row(node.name, kind, in_shape, out_shape)
            field_out = field_in
            if len(out_shape) <= 1:
                field_out = None
            if len(inputs) > 1 and kind in ("add", "iadd", "cat", "mul", "sub"):
                joined = " + ".join(T.dims_text(_shape(outputs[n.name])) for n in inputs)
                row.formula = f"{kind} of {joined}"
            count_products(row, node.target, *node_values(node, outputs), outputs.get(node.name))
        counted = (flops or {}).get(node.name, 0) // 2  # a multiply-add is two FLOPs
        if not row.macs and counted:
            row.macs = counted
            row.macs_formula = (
                f"{T.fmt(counted)} (the matrix products and convolutions inside this call, "
                "counted by torch.utils.flop_counter)"
            )
        if field_out is not None and len(field_out[0]) != len(out_shape) - 1:
            field_out = None
        fields[node.name] = field_out
        if field_out is not None:
            row.receptive_field, row.jump = field_out
        rows.append(row)
    return rows


def _does_not_fit(
    label: str, shape: Sequence[int], error: Exception, expected: str | None
) -> CnnlabError:
    """One line for an input the model cannot take: PyTorch's reason (its first line; torch.fx
    appends several lines of graph text) and the input the model was made for."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[0] if lines else type(error).__name__
    if len(reason) > 200:
        reason = reason[:197] + "..."
    for line in lines[1:]:  # torch.fx: "While executing %conv1 : ... call_module[target=conv1]"
        where = re.match(r"While executing %(\w+) :", line)
        if where:
            target = re.search(r"call_module\[target=([\w.]+)\]", line)
            reason = f"at {target.group(1) if target else where.group(1)}: {reason}"
            break
    fix = (
        f"it was made for {expected}: give --input {expected} (C x H x W, no batch axis)"
        if expected and expected != T.dims_text(shape)
        else "check the channels and image size the model expects"
    )
    return CnnlabError(f"{label} cannot run on an input of {T.dims_text(shape)} ({reason}); {fix}")


def _rows_from_hooks(
    model: nn.Module, x: torch.Tensor, label: str = "", expected: str | None = None
) -> tuple[list[T.Row], list[str]]:
    calls: list[tuple[str, nn.Module, Any, Any]] = []
    notes: list[str] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(module, args, output):
        calls.append((names[module], module, args, output))

    hooked = [
        (module, hook)
        for module in model.modules()
        if not list(module.children()) or isinstance(module, nn.MultiheadAttention)
    ]
    try:
        with forward_hooks(hooked):
            try:
                torch.func.functional_call(model, _meta_state(model), (x,))
            except Exception:  # a forward that reads values (x.item(), if x.sum() > 0)
                calls.clear()
                notes.append("ran one real forward pass on a zero image: the forward reads values")
                device = next((p.device for p in model.parameters()), torch.device("cpu"))
                with torch.no_grad():
                    model(torch.zeros(x.shape, device=device))
    except Exception as error:
        shape = tuple(x.shape[1:])
        raise _does_not_fit(label or type(model).__name__, shape, error, expected) from error
    rows, seen = [], set()
    for name, module, args, output in calls:
        in_shape = _shape(args[0]) if args else None
        row, _ = _module_row(name, module, in_shape, _shape(output), None, name not in seen)
        count_products(row, module, list(args), {}, output)
        row.receptive_field = None
        seen.add(name)
        rows.append(row)
    return rows, notes
