"""Convolution arithmetic explained: output sizes and paddings with the formula and its
numbers, so a learner can check it by hand, and what to change when a layer does not fit.

The numbers come from the pure formulas of :mod:`cnnlab.arithmetic` (output size along one
axis, PyTorch's rule; with ``dilation = 1`` it is the textbook ``(N - F + 2P) / S + 1``):

    out = (N + P_before + P_after - (D * (F - 1) + 1)) / S + 1

When the division leaves a remainder PyTorch drops the last rows that do not fill a window
(floor). :func:`conv_output_size` calls that an error, because it is almost always a mistake in
a design, and says which paddings or strides make the division exact. The rows of a shape table
(parameters, multiply-adds, receptive fields) are in :mod:`cnnlab.inspect.table`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .. import arithmetic
from ..arithmetic import Padding, as_tuple
from ..arithmetic import same_padding as same_padding  # re-exported
from ..errors import ShapeError as ShapeError  # re-exported: cnnlab.inspect exports it


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
        return arithmetic.window_extent(self.kernel, self.dilation)

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
                d for d in (target - step, target + step) if 1 < d <= upper and number % d == 0
            ]
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
    out = arithmetic.output_size(size, kernel, stride, pad, dilation)
    left_over = arithmetic.output_remainder(size, kernel, stride, pad, dilation)
    return AxisSize(size, kernel, stride, pad, dilation, out, left_over)


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


def window_axes(
    n: int | Sequence[int], kernel, stride, padding, dilation, pool: bool
) -> tuple[list[AxisSize], bool]:
    """Every spatial axis of a convolution (or, with ``pool``, a pooling layer: the stride
    defaults to the kernel, the padding may be at most half the kernel) on input sizes ``n``;
    also whether ``n`` was one number."""
    single = isinstance(n, int)
    sizes = (n,) if single else tuple(n)
    dims = len(sizes)
    kernel_t = as_tuple(kernel, dims, "kernel")
    stride_t = kernel_t if pool and stride is None else as_tuple(stride, dims, "stride")
    dilation_t = as_tuple(dilation, dims, "dilation")
    pads = arithmetic.resolve_padding(padding, kernel_t, dilation_t, stride_t)
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
    axes, single = window_axes(n, kernel, stride, padding, dilation, pool=what == "pooling")
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
