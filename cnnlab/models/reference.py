"""Small reference networks that people learn with on MNIST and Fashion-MNIST."""

from __future__ import annotations

import torch
from torch import nn

from ..arithmetic import output_size
from ..errors import CnnlabError
from ._base import FeaturesClassifier
from ._registry import register_model


def _check_side(model: str, input_size: int, minimum: int) -> None:
    if input_size < minimum:
        raise CnnlabError(
            f"{model} needs images of at least {minimum}x{minimum} pixels, got "
            f"{input_size}x{input_size}; resize the data or pick a model such as lenet5 that "
            "adapts its input"
        )


DOWNSAMPLES = ("pool", "stride")
HEADS = ("flatten", "gap")


def _check_choice(model: str, option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise CnnlabError(
            f"{model} -O {option}={value!r}: expected one of {', '.join(choices)}, e.g. "
            f"-O {option}={choices[-1]}"
        )


def _downsample(channels: int, how: str) -> nn.Module:
    """2x2 max pooling, or in its place a learned 2x2 convolution with stride 2 (and a ReLU)
    from ``channels`` to ``channels`` maps: the same output shape, ``4 * channels**2 +
    channels`` more parameters (Springenberg et al. 2015, "Striving for simplicity")."""
    if how == "pool":
        return nn.MaxPool2d(2)
    return nn.Sequential(nn.Conv2d(channels, channels, 2, stride=2), nn.ReLU())


def _head_input(how: str, channels: int, side: int) -> tuple[list[nn.Module], int]:
    """What turns ``channels x side x side`` maps into a vector: flatten (every value, so the
    first fully connected layer holds ``channels * side * side`` inputs per unit) or global
    average pooling (one mean per channel: ``channels`` inputs, whatever the image size)."""
    if how == "flatten":
        return [nn.Flatten()], channels * side * side
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten()], channels


class MnistCNN(FeaturesClassifier):
    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        input_size: int,
        downsample: str = "pool",
        head: str = "flatten",
    ) -> None:
        super().__init__()
        _check_side("mnist_cnn", input_size, 6)
        _check_choice("mnist_cnn", "downsample", downsample, DOWNSAMPLES)
        _check_choice("mnist_cnn", "head", head, HEADS)
        side = output_size(output_size(input_size, 3), 3)  # two valid 3x3 convs
        side = output_size(side, 2, stride=2)  # then a 2x2 pool (or 2x2 stride-2 conv)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3),  # N x 32 x 26 x 26
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),  # N x 64 x 24 x 24
            nn.ReLU(),
            _downsample(64, downsample),  # N x 64 x 12 x 12
        )
        to_vector, features = _head_input(head, 64, side)
        self.classifier = nn.Sequential(
            *to_vector,  # N x 9216 (flatten) or N x 64 (gap)
            nn.Linear(features, 128),  # N x 128
            nn.ReLU(),
            nn.Linear(128, num_classes),  # N x num_classes
        )


@register_model("mnist_cnn", input_size=28, in_channels=1)
def mnist_cnn(
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 28,
    downsample: str = "pool",
    head: str = "flatten",
) -> MnistCNN:
    """The classic MNIST convnet: conv 32 3x3, conv 64 3x3, max pool 2, fc 128, fc 10 (ReLU).

    The layout of the Keras and PyTorch MNIST examples (both add dropout after the pool and the
    fc 128; this reference version leaves it out). On 28x28 input the flattened feature map has
    64 x 12 x 12 = 9,216 values, so the first fc layer holds 9,216 x 128 + 128 of the model's
    1,199,882 parameters.

    Two design lessons as options, each changing one thing (compare with ``cnnlab summary``):
    ``downsample="stride"`` replaces the 2x2 max pool by a learned 2x2 convolution with stride 2
    (64 -> 64 maps, plus a ReLU): the same 12x12 output, 16,448 more parameters.
    ``head="gap"`` replaces flatten by global average pooling: fc 128 then reads 64 channel
    means instead of 9,216 values (8,320 instead of 1,179,776 parameters in that layer). Here,
    after two 3x3 convolutions that see 5x5 pixels, a channel's mean no longer says where a
    stroke is, so the gap head learns far slower (23% against 93% on 3,000 MNIST images after
    2 epochs); it pays off in deep networks whose last maps see the whole image.
    """
    return MnistCNN(num_classes, in_channels, input_size, downsample, head)


