"""The course's three 128-channel 3x3 convolution stacks for 32x32 colour images (Keras in the
material): E4 plain (``cifar_plain7``), E5 residual (``cifar_residual``) and E6 residual with
pooling (``cifar_residual_pool``). They are the usual teaching experiment for skip connections:
the same width, different wiring. Each convolution carries its own ReLU (Keras'
``Conv2D(activation="relu")``); a residual addition has none."""

from __future__ import annotations

import torch
from torch import nn

from ..arithmetic import output_size
from ..errors import CnnlabError
from ._base import FeaturesClassifier
from ._registry import register_model

WIDTH = 128  # channels of every convolution
DEPTH = 7  # convolutions of the plain stack (E4)
RESIDUAL_PAIRS = 3  # residual pairs after the residual stacks' plain pair (E5, E6)


def _conv_relu(in_channels: int, padding: int | str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, WIDTH, 3, padding=padding), nn.ReLU())


def _head(features: int, num_classes: int, relu: bool) -> nn.Sequential:
    """Flatten, Dense(128), Dense(128), Dense(classes); ``relu`` puts a ReLU after each of the
    two hidden dense layers (E4), else they are linear (E5, E6). No softmax: it is in the loss."""
    hidden: list[nn.Module] = [nn.Linear(features, 128), nn.Linear(128, 128)]
    layers: list[nn.Module] = [nn.Flatten()]
    for layer in hidden:
        layers += [layer, nn.ReLU()] if relu else [layer]
    return nn.Sequential(*layers, nn.Linear(128, num_classes))


class ResidualPair(nn.Module):
    """``x + relu(conv(relu(conv(x))))`` with "same" padding, so the sum's shapes agree.
    ``skip=False`` drops the ``x +``: the plain twin with the same layers and weights count."""

    def __init__(self, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        self.body = nn.Sequential(_conv_relu(WIDTH, 1), _conv_relu(WIDTH, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.skip else self.body(x)


class PlainStack(FeaturesClassifier):
    def __init__(self, num_classes: int, in_channels: int, input_size: int) -> None:
        super().__init__()
        side = input_size
        for _ in range(DEPTH):  # seven valid 3x3 convolutions shrink the side by 2 each
            side = output_size(side, 3)
        side = output_size(side, 2, stride=2)  # max pool 2
        if side < 1:
            raise CnnlabError(
                f"cifar_plain7 needs images of at least {2 * DEPTH + 2}x{2 * DEPTH + 2}: seven "
                f"valid 3x3 convolutions take {input_size} to {input_size - 2 * DEPTH}"
            )
        layers = [_conv_relu(in_channels, 0)] + [_conv_relu(WIDTH, 0) for _ in range(DEPTH - 1)]
        self.features = nn.Sequential(*layers, nn.MaxPool2d(2))  # N x 128 x 9 x 9 for 32x32
        self.classifier = _head(WIDTH * side * side, num_classes, relu=True)


class ResidualStack(FeaturesClassifier):
    """A plain pair of "same" convolutions, then ``pairs`` residual pairs, then max pools (one
    at the end, or one after each residual pair), then the linear dense head."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        input_size: int,
        pool_each: bool,
        pairs: int = RESIDUAL_PAIRS,
        skip: bool = True,
    ) -> None:
        super().__init__()
        if pairs < 1:
            raise CnnlabError(f"pairs={pairs}: a residual stack needs at least one pair")
        # the plain pair: N x 128 x 32 x 32, kept by every pair ("same" padding)
        layers: list[nn.Module] = [_conv_relu(in_channels, 1), _conv_relu(WIDTH, 1)]
        side = output_size(output_size(input_size, 3, padding=1), 3, padding=1)
        for _ in range(pairs):
            layers.append(ResidualPair(skip))
            if pool_each:
                layers.append(nn.MaxPool2d(2))  # halves the side: 16, 8, 4
                side = output_size(side, 2, stride=2)
        if not pool_each:
            layers.append(nn.MaxPool2d(2))  # N x 128 x 16 x 16
            side = output_size(side, 2, stride=2)
        if side < 1:
            raise CnnlabError(
                f"image side {input_size} is too small for this stack's pooling: it needs at "
                f"least {2**pairs if pool_each else 2} pixels"
            )
        self.features = nn.Sequential(*layers)
        self.classifier = _head(WIDTH * side * side, num_classes, relu=False)


@register_model("cifar_plain7", input_size=32, in_channels=3)
def cifar_plain7(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> PlainStack:
    """E4: seven plain 3x3 ReLU convolutions of 128 channels, max pool, dense 128-128-10 (ReLU).

    The convolutions use no padding (Keras' default "valid"), so 32x32 shrinks to 18x18 and the
    pool leaves 9 x 9 x 128 = 10,368 features for the first dense layer.
    """
    return PlainStack(num_classes, in_channels, input_size)


@register_model("cifar_residual", input_size=32, in_channels=3)
def cifar_residual(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    pairs: int = RESIDUAL_PAIRS,
    skip: bool = True,
) -> ResidualStack:
    """E5: a plain conv pair, 3 x (x = x + conv(conv(x))), pool, linear dense 128-128-10.

    Eight "same" 3x3 ReLU convolutions keep every map 32x32 so the skip additions line up; the
    single pool leaves 16 x 16 x 128 = 32,768 features, which makes the first dense layer hold
    4.2M weights. The two hidden dense layers have no activation, as in the material's code.
    ``pairs`` sets the number of residual pairs (2 * pairs + 2 convolutions); ``skip=False``
    removes the skip connections, giving the plain twin used to show vanishing gradients
    (``cnnlab show gradflow``).
    """
    return ResidualStack(num_classes, in_channels, input_size, False, pairs, skip)


@register_model("cifar_residual_pool", input_size=32, in_channels=3)
def cifar_residual_pool(
    num_classes: int = 10, in_channels: int = 3, input_size: int = 32
) -> ResidualStack:
    """E6: a plain conv pair, 3 x (residual pair, max pool), linear dense 128-128-10.

    Each 2x2 pool halves the side (32 -> 16 -> 8 -> 4). Pooling between pairs grows each
    unit's receptive field and leaves 4 x 4 x 128 = 2,048 features, so the dense head is 16x
    smaller than in ``cifar_residual``.
    """
    return ResidualStack(num_classes, in_channels, input_size, pool_each=True)
