"""Layers of the NumPy engine. Each ``forward(x)`` keeps on ``self`` what ``backward`` needs;
``backward(dout)`` returns ``dx`` and fills the gradients of the layer's parameters.

Parameters live on the layers only (``layer.parameters()``); nothing keeps a second copy.
"""

from __future__ import annotations

import numpy as np

from ..errors import CnnlabError
from . import functional as Fn


class Parameter:
    """A learnable array and its gradient (same shape)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.grad = np.zeros_like(data)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Layer:
    training = True

    def parameters(self) -> list[Parameter]:
        return list(self.named_parameters().values())

    def named_parameters(self) -> dict[str, Parameter]:
        return {k: v for k, v in vars(self).items() if isinstance(v, Parameter)}

    def train(self, mode: bool = True) -> Layer:
        self.training = mode
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        return self.forward(*inputs)


def _check_input(layer: str, x: np.ndarray, dims: int, channels: int | None) -> None:
    if x.ndim != dims + 2:
        axes = ["N", "C", *["D", "H", "W"][3 - dims :]]
        raise CnnlabError(
            f"{layer} expects a {dims + 2}-D input ({' x '.join(axes)}), got shape {x.shape}"
        )
    if channels is not None and x.shape[1] != channels:
        raise CnnlabError(
            f"{layer} expects {channels} input channels, got {x.shape[1]} (shape {x.shape})"
        )


# ---------------------------------------------------------------------------------- convolution


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
        _check_input(type(self).__name__, x, self.dims, self.in_channels)
        out_shape = self.output_shape(x.shape)
        x_padded = Fn.pad(x, self.pads)
        g = self.groups
        cols = Fn.im2col(x_padded, self.kernel, self.stride, self.dilation)  # (C*K) x (N*O)
        cols = cols.reshape(g, -1, cols.shape[1])  # g x (C/g*K) x (N*O)
        weights = self.weight.data.reshape(g, self.out_channels // g, -1)  # g x C_out/g x C/g*K
        out = (weights @ cols).reshape(self.out_channels, -1)  # one product per group
        if self.bias is not None:
            out += self.bias.data[:, None]
        self.cache = (x_padded.shape, cols)
        out = out.reshape(self.out_channels, out_shape[0], *out_shape[2:])
        return np.ascontiguousarray(out.swapaxes(0, 1))  # N x C_out x O...

    def backward(self, dout: np.ndarray) -> np.ndarray:
        padded_shape, cols = self.cache
        g = self.groups
        if self.bias is not None:
            self.bias.grad += dout.sum(axis=(0, *range(2, dout.ndim)))
        d = np.ascontiguousarray(dout.swapaxes(0, 1)).reshape(g, self.out_channels // g, -1)
        weights = self.weight.data.reshape(g, self.out_channels // g, -1)
        self.weight.grad += (d @ cols.transpose(0, 2, 1)).reshape(self.weight.data.shape)
        dcols = (weights.transpose(0, 2, 1) @ d).reshape(-1, d.shape[2])  # (C*K) x (N*O)
        dx_padded = Fn.col2im(dcols, padded_shape, self.kernel, self.stride, self.dilation)
        return Fn.unpad(dx_padded, self.pads)


class Conv1d(ConvNd):
    dims = 1


class Conv2d(ConvNd):
    dims = 2


class Conv3d(ConvNd):
    dims = 3


# -------------------------------------------------------------------------------------- pooling


class _Pool2d(Layer):
    pad_value = 0.0

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0) -> None:
        self.kernel = Fn.as_tuple(kernel_size, 2, "kernel_size")
        self.stride = Fn.as_tuple(stride if stride is not None else kernel_size, 2, "stride")
        self.pads = Fn.resolve_padding(padding, self.kernel, (1, 1), self.stride)

    def _windows(self, x: np.ndarray) -> np.ndarray:
        _check_input(type(self).__name__, x, 2, None)
        for s, k, st, p in zip(x.shape[2:], self.kernel, self.stride, self.pads):
            Fn.output_size(s, k, st, p, 1)  # raises with the formula if the window does not fit
        x_padded = Fn.pad(x, self.pads, self.pad_value)
        self.padded_shape = x_padded.shape
        view = Fn.windows(x_padded, self.kernel, self.stride, (1, 1))
        return view.reshape(*view.shape[:4], -1)  # N x C x OH x OW x (KH*KW)

    def _scatter(self, per_window: np.ndarray) -> np.ndarray:
        """Send ``N x C x OH x OW x (KH*KW)`` window gradients back to the input (the
        "up-sampling" of the gradient through pooling); overlapping windows add."""
        n, c, oh, ow, _ = per_window.shape
        cols = per_window.reshape(n, c, oh, ow, *self.kernel).transpose(1, 4, 5, 0, 2, 3)
        cols = cols.reshape(c * int(np.prod(self.kernel)), n * oh * ow)
        dx = Fn.col2im(cols, self.padded_shape, self.kernel, self.stride, (1, 1))
        return Fn.unpad(dx, self.pads)


class MaxPool2d(_Pool2d):
    """The largest value of each window; the gradient goes to that one position."""

    pad_value = -np.inf
    pick = staticmethod(np.argmax)

    def forward(self, x: np.ndarray) -> np.ndarray:
        w = self._windows(x)
        self.index = self.pick(w, axis=-1)
        return np.take_along_axis(w, self.index[..., None], axis=-1)[..., 0]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        routed = np.zeros((*dout.shape, int(np.prod(self.kernel))), dtype=dout.dtype)
        np.put_along_axis(routed, self.index[..., None], dout[..., None], axis=-1)
        return self._scatter(routed)


class MinPool2d(MaxPool2d):
    """The smallest value of each window (max pooling of ``-x``)."""

    pad_value = np.inf
    pick = staticmethod(np.argmin)


class AvgPool2d(_Pool2d):
    """The mean of each window (zero padding counted, as PyTorch's default); the gradient is
    spread evenly over the window."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._windows(x).mean(axis=-1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        size = int(np.prod(self.kernel))
        spread = np.broadcast_to((dout / size)[..., None], (*dout.shape, size))
        return self._scatter(np.ascontiguousarray(spread))


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


class Flatten(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self.shape)


class Linear(Layer):
    """``y = x W^T + b`` with ``W: out x in`` (PyTorch's layout)."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True,
        rng: np.random.Generator | None = None, dtype: np.dtype | type = np.float64,
    ) -> None:  # fmt: skip
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
        _check_input("BatchNorm2d", x, 2, self.channels)
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

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

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
