"""``cnnlab summary``: Keras's ``model.summary()`` / torchinfo for any ``nn.Module``, plus the
formula of every output size, the arithmetic of every parameter and multiply-add count, and the
receptive field of every layer.

Nothing real is computed: the model runs once on PyTorch's *meta* device (tensors with a shape
and no memory), with its weights swapped for meta tensors by ``torch.func.functional_call``, so
a VGG-16 summary allocates no activations and leaves the model untouched. The layer graph comes
from a ``torch.fx`` trace, which is what lets receptive fields follow residual branches; models
that cannot be traced fall back to forward hooks (shapes and counts, no receptive fields).

Multiply-adds count convolutions and fully connected layers, the way torchvision's published
"GFLOPS" figures do (they are multiply-adds): bias additions, normalization, activations and
pooling are left out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch import nn

from ..errors import CnnlabError
from . import arithmetic as A
from .shapes import parse_shape


@dataclass
class SummaryReport:
    model: str
    input_shape: tuple[int, ...]
    rows: list[A.Row]
    total_params: int
    trainable_params: int
    unused: dict[str, int] = field(default_factory=dict)  # module -> params never called
    notes: list[str] = field(default_factory=list)

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
            "model": self.model, "input_shape": list(self.input_shape), "layers": self.to_dicts(),
            "total_params": self.total_params, "trainable_params": self.trainable_params,
            "macs": self.macs, "unused": self.unused, "notes": self.notes,
        }  # fmt: skip

    def __str__(self) -> str:
        activations = sum(_numel(r.output_shape) for r in self.rows if r.output_shape)
        footer = [
            f"parameters: {A.fmt(self.total_params)} ({A.fmt(self.trainable_params)} trainable, "
            f"{A.fmt(self.total_params - self.trainable_params)} frozen), "
            f"{self.total_params * 4 / 2**20:.2f} MiB as float32",
            f"multiply-adds: {A.fmt(self.macs)} per image = {self.macs / 1e9:.3f} G (the figure "
            "torchvision publishes as GFLOPS: convolutions and fully connected layers)",
            f"layer outputs: {A.fmt(activations)} values per image = "
            f"{activations * 4 / 2**20:.2f} MiB as float32 (kept for backward when training)",
        ]
        for module, count in self.unused.items():
            footer.append(f"not called by this forward: {module} ({A.fmt(count)} parameters)")
        footer += self.notes
        title = f"{self.model} on input {A._dims(self.input_shape)} (batch axis left out)"
        return A.format_table(self.rows, title, footer)


def _numel(shape: Sequence[int]) -> int:
    total = 1
    for s in shape:
        total *= s
    return total


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
        return getattr(m, "fx_leaf", False) or super().is_leaf_module(m, qualname)


class _ShapeRecorder(torch.fx.Interpreter):
    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__(gm)
        self.outputs: dict[str, Any] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        out = super().run_node(n)
        self.outputs[n.name] = out
        return out


class _Runner(nn.Module):
    """Holds the traced graph so that ``functional_call`` can swap its weights for meta ones."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__()
        self.gm = gm
        self.recorder: _ShapeRecorder | None = None

    def forward(self, x: torch.Tensor) -> Any:
        self.recorder = _ShapeRecorder(self.gm)
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
    model: nn.Module, input_size: str | Sequence[int], name: str | None = None
) -> SummaryReport:
    """The layer table of ``model`` for one input of ``input_size`` (``"3x224x224"`` or
    ``(3, 224, 224)``, no batch axis). Layer names are the module paths PyTorch uses
    (``features.0``, ``layer1.0.conv1``); functions in ``forward`` appear under their
    ``torch.fx`` names (``add``, ``flatten``)."""
    shape = parse_shape(input_size)
    x = torch.empty((1, *shape), device="meta")
    label = name or type(model).__name__
    with _eval_mode(model):
        try:
            gm = torch.fx.GraphModule(model, _LeafTracer().trace(model))
        except Exception as error:  # untraceable forward: hooks give shapes without the graph
            rows, notes = _rows_from_hooks(model, x)
            notes.append(
                f"receptive fields need a torch.fx trace, which failed ({type(error).__name__})"
            )
        else:
            runner = _Runner(gm)
            try:
                torch.func.functional_call(runner, _meta_state(gm, "gm."), (x,))
            except Exception as error:
                raise CnnlabError(
                    f"{label} cannot run on an input of {A._dims(shape)}: {error}. Check the "
                    "input channels and size the model expects"
                ) from error
            rows, notes = _rows_from_graph(gm, runner.recorder.outputs, len(shape) - 1), []
    called = {row.name for row in rows}
    unused = {}
    for module_name, module in model.named_children():
        if not any(c == module_name or c.startswith(module_name + ".") for c in called):
            count = sum(p.numel() for p in module.parameters())
            if count:
                unused[module_name] = count
    params = {id(p): p for p in model.parameters()}
    return SummaryReport(
        label, shape, rows,
        total_params=sum(p.numel() for p in params.values()),
        trainable_params=sum(p.numel() for p in params.values() if p.requires_grad),
        unused=unused, notes=notes,
    )  # fmt: skip


