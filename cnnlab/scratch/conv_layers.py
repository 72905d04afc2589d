"""Convolution layers of the NumPy engine: :class:`ConvNd` over 1, 2 or 3 spatial axes as matrix
products per group (``im2col``), and backward through the transposed products (``col2im``),
a cache-sized band of output rows at a time."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import CnnlabError
from . import functional as Fn
from .base import Layer, Parameter, check_input


def _stack(blocks: list[np.ndarray]) -> np.ndarray:
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)


class ConvNd(Layer):
    """Cross-correlation over ``dims`` spatial axes, as one matrix product per group and band.

    ``exact=True`` makes a stride that leaves input rows unused an error instead of silently
    dropping them.
    """

    dims = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: Fn.Padding = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        exact: bool = False,
        rng: np.random.Generator | None = None,
        dtype: np.dtype | type = np.float64,
    ) -> None:
        if in_channels % groups or out_channels % groups:
            raise CnnlabError(
                f"groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        d = self.dims
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel = Fn.as_tuple(kernel_size, d, "kernel_size")
        self.stride = Fn.as_tuple(stride, d, "stride")
        self.dilation = Fn.as_tuple(dilation, d, "dilation")
        self.pads = Fn.resolve_padding(padding, self.kernel, self.dilation, self.stride)
        self.exact = exact
        rng = rng or np.random.default_rng(0)
        fan_in = in_channels // groups * int(np.prod(self.kernel))
        bound = 1 / np.sqrt(fan_in)  # PyTorch's default uniform range
        shape = (out_channels, in_channels // groups, *self.kernel)
        self.weight = Parameter(rng.uniform(-bound, bound, shape).astype(dtype))
        self.bias = (
            Parameter(rng.uniform(-bound, bound, out_channels).astype(dtype)) if bias else None
        )

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        outs = [
            Fn.output_size(s, k, st, p, dl, self.exact)
            for s, k, st, p, dl in zip(
                x_shape[2:], self.kernel, self.stride, self.pads, self.dilation
            )
        ]
        return (x_shape[0], self.out_channels, *outs)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``weight @ columns`` one band of output rows at a time (see :meth:`_bands`).

        The input is padded into a batch-innermost copy (:func:`pad` ``batch_last``), so each
        band's columns come from one fast copy and its product lands as ``C_out x O... x N``.
        """
        check_input(type(self).__name__, x, self.dims, self.in_channels)
        n, _, *outs = self.output_shape(x.shape)
        x_padded = Fn.pad(x, self.pads, batch_last=True)  # N x C x P..., memory C x P... x N
        weights = self.weight.data.reshape(self.out_channels, -1)  # C_out x (C/g * K)
        out = np.empty((self.out_channels, *outs, n), dtype=np.result_type(x, weights))
        self.cache = x_padded, outs, None
        for band in self._bands(x_padded, outs):
            rows, _, cols = band
            for w, c, o in zip(self._groups(weights), self._groups(cols), self._groups(out)):
                # each channel's band is contiguous, so this 2-D reshape is a view into ``out``
                np.matmul(w, c, out=o[:, rows].reshape(len(o), -1))
        if rows == slice(0, outs[0]):  # a single band: keep its columns for backward
            self.cache = x_padded, outs, [band]
        out = Fn.batch_to_front(out)  # N x C_out x O...
        if self.bias is not None:
            out += self.bias.data.reshape(-1, *[1] * self.dims)
        return out

    def _groups(self, rows: np.ndarray) -> list[np.ndarray]:
        """Split the first axis into the ``groups`` blocks (views)."""
        size = rows.shape[0] // self.groups
        return [rows[i * size : (i + 1) * size] for i in range(self.groups)]

    def _bands(
        self, x_padded: np.ndarray, outs: list[int]
    ) -> Iterator[tuple[slice, slice, np.ndarray]]:
        """Yield ``(rows, window, cols)`` per band of output rows (first spatial axis): the
        slice of output rows, the slice of padded input rows they read, and their columns.

        A band's columns hold about ``BAND_VALUES`` numbers, so they stay in the CPU cache
        between the copy that makes them and the matrix products that read them; one
        ``im2col`` of the whole batch would be a fresh array of hundreds of MB (every page
        faulted in again on every call, and every product streamed from main memory).
        """
        n, c = x_padded.shape[:2]
        per_row = c * int(np.prod(self.kernel)) * int(np.prod(outs[1:])) * n
        step = max(1, BAND_VALUES // per_row)
        k, s, d = self.kernel[0], self.stride[0], self.dilation[0]
        for start in range(0, outs[0], step):
            stop = min(start + step, outs[0])
            window = slice(start * s, (stop - 1) * s + d * (k - 1) + 1)
            cols = Fn.im2col(
                x_padded[:, :, window], self.kernel, self.stride, self.dilation, batch_last=True
            )
            yield slice(start, stop), window, cols

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Per band: ``dW += dout @ cols.T`` and ``dcols = W.T @ dout``, added back into the input
        gradient by :func:`col2im`. Unless forward kept them (one band), the columns are made
        again from the cached padded input: cheaper than keeping all of them (see :meth:`_bands`).
        """
        x_padded, outs, bands = self.cache
        if self.bias is not None:
            self.bias.grad += dout.sum(axis=(0, *range(2, dout.ndim)))
        d = np.ascontiguousarray(np.moveaxis(dout, 0, -1))  # C_out x O... x N, like forward
        weights = self.weight.data.reshape(self.out_channels, -1)
        dweight = np.zeros_like(weights)
        dx_padded = np.zeros_like(x_padded)  # keeps its batch-innermost memory layout
        for rows, window, cols in bands or self._bands(x_padded, outs):
            d_band = d[:, rows].reshape(self.out_channels, -1)  # a view, no copy
            parts = list(zip(self._groups(d_band), self._groups(cols), self._groups(weights)))
            # (cols @ dout.T).T is dout @ cols.T; OpenBLAS runs this order of the product faster
            dweight += _stack([(c_g @ d_g.T).T for d_g, c_g, _ in parts])
            dcols = _stack([w_g.T @ d_g for d_g, _, w_g in parts])  # (C*K) x (O_band * N)
            target = dx_padded[:, :, window]
            Fn.col2im(
                dcols, target.shape, self.kernel, self.stride, self.dilation, True, out=target
            )
        self.weight.grad += dweight.reshape(self.weight.data.shape)
        return Fn.unpad(dx_padded, self.pads)


BAND_VALUES = 2**20  # numbers in one band of columns: 4 MB of float32, cache-sized


class Conv1d(ConvNd):
    dims = 1


class Conv2d(ConvNd):
    dims = 2


class Conv3d(ConvNd):
    dims = 3
