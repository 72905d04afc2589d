"""One row of a shape table (``cnnlab shapes``, ``cnnlab summary``): a layer's shapes, the
formula of its output size, its parameters and multiply-adds with their arithmetic, its
receptive field, and the terminal table that shows the rows. The numbers come from
:mod:`cnnlab.arithmetic`, the explanations from :mod:`cnnlab.inspect.arithmetic`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import arithmetic
from ..errors import ShapeError
from .arithmetic import AxisSize, axis_problem, window_axes


def fmt(n: int) -> str:
    return f"{n:,}"


def dims_text(shape: Sequence[int]) -> str:
    """``(1, 28, 28)`` -> ``"1x28x28"``."""
    return "x".join(map(str, shape))


@dataclass
class Row:
    """One layer of a shape table: shapes exclude the batch axis (``C x H x W``)."""

    name: str
    kind: str
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None
    formula: str = ""
    params: int = 0
    params_formula: str = ""
    macs: int = 0
    macs_formula: str = ""
    receptive_field: tuple[int, ...] | None = None  # per spatial axis; None: the whole input
    jump: tuple[int, ...] | None = None  # input pixels between neighbouring outputs
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    spec: str = ""

    def receptive_text(self) -> str:
        if self.receptive_field is None:
            return "all"
        r = self.receptive_field
        return str(r[0]) if len(set(r)) == 1 else "x".join(map(str, r))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "spec": self.spec,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "output_shape": list(self.output_shape) if self.output_shape else None,
            "formula": self.formula,
            "params": self.params,
            "params_formula": self.params_formula,
            "macs": self.macs,
            "macs_formula": self.macs_formula,
            "receptive_field": list(self.receptive_field) if self.receptive_field else None,
            "jump": list(self.jump) if self.jump else None,
            "problems": list(self.problems),
            "notes": list(self.notes),
        }


Field = tuple[tuple[int, ...], tuple[int, ...]] | None  # (receptive field, jump) per axis


def start_field(spatial_dims: int) -> Field:
    return (1,) * spatial_dims, (1,) * spatial_dims


def grow_field(field_in: Field, axes: Sequence[AxisSize]) -> Field:
    """Receptive field after a window layer: ``r_out = r_in + D * (F - 1) * j_in`` and
    ``j_out = j_in * S`` (``j``: input pixels between neighbouring outputs)."""
    if field_in is None:
        return None
    r, j = field_in
    if len(r) != len(axes):
        return None
    steps = [
        arithmetic.receptive_step(ri, ji, a.kernel, a.stride, a.dilation)
        for ri, ji, a in zip(r, j, axes)
    ]
    return tuple(s[0] for s in steps), tuple(s[1] for s in steps)


def merge_fields(fields: Sequence[Field]) -> Field:
    """Where branches join (add, concat) a unit sees the union: the largest field."""
    if not fields or any(f is None for f in fields):
        return None
    return (
        tuple(max(values) for values in zip(*(f[0] for f in fields))),
        tuple(max(values) for values in zip(*(f[1] for f in fields))),
    )


def window_row(
    name: str,
    kind: str,
    in_shape: tuple[int, ...],
    kernel,
    stride,
    padding,
    dilation,
    field_in: Field,
    out_channels: int | None = None,
    groups: int = 1,
    bias: bool = True,
) -> tuple[Row, Field]:
    """A convolution (``out_channels`` given) or pooling layer on a ``C x S...`` input."""
    channels, spatial = in_shape[0], in_shape[1:]
    pool = out_channels is None
    row = Row(name, kind, tuple(in_shape), None)
    try:
        axes, _ = window_axes(spatial, kernel, stride, padding, dilation, pool=pool)
    except ShapeError as error:
        row.problems.append(str(error))
        return row, field_in
    formulas = [axis.formula() for axis in axes]
    row.formula = formulas[0] if len(set(formulas)) == 1 and len(axes) > 1 else "; ".join(formulas)
    if len(axes) > 1 and len(set(formulas)) == 1:
        row.formula += f"  (each of {len(axes)} axes)"
    problems = [axis_problem(axis, "output size") for axis in axes]
    if len(axes) > 1 and len(set(problems)) == 1 and problems[0]:
        every = "both axes" if len(axes) == 2 else f"all {len(axes)} axes"
        row.problems.append(problems[0].replace("output size", every, 1))
    else:
        row.problems += [
            p.replace("output size", f"axis {i}", 1) for i, p in enumerate(problems) if p
        ]
    if any(not axis.fits for axis in axes):
        return row, field_in
    outs = tuple(axis.out for axis in axes)
    if pool:
        row.output_shape = (channels, *outs)
    else:
        if channels % groups or out_channels % groups:
            row.problems.append(
                f"groups={groups} must divide both the input channels ({channels}) and the "
                f"output channels ({out_channels})"
            )
            return row, field_in
        row.output_shape = (out_channels, *outs)
        kernels = [a.kernel for a in axes]
        kernel_text = "*".join(map(str, kernels))
        in_text = f"{channels}" if groups == 1 else f"({channels}/{groups})"
        row.params = arithmetic.conv_params(channels, out_channels, kernels, groups, bias)
        row.params_formula = f"{kernel_text}*{in_text}*{out_channels}" + (
            f" + {out_channels}" if bias else ""
        )
        row.params_formula += f" = {fmt(row.params)}"
        row.macs = arithmetic.conv_macs(channels, out_channels, kernels, outs, groups)
        row.macs_formula = (
            f"{dims_text(row.output_shape)} outputs x {kernel_text}*{in_text} = {fmt(row.macs)}"
        )
    return row, grow_field(field_in, axes)


def linear_row(
    name: str, in_features: int, out_features: int, bias: bool = True, positions: int = 1
) -> Row:
    """A fully connected layer. On an input with more axes than features (a ViT's 197 tokens,
    a ConvNeXt block's H x W positions) it runs once per ``positions``: so do its
    multiply-adds."""
    row = Row(name, "Linear", (in_features,), (out_features,))
    row.formula = f"{in_features} -> {out_features}"
    row.params = arithmetic.linear_params(in_features, out_features, bias)
    row.params_formula = f"{in_features}*{out_features}" + (f" + {out_features}" if bias else "")
    row.params_formula += f" = {fmt(row.params)}"
    row.macs = arithmetic.linear_macs(in_features, out_features, positions)
    where = f"{fmt(positions)} positions x " if positions != 1 else ""
    row.macs_formula = f"{where}{in_features}*{out_features} = {fmt(row.macs)}"
    return row


def format_table(rows: Sequence[Row], title: str = "", footer: Sequence[str] = ()) -> str:
    """The terminal table shared by ``cnnlab shapes`` and ``cnnlab summary``."""
    headers = ["layer", "type", "input", "output", "output size", "params", "mult-adds", "RF"]
    body = []
    for row in rows:
        body.append(
            [
                row.name,
                row.kind,
                dims_text(row.input_shape) if row.input_shape else "?",
                dims_text(row.output_shape) if row.output_shape else "?",
                row.formula,
                fmt(row.params) if row.params else "-",
                fmt(row.macs) if row.macs else "-",
                row.receptive_text(),
            ]
        )
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)
    ]
    widths[4] = min(widths[4], 48)
    lines = [title] if title else []
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    lines += [line, "-" * len(line)]
    for row, cells in zip(rows, body):
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
        details = []
        if row.params_formula:
            details.append(f"params {row.params_formula}")
        if row.macs_formula:
            details.append(f"mult-adds {row.macs_formula}")
        if details:
            lines.append(" " * 4 + "   ".join(details))
        for problem in row.problems:
            lines.append(f"    PROBLEM: {problem}")
        for note in row.notes:
            lines.append(f"    note: {note}")
    lines.append("-" * len(line))
    lines.extend(footer)
    return "\n".join(lines)
