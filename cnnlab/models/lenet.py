"""LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), figure 2) and its ancestor LeNet-1 (LeCun et al. 1990)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..arithmetic import output_size
from ..errors import CnnlabError
from ._registry import register_model

LENET_INPUT_SIZE = 32  # the paper's input field: 28x28 digits centred in 32x32


PADS = ("zero", "background")


def border_level(x: torch.Tensor) -> torch.Tensor:
    """Each image's background level per channel: the (lower) median of its outermost ring of
    pixels, ``N x C x 1 x 1``, treated as a constant (no gradient flows through it)."""
    ring = torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], dim=-1)
    return ring.median(dim=-1).values.detach()[..., None, None]


class FitTo32(nn.Module):
    """Bring an image to LeNet-5's 32x32 input field without learning anything.

    28x28 images are padded by 2 on each side, as in the paper: with zeros (``pad="zero"``), or
    with the image's own background level (``pad="background"``: the median of its border
    pixels), so a normalised digit, whose background is below zero, gets no bright frame. Any
    other size is resized bilinearly (e.g. scikit-learn's 8x8 digits are enlarged 4x).
    """

    fx_leaf = True  # branches on the image size: torch.fx traces it as one call
    numpy_twin = "fit_to_32"  # cnnlab.scratch builds its NumPy twin by this name

    def __init__(self, input_size: int, pad: str = "zero") -> None:
        super().__init__()
        if pad not in PADS:
            raise CnnlabError(f"lenet5 pad={pad!r}: expected one of {', '.join(PADS)}")
        self.input_size = input_size
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = x.shape[-1]
        if side == LENET_INPUT_SIZE:
            return x
        if side == 28:
            if self.pad == "zero":
                return F.pad(x, (2, 2, 2, 2))
            level = border_level(x)
            field = level.expand(*x.shape[:-2], LENET_INPUT_SIZE, LENET_INPUT_SIZE).clone()
            field[..., 2:-2, 2:-2] = x
            return field
        return F.interpolate(
            x, size=(LENET_INPUT_SIZE, LENET_INPUT_SIZE), mode="bilinear", align_corners=False
        )

    def extra_repr(self) -> str:
        padded = "zero-pad 2" if self.pad == "zero" else "pad 2 with the border's median"
        how = {32: "unchanged", 28: padded}.get(self.input_size, "bilinear resize")
        return f"{self.input_size}x{self.input_size} -> 32x32 ({how})"


# LeCun et al. 1998, Table I: which S2 maps (columns 0-5) each C3 map (0-15) reads. Maps 0-5
# take 3 neighbouring maps, 6-11 take 4 neighbouring, 12-14 take 4 non-neighbouring, 15 all 6.
C3_TABLE = (
    (0, 1, 2),
    (1, 2, 3),
    (2, 3, 4),
    (3, 4, 5),
    (0, 4, 5),
    (0, 1, 5),
    (0, 1, 2, 3),
    (1, 2, 3, 4),
    (2, 3, 4, 5),
    (0, 3, 4, 5),
    (0, 1, 4, 5),
    (0, 1, 2, 5),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


class PartialConv(nn.Module):
    """C3 with the paper's partial connection table: output map ``j`` is a 5x5 convolution of
    only the input maps ``table[j]``, so it holds ``25 * len(table[j]) + 1`` weights
    (1,516 in all instead of 2,416), which the paper says breaks symmetry between the maps."""

    def __init__(self, table: tuple[tuple[int, ...], ...] = C3_TABLE, kernel: int = 5) -> None:
        super().__init__()
        self.table = table
        self.maps = nn.ModuleList(nn.Conv2d(len(inputs), 1, kernel) for inputs in table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([conv(x[:, list(ins)]) for conv, ins in zip(self.maps, self.table)], 1)


class LeNet5(nn.Module):
    """C1 - S2 - C3 - S4 - C5 - F6 - output, on a 32x32 field."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 32,
        modern: bool = False,
        c3_table: bool = False,
        pad: str = "zero",
    ) -> None:
        super().__init__()
        activation: type[nn.Module] = nn.ReLU if modern else nn.Tanh
        pool: type[nn.Module] = nn.MaxPool2d if modern else nn.AvgPool2d
        self.fit = FitTo32(input_size, pad)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),  # C1: N x 6 x 28 x 28
            activation(),
            pool(kernel_size=2, stride=2),  # S2: N x 6 x 14 x 14
            PartialConv() if c3_table else nn.Conv2d(6, 16, kernel_size=5),  # C3: 16 x 10 x 10
            activation(),
            pool(kernel_size=2, stride=2),  # S4: N x 16 x 5 x 5
            nn.Conv2d(16, 120, kernel_size=5),  # C5: N x 120 x 1 x 1
            activation(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # N x 120
            nn.Linear(120, 84),  # F6: N x 84
            activation(),
            nn.Linear(84, num_classes),  # output: N x num_classes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.fit(x)))


@register_model("lenet5", input_size=32, in_channels=1)
def lenet5(
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 32,
    modern: bool = False,
    c3_table: bool = False,
    pad: str = "zero",
) -> LeNet5:
    """LeNet-5, LeCun et al. 1998: two 5x5 conv + subsampling stages, C5, F6, output.

    Kept from the paper: the 32x32 input field (28x28 digits padded by 2), the layer sizes
    C1 6@28x28, S2 6@14x14, C3 16@10x10, S4 16@5x5, C5 120, F6 84, tanh activations and
    average-pool subsampling. Simplified, as every modern re-implementation does: S2/S4 are plain
    2x2 averages (the paper multiplies each by a trained coefficient and adds a bias), C3 connects
    to all six S2 maps unless ``c3_table=True`` (the paper's partial connection table, 1,516
    C3 parameters, 60,806 in all), and the output layer is a linear layer trained with
    cross-entropy (the paper uses Euclidean RBF units).

    ``modern=True`` swaps tanh for ReLU and average for max pooling, the variant most tutorials
    train today; it learns faster with the same parameter count (61,706 for 10 classes).

    ``pad`` says how a 28x28 image is padded to 32x32: ``"zero"`` adds zeros (after
    normalisation, a frame brighter than an MNIST digit's background, which lies at about
    -0.42); ``"background"`` adds the image's own background level, as the paper's 32x32 field
    of normalised background around each digit.
    """
    return LeNet5(num_classes, in_channels, input_size, modern, c3_table, pad)


class LeNet1(nn.Module):
    """H1 - H2 - H3 - H4 - output on the raw image: 5x5 conv to 4 maps, 2x2 average
    subsampling, 5x5 conv to 12 maps, 2x2 average subsampling, fully connected to the classes."""

    def __init__(self, num_classes: int, in_channels: int, input_size: int, modern: bool) -> None:
        super().__init__()
        side = output_size(output_size(input_size, 5), 2, stride=2)  # H1, H2
        side = output_size(output_size(side, 5), 2, stride=2)  # H3, H4
        if side < 1:
            raise CnnlabError(
                f"lenet1 needs images of at least 16x16 (it was designed for 28x28), got "
                f"{input_size}x{input_size}: two 5x5 convolutions and two 2x2 subsamplings "
                "leave nothing; resize the data (--image-size 28)"
            )
        activation: type[nn.Module] = nn.ReLU if modern else nn.Tanh
        pool: type[nn.Module] = nn.MaxPool2d if modern else nn.AvgPool2d
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 4, kernel_size=5),  # H1: N x 4 x 24 x 24
            activation(),
            pool(kernel_size=2, stride=2),  # H2: N x 4 x 12 x 12
            nn.Conv2d(4, 12, kernel_size=5),  # H3: N x 12 x 8 x 8
            activation(),
            pool(kernel_size=2, stride=2),  # H4: N x 12 x 4 x 4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # N x 192
            nn.Linear(12 * side * side, num_classes),  # output: N x num_classes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("lenet1", input_size=28, in_channels=1)
