"""Layers of the NumPy engine. Each ``forward(x)`` keeps on ``self`` what ``backward`` needs;
``backward(dout)`` returns ``dx`` and fills the gradients of the layer's parameters.

This module holds the fully connected layer, activations, normalization, reshaping and the
joins of branches; convolutions are in :mod:`.conv_layers`, pooling in :mod:`.pooling`, the
base classes in :mod:`.base`. All of them can be imported from here too.
"""

from __future__ import annotations

import numpy as np

from ..errors import CnnlabError
from . import functional as Fn
from .base import Layer, Parameter, check_input
from .conv_layers import Conv1d, Conv2d, Conv3d, ConvNd
from .pooling import AdaptiveAvgPool2d, AvgPool2d, GlobalAvgPool, MaxPool2d, MinPool2d

__all__ = [
    "AdaptiveAvgPool2d",
    "Add",
    "AvgPool2d",
    "BatchNorm2d",
    "Concat",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvNd",
    "Dropout",
    "Flatten",
    "GlobalAvgPool",
    "Identity",
    "Layer",
    "LeakyReLU",
    "Linear",
    "LocalResponseNorm",
    "MaxPool2d",
    "MinPool2d",
    "Parameter",
    "ReLU",
    "Reshape",
    "Resize2d",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "ZeroPad2d",
    "bilinear_matrix",
    "check_input",
]


class Flatten(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self.shape)


class Linear(Layer):
    """``y = x W^T + b`` with ``W: out x in`` (PyTorch's layout)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        rng: np.random.Generator | None = None,
        dtype: np.dtype | type = np.float64,
    ) -> None:
        rng = rng or np.random.default_rng(0)
        bound = 1 / np.sqrt(in_features)
        self.in_features = in_features
        self.weight = Parameter(
            rng.uniform(-bound, bound, (out_features, in_features)).astype(dtype)
        )
        self.bias = (
            Parameter(rng.uniform(-bound, bound, out_features).astype(dtype)) if bias else None
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise CnnlabError(
                f"Linear expects N x {self.in_features} input, got shape {x.shape}; "
                "add a Flatten before it or fix in_features"
            )
        self.x = x
        out = x @ self.weight.data.T
        return out + self.bias.data if self.bias is not None else out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.weight.grad += dout.T @ self.x
        if self.bias is not None:
            self.bias.grad += dout.sum(axis=0)
        return dout @ self.weight.data


# ---------------------------------------------------------------------------------- activations


class ReLU(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.mask


class LeakyReLU(Layer):
    def __init__(self, negative_slope: float = 0.01) -> None:
        self.slope = negative_slope

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return np.where(self.mask, x, x * self.slope)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return np.where(self.mask, dout, dout * self.slope)


class Tanh(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = np.tanh(x)
        return self.y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (1 - self.y**2)


class Sigmoid(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = 0.5 * (1 + np.tanh(0.5 * x))  # no overflow for large |x|
        return self.y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.y * (1 - self.y)


class Softmax(Layer):
    """Softmax over ``axis``; backward is the Jacobian-vector product ``y * (g - sum(g * y))``."""

    def __init__(self, axis: int = 1) -> None:
        self.axis = axis

    def forward(self, x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(axis=self.axis, keepdims=True))
        self.y = e / e.sum(axis=self.axis, keepdims=True)
        return self.y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return self.y * (dout - (dout * self.y).sum(axis=self.axis, keepdims=True))


class Dropout(Layer):
    """Inverted dropout: in training, zero each value with probability ``p`` and scale the rest by
    ``1 / (1 - p)``; in evaluation, pass through."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        if not 0 <= p < 1:
            raise CnnlabError(f"Dropout p={p}: expected 0 <= p < 1")
        self.p, self.rng = p, rng or np.random.default_rng(0)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0:
            self.scale = None
            return x
        self.scale = (self.rng.random(x.shape) >= self.p) / (1 - self.p)
        return x * self.scale

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout if self.scale is None else dout * self.scale


