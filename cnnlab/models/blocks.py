"""Building blocks to compare in `cnnlab summary`: the naive Inception module against the one
with 1x1 reductions (Szegedy et al. 2014, figure 2), and the ResNet blocks with an identity
shortcut against those with a projection shortcut, in their basic and bottleneck forms (He et
al. 2015, figure 5 and section 3.3). Each comes in a small registered model, so both forms of
a block can be built, summarized and trained side by side."""

from __future__ import annotations

import torch
from torch import nn

from ..arithmetic import output_size
from ..errors import CnnlabError
from ._registry import register_model
from .classic import INCEPTION_TABLE, Inception

INCEPTION_BLOCKS = ("naive", "reduced")
INCEPTION_STEM = 192  # channels into the module: GoogLeNet's inception (3a) input, 192x28x28
RESIDUAL_BLOCKS = ("basic", "bottleneck")
SHORTCUTS = ("auto", "projection")
RESNET_WIDTH = 16  # the first stage's width (the CIFAR ResNets' 16)


def _choice(model: str, option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise CnnlabError(
            f"{model} -O {option}={value!r}: expected one of {', '.join(choices)}, e.g. "
            f"-O {option}={choices[-1]}"
        )


def _conv_relu(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2), nn.ReLU())


class NaiveInception(nn.Module):
    """The naive Inception module (the paper's figure 2a): 1x1, 3x3 and 5x5 convolutions and a
    3x3/1 max pool side by side on the full input, concatenated. No 1x1 reduction: the 3x3 and
    5x5 convolutions read every input channel, and the pool passes all of them on, so the
    output has ``c1 + c3 + c5 + c_in`` channels and grows with every module stacked."""

    def __init__(self, c_in: int, c1: int, c3: int, c5: int) -> None:
        super().__init__()
        self.branch1 = _conv_relu(c_in, c1, 1)
        self.branch2 = _conv_relu(c_in, c3, 3)
        self.branch3 = _conv_relu(c_in, c5, 5)
        self.branch4 = nn.MaxPool2d(3, 1, padding=1)
        self.out_channels = c1 + c3 + c5 + c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def inception_block(kind: str, c_in: int, widths: tuple[int, ...]) -> nn.Module:
    """An Inception module with ``widths`` = (c1, reduce3, c3, reduce5, c5, pool projection)
    as in the paper's Table 1: ``"reduced"`` (figure 2b, GoogLeNet's module) or ``"naive"``
    (figure 2a: the same 1x1, 3x3 and 5x5 widths, without the reductions and projection)."""
    _choice("inception_small", "block", kind, INCEPTION_BLOCKS)
    c1, _, c3, _, c5, _ = widths
    return Inception(c_in, *widths) if kind == "reduced" else NaiveInception(c_in, c1, c3, c5)


class InceptionSmall(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, input_size: int, block: str) -> None:
        super().__init__()
        self.stem = _conv_relu(in_channels, INCEPTION_STEM, 3)  # N x 192 x 28 x 28
        self.block = inception_block(block, INCEPTION_STEM, INCEPTION_TABLE["3a"])
        self.pool = nn.AdaptiveAvgPool2d(1)  # N x (256 reduced, 416 naive) x 1 x 1
        self.fc = nn.Linear(self.block.out_channels, num_classes)  # N x num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


@register_model("inception_small", input_size=28, in_channels=1)
def inception_small(
    num_classes: int = 10, in_channels: int = 1, input_size: int = 28, block: str = "reduced"
) -> InceptionSmall:
    """One Inception (3a) module on a 192-map stem: the 1x1-reduced module or the naive one.

    A 3x3 convolution (same padding, ReLU) lifts the image to 192 maps, the input of GoogLeNet's
    inception (3a) (192x28x28 for 28x28 images), then one module with 3a's widths (1x1: 64,
    3x3: 128, 5x5: 32), global average pooling and one fully connected layer.
    ``block="reduced"`` (the default) is GoogLeNet's module (figure 2b): 1x1 reductions to 96
    and 16 maps before the 3x3 and 5x5 and a 32-map projection after the pool, 256 maps out.
    ``block="naive"`` (figure 2a) has none of them: its 5x5 branch alone costs what
    ``cnnlab example inception-5x5`` computes for the direct design (120.4M multiply-adds
    against 12.4M reduced), and the pool passes all 192 maps on (416 out).
    """
    return InceptionSmall(num_classes, in_channels, input_size, block)


