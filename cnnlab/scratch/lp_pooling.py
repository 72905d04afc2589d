"""Power-average (L\\ :sub:`p`-norm) pooling of the NumPy engine, PyTorch's ``nn.LPPool2d``:
each window becomes ``(sum x^p)^(1/p)``. ``p = 1`` is sum pooling (average pooling times the
window size), ``p = 2`` is L2-norm pooling, and as ``p`` grows the result approaches max pooling
(of ``|x|``): one knob between average and max."""

from __future__ import annotations

import numpy as np

from ..errors import CnnlabError
from . import functional as Fn
from .base import Layer, check_input


class LPPool2d(Layer):
    """``y = sign(s) * relu(|s|)^(1/p)`` with ``s`` the sum of ``x^p`` over each window, as
    PyTorch computes it (no padding: PyTorch's LPPool has none). Where a window's sum is
    negative (an odd power of negative inputs) PyTorch returns nan; this twin returns the signed
    root, so inputs after a ReLU (the usual place) agree exactly.

    Backward, by the chain rule through the two steps:
    ``dy/ds = (1/p) * |s|^(1/p - 1)`` (0 where ``s = 0``, as PyTorch's ReLU and sign give there) and
    ``ds/dx = p * x^(p-1)`` at every position of the window, so
    ``dx = dout * |s|^(1/p - 1) * x^(p-1)`` summed over the windows that read ``x``.
    """

    def __init__(
        self, norm_type: float, kernel_size: int | tuple[int, int], stride: int | None = None
    ) -> None:
        if (
            isinstance(norm_type, bool)
            or not isinstance(norm_type, (int, float))
            or not (0 < norm_type < float("inf"))
        ):
            raise CnnlabError(
                f"LPPool2d norm_type={norm_type!r}: expected a positive finite power, e.g. 2 "
                "for L2-norm pooling"
            )
        self.norm_type = float(norm_type)
        self.kernel = Fn.as_tuple(kernel_size, 2, "kernel_size")
        self.stride = Fn.as_tuple(stride if stride is not None else kernel_size, 2, "stride")

    def _views(self, x: np.ndarray):
        check_input("LPPool2d", x, 2, None)
        for size, k, st in zip(x.shape[2:], self.kernel, self.stride):
            Fn.output_size(size, k, st, (0, 0), 1)  # raises with the formula when it does not fit
        return Fn.offset_views(x, self.kernel, self.stride, (1, 1))

    def forward(self, x: np.ndarray) -> np.ndarray:
        p = self.norm_type
        total = None
        for _, view in self._views(x):
            total = view**p if total is None else total + view**p
        self.x, self.sums = x, total
        return np.sign(total) * np.abs(total) ** (1 / p)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        p, s = self.norm_type, self.sums
        with np.errstate(divide="ignore", invalid="ignore"):
            outer = np.where(s != 0, np.abs(s) ** (1 / p - 1), 0.0)  # (1/p) cancels with p below
        upstream = dout * outer
        dx = np.zeros_like(self.x)
        x_views = dict(Fn.offset_views(self.x, self.kernel, self.stride, (1, 1)))
        for k, view in Fn.offset_views(dx, self.kernel, self.stride, (1, 1)):
            view += upstream * x_views[k] ** (p - 1)
        return dx