class BatchNorm2d(Layer):
    """Normalize each channel by its batch mean and variance (training) or by the running
    estimates (evaluation), then scale by ``weight`` and shift by ``bias``.

    Running variance uses the unbiased batch variance, as PyTorch does; ``momentum`` is the
    weight of the new batch.
    """

    def __init__(
        self, channels: int, eps: float = 1e-5, momentum: float = 0.1, dtype=np.float64
    ) -> None:
        self.channels, self.eps, self.momentum = channels, eps, momentum
        self.weight = Parameter(np.ones(channels, dtype=dtype))
        self.bias = Parameter(np.zeros(channels, dtype=dtype))
        self.running_mean = np.zeros(channels, dtype=dtype)
        self.running_var = np.ones(channels, dtype=dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("BatchNorm2d", x, 2, self.channels)
        axes, shape = (0, 2, 3), (1, -1, 1, 1)
        if self.training:
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            count = x.size // self.channels
            m = self.momentum
            self.running_mean = (1 - m) * self.running_mean + m * mean
            self.running_var = (1 - m) * self.running_var + m * var * count / max(count - 1, 1)
        else:
            mean, var = self.running_mean, self.running_var
        self.inv_std = 1 / np.sqrt(var + self.eps)
        self.x_hat = (x - mean.reshape(shape)) * self.inv_std.reshape(shape)
        return self.x_hat * self.weight.data.reshape(shape) + self.bias.data.reshape(shape)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        axes, shape = (0, 2, 3), (1, -1, 1, 1)
        self.bias.grad += dout.sum(axis=axes)
        self.weight.grad += (dout * self.x_hat).sum(axis=axes)
        dx_hat = dout * self.weight.data.reshape(shape)
        if not self.training:
            return dx_hat * self.inv_std.reshape(shape)
        # the batch statistics depend on x too: subtract their share of the gradient
        mean_dx_hat = dx_hat.mean(axis=axes, keepdims=True)
        mean_dx_hat_xhat = (dx_hat * self.x_hat).mean(axis=axes, keepdims=True)
        return (dx_hat - mean_dx_hat - self.x_hat * mean_dx_hat_xhat) * self.inv_std.reshape(shape)


class LocalResponseNorm(Layer):
    """AlexNet's normalization across neighbouring channels (PyTorch's definition):

    ``b_c = a_c / (k + alpha / n * sum_{c' in window(c)} a_{c'}^2) ** beta``, where the window
    holds ``n`` channels around ``c`` (``n // 2`` before, ``(n - 1) // 2`` after, zero beyond).
    """

    def __init__(
        self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
    ) -> None:
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def _window_sum(self, values: np.ndarray, before: int, after: int) -> np.ndarray:
        padded = np.pad(values, ((0, 0), (before, after), (0, 0), (0, 0)))
        csum = np.concatenate([np.zeros_like(padded[:, :1]), np.cumsum(padded, axis=1)], axis=1)
        channels = values.shape[1]
        width = before + after + 1
        return csum[:, width : width + channels] - csum[:, :channels]

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        before, after = self.size // 2, (self.size - 1) // 2
        self.scale = self.k + self.alpha / self.size * self._window_sum(x * x, before, after)
        self.y = x * self.scale**-self.beta
        return self.y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        before, after = self.size // 2, (self.size - 1) // 2
        # channel i appears in the windows of channels i - after .. i + before
        share = dout * self.x * self.scale ** (-self.beta - 1)
        spread = self._window_sum(share, after, before)
        return (
            dout * self.scale**-self.beta - 2 * self.alpha * self.beta / self.size * self.x * spread
        )


# ------------------------------------------------------------------------------- reshaping


class Identity(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout


class Reshape(Layer):
    """Reshape to ``shape``; an entry ``("dim", d)`` stands for the input's size along axis
    ``d`` (as in ``x.view(x.size(0), -1)``), ``-1`` for whatever is left."""

    def __init__(self, shape: tuple[int | tuple[str, int], ...]) -> None:
        self.shape = shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.in_shape = x.shape
        target = [x.shape[s[1]] if isinstance(s, tuple) else s for s in self.shape]
        return x.reshape(target)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self.in_shape)


class ZeroPad2d(Layer):
    """Zero padding of ``(left, right, top, bottom)`` pixels; backward cuts the border off."""

    def __init__(self, padding: int | tuple[int, int, int, int]) -> None:
        left, right, top, bottom = (padding,) * 4 if isinstance(padding, int) else padding
        self.pads = ((top, bottom), (left, right))

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("ZeroPad2d", x, 2, None)
        return Fn.pad(x, self.pads)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return Fn.unpad(dout, self.pads)


def bilinear_matrix(size: int, out: int) -> np.ndarray:
    """``out x size`` matrix of 1-D linear interpolation weights, PyTorch's
    ``align_corners=False`` rule: output pixel ``i`` samples input position
    ``(i + 0.5) * size / out - 0.5`` (clamped at 0), between its two neighbours."""
    source = np.maximum((np.arange(out) + 0.5) * size / out - 0.5, 0)
    low = np.minimum(np.floor(source).astype(int), size - 1)
    high = np.minimum(low + 1, size - 1)
    frac = source - low
    matrix = np.zeros((out, size))
    np.add.at(matrix, (np.arange(out), low), 1 - frac)
    np.add.at(matrix, (np.arange(out), high), frac)
    return matrix


class Resize2d(Layer):
    """Bilinear resize to ``size`` (``F.interpolate(..., mode="bilinear")``). Interpolation is
    linear in the image, so it is two small matrix products, ``R_h @ x @ R_w^T``, and backward is
    the same with the matrices transposed."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_input("Resize2d", x, 2, None)
        self.rh = bilinear_matrix(x.shape[2], self.size[0]).astype(x.dtype)
        self.rw = bilinear_matrix(x.shape[3], self.size[1]).astype(x.dtype)
        return self.rh @ x @ self.rw.T

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return self.rh.T @ dout @ self.rw


# ------------------------------------------------------------------------ joins of two branches


class Add(Layer):
    """Residual addition ``x + y``; the gradient flows unchanged to both inputs."""

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        shapes = {x.shape for x in xs}
        if len(shapes) != 1:
            raise CnnlabError(f"Add needs inputs of one shape, got {sorted(shapes)}")
        self.count = len(xs)
        return sum(xs[1:], xs[0])

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray, ...]:
        return (dout,) * self.count


class Concat(Layer):
    """Concatenation along channels (Inception's join); backward splits the gradient."""

    def __init__(self, axis: int = 1) -> None:
        self.axis = axis

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        self.sizes = [x.shape[self.axis] for x in xs]
        return np.concatenate(xs, axis=self.axis)

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(np.split(dout, np.cumsum(self.sizes)[:-1], axis=self.axis))


class Sequential(Layer):
    def __init__(self, *layers: Layer) -> None:
        self.layers = list(layers)

    def named_parameters(self) -> dict[str, Parameter]:
        """Parameters of the contained layers, named by position as ``torch.nn.Sequential``
        does (``"0.weight"``, ``"2.bias"``)."""
        named: dict[str, Parameter] = {}
        seen: set[int] = set()
        for i, layer in enumerate(self.layers):
            for key, param in layer.named_parameters().items():
                if id(param) not in seen:
                    seen.add(id(param))
                    named[f"{i}.{key}"] = param
        return named

    def train(self, mode: bool = True) -> Sequential:
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout
