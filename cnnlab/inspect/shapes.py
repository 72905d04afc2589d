"""``cnnlab shapes``: a shape table from a list of layer specs, no model and no PyTorch needed.

Specs are written inline, ``"conv(32,5,s=1,p=2) relu pool(2) fc(10)"``, or as a JSON/YAML list
(``[{"type": "conv", "out": 32, "kernel": 5, "padding": 2}, "pool(2)", ...]``). Every layer is
checked; a layer that does not fit is reported and skipped (its input passes through unchanged)
so that the problems of the layers after it are reported too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..arithmetic import as_tuple
from . import table as T
from .layer_specs import MAX_NUMBER as MAX_NUMBER  # re-exported: cnnlab.inspect.shapes.*
from .layer_specs import LayerSpec, load_specs, lp_pool_text, parse_shape
from .layer_specs import parse_specs as parse_specs
from .table import dims_text, fmt


@dataclass
class ShapeReport:
    input_shape: tuple[int, ...]
    rows: list[T.Row]
    problems: list[str] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [row.to_dict() for row in self.rows]

    def __str__(self) -> str:
        footer = [f"parameters: {fmt(self.params)}    multiply-adds: {fmt(self.macs)} per image"]
        if self.problems:
            footer.append(f"{len(self.problems)} problem(s):")
            footer += [f"  {p}" for p in self.problems]
        return T.format_table(self.rows, f"input {dims_text(self.input_shape)}", footer)


def shape_table(
    specs: str | Sequence[Any] | list[LayerSpec], input_shape: str | Sequence[int]
) -> ShapeReport:
    """Walk the layers from ``input_shape`` (no batch axis) and fill one row per layer."""
    if not (isinstance(specs, list) and specs and isinstance(specs[0], LayerSpec)):
        specs, _ = load_specs(specs)
    shape = parse_shape(input_shape)
    field_state = T.start_field(len(shape) - 1)
    rows: list[T.Row] = []
    counts: dict[str, int] = {}
    for spec in specs:
        counts[spec.kind] = counts.get(spec.kind, 0) + 1
        name = f"{spec.kind}{counts[spec.kind]}"
        row, new_shape, field_state = _layer(spec, name, shape, field_state)
        row.spec = spec.text
        if field_state is not None and row.output_shape is not None:
            row.receptive_field, row.jump = field_state
        rows.append(row)
        if row.problems and new_shape is None:
            row.formula = (row.formula + "  " if row.formula else "") + "[skipped: the next "
            row.formula += "layers are checked on this layer's input]"
        shape = new_shape or shape
    problems = [f"{row.name} ({row.spec}): {p}" for row in rows for p in row.problems]
    return ShapeReport(parse_shape(input_shape), rows, problems)


_Built = tuple[T.Row, tuple[int, ...] | None, T.Field]  # row, shape after (None: skipped), field


def _layer(spec: LayerSpec, name: str, shape: tuple[int, ...], field_state: T.Field) -> _Built:
    """One layer's row, the shape after it (None when it does not fit) and the receptive field
    after it."""
    kind = spec.kind
    windowed = kind == "conv" or kind.endswith("pool") and kind != "adaptiveavgpool"
    if (windowed or kind in ("gap", "adaptiveavgpool")) and len(shape) < 2:
        problem = (
            f"{kind} needs a spatial input (C x H x W), got {dims_text(shape)}; put it before "
            "flatten/fc"
        )
        return T.Row(name, kind, shape, None, problems=[problem]), None, field_state
    build = _window_layer if windowed else _LAYERS.get(kind, _shape_keeping_layer)
    return build(name, kind, shape, spec.args, field_state)


def _window_layer(
    name: str, kind: str, shape: tuple[int, ...], a: dict[str, Any], field_state: T.Field
) -> _Built:
    """A convolution or a pooling window (max, average, Lp)."""
    conv = kind == "conv"
    if "kernel" not in a or (conv and "out" not in a):
        need = "out channels and kernel" if conv else "kernel"
        row = T.Row(name, kind, shape, None, problems=[f"{kind} needs {need}"])
        return row, None, field_state
    label = f"Conv{len(shape) - 1}d" if conv else kind
    stride, pad = a.get("stride", 1 if conv else None), a.get("padding", 0)
    out, groups, bias = (a["out"] if conv else None), a.get("groups", 1), a.get("bias", True)
    dilation = a.get("dilation", 1)
    row, new_field = T.window_row(
        name, label, shape, a["kernel"], stride, pad, dilation, field_state, out, groups, bias
    )
    if kind == "lppool":
        row.notes.append(lp_pool_text(a.get("norm", 2)))
    return row, row.output_shape, new_field


def _gap_layer(
    name: str, kind: str, shape: tuple[int, ...], a: dict[str, Any], field_state: T.Field
) -> _Built:
    row = T.Row(name, "global avg pool", shape, (shape[0],))
    row.formula = f"mean over {dims_text(shape[1:])} per channel"
    return row, row.output_shape, None


def _adaptive_avg_layer(
    name: str, kind: str, shape: tuple[int, ...], a: dict[str, Any], field_state: T.Field
) -> _Built:
    """Adaptive average pooling to ``out`` bins per axis (the field is kept when nothing moves)."""
    outs = as_tuple(a.get("out", 1), len(shape) - 1, "out")
    row = T.Row(name, "adaptive avg pool", shape, (shape[0], *outs))
    bins = f"bins of about {shape[1] / outs[0]:.3g}"
    row.formula = f"{dims_text(shape[1:])} -> {dims_text(outs)} ({bins})"
    return row, row.output_shape, None if outs != shape[1:] else field_state


def _flatten_layer(
    name: str, kind: str, shape: tuple[int, ...], a: dict[str, Any], field_state: T.Field
) -> _Built:
    size = _size(shape)
    row = T.Row(name, "flatten", shape, (size,))
    row.formula = " * ".join(map(str, shape)) + f" = {fmt(size)}"
    return row, row.output_shape, None


def _fc_layer(
    name: str, kind: str, shape: tuple[int, ...], a: dict[str, Any], field_state: T.Field
) -> _Built:
    """A fully connected layer; on a spatial input it assumes a flatten first and says so."""
    if "out" not in a:
        return (
            T.Row(name, "fc", shape, None, problems=["fc needs its output size"]),
            None,
            field_state,
        )
    features = _size(shape)
    row = T.linear_row(name, features, int(a["out"]), a.get("bias", True))
    row.input_shape = shape
    if len(shape) > 1:
        row.problems.append(
            f"fc on a {dims_text(shape)} input: flatten it first (assumed here, "
            f"{fmt(features)} inputs)"
        )
    return row, row.output_shape, None


def _batchnorm_layer(
    name: str, kind: str, shape: tuple[int, ...], a: dict[str, Any], field_state: T.Field
) -> _Built:
    row = T.Row(name, "batch norm", shape, shape)
    row.params = 2 * shape[0]
    row.params_formula = (
        f"2*{shape[0]} = {fmt(row.params)} (scale and shift per channel; running "
        "mean/variance are buffers, not learned)"
    )
    return row, shape, field_state


def _shape_keeping_layer(
    name: str, kind: str, shape: tuple[int, ...], a: dict[str, Any], field_state: T.Field
) -> _Built:
    """An activation, a dropout or any layer that keeps its input's shape and field."""
    row = T.Row(name, kind, shape, shape)
    if kind == "dropout":
        row.formula = f"p = {a.get('p', 0.5)} (training only)"
    return row, shape, field_state


