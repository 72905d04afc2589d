"""``cifar_air``: Keller Jordan's airbench94 network (https://github.com/KellerJordan/cifar10-airbench,
"94% on CIFAR-10 in 3.29 seconds on a single GPU", 2024), narrowed for CPUs.

What makes it learn fast, each a fact from airbench carried over:

- **A whitening first layer.** A 2x2 convolution whose 24 filters are fixed before training:
  the 12 eigenvectors of the covariance of the training images' 2x2x3 patches, each divided by
  the square root of its eigenvalue, and their negatives. Its outputs are decorrelated and of
  unit variance, so the layers after it start on an easy problem. Only its bias trains.
  :meth:`AirNet.initialize_from_data` computes it (``cnnlab train`` calls it on a new run).
- **Three conv groups**: conv 3x3, max pool 2, batch norm, ReLU, conv 3x3, batch norm, ReLU.
  Each convolution starts as the identity on its first input channels (``dirac_``), so a new
  network passes its input through.
- **Batch norm without a trainable scale** (the scale is fixed at 1, only the shift learns, at
  64 times the learning rate; :meth:`AirNet.optimizer_groups`), with a short memory
  (momentum 0.4) and ``eps=1e-12``.
- **A max-pooled head** and a linear classifier without bias whose logits are divided by 9.

airbench uses GELU in the groups; on a CPU with bf16, ReLU trains several times faster here and
is what this network uses. The default widths 32/128/128 (airbench: 64/256/256) do about a
fifth of airbench94's multiply-adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..arithmetic import output_size
from ..errors import CnnlabError
from ._registry import fix_parameter, register_model

WIDTHS = (32, 128, 128)  # the three conv groups; airbench94: 64/256/256
WHITEN_KERNEL = 2  # the whitening layer's filters are 2x2
LOGIT_SCALE = 1 / 9
BIAS_LR_SCALE = 64.0  # batch-norm shifts learn this much faster (and decay this much less)
EIGENVALUE_EPS = 5e-4  # added to the patch covariance's eigenvalues before dividing
COVARIANCE_CHUNK = 256  # images per step of the patch covariance


class FixedScaleBatchNorm(nn.BatchNorm2d):
    """Batch norm whose scale stays 1 (not trained); only the shift learns."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=1e-12, momentum=0.4)
        fix_parameter(self.weight)


def identity_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 "same" convolution without bias, its first ``in_channels`` filters the identity."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(in_channels, out_channels)])
    return conv


class ConvGroup(nn.Module):
    """conv, max pool 2, batch norm, ReLU, conv, batch norm, ReLU: halves the side."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = identity_conv(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = FixedScaleBatchNorm(out_channels)
        self.conv2 = identity_conv(out_channels, out_channels)
        self.norm2 = FixedScaleBatchNorm(out_channels)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.norm1(self.pool(self.conv1(x))))
        return self.activation(self.norm2(self.conv2(x)))


class AirNet(nn.Module):
    """whiten (2x2, fixed), GELU, three :class:`ConvGroup`, global max pool, linear / 9."""

    def __init__(
        self, num_classes: int, in_channels: int, input_size: int, widths: Sequence[int]
    ) -> None:
        super().__init__()
        if len(widths) != 3 or any(
            not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in widths
        ):
            raise CnnlabError(
                f"widths={list(widths)!r}: expected 3 positive channel counts (the conv "
                "groups), e.g. -O widths=[32,128,128]"
            )
        side = output_size(input_size, WHITEN_KERNEL)
        for _ in widths:
            side = output_size(side, 2, stride=2)
        if side < 1:
            raise CnnlabError(
                f"input_size={input_size}: cifar_air shrinks the side by 1 and then halves it "
                "three times, so it needs images of at least 9x9 pixels; resize them, e.g. "
                "--image-size 32"
            )
        whiten_width = 2 * in_channels * WHITEN_KERNEL**2  # each eigenvector and its negative
        self.whiten = nn.Conv2d(in_channels, whiten_width, WHITEN_KERNEL)  # N x 24 x 31 x 31
        fix_parameter(self.whiten.weight)
        self.whiten_activation = nn.GELU()
        channels = [whiten_width, *widths]
        self.groups = nn.Sequential(
            *(ConvGroup(a, b) for a, b in zip(channels, channels[1:]))
        )  # N x 128 x 3 x 3 for 32x32 inputs
        self.pool = nn.AdaptiveMaxPool2d(1)  # N x 128 x 1 x 1
        self.classifier = nn.Linear(widths[-1], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(self.whiten_activation(self.whiten(x)))
        return self.classifier(self.pool(x).flatten(1)) * LOGIT_SCALE

    @torch.no_grad()
    def initialize_from_data(self, images: torch.Tensor) -> None:
        """Set the whitening filters from ``images`` (``N x C x H x W``, normalized as in
        training; airbench uses 5,000): the eigenvectors of the 2x2 patch covariance, scaled
        by 1 / sqrt(eigenvalue + 5e-4), largest eigenvalue first, then their negatives."""
        k = WHITEN_KERNEL
        c = images.shape[1]
        covariance = torch.zeros(c * k * k, c * k * k, dtype=torch.float64, device=images.device)
        count = 0
        for chunk in images.split(COVARIANCE_CHUNK):  # bounded memory for large images
            patches = chunk.double().unfold(2, k, 1).unfold(3, k, 1)  # N x C x H' x W' x k x k
            patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
            covariance += patches.T @ patches
            count += len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance / count)  # ascending
        # a flat direction (e.g. equal channels of a grey image) may come out slightly below 0
        scale = torch.sqrt(eigenvalues.clamp_min(0) + EIGENVALUE_EPS)
        filters = (eigenvectors.T / scale[:, None]).flip(0)
        filters = filters.reshape(c * k * k, c, k, k)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight))

    def optimizer_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """The weights at ``lr``, then the batch-norm shifts at 64x the learning rate and 1/64
        the weight-decay factor (so their decay per step, lr x weight decay, is the others')."""
        shifts = [p for n, p in self.named_parameters() if "norm" in n and p.requires_grad]
        others = [p for n, p in self.named_parameters() if "norm" not in n and p.requires_grad]
        return [  # the base rate first: the trainer logs param_groups[0]'s rate
            {"params": others, "lr": lr, "weight_decay": weight_decay},
            {
                "params": shifts,
                "lr": lr * BIAS_LR_SCALE,
                "weight_decay": weight_decay / BIAS_LR_SCALE,
            },
        ]


@register_model("cifar_air", input_size=32, in_channels=3)
def cifar_air(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    widths: Sequence[int] = WIDTHS,
) -> AirNet:
    """airbench94's network (Jordan 2024) for CPUs: a fixed whitening layer, three conv groups.

    Widths 32/128/128 by default; airbench94's own are ``-O widths=[64,256,256]``. The
    ``cifar10-air`` recipe (:mod:`cnnlab.train.recipes`) trains it.
    """
    return AirNet(num_classes, in_channels, input_size, tuple(widths))
