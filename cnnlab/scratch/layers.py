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
        """This layer's parameters and those of the layers it holds (as attributes or in
        lists), under dotted names such as ``"weight"`` or ``"block.0.weight"``; a parameter
        reached twice is listed once."""
        named: dict[str, Parameter] = {}
        seen: set[int] = set()
        for key, value in vars(self).items():
            for name, param in _parameters_of(key, value):
                if id(param) not in seen:
                    seen.add(id(param))
                    named[name] = param
        return named

    def train(self, mode: bool = True) -> Layer:
        self.training = mode
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        return self.forward(*inputs)


def _parameters_of(key: str, value: object) -> list[tuple[str, Parameter]]:
    """The parameters reachable from one attribute: itself, a held layer's, or a list's."""
    if isinstance(value, Parameter):
        return [(key, value)]
    if isinstance(value, Layer):
        return [(f"{key}.{name}", p) for name, p in value.named_parameters().items()]
    if isinstance(value, (list, tuple)):
        return [pair for i, item in enumerate(value) for pair in _parameters_of(f"{key}.{i}", item)]
    return []


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
        _check_input(type(self).__name__, x, self.dims, self.in_channels)
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


# -------------------------------------------------------------------------------------- pooling


class _Pool2d(Layer):
    """Pooling as a running reduction over the ``KH * KW`` strided views of the input, one per
    position inside the window (no copies of the windows); backward adds into the same views."""

    pad_value = 0.0

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0) -> None:
        self.kernel = Fn.as_tuple(kernel_size, 2, "kernel_size")
        self.stride = Fn.as_tuple(stride if stride is not None else kernel_size, 2, "stride")
        self.pads = Fn.resolve_padding(padding, self.kernel, (1, 1), self.stride)

    def _views(self, x: np.ndarray):
        _check_input(type(self).__name__, x, 2, None)
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
        return self._spread(lambda k: dout * (self.index == k))


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
        _check_input("AdaptiveAvgPool2d", x, 2, None)
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
        _check_input("ZeroPad2d", x, 2, None)
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
        _check_input("Resize2d", x, 2, None)
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