_LAYERS = {
    "gap": _gap_layer,
    "adaptiveavgpool": _adaptive_avg_layer,
    "flatten": _flatten_layer,
    "fc": _fc_layer,
    "batchnorm": _batchnorm_layer,
}


def _size(shape: tuple[int, ...]) -> int:
    """The number of values in ``shape``."""
    size = 1
    for s in shape:
        size *= s
    return size


NONLINEAR_KINDS = ("relu", "leakyrelu", "tanh", "sigmoid")


def compare_designs(
    designs: dict[str, str | Sequence[Any]], input_shape: str | Sequence[int]
) -> list[dict[str, Any]]:
    """Receptive field, parameters, multiply-adds and non-linearities of alternative layer
    stacks on the same input, side by side (two 3x3 convolutions against one 5x5; a 5x5
    convolution against a 1x1 reduction followed by the 5x5). The numbers come from
    :mod:`cnnlab.arithmetic` through :func:`shape_table`."""
    results = []
    for label, specs in designs.items():
        report = shape_table(specs, input_shape)
        last = report.rows[-1]
        results.append(
            {
                "design": label,
                "layers": [row.spec for row in report.rows],
                "output_shape": list(last.output_shape or []),
                "receptive_field": list(last.receptive_field) if last.receptive_field else None,
                "params": report.params,
                "macs": report.macs,
                "nonlinearities": sum(row.kind in NONLINEAR_KINDS for row in report.rows),
                "problems": report.problems,
            }
        )
    base = results[0]
    for result in results:
        result["params_vs_first"] = result["params"] / base["params"] if base["params"] else None
        result["macs_vs_first"] = result["macs"] / base["macs"] if base["macs"] else None
    return results


