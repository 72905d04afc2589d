"""The classic ImageNet architectures as their papers describe them, where torchvision ships a
modernized version: AlexNet (2012) with its two-GPU groups and local response normalization,
and GoogLeNet (Inception v1, 2014) with true 5x5 branches, LRN and both auxiliary classifiers.
"""

from __future__ import annotations

import torch
from torch import nn

from ..arithmetic import output_size
from ..errors import CnnlabError
from ._base import FeaturesClassifier
from ._registry import register_model


def _lrn() -> nn.LocalResponseNorm:
    # The paper: b = a / (k + alpha * sum a^2)^beta with k=2, n=5, alpha=1e-4, beta=0.75.
    # PyTorch divides alpha by n inside the sum, so the paper's alpha is passed as alpha * n.
    return nn.LocalResponseNorm(size=5, alpha=1e-4 * 5, beta=0.75, k=2.0)


class AlexNet2012(FeaturesClassifier):
    def __init__(self, num_classes: int, in_channels: int, input_size: int, groups: int) -> None:
        super().__init__()
        side = output_size(input_size, 11, stride=4)  # conv1
        for _ in range(3):  # the three 3x3/2 poolings (the convolutions between keep the size)
            side = output_size(side, 3, stride=2)
        if side < 1:
            raise CnnlabError(
                f"alexnet2012 needs images of at least 67x67 (it was designed for 227x227): "
                f"{input_size}x{input_size} shrinks to nothing after conv1 (11x11, stride 4) "
                "and three 3x3/2 poolings"
            )
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, 11, stride=4),
            nn.ReLU(),
            _lrn(),  # 96 x 55 x 55
            nn.MaxPool2d(3, 2),  # 96 x 27 x 27 (overlapping pooling)
            nn.Conv2d(96, 256, 5, padding=2, groups=groups),
            nn.ReLU(),
            _lrn(),  # 256 x 27 x 27
            nn.MaxPool2d(3, 2),  # 256 x 13 x 13
            nn.Conv2d(256, 384, 3, padding=1),
            nn.ReLU(),  # 384 x 13 x 13 (both halves)
            nn.Conv2d(384, 384, 3, padding=1, groups=groups),
            nn.ReLU(),  # 384 x 13 x 13
            nn.Conv2d(384, 256, 3, padding=1, groups=groups),
            nn.ReLU(),  # 256 x 13 x 13
            nn.MaxPool2d(3, 2),  # 256 x 6 x 6
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # 9216
            nn.Dropout(0.5),
            nn.Linear(256 * side * side, 4096),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_classes),
        )


@register_model("alexnet2012", input_size=227, in_channels=3)
def alexnet2012(
    num_classes: int = 1000, in_channels: int = 3, input_size: int = 227, groups: int = 2
) -> AlexNet2012:
    """AlexNet as in Krizhevsky, Sutskever & Hinton (2012).

    Keeps: 227x227x3 input (the paper's "224" does not divide; 227 gives its 55x55), conv 96
    11x11/4, ReLU, local response normalization (k=2, n=5, alpha=1e-4, beta=0.75) after the
    first two convolutions, overlapping 3x3/2 max pooling, conv 256 5x5, 384, 384 and 256 3x3,
    the two-GPU split as ``groups=2`` on conv 2, 4 and 5 (conv 3 sees both halves), fc
    4096-4096-1000 with dropout 0.5 before the first two. Shapes: 55x55x96, 27x27x96,
    27x27x256, 13x13x256, 13x13x384, 13x13x384, 13x13x256, 6x6x256, 9216. ``groups=1`` is the
    one-GPU network (62,378,344 parameters instead of 60,965,224). Leaves out: PCA colour
    augmentation and the 0.01 Gaussian initialization with biases of 1 (PyTorch's default
    initialization trains without them).
    """
    if groups not in (1, 2):
        raise CnnlabError(f"groups={groups}: expected 2 (the paper's two GPUs) or 1")
    return AlexNet2012(num_classes, in_channels, input_size, groups)


class _ConvReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0):
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, padding), nn.ReLU())


