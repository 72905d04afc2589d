"""Convolution layers of the NumPy engine: :class:`ConvNd` over 1, 2 or 3 spatial axes as one
matrix product per group (``im2col``), and backward through the transposed products
(``col2im``)."""

from __future__ import annotations

import numpy as np

from ..errors import CnnlabError
from . import functional as Fn
from .base import Layer, Parameter, check_input


def _stack(blocks: list[np.ndarray]) -> np.ndarray:
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)


class ConvNd(Layer):
    """Cross-correlation over ``dims`` spatial axes, as one matrix product per group.

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
        check_input(type(self).__name__, x, self.dims, self.in_channels)
        out_shape = self.output_shape(x.shape)
        x_padded = Fn.pad(x, self.pads)
        cols = Fn.im2col(x_padded, self.kernel, self.stride, self.dilation)  # (C*K) x (N*O)
        self.cache = (x_padded.shape, cols)
        out = self._product(cols).reshape(self.out_channels, out_shape[0], *out_shape[2:])
        out = np.ascontiguousarray(out.swapaxes(0, 1))  # N x C_out x O...
        if self.bias is not None:
            out += self.bias.data.reshape(-1, *[1] * self.dims)
        return out

    def _groups(self, rows: np.ndarray) -> list[np.ndarray]:
        """Split the first axis into the ``groups`` blocks (views)."""
        size = rows.shape[0] // self.groups
        return [rows[i * size : (i + 1) * size] for i in range(self.groups)]

    def _product(self, cols: np.ndarray) -> np.ndarray:
        """``weight @ cols``, one 2-D matrix product per group: ``C_out x columns``."""
        weights = self.weight.data.reshape(self.out_channels, -1)  # C_out x (C/g * K)
        return _stack([w @ c for w, c in zip(self._groups(weights), self._groups(cols))])

    def backward(self, dout: np.ndarray) -> np.ndarray:
        padded_shape, cols = self.cache
        if self.bias is not None:
            self.bias.grad += dout.sum(axis=(0, *range(2, dout.ndim)))
        d = np.ascontiguousarray(dout.swapaxes(0, 1)).reshape(self.out_channels, -1)
        weights = self.weight.data.reshape(self.out_channels, -1)
        parts = list(zip(self._groups(d), self._groups(cols), self._groups(weights)))
        dweight = _stack([d_g @ c_g.T for d_g, c_g, _ in parts])
        self.weight.grad += dweight.reshape(self.weight.data.shape)
        dcols = _stack([w_g.T @ d_g for d_g, _, w_g in parts])  # (C*K) x (N*O)
        dx_padded = Fn.col2im(dcols, padded_shape, self.kernel, self.stride, self.dilation)
        return Fn.unpad(dx_padded, self.pads)


class Conv1d(ConvNd):
    dims = 1


class Conv2d(ConvNd):
    dims = 2


class Conv3d(ConvNd):
    dims = 3