def _field_text(field: list[int] | None) -> str:
    if field is None:
        return "all"
    return "x".join(map(str, field if len(field) > 1 else field * 2))


def compare_lessons(results: list[dict[str, Any]]) -> list[str]:
    """The course's sentence for every pair of designs that see the same receptive field and
    give the same output shape: which one is cheaper, by how much, and how many non-linearities
    each puts in between ("two 3x3 convolutions see what one 5x5 sees, with fewer parameters
    and one more ReLU")."""
    lines = []
    for i, first in enumerate(results):
        for other in results[i + 1 :]:
            same = (
                first["receptive_field"] is not None
                and first["receptive_field"] == other["receptive_field"]
                and first["output_shape"] == other["output_shape"]
            )
            if not same or first["params"] == other["params"]:
                continue
            small, large = sorted((first, other), key=lambda r: r["params"])
            saved = 1 - small["params"] / large["params"]
            macs = (
                f"{fmt(small['macs'])} multiply-adds instead of {fmt(large['macs'])}"
                if large["macs"]
                else "no multiply-adds either way"
            )
            relus = small["nonlinearities"] - large["nonlinearities"]
            more = (
                f"{relus} more non-linearit{'y' if relus == 1 else 'ies'} "
                f"({small['nonlinearities']} vs {large['nonlinearities']}), so it can also "
                "draw more complex boundaries"
                if relus > 0
                else f"{small['nonlinearities']} vs {large['nonlinearities']} non-linearities"
            )
            lines.append(
                f"same receptive field ({_field_text(small['receptive_field'])}) and output "
                f"({dims_text(small['output_shape'])}): {small['design']!r} needs "
                f"{fmt(small['params'])} parameters instead of {fmt(large['params'])} "
                f"({saved:.0%} fewer) and {macs}, with {more}."
            )
    return lines


def format_designs(results: list[dict[str, Any]], input_shape: tuple[int, ...]) -> str:
    width = max(len(r["design"]) for r in results)
    lines = [f"input {dims_text(input_shape)}"]
    lines.append(
        f"{'design':<{width}}  {'output':<12} {'RF':>7} {'params':>12} {'mult-adds':>15} "
        f"{'non-lin':>7}  vs first"
    )
    for r in results:
        ratio = f"{r['macs_vs_first']:.3f}x" if r["macs_vs_first"] is not None else "-"
        lines.append(
            f"{r['design']:<{width}}  {dims_text(r['output_shape']):<12} "
            f"{_field_text(r['receptive_field']):>7} {fmt(r['params']):>12} "
            f"{fmt(r['macs']):>15} {r['nonlinearities']:>7}  {ratio}"
        )
        for problem in r["problems"]:
            lines.append(f"  PROBLEM: {problem}")
    lessons = compare_lessons(results)
    if lessons:
        lines.append("")
        lines += lessons
        lines.append(
            "Stacked small filters see what one large filter sees, with fewer parameters and "
            "more non-linearities (VGG's argument for 3x3 convolutions)."
        )
    return "\n".join(lines)