def lenet1(
    num_classes: int = 10, in_channels: int = 1, input_size: int = 28, modern: bool = False
) -> LeNet1:
    """LeNet-1 (LeCun et al. 1989/1990; "LeNet 1" of the 1995 comparison): 4 and 12 maps.

    The network of LeCun et al., "Handwritten digit recognition with a back-propagation
    network" (NIPS 1990), named LeNet-1 in LeCun et al., "Comparison of learning algorithms for
    handwritten digit recognition" (1995): a 28x28 image, H1 5x5 convolution to 4 maps of 24x24,
    H2 2x2 average subsampling to 12x12, H3 5x5 convolution to 12 maps of 8x8, H4 subsampling
    to 4x4, and the 12 x 4 x 4 = 192 values fully connected to the 10 outputs. With tanh (the
    paper's squashing function) and plain averages, as ``lenet5`` is built, it has
    4*(5*5*1+1) + 12*(5*5*4+1) + 192*10+10 = 104 + 1,212 + 1,930 = 3,246 parameters. The 1990
    paper reports 2,578 independent parameters (98,442 connections, 4,635 units): its H3 maps
    each read only some of the H2 maps, and its subsampling layers have a trained coefficient
    and bias per map; this version connects H3 to all four H2 maps, as LeNet-5 without its C3
    table does. Compare it with LeNet-5 (6, 16, 120 maps, 61,706 parameters) with
    ``cnnlab summary lenet1`` / ``cnnlab summary lenet5 --input 1x28x28`` and by training both on
    MNIST. ``modern=True`` swaps tanh for ReLU and average for max pooling.
    """
    return LeNet1(num_classes, in_channels, input_size, modern)
