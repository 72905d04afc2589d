"""Pooling layers of the NumPy engine: max, min and average pooling over strided views of the
input (no copies of the windows), global average pooling and PyTorch's adaptive average
pooling."""

from __future__ import annotations

import numpy as np

from . import functional as Fn
from .base import Layer, check_input


class _Pool2d(Layer):
    """Pooling as a running reduction over the ``KH * KW`` strided views of the input, one per
    position inside the window (no copies of the windows); backward adds into the same views."""

    pad_value = 0.0

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0) -> None:
        self.kernel = Fn.as_tuple(kernel_size, 2, "kernel_size")
        self.stride = Fn.as_tuple(stride if stride is not None else kernel_size, 2, "stride")
        self.pads = Fn.resolve_padding(padding, self.kernel, (1, 1), self.stride)

    def _views(self, x: np.ndarray):
        check_input(type(self).__name__, x, 2, None)
        for s, k, st, p in zip(x.shape[2:], self.kernel, self.stride, self.pads):
            Fn.output_size(s, k, st, p, 1)  # raises with the formula if the window does not fit
        x_padded = Fn.pad(x, self.pads, self.pad_value)
        self.padded_shape, self.dtype = x_padded.shape, x.dtype
        return Fn.offset_views(x_padded, self.kernel, self.stride, (1, 1))

    def _spread(self, per_offset) -> np.ndarray:
        """Add ``per_offset(k)`` (``N x C x OH x OW``) into the input positions that offset
        ``k`` of every window read: the "up-sampling" of the gradient through pooling.
        Overlapping windows add up."""
        dx = np.zeros(self.padded_shape, dtype=self.dtype)
        for k, view in Fn.offset_views(dx, self.kernel, self.stride, (1, 1)):
            view += per_offset(k)
        return Fn.unpad(dx, self.pads)


class MaxPool2d(_Pool2d):
    """The largest value of each window; the gradient goes to that one position (the first
    one, on ties, as PyTorch does)."""

    pad_value = -np.inf
    reduce = staticmethod(np.maximum)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.winners = None
        if self._tiles(x):
            return self._forward_tiles(x)
        views = [view for _, view in self._views(x)]
        best = views[0].copy()
        for view in views[1:]:
            self.reduce(best, view, out=best)
        # which offset won, first one on ties (element-wise arithmetic, no masked writes)
        self.index = np.zeros(best.shape, dtype=np.uint8 if len(views) < 256 else np.int64)
        found = views[0] == best
        for k, view in enumerate(views[1:], start=1):
            hit = view == best
            hit &= ~found
            found |= hit
            self.index += hit.astype(self.index.dtype) * k
        return best

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.winners is not None:  # tiles: one broadcast product, no scatter
            n, c, oh, kh, ow, kw = self.winners.shape
            spread = np.repeat(dout.astype(self.dtype, copy=False), kw, axis=-1)
            dx = self.winners * spread.reshape(n, c, oh, 1, ow, kw)
            return dx.reshape(n, c, oh * kh, ow * kw)
        return self._spread(lambda k: dout * (self.index == k))

    def _tiles(self, x: np.ndarray) -> bool:
        """Whether the windows tile the input exactly (stride = kernel, no padding, the sides
        divisible: the usual 2x2/2 pooling), so the input reshapes into them without a copy."""
        return (
            x.ndim == 4
            and self.stride == self.kernel
            and not any(before or after for before, after in self.pads)
            and x.shape[2] % self.kernel[0] == 0
            and x.shape[3] % self.kernel[1] == 0
            and x.shape[2] > 0
            and x.shape[3] > 0
        )

    def _forward_tiles(self, x: np.ndarray) -> np.ndarray:
        """The fast path of :meth:`forward` for tiling windows: ``x`` seen as
        ``N x C x OH x KH x OW x KW``; the winners are kept as a boolean mask of the input's
        shape (first one on ties), so backward is one broadcast product."""
        check_input(type(self).__name__, x, 2, None)
        (kh, kw), (n, c, h, w) = self.kernel, x.shape
        self.dtype = x.dtype
        oh, ow = h // kh, w // kw
        rows = x.reshape(n, c, oh, kh, w)  # first across the window's rows: whole image rows
        across = rows[:, :, :, 0].copy()
        for i in range(1, kh):
            self.reduce(across, rows[:, :, :, i], out=across)
        columns = across.reshape(n, c, oh, ow, kw)  # then across its columns
        best = columns[..., 0].copy()
        for j in range(1, kw):
            self.reduce(best, columns[..., j], out=best)
        tiles = x.reshape(n, c, oh, kh, ow, kw)
        winners = tiles == np.repeat(best, kw, axis=-1).reshape(n, c, oh, 1, ow, kw)
        if np.count_nonzero(winners) > best.size:  # ties: keep the first offset (PyTorch's)
            found = np.zeros(best.shape, dtype=bool)
            for i in range(kh):
                for j in range(kw):
                    hit = winners[:, :, :, i, :, j]
                    hit &= ~found
                    found |= hit
        self.winners = winners
        return best


class MinPool2d(MaxPool2d):
    """The smallest value of each window (max pooling of ``-x``)."""

    pad_value = np.inf
    reduce = staticmethod(np.minimum)


class AvgPool2d(_Pool2d):
    """The mean of each window (zero padding counted, as PyTorch's default); the gradient is
    spread evenly over the window."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        total = None
        for _, view in self._views(x):
            total = view.copy() if total is None else total + view
        return total / int(np.prod(self.kernel))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        share = dout / int(np.prod(self.kernel))
        return self._spread(lambda k: share)


class GlobalAvgPool(Layer):
    """``N x C x H x W -> N x C``: the mean of each feature map."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        return x.mean(axis=tuple(range(2, x.ndim)))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        size = int(np.prod(self.shape[2:]))
        return np.broadcast_to(
            dout.reshape(*dout.shape, *[1] * (len(self.shape) - 2)) / size, self.shape
        ).copy()


class AdaptiveAvgPool2d(Layer):
    """Average pooling to a fixed output size, PyTorch's bins: output row ``i`` averages input
    rows ``floor(i * H / OH)`` to ``ceil((i + 1) * H / OH) - 1`` (bins may overlap or, when the
    output is larger than the input, repeat a row). ``None`` keeps that axis's size."""

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.output_size = tuple(output_size)

    def _bins(self, size: int, out: int | None) -> list[tuple[int, int]]:
        out = size if out is None else out
        return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("AdaptiveAvgPool2d", x, 2, None)
        self.shape = x.shape
        self.rows = self._bins(x.shape[2], self.output_size[0])
        self.cols = self._bins(x.shape[3], self.output_size[1])
        out = np.empty((*x.shape[:2], len(self.rows), len(self.cols)), dtype=x.dtype)
        for i, (r0, r1) in enumerate(self.rows):
            for j, (c0, c1) in enumerate(self.cols):
                out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = np.zeros(self.shape, dtype=dout.dtype)
        for i, (r0, r1) in enumerate(self.rows):
            for j, (c0, c1) in enumerate(self.cols):
                share = dout[:, :, i, j] / ((r1 - r0) * (c1 - c0))
                dx[:, :, r0:r1, c0:c1] += share[:, :, None, None]
        return dx