class FashionMLP(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, input_size: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),  # N x 784
            nn.Linear(in_channels * input_size * input_size, 256),  # N x 256
            nn.ReLU(),
            nn.Dropout(0.25),
            nn.Linear(256, 128),  # N x 128
            nn.ReLU(),
            nn.Linear(128, num_classes),  # N x num_classes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register_model("fashion_mlp", input_size=28, in_channels=1)
def fashion_mlp(num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> FashionMLP:
    """A fully connected baseline: 784 - 256 - dropout 0.25 - 128 - 10, ReLU.

    The multilayer perceptron of the Fashion-MNIST tutorials, kept to compare against a CNN
    with the same data: no convolution, every pixel wired to every hidden unit.
    """
    return FashionMLP(num_classes, in_channels, input_size)


class FashionCNN(FeaturesClassifier):
    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        input_size: int,
        downsample: str = "pool",
        head: str = "flatten",
        course: bool = False,
    ) -> None:
        super().__init__()
        _check_side("fashion_cnn", input_size, 8)
        _check_choice("fashion_cnn", "downsample", downsample, DOWNSAMPLES)
        _check_choice("fashion_cnn", "head", head, HEADS)
        side = output_size(input_size, 3, padding=1)  # same conv
        side = output_size(output_size(side, 2, stride=2), 3)  # pool, valid conv
        side = output_size(side, 2, stride=2)  # pool
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),  # N x 32 x 28 x 28
            nn.BatchNorm2d(32),
            nn.ReLU(),
            _downsample(32, downsample),  # N x 32 x 14 x 14
            nn.Conv2d(32, 64, 3),  # N x 64 x 12 x 12
            nn.BatchNorm2d(64),
            nn.ReLU(),
            _downsample(64, downsample),  # N x 64 x 6 x 6
        )
        to_vector, features = _head_input(head, 64, side)
        between = [] if course else [nn.ReLU()]  # the course: no activation between the fcs
        self.classifier = nn.Sequential(
            *to_vector,  # N x 2304 (flatten) or N x 64 (gap)
            nn.Linear(features, 600),  # N x 600
            *between,
            nn.Dropout(0.25),
            nn.Linear(600, 120),  # N x 120
            *between,
            nn.Linear(120, num_classes),  # N x num_classes
        )


@register_model("fashion_cnn", input_size=28, in_channels=1)
def fashion_cnn(
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 28,
    downsample: str = "pool",
    head: str = "flatten",
    course: bool = False,
) -> FashionCNN:
    """The Fashion-MNIST tutorial CNN: two conv-BN-ReLU-pool blocks, fc 600 - 120 - 10.

    Block 1: conv 32 3x3 pad 1, batch norm, ReLU, max pool 2 (28 -> 14). Block 2: conv 64 3x3
    (no padding), batch norm, ReLU, max pool 2 (14 -> 12 -> 6). Then 64 x 6 x 6 = 2,304 features,
    fc 600, dropout 0.25, fc 120, fc 10.

    The course's version (and the widely copied Kaggle one) stacks the three fc layers with no
    activation between them; ``course=True`` builds exactly that. By default a ReLU follows
    fc 600 and fc 120, on purpose: without them the three layers compose into one linear map
    (``W3 W2 W1 x`` is a single 2,304 x 10 matrix), so the two hidden layers add parameters but
    no expressive power. The parameter count, 1,475,338, is the same either way.

    ``downsample="stride"`` replaces each max pool by a learned 2x2 stride-2 convolution with
    the same channels (and a ReLU; 4,128 + 16,448 more parameters); ``head="gap"`` replaces
    flatten by global average pooling (fc 600 reads 64 channel means instead of 2,304 values).
    """
    return FashionCNN(num_classes, in_channels, input_size, downsample, head, course)