def _module_row(
    name: str, module: nn.Module, in_shape, out_shape, field_in: A.Field, first_call: bool
) -> tuple[A.Row, A.Field]:
    kind = type(module).__name__
    conv = isinstance(module, nn.modules.conv._ConvNd) and not module.transposed
    pool = isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd))
    if conv and in_shape is not None:
        row, field_out = A.window_row(
            name, kind, in_shape, module.kernel_size, module.stride, module.padding,
            module.dilation, field_in, out_channels=module.out_channels,
            groups=module.groups, bias=module.bias is not None,
        )  # fmt: skip
    elif pool and in_shape is not None:
        dims = len(in_shape) - 1
        stride = module.stride if module.stride is not None else module.kernel_size
        row, field_out = A.window_row(
            name, kind, in_shape, A._tuple(module.kernel_size, dims, "kernel"),
            A._tuple(stride, dims, "stride"), A._tuple(module.padding, dims, "padding"),
            A._tuple(getattr(module, "dilation", 1), dims, "dilation"), field_in,
        )  # fmt: skip
        if getattr(module, "ceil_mode", False):
            row.formula += "  [ceil_mode: rounded up]"
            row.problems = [p for p in row.problems if "not a whole number" not in p]
    elif isinstance(module, nn.Linear):
        row = A.linear_row(name, module.in_features, module.out_features, module.bias is not None)
        field_out = None
    else:
        row, field_out = A.Row(name, kind, in_shape, out_shape), field_in
        own = sum(p.numel() for p in module.parameters())
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.affine:
            row.params = own
            row.params_formula = (
                f"2*{module.num_features} = {A.fmt(own)} (scale and shift per channel; running "
                "mean/variance are buffers)"
            )
        elif own:
            row.params, row.params_formula = own, f"{A.fmt(own)} (not broken down)"
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and in_shape:
            row.formula = f"{A._dims(in_shape[1:])} -> {A._dims(out_shape[1:])} (adaptive bins)"
            field_out = _adaptive_field(field_in, in_shape[1:], out_shape[1:])
        elif isinstance(module, nn.Flatten):
            row.formula = f"{' * '.join(map(str, in_shape))} = {A.fmt(_numel(in_shape))}"
            field_out = None
        elif isinstance(module, nn.Dropout):
            row.formula = f"p = {module.p} (training only)"
    # in a built model a remainder is PyTorch's floor at work (a stride-2 layer on an even
    # size), worth knowing, not an error
    row.notes += [p for p in row.problems if "not a whole number" in p]
    row.problems = [p for p in row.problems if "not a whole number" not in p]
    if not first_call:
        row.name += " (again)"
        row.params, row.params_formula = 0, "shared with the first call"
    row.input_shape, row.output_shape = in_shape, out_shape
    return row, field_out


def _adaptive_field(field_in: A.Field, sizes, outs) -> A.Field:
    if field_in is None or all(o == 1 for o in outs):
        return None  # one bin per channel: every input pixel
    if tuple(sizes) == tuple(outs):
        return field_in
    if all(s % o == 0 for s, o in zip(sizes, outs)):
        axes = [A.axis_size(s, s // o, s // o, (0, 0), 1) for s, o in zip(sizes, outs)]
        return A.grow_field(field_in, axes)
    return None


def _rows_from_graph(
    gm: torch.fx.GraphModule, outputs: dict[str, Any], spatial_dims: int
) -> list[A.Row]:
    fields: dict[str, A.Field] = {}
    rows: list[A.Row] = []
    seen_modules: set[str] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            fields[node.name] = A.start_field(spatial_dims)
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
        field_in = A.merge_fields([fields.get(n.name) for n in inputs]) if inputs else None
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            row, field_out = _module_row(
                node.target, module, in_shape, out_shape, field_in, node.target not in seen_modules
            )
            seen_modules.add(node.target)
        else:
            kind = node.target if isinstance(node.target, str) else node.target.__name__
            row = A.Row(node.name, kind, in_shape, out_shape)
            field_out = field_in
            if len(out_shape) <= 1:
                field_out = None
            if len(inputs) > 1 and kind in ("add", "iadd", "cat", "mul", "sub"):
                joined = " + ".join(A._dims(_shape(outputs[n.name])) for n in inputs)
                row.formula = f"{kind} of {joined}"
        if field_out is not None and len(field_out[0]) != len(out_shape) - 1:
            field_out = None
        fields[node.name] = field_out
        if field_out is not None:
            row.receptive_field, row.jump = field_out
        rows.append(row)
    return rows


def _rows_from_hooks(model: nn.Module, x: torch.Tensor) -> tuple[list[A.Row], list[str]]:
    calls: list[tuple[str, nn.Module, Any, Any]] = []
    notes: list[str] = []
    names = {m: n for n, m in model.named_modules()}
    handles = []

    def hook(module, args, output):
        calls.append((names[module], module, args, output))

    for module in model.modules():
        if not list(module.children()):
            handles.append(module.register_forward_hook(hook))
    try:
        try:
            torch.func.functional_call(model, _meta_state(model), (x,))
        except Exception:  # a forward that looks at values (x.item(), if x.sum() > 0) needs data
            calls.clear()
            notes.append("ran one real forward pass on a zero image: the forward reads values")
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            with torch.no_grad():
                model(torch.zeros(x.shape, device=device))
    except Exception as error:
        raise CnnlabError(f"{type(model).__name__} cannot run on this input: {error}") from error
    finally:
        for handle in handles:
            handle.remove()
    rows, seen = [], set()
    for name, module, args, output in calls:
        in_shape = _shape(args[0]) if args else None
        row, _ = _module_row(name, module, in_shape, _shape(output), None, name not in seen)
        row.receptive_field = None
        seen.add(name)
        rows.append(row)
    return rows, notes