class Inception(nn.Module):
    """Four branches on one input, concatenated along channels: 1x1; 1x1 reduce then 3x3;
    1x1 reduce then 5x5; 3x3/1 max pool then 1x1 projection."""

    def __init__(self, c_in: int, c1: int, r3: int, c3: int, r5: int, c5: int, proj: int):
        super().__init__()
        self.branch1 = _ConvReLU(c_in, c1, 1)
        self.branch2 = nn.Sequential(_ConvReLU(c_in, r3, 1), _ConvReLU(r3, c3, 3, padding=1))
        self.branch3 = nn.Sequential(_ConvReLU(c_in, r5, 1), _ConvReLU(r5, c5, 5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), _ConvReLU(c_in, proj, 1))
        self.out_channels = c1 + c3 + c5 + proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class AuxClassifier(nn.Module):
    """5x5/3 average pool, 1x1 conv 128 + ReLU, fc 1024 + ReLU, dropout 0.7, fc classes."""

    def __init__(self, c_in: int, num_classes: int, side: int = 14) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, 3)  # 14x14 -> 4x4 for 224x224 images
        pooled = output_size(side, 5, stride=3)
        self.conv = _ConvReLU(c_in, 128, 1)
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * pooled * pooled, 1024),
            nn.ReLU(),
            nn.Dropout(0.7),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.pool(x)))


# (c1, reduce3, c3, reduce5, c5, pool projection) from Table 1 of the paper
INCEPTION_TABLE = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class GoogLeNetV1(nn.Module):
    aux_loss_weight = 0.3  # the paper's weight of each auxiliary loss in training

    def __init__(
        self, num_classes: int, in_channels: int, input_size: int, aux_logits: bool
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _ConvReLU(in_channels, 64, 7, stride=2, padding=3),  # 112
            nn.MaxPool2d(3, 2, ceil_mode=True),
            _lrn(),  # 56
            _ConvReLU(64, 64, 1),
            _ConvReLU(64, 192, 3, padding=1),
            _lrn(),
            nn.MaxPool2d(3, 2, ceil_mode=True),  # 28
        )
        blocks, c_in = {}, 192
        for name, widths in INCEPTION_TABLE.items():
            blocks[name] = Inception(c_in, *widths)
            c_in = blocks[name].out_channels
        self.inception3a, self.inception3b = blocks["3a"], blocks["3b"]
        self.pool3 = nn.MaxPool2d(3, 2, ceil_mode=True)  # 14
        self.inception4a, self.inception4b = blocks["4a"], blocks["4b"]
        self.inception4c, self.inception4d = blocks["4c"], blocks["4d"]
        self.inception4e = blocks["4e"]
        self.pool4 = nn.MaxPool2d(3, 2, ceil_mode=True)  # 7
        self.inception5a, self.inception5b = blocks["5a"], blocks["5b"]
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # the paper's 7x7 average pool on 224 input
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(1024, num_classes)
        side = output_size(input_size, 7, stride=2, padding=3)  # the stem's convolution
        for _ in range(3):  # pool 1 and 2 of the stem, pool3: 3x3/2, rounded up
            side = output_size(side, 3, stride=2, ceil_mode=True)
        if side < 1:
            raise CnnlabError(f"googlenet_v1 needs images of at least 32x32, got {input_size}")
        if aux_logits and side < 5:
            raise CnnlabError(
                f"googlenet_v1's auxiliary classifiers pool 5x5 from the 4a/4d maps, which are "
                f"{side}x{side} for {input_size}x{input_size} input; use 80x80 or larger images "
                "(224 in the paper) or aux_logits=False"
            )
        self.aux1 = AuxClassifier(512, num_classes, side) if aux_logits else None
        self.aux2 = AuxClassifier(528, num_classes, side) if aux_logits else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = self.pool3(self.inception3b(self.inception3a(self.stem(x))))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.pool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if aux1 is not None and aux2 is not None:
            return logits, aux1, aux2
        return logits


@register_model("googlenet_v1", input_size=224, in_channels=3)
def googlenet_v1(
    num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, aux_logits: bool = True
) -> GoogLeNetV1:
    """GoogLeNet (Inception v1) as in Szegedy et al. (2014), Table 1.

    Keeps: the 7x7/2 stem, LRN after the first pool and after the 3x3 conv, nine Inception
    modules with true 5x5 branches and the widths of Table 1, ceil-mode 3x3/2 poolings (Caffe's
    sizes: 112, 56, 28, 14, 7), average pooling, dropout 0.4, and the two auxiliary classifiers
    on 4a and 4d (5x5/3 average pool, 1x1 conv 128, fc 1024, dropout 0.7) whose losses are added
    with weight 0.3 in training; in evaluation only the main output is returned. torchvision's
    ``googlenet`` (registered as ``googlenet``) is the later variant with batch norm and 3x3
    convolutions in place of the 5x5 ones. Leaves out: the paper's polyak averaging and its
    photometric augmentation.
    """
    return GoogLeNetV1(num_classes, in_channels, input_size, aux_logits)
