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


def pad(x: np.ndarray, pads: tuple[tuple[int, int], ...], value: float = 0.0) -> np.ndarray:
    if not any(b or a for b, a in pads):
        return x
    return np.pad(x, ((0, 0), (0, 0), *pads), constant_values=value)


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


def im2col(
    x_padded: np.ndarray,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> np.ndarray:
    """Unroll every window into a column.

    Args:
        x_padded: ``N x C x P_1..P_d`` (already padded).

    Returns:
        ``(C * K_1 * ... * K_d) x (N * O_1 * ... * O_d)``: column ``(n, o)`` holds the window that
        output position ``o`` of image ``n`` sees, channel-major like a flattened kernel (per
        image, the layout of ``torch.nn.functional.unfold``). Filled with one strided copy per
        kernel offset (K_1 * ... * K_d copies), each reading whole rows of the input.
    """
    n, c, *sizes = x_padded.shape
    outs = _out_sizes(sizes, kernel, stride, dilation)
    cols = np.empty((c, *kernel, n, *outs), dtype=x_padded.dtype)
    channels_first = x_padded.swapaxes(0, 1)  # C x N x P...
    for offset in itertools.product(*(range(k) for k in kernel)):
        source = channels_first[
            (slice(None), slice(None), *_window_slices(offset, dilation, stride, outs))
        ]
        cols[(slice(None), *offset)] = source
    return cols.reshape(c * int(np.prod(kernel)), n * int(np.prod(outs)))


def col2im(
    cols: np.ndarray,
    padded_shape: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> np.ndarray:
    """The adjoint of :func:`im2col`: add every column's values back where they were read.

    Args:
        cols: ``(C * K...) x (N * O...)``, e.g. the gradient of the unrolled windows.
        padded_shape: ``N x C x P_1..P_d``, the shape ``im2col`` read from.

    Returns:
        ``N x C x P_1..P_d``. Overlapping windows add up. One strided add per kernel offset
        (K_1 * ... * K_d adds), no ``np.add.at``.
    """
    n, c, *sizes = padded_shape
    outs = _out_sizes(sizes, kernel, stride, dilation)
    blocks = cols.reshape(c, *kernel, n, *outs)
    out = np.zeros((c, n, *sizes), dtype=cols.dtype)
    for offset in itertools.product(*(range(k) for k in kernel)):
        target = (slice(None), slice(None), *_window_slices(offset, dilation, stride, outs))
        out[target] += blocks[(slice(None), *offset)]
    return out.swapaxes(0, 1)


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
