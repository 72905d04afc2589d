"""A fast residual network for 32x32 images: ``cifar_fast``, after David Page's ResNet-9
("How to train your ResNet", 2018, the DAWNBench CIFAR-10 winner) and Keller Jordan's airbench
(https://github.com/KellerJordan/cifar10-airbench): few layers, batch norm after every
convolution, max pooling to go down in size, two residual pairs, a max-pooled head and a
scaled linear classifier. With widths 32/64/128/256 (a quarter of ResNet-9's multiply-adds)
it trains at a few thousand images per second on two CPU cores with bf16 autocast and
channels_last; the ``cifar10-fast`` recipe (:mod:`cnnlab.train.recipes`) trains it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..arithmetic import output_size
from ..errors import CnnlabError
from ._registry import register_model

WIDTHS = (32, 64, 128, 256)  # prep, layer 1 (+ residual pair), layer 2, layer 3 (+ residual)
RESIDUAL = (False, True, False, True)  # which stages carry a residual pair after the pool
HEAD_SCALE = 0.125  # ResNet-9 multiplies the logits by 1/8: calmer early training


def conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 "same" convolution without bias (the batch norm has one), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    """``x + conv_bn(conv_bn(x))``: two 3x3 convolutions that keep channels and size."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FastResNet(nn.Module):
    """prep conv, then three stages of (conv, max pool 2[, residual pair]), global max pool,
    linear classifier scaled by :data:`HEAD_SCALE`."""

    def __init__(
        self, num_classes: int, in_channels: int, input_size: int, widths: Sequence[int]
    ) -> None:
        super().__init__()
        if len(widths) != len(RESIDUAL) or any(
            not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in widths
        ):
            raise CnnlabError(
                f"widths={list(widths)!r}: expected {len(RESIDUAL)} positive channel counts "
                f"(prep, stage 1, 2, 3), e.g. -O widths=[32,64,128,256]"
            )
        side = input_size
        for _ in range(len(widths) - 1):
            side = output_size(side, 2, stride=2)
        if side < 1:
            raise CnnlabError(
                f"input_size={input_size}: cifar_fast halves the side three times, so it needs "
                "images of at least 8x8 pixels"
            )
        layers: list[nn.Module] = [conv_bn(in_channels, widths[0])]  # N x 32 x 32 x 32
        for previous, width, residual in zip(widths, widths[1:], RESIDUAL[1:]):
            layers += [conv_bn(previous, width), nn.MaxPool2d(2)]  # N x w x S/2 x S/2
            if residual:
                layers.append(Residual(width))
        self.features = nn.Sequential(*layers)  # N x 256 x 4 x 4 for 32x32
        self.pool = nn.AdaptiveMaxPool2d(1)  # N x 256 x 1 x 1
        self.classifier = nn.Linear(widths[-1], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)  # N x 256
        return self.classifier(x) * HEAD_SCALE  # N x classes


@register_model("cifar_fast", input_size=32, in_channels=3)
def cifar_fast(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    widths: Sequence[int] = WIDTHS,
) -> FastResNet:
    """ResNet-9 (Page 2018, airbench) narrowed for CPUs: batch-norm convs 32/64/128/256.

    The stages are Page's: prep conv; conv + max pool + residual pair; conv + max pool; conv +
    max pool + residual pair; global max pool; linear classifier (no bias) times 1/8. Page's
    widths are 64/128/256/512 (``-O widths=[64,128,256,512]``); the default quarter of them
    keeps the 32x32 CIFAR-10 epoch within about 25 s on two CPU cores with bf16.
    """
    return FastResNet(num_classes, in_channels, input_size, tuple(widths))
