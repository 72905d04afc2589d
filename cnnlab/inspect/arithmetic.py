"""Convolution arithmetic without a model: output sizes, paddings, parameters, multiply-adds and
receptive fields, each with the formula and its numbers, so a learner can check it by hand.

The output size along one axis (PyTorch's rule; with ``dilation = 1`` it is the textbook
``(N - F + 2P) / S + 1``):

    out = (N + P_before + P_after - (D * (F - 1) + 1)) / S + 1

When the division leaves a remainder PyTorch drops the last rows that do not fill a window
(floor). :func:`conv_output_size` calls that an error, because it is almost always a mistake in
a design, and says which paddings or strides make the division exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ShapeError
from ..scratch.functional import resolve_padding as resolve_zero_padding
from ..scratch.functional import same_padding as same_padding  # re-exported

Padding = int | str | Sequence[int]


def _tuple(value: int | Sequence[int], dims: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        return value * dims
    if len(value) != dims:
        raise ShapeError(f"{name}={value}: expected one number or {dims}, one per spatial axis")
    return value


def resolve_padding(
    padding: Padding, kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...]
) -> tuple[tuple[int, int], ...]:
    """Per-axis ``(before, after)`` padding, by the engine's rule
    (:func:`cnnlab.scratch.functional.resolve_padding`); one number in a tuple counts for
    every axis."""
    if not isinstance(padding, str):
        padding = _tuple(padding, len(kernel), "padding")
    return resolve_zero_padding(padding, kernel, dilation, stride)


@dataclass(frozen=True)
class AxisSize:
    """One axis of the output size, with everything that went into it."""

    size: int
    kernel: int
    stride: int
    pad: tuple[int, int]
    dilation: int
    out: int  # floor, as PyTorch computes it; 0 when the kernel does not fit
    remainder: int  # rows left over that no window covers

    @property
    def extent(self) -> int:
        """How many input pixels one window spans: ``D * (F - 1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1

    @property
    def padded(self) -> int:
        return self.size + self.pad[0] + self.pad[1]

    @property
    def fits(self) -> bool:
        return self.extent <= self.padded

    def formula(self) -> str:
        """``(28 - 5 + 2*2) / 1 + 1 = 28``, with the dilated extent and uneven padding
        spelled out when they occur."""
        before, after = self.pad
        pad = f"2*{before}" if before == after else f"{before}+{after}"
        kernel = str(self.kernel) if self.dilation == 1 else f"{self.extent}"
        text = f"({self.size} - {kernel} + {pad}) / {self.stride} + 1"
        if not self.fits:
            return f"{text} < 1"
        if self.remainder:
            shown = f"{self.out - 1 + self.remainder / self.stride + 1:.4g}"
            if shown == str(self.out):  # 1 + 26/1000000000 would show as "1 -> 1"
                shown = f"{self.out} + {self.remainder}/{self.stride}"
            text += f" = {shown} -> {self.out}"
        else:
            text += f" = {self.out}"
        if self.dilation != 1:
            text += f"  [kernel {self.kernel} dilated by {self.dilation} spans {self.extent}]"
        return text

    def fixes(self) -> list[str]:
        """Small changes that make the division exact (and the kernel fit). Each is found in
        closed form (modular arithmetic), so a kernel or stride of a billion answers at once."""
        tips = []
        size, extent, stride = self.size, self.extent, self.stride
        # 2p = extent - size (mod stride), with size + 2p >= extent
        paddings = _even_paddings(size, extent, stride)
        if paddings:
            tips.append("padding " + " or ".join(map(str, paddings)))
        else:  # an odd total is needed: pad one side more (nn.ZeroPad2d / F.pad)
            total = _first_at_least(max(1, extent - size), extent - size, stride)
            tips.append(f"uneven padding {total // 2} before, {total - total // 2} after")
        if not self.fits:
            tips.append(f"a kernel of at most {self.padded}")
        if self.fits:
            span = self.padded - extent
            limit = max(2 * stride, self.kernel)
            near = _divisors_near(span, stride, min(span, limit), count=2)
            if near:
                tips.append("stride " + " or ".join(map(str, sorted(near))))
        other = _nearest_input_size(size, sum(self.pad), extent, stride)
        if other is not None:
            tips.append(f"input size {other}")
        return tips


def _first_at_least(low: int, residue: int, modulus: int) -> int:
    """The smallest ``x >= low`` with ``x = residue (mod modulus)``."""
    return low + (residue - low) % modulus


def _even_paddings(size: int, extent: int, stride: int, count: int = 3) -> list[int]:
    """Up to ``count`` symmetric paddings ``p`` (smallest first) with ``size + 2p >= extent``
    and ``(size + 2p - extent) % stride == 0``; none when the parity rules them all out."""
    g = 2 if stride % 2 == 0 else 1
    need = (extent - size) % stride  # 2p must be this, modulo the stride
    if need % g:
        return []
    period = stride // g
    # p = (need / g) * (2 / g)^-1 (mod period); the inverse of 1 or 2 exists as period is odd
    # when g == 1, and 2 / g == 1 when g == 2
    residue = (need // g) * pow(2 // g, -1, period) % period if period > 1 else 0
    first = _first_at_least(max(0, -(-(extent - size) // 2)), residue, period)
    limit = extent + stride  # the old search's range, kept so the suggestions stay small
    return [p for p in range(first, first + count * period, period) if p < limit]


def _divisors_near(number: int, target: int, upper: int, count: int) -> list[int]:
    """Up to ``count`` divisors ``d`` of ``number`` in ``1..upper``, other than ``target``,
    nearest to ``target`` (the smaller first on a tie). Bounded work for any size."""
    if number < 1 or upper < 1:
        return []
    if upper <= 100_000:
        found = [d for d in range(1, upper + 1) if number % d == 0 and d != target]
    elif number <= 10**10:  # pairs (d, number // d) up to the square root: 10^5 steps
        found = []
        d = 1
        while d * d <= number:
            if number % d == 0:
                found += [d, number // d]
            d += 1
        found = sorted({d for d in found if d <= upper and d != target})
    else:  # look only around the target, and at 1, which divides everything
        found = [1] if target != 1 else []
        for step in range(1, 10_001):
            found += [
                d for d in (target - step, target + step)
                if 1 < d <= upper and number % d == 0
            ]  # fmt: skip
    return sorted(found, key=lambda d: (abs(d - target), d))[:count]


def _nearest_input_size(size: int, pad: int, extent: int, stride: int) -> int | None:
    """The input size nearest to ``size`` (larger first on a tie) for which the window fits
    and the division is exact: ``n + pad >= extent`` and ``(n + pad - extent) % stride == 0``."""
    low = max(1, extent - pad)
    residue = (extent - pad) % stride
    up = _first_at_least(max(size + 1, low), residue, stride)
    down = size - 1 - (size - 1 - residue) % stride
    if down >= low and size - down < up - size:
        return down
    return up


def axis_size(size: int, kernel: int, stride: int, pad: tuple[int, int], dilation: int) -> AxisSize:
    if min(size, kernel, stride, dilation) < 1:
        raise ShapeError(
            f"size {size}, kernel {kernel}, stride {stride}, dilation {dilation}: each must be "
            "at least 1"
        )
    padded = size + pad[0] + pad[1]
    extent = dilation * (kernel - 1) + 1
    if extent > padded:
        return AxisSize(size, kernel, stride, pad, dilation, 0, 0)
    return AxisSize(
        size, kernel, stride, pad, dilation, (padded - extent) // stride + 1,
        (padded - extent) % stride,
    )  # fmt: skip


def axis_problem(axis: AxisSize, what: str) -> str | None:
    """What is wrong with one axis (the kernel does not fit, or a remainder), with the formula
    and the fixes; ``None`` when the size is a whole number."""
    if not axis.fits:
        return (
            f"{what}: the kernel spans {axis.extent} pixels but the padded input has "
            f"{axis.padded}: output = {axis.formula()}. Fix: {'; '.join(axis.fixes())}"
        )
    if axis.remainder:
        return (
            f"{what}: output = {axis.formula()} is not a whole number; the last "
            f"{axis.remainder} row(s) are never covered by a window. Fix: "
            f"{'; '.join(axis.fixes())}"
        )
    return None


def _sizes(
    n: int | Sequence[int], kernel, stride, padding, dilation, pool: bool
) -> tuple[list[AxisSize], bool]:
    single = isinstance(n, int)
    sizes = (n,) if single else tuple(n)
    dims = len(sizes)
    kernel_t = _tuple(kernel, dims, "kernel")
    stride_t = kernel_t if pool and stride is None else _tuple(stride, dims, "stride")
    dilation_t = _tuple(dilation, dims, "dilation")
    pads = resolve_padding(padding, kernel_t, stride_t, dilation_t)
    if pool:
        for k, (before, after) in zip(kernel_t, pads):
            if max(before, after) > k // 2:
                raise ShapeError(
                    f"pooling padding {max(before, after)} with kernel {k}: padding may be at "
                    f"most half the kernel ({k // 2}), or some windows would see only padding"
                )
    axes = [axis_size(*args) for args in zip(sizes, kernel_t, stride_t, pads, dilation_t)]
    return axes, single


def _checked_sizes(
    what: str, n, kernel, stride, padding, dilation, exact: bool
) -> int | tuple[int, ...]:
    axes, single = _sizes(n, kernel, stride, padding, dilation, pool=what == "pooling")
    for i, axis in enumerate(axes):
        problem = axis_problem(axis, what if single else f"{what}, axis {i}")
        if problem and (exact or not axis.fits):
            raise ShapeError(problem)
    outs = tuple(axis.out for axis in axes)
    return outs[0] if single else outs


def conv_output_size(
    n: int | Sequence[int],
    kernel: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: Padding = 0,
    dilation: int | Sequence[int] = 1,
    exact: bool = True,
) -> int | tuple[int, ...]:
    """Output size of a convolution along one axis (``n`` an int) or several (``n`` a tuple:
    1-D, 2-D or 3-D). ``padding`` may be ``"valid"`` or ``"same"``.

    Raises :class:`ShapeError` showing the formula with the numbers, and the paddings, strides
    or input sizes that would fix it, when the kernel does not fit or (with ``exact``, the
    default) the division leaves a remainder; ``exact=False`` floors like PyTorch.
    """
    return _checked_sizes("convolution", n, kernel, stride, padding, dilation, exact)


def pool_output_size(
    n: int | Sequence[int],
    kernel: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: Padding = 0,
    dilation: int | Sequence[int] = 1,
    exact: bool = True,
) -> int | tuple[int, ...]:
    """Output size of max/average pooling; ``stride`` defaults to the kernel size, as in
    PyTorch. Same errors as :func:`conv_output_size`."""
    return _checked_sizes("pooling", n, kernel, stride, padding, dilation, exact)


# ------------------------------------------------------------------- one row of a shape table


def fmt(n: int) -> str:
    return f"{n:,}"


def _dims(shape: Sequence[int]) -> str:
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
            "name": self.name, "kind": self.kind, "spec": self.spec,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "output_shape": list(self.output_shape) if self.output_shape else None,
            "formula": self.formula, "params": self.params,
            "params_formula": self.params_formula, "macs": self.macs,
            "macs_formula": self.macs_formula,
            "receptive_field": list(self.receptive_field) if self.receptive_field else None,
            "jump": list(self.jump) if self.jump else None, "problems": list(self.problems),
            "notes": list(self.notes),
        }  # fmt: skip


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
    return (
        tuple(ri + a.dilation * (a.kernel - 1) * ji for ri, ji, a in zip(r, j, axes)),
        tuple(ji * a.stride for ji, a in zip(j, axes)),
    )


def merge_fields(fields: Sequence[Field]) -> Field:
    """Where branches join (add, concat) a unit sees the union: the largest field."""
    if not fields or any(f is None for f in fields):
        return None
    return (
        tuple(max(values) for values in zip(*(f[0] for f in fields))),
        tuple(max(values) for values in zip(*(f[1] for f in fields))),
    )


def window_row(
    name: str, kind: str, in_shape: tuple[int, ...], kernel, stride, padding, dilation,
    field_in: Field, out_channels: int | None = None, groups: int = 1, bias: bool = True,
) -> tuple[Row, Field]:  # fmt: skip
    """A convolution (``out_channels`` given) or pooling layer on a ``C x S...`` input."""
    channels, spatial = in_shape[0], in_shape[1:]
    pool = out_channels is None
    row = Row(name, kind, tuple(in_shape), None)
    try:
        axes, _ = _sizes(spatial, kernel, stride, padding, dilation, pool=pool)
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
        kernel_text = "*".join(str(a.kernel) for a in axes)
        per_output = channels // groups
        for a in axes:
            per_output *= a.kernel
        in_text = f"{channels}" if groups == 1 else f"({channels}/{groups})"
        weights = per_output * out_channels
        row.params = weights + (out_channels if bias else 0)
        row.params_formula = f"{kernel_text}*{in_text}*{out_channels}" + (
            f" + {out_channels}" if bias else ""
        )
        row.params_formula += f" = {fmt(row.params)}"
        outputs = out_channels
        for o in outs:
            outputs *= o
        row.macs = outputs * per_output
        row.macs_formula = (
            f"{_dims(row.output_shape)} outputs x {kernel_text}*{in_text} = {fmt(row.macs)}"
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
    row.params = in_features * out_features + (out_features if bias else 0)
    row.params_formula = f"{in_features}*{out_features}" + (f" + {out_features}" if bias else "")
    row.params_formula += f" = {fmt(row.params)}"
    row.macs = positions * in_features * out_features
    where = f"{fmt(positions)} positions x " if positions != 1 else ""
    row.macs_formula = f"{where}{in_features}*{out_features} = {fmt(row.macs)}"
    return row


def format_table(rows: Sequence[Row], title: str = "", footer: Sequence[str] = ()) -> str:
    """The terminal table shared by ``cnnlab shapes`` and ``cnnlab summary``."""
    headers = ["layer", "type", "input", "output", "output size", "params", "mult-adds", "RF"]
    body = []
    for row in rows:
        body.append([
            row.name, row.kind, _dims(row.input_shape) if row.input_shape else "?",
            _dims(row.output_shape) if row.output_shape else "?", row.formula,
            fmt(row.params) if row.params else "-", fmt(row.macs) if row.macs else "-",
            row.receptive_text(),
        ])  # fmt: skip
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