class Projection(nn.Sequential):
    """The projection shortcut: a 1x1 convolution with ``stride`` (no bias) and batch norm,
    mapping ``x`` to the residual branch's channels and size (the paper's option B)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
        )


def shortcut_for(c_in: int, c_out: int, stride: int, shortcut: str = "auto") -> nn.Module:
    """``nn.Identity()`` when the residual branch keeps the channels and the size (``x`` can be
    added as it is: an identity block); a :class:`Projection` when it changes either (a channel
    change or a stride-2 downsampling: a projection block), or always with ``"projection"``."""
    _choice("resnet_blocks", "shortcut", shortcut, SHORTCUTS)
    if shortcut == "auto" and c_in == c_out and stride == 1:
        return nn.Identity()
    return Projection(c_in, c_out, stride)


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out)]


class BasicBlock(nn.Module):
    """ResNet-18/34's block: ``relu(shortcut(x) + bn(conv3x3(relu(bn(conv3x3(x))))))``, the
    first convolution with ``stride``; ``width`` maps out."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1, shortcut: str = "auto") -> None:
        super().__init__()
        self.residual = nn.Sequential(
            *_conv_bn(c_in, width, 3, stride), nn.ReLU(), *_conv_bn(width, width, 3)
        )
        self.shortcut = shortcut_for(c_in, width, stride, shortcut)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.shortcut(x) + self.residual(x))


class BottleneckBlock(nn.Module):
    """ResNet-50's block: 1x1 to ``width`` maps, 3x3 with ``stride``, 1x1 up to ``4 * width``
    (each with batch norm; ReLU between), added to the shortcut, then a ReLU."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1, shortcut: str = "auto") -> None:
        super().__init__()
        out = width * self.expansion
        self.residual = nn.Sequential(
            *_conv_bn(c_in, width, 1),
            nn.ReLU(),
            *_conv_bn(width, width, 3, stride),
            nn.ReLU(),
            *_conv_bn(width, out, 1),
        )
        self.shortcut = shortcut_for(c_in, out, stride, shortcut)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.shortcut(x) + self.residual(x))


def residual_block(
    kind: str, c_in: int, width: int, stride: int = 1, shortcut: str = "auto"
) -> BasicBlock | BottleneckBlock:
    """A ``"basic"`` or ``"bottleneck"`` block (see :func:`shortcut_for` for its shortcut)."""
    _choice("resnet_blocks", "block", kind, RESIDUAL_BLOCKS)
    block = BasicBlock if kind == "basic" else BottleneckBlock
    return block(c_in, width, stride, shortcut)


class ResNetBlocks(nn.Module):
    def __init__(
        self, num_classes: int, in_channels: int, input_size: int, block: str, shortcut: str
    ) -> None:
        super().__init__()
        _choice("resnet_blocks", "block", block, RESIDUAL_BLOCKS)
        expansion = 4 if block == "bottleneck" else 1
        channels = RESNET_WIDTH * expansion  # the stem feeds the identity block its own width
        if output_size(input_size, 3, stride=2, padding=1) < 1:
            raise CnnlabError(f"resnet_blocks needs images of at least 2x2, got {input_size}")
        self.stem = nn.Sequential(*_conv_bn(in_channels, channels, 3), nn.ReLU())
        # N x 16 x 32 x 32 (64 for bottleneck): same channels, same size -> identity shortcut
        self.block1 = residual_block(block, channels, RESNET_WIDTH, 1, shortcut)
        # N x 32 x 16 x 16 (128): twice the channels, half the size -> projection shortcut
        self.block2 = residual_block(block, channels, 2 * RESNET_WIDTH, 2, shortcut)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * RESNET_WIDTH * expansion, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("resnet_blocks", input_size=32, in_channels=3)
def resnet_blocks(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    block: str = "basic",
    shortcut: str = "auto",
) -> ResNetBlocks:
    """Two ResNet blocks: an identity block, then a projection block that halves the size.

    A 3x3 conv-BN-ReLU stem, ``block1`` (same channels and size, so its shortcut is the
    identity: ``x`` is added as it is, no parameters) and ``block2`` (stride 2 and twice the
    channels: ``x`` no longer matches the residual branch, so the shortcut is a projection,
    a 1x1 convolution with stride 2 and batch norm), global average pooling, fc. A projection
    is needed exactly when a block changes the channel count or the size; elsewhere the paper
    uses the free identity (its option B). ``block="basic"`` (two 3x3 convolutions,
    ResNet-18/34; 16 and 32 maps) or ``"bottleneck"`` (1x1 down, 3x3, 1x1 up 4x: ResNet-50;
    64 and 128 maps out). ``shortcut="projection"`` uses a projection in every block (the
    paper's option C: more parameters, hardly better).
    """
    return ResNetBlocks(num_classes, in_channels, input_size, block, shortcut)
