"""Convolution arithmetic, pure Python (no torch, no NumPy): the one home of the formulas that
the NumPy engine, the shape tables, the models and the explorer all use.

The output size along one axis (PyTorch's rule; with ``dilation = 1`` it is the textbook
``(N - F + 2P) / S + 1``):

    out = floor((size + pad_before + pad_after - (dilation * (kernel - 1) + 1)) / stride) + 1

The explanations (the formula with its numbers, what is wrong and how to fix it) are built on
top of these functions in :mod:`cnnlab.inspect.arithmetic`.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

from .errors import ShapeError

Padding = int | str | Sequence[int]


def as_tuple(value: int | Sequence[int], dims: int, name: str) -> tuple[int, ...]:
    """``value`` once per spatial axis: one number counts for every axis; otherwise one per
    axis (``(3, 3)`` for 2-D)."""
    if isinstance(value, Integral):  # also NumPy's integers
        return (int(value),) * dims
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        return value * dims
    if len(value) != dims:
        raise ShapeError(f"{name}={value}: expected one number or {dims}, one per spatial axis")
    return value


def window_extent(kernel: int, dilation: int = 1) -> int:
    """How many input pixels one window spans: ``D * (F - 1) + 1``."""
    return dilation * (kernel - 1) + 1


def _pads(padding: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(padding, Integral):
        return int(padding), int(padding)
    before, after = padding
    return int(before), int(after)


def output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int | Sequence[int] = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output size along one axis, exactly as PyTorch computes it (floor, or ceil for pooling
    with ``ceil_mode``); ``padding`` is one number for both sides or ``(before, after)``.
    Never negative: 0 when no window fits, so sizes can be chained through a layer stack and
    checked once at the end."""
    before, after = _pads(padding)
    span = size + before + after - window_extent(kernel, dilation)
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + before:  # the last window would start in the padding
            out -= 1
    else:
        out = span // stride + 1
    return max(out, 0)


def output_remainder(
    size: int, kernel: int, stride: int = 1, padding: int | Sequence[int] = 0, dilation: int = 1
) -> int:
    """Input rows after the last window that no window covers (PyTorch drops them): 0 when the
    stride divides exactly, or when the window does not fit at all."""
    before, after = _pads(padding)
    span = size + before + after - window_extent(kernel, dilation)
    return span % stride if span >= 0 else 0


def same_padding(kernel: int, dilation: int = 1) -> tuple[int, int]:
    """The ``(before, after)`` padding that keeps the size at stride 1: the kernel reaches
    ``D * (F - 1)`` pixels beyond one, split evenly with the odd pixel after (PyTorch's "same").
    """
    reach = dilation * (kernel - 1)
    return reach // 2, reach - reach // 2


def resolve_padding(
    padding: Padding, kernel: tuple[int, ...], dilation: tuple[int, ...], stride: tuple[int, ...]
) -> tuple[tuple[int, int], ...]:
    """Per-axis ``(before, after)`` zero padding from an int, a tuple (one number counts for
    every axis), ``"valid"`` (none) or ``"same"`` (:func:`same_padding`, stride 1 only)."""
    dims = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * dims
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ShapeError(
                    f"padding='same' with stride {stride}: 'same' keeps the size only at stride "
                    "1; give explicit padding for a strided layer (e.g. padding = kernel // 2)"
                )
            return tuple(same_padding(k, d) for k, d in zip(kernel, dilation))
        raise ShapeError(f"padding={padding!r}: expected an int, a tuple, 'valid' or 'same'")
    pads = as_tuple(padding, dims, "padding")
    if any(p < 0 for p in pads):
        raise ShapeError(f"padding={pads}: padding cannot be negative")
    return tuple((p, p) for p in pads)


def _product(values: Sequence[int]) -> int:
    total = 1
    for v in values:
        total *= v
    return total


def conv_weights_per_output(
    in_channels: int, kernel: int | Sequence[int], groups: int = 1, dims: int = 2
) -> int:
    """Weights behind one output value: ``(C_in / groups) * K_1 * ... * K_d`` (an int kernel
    counts for ``dims`` axes; a tuple gives one size per axis)."""
    kernels = (int(kernel),) * dims if isinstance(kernel, Integral) else tuple(kernel)
    return in_channels // groups * _product(kernels)


def conv_params(
    in_channels: int,
    out_channels: int,
    kernel: int | Sequence[int],
    groups: int = 1,
    bias: bool = True,
    dims: int = 2,
) -> int:
    """Parameters of a convolution: ``K... * (C_in / groups) * C_out`` weights, plus
    ``C_out`` biases."""
    weights = conv_weights_per_output(in_channels, kernel, groups, dims) * out_channels
    return weights + (out_channels if bias else 0)


def conv_macs(
    in_channels: int,
    out_channels: int,
    kernel: int | Sequence[int],
    output: Sequence[int],
    groups: int = 1,
) -> int:
    """Multiply-adds of a convolution on one image: every output value
    (``C_out * O_1 * ... * O_d``, ``output`` the spatial sizes) costs one multiply-add per
    weight behind it. Biases are not counted (as in torchvision's published figures)."""
    per_output = conv_weights_per_output(in_channels, kernel, groups, len(output))
    return out_channels * _product(output) * per_output


def linear_params(in_features: int, out_features: int, bias: bool = True) -> int:
    return in_features * out_features + (out_features if bias else 0)


def linear_macs(in_features: int, out_features: int, positions: int = 1) -> int:
    """A fully connected layer runs once per position (a ViT's tokens, a ConvNeXt block's
    pixels): ``positions * in * out``."""
    return positions * in_features * out_features


def receptive_step(
    field: int, jump: int, kernel: int, stride: int = 1, dilation: int = 1
) -> tuple[int, int]:
    """Receptive field and jump along one axis after a window layer:
    ``r_out = r_in + D * (F - 1) * j_in`` and ``j_out = j_in * S`` (``j``: input pixels between
    neighbouring outputs)."""
    return field + dilation * (kernel - 1) * jump, jump * stride
