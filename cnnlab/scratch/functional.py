"""Convolution arithmetic and the im2col / col2im pair, for 1-, 2- and 3-D inputs, in NumPy.

Shapes: inputs are ``N x C x S_1 x ... x S_d`` (d = 1, 2, 3: length; height, width; depth,
height, width). The output size along each spatial axis is :func:`cnnlab.arithmetic.output_size`
(PyTorch's formula, ``(N - F + 2P) / S + 1`` with dilation folded into the kernel extent);
:func:`output_size` here adds the engine's error messages.
"""

from __future__ import annotations

import itertools

import numpy as np

from .. import arithmetic
from ..arithmetic import Padding, resolve_padding
from ..arithmetic import as_tuple as as_tuple  # the engine's layers use the ground floor's rules
from ..arithmetic import same_padding as same_padding
from ..errors import CnnlabError


def output_size(
    size: int, kernel: int, stride: int, pad: tuple[int, int], dilation: int, exact: bool = False
) -> int:
    """One axis of the output; a kernel that does not fit, or a remainder with ``exact``, is an
    error that shows the formula with the numbers filled in."""
    extent = arithmetic.window_extent(kernel, dilation)
    padded = size + pad[0] + pad[1]
    pad_text = f"{pad[0]} + {pad[1]}" if pad[0] != pad[1] else f"2*{pad[0]}"
    formula = f"({size} + {pad_text} - {extent}) / {stride} + 1"
    if extent > padded:
        raise CnnlabError(
            f"kernel extent {extent} is larger than the padded input {padded} "
            f"({size} + {pad_text}): output = {formula} < 1; use a smaller kernel or more padding"
        )
    left_over = arithmetic.output_remainder(size, kernel, stride, pad, dilation)
    if exact and left_over:
        raise CnnlabError(
            f"output = {formula} = {(padded - extent) / stride + 1:.2f} is not a whole number; "
            f"the last {left_over} row(s) would be dropped. Change the padding, or use stride "
            f"{stride} with an input of size {size + stride - left_over}"
        )
    return arithmetic.output_size(size, kernel, stride, pad, dilation)


def pad(
    x: np.ndarray, pads: tuple[tuple[int, int], ...], value: float = 0.0, batch_last: bool = False
) -> np.ndarray:
    """Pad the spatial axes of ``N x C x S...`` with ``value``.

    With ``batch_last`` the result is an ``N x C x P...`` view of memory laid out as
    ``C x P... x N`` (the batch innermost, always a fresh copy): there a window row of one
    channel is one long contiguous run over the whole batch, which :func:`im2col` and
    :func:`col2im` copy and add much faster than many short rows.
    """
    if not batch_last:
        if not any(b or a for b, a in pads):
            return x
        return np.pad(x, ((0, 0), (0, 0), *pads), constant_values=value)
    n, c, *sizes = x.shape
    padded_sizes = [s + b + a for s, (b, a) in zip(sizes, pads)]
    padded = np.moveaxis(np.full((c, *padded_sizes, n), value, dtype=x.dtype), -1, 0)
    padded[(slice(None), slice(None), *(slice(b, b + s) for s, (b, _) in zip(sizes, pads)))] = x
    return padded


def unpad(x: np.ndarray, pads: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Cut :func:`pad`'s border off again (a view), e.g. from the gradient of a padded input."""
    keep = tuple(slice(before, size - after) for (before, after), size in zip(pads, x.shape[2:]))
    return x[(slice(None), slice(None), *keep)]


def _out_sizes(sizes, kernel, stride, dilation) -> list[int]:
    return [
        arithmetic.output_size(s, k, st, 0, d)
        for s, k, st, d in zip(sizes, kernel, stride, dilation)
    ]


def _window_slices(offset, dilation, stride, outs) -> tuple[slice, ...]:
    """Where kernel offset ``offset`` reads from, for every output position at once."""
    return tuple(
        slice(o * dl, o * dl + st * (m - 1) + 1, st)
        for o, dl, st, m in zip(offset, dilation, stride, outs)
    )


def sliding_windows(
    x_padded: np.ndarray,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> np.ndarray:
    """Every window of ``x_padded`` at once, as a read-only strided view (no copy).

    Returns ``N x C x O_1..O_d x K_1..K_d``: element ``[n, c, o, k]`` is
    ``x_padded[n, c, o * stride + k * dilation]``. Nothing is copied: moving one step along an
    output axis skips ``stride`` input elements, one step along a kernel axis skips
    ``dilation``, so the view only needs other strides over the same memory.
    """
    n, c, *sizes = x_padded.shape
    outs = _out_sizes(sizes, kernel, stride, dilation)
    step_n, step_c, *steps = x_padded.strides
    strides = (
        step_n,
        step_c,
        *(s * st for s, st in zip(steps, stride)),
        *(s * dl for s, dl in zip(steps, dilation)),
    )
    return np.lib.stride_tricks.as_strided(
        x_padded, (n, c, *outs, *kernel), strides, writeable=False
    )


def im2col(
    x_padded: np.ndarray,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    batch_last: bool = False,
) -> np.ndarray:
    """Unroll every window into a column, with ONE copy of :func:`sliding_windows`.

    Args:
        x_padded: ``N x C x P_1..P_d`` (already padded), in any memory layout.
        batch_last: order the columns output-position-major, image innermost.

    Returns:
        ``(C * K_1 * ... * K_d) x (N * O_1 * ... * O_d)``: column ``(n, o)`` holds the window that
        output position ``o`` of image ``n`` sees, channel-major like a flattened kernel (per
        image, the layout of ``torch.nn.functional.unfold``). With ``batch_last`` the columns
        are ordered ``(o, n)`` instead; from a :func:`pad` ``batch_last`` input that copy reads
        and writes long contiguous runs.
    """
    d = len(kernel)
    windows = sliding_windows(x_padded, kernel, stride, dilation)  # N x C x O... x K...
    outs, kernel_axes = range(2, 2 + d), range(2 + d, 2 + 2 * d)
    order = (1, *kernel_axes, *outs, 0) if batch_last else (1, *kernel_axes, 0, *outs)
    cols = windows.transpose(order).copy()  # C order: the one copy
    return cols.reshape(x_padded.shape[1] * int(np.prod(kernel)), -1)


def col2im(
    cols: np.ndarray,
    padded_shape: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    batch_last: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The adjoint of :func:`im2col`: add every column's values back where they were read.

    Args:
        cols: ``(C * K...) x (N * O...)``, e.g. the gradient of the unrolled windows; with
            ``batch_last``, columns ordered ``(o, n)`` as :func:`im2col` makes them.
        padded_shape: ``N x C x P_1..P_d``, the shape ``im2col`` read from.
        out: an ``N x C x P...`` array (or view) to add into; a new one of zeros if not given.
            A :func:`pad` ``batch_last`` layout makes every add one long contiguous run.

    Returns:
        ``N x C x P_1..P_d``. Overlapping windows add up. One strided add per kernel offset
        (K_1 * ... * K_d adds), no ``np.add.at``.
    """
    n, c, *sizes = padded_shape
    outs = _out_sizes(sizes, kernel, stride, dilation)
    if batch_last:  # C x K... x O... x N, seen as C x K... x N x O...
        blocks = np.moveaxis(cols.reshape(c, *kernel, *outs, n), -1, 1 + len(kernel))
    else:
        blocks = cols.reshape(c, *kernel, n, *outs)
    if out is None:
        out = np.zeros(padded_shape, dtype=cols.dtype)
    target_image = out.swapaxes(0, 1)  # C x N x P..., a view: the adds land in ``out``
    for offset in itertools.product(*(range(k) for k in kernel)):
        target = (slice(None), slice(None), *_window_slices(offset, dilation, stride, outs))
        target_image[target] += blocks[(slice(None), *offset)]
    return out


def batch_to_front(a: np.ndarray, block: int = 64) -> np.ndarray:
    """Copy ``S... x N`` (batch innermost) into a new contiguous ``N x S...``.

    A transposing copy reads (or writes) every element far from the previous one; as one numpy
    copy of a large array that misses the cache almost every time (~10x slower). Copying
    ``block`` rows at a time keeps the rows being read and the rows being written cached.
    """
    rows = a.reshape(-1, a.shape[-1])  # (every S... position) x N
    out = np.empty((a.shape[-1], rows.shape[0]), dtype=a.dtype)
    for start in range(0, rows.shape[0], block):
        out[:, start : start + block] = rows[start : start + block].T
    return out.reshape(a.shape[-1], *a.shape[:-1])


def offset_views(
    x_padded: np.ndarray,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
):
    """Yield ``(k, view)`` for every kernel offset ``k`` (flattened, row-major): ``view`` is the
    strided view (no copy) of the values that offset reads for every output position at once,
    ``N x C x O_1..O_d``. Pooling is a running max / min / sum over these views, and its
    backward adds into the same views."""
    n, c, *sizes = x_padded.shape
    outs = _out_sizes(sizes, kernel, stride, dilation)
    for k, offset in enumerate(itertools.product(*(range(size) for size in kernel))):
        slices = _window_slices(offset, dilation, stride, outs)
        yield k, x_padded[(slice(None), slice(None), *slices)]


# ------------------------------------------------------ the readable reference and its variants


def correlate2d_naive(
    image: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: int = 0
) -> np.ndarray:
    """Cross-correlation of one 2-D image with one 2-D kernel, by explicit loops.

    ``out[i, j] = sum over (u, v) of image[i*stride + u, j*stride + v] * kernel[u, v]`` —
    what a deep-learning "convolution" layer computes. Slow on purpose: this is the definition
    the fast paths are tested against.
    """
    image = np.pad(image, padding)
    kh, kw = kernel.shape
    oh = output_size(image.shape[0], kh, stride, (0, 0), 1)
    ow = output_size(image.shape[1], kw, stride, (0, 0), 1)
    out = np.zeros((oh, ow), dtype=np.result_type(image, kernel))
    for i in range(oh):
        for j in range(ow):
            total = 0.0
            for u in range(kh):
                for v in range(kw):
                    total += image[i * stride + u, j * stride + v] * kernel[u, v]
            out[i, j] = total
    return out


def correlate2d(
    image: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: Padding = 0
) -> np.ndarray:
    """Cross-correlation of a 2-D image with a 2-D kernel through im2col: one matrix product."""
    k = kernel.shape
    pads = resolve_padding(padding, k, (1, 1), (stride, stride))
    x = pad(image[None, None], pads)
    cols = im2col(x, k, (stride, stride), (1, 1))
    oh = output_size(image.shape[0], k[0], stride, pads[0], 1)
    return (kernel.reshape(-1) @ cols).reshape(oh, -1)


def convolve2d(
    image: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: Padding = 0
) -> np.ndarray:
    """True (mathematical) convolution: correlation with the kernel rotated by 180 degrees."""
    return correlate2d(image, kernel[::-1, ::-1], stride, padding)


def convolve2d_full(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Full convolution: every position where kernel and image overlap at all (size N + F - 1)."""
    kh, kw = kernel.shape
    return convolve2d(image, kernel, padding=(kh - 1, kw - 1))
