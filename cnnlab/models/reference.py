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


class MnistCNN(FeaturesClassifier):
    def __init__(self, num_classes: int, in_channels: int, input_size: int) -> None:
        super().__init__()
        _check_side("mnist_cnn", input_size, 6)
        side = output_size(output_size(input_size, 3), 3)  # two valid 3x3 convs
        side = output_size(side, 2, stride=2)  # then a 2x2 pool
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3),  # N x 32 x 26 x 26
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),  # N x 64 x 24 x 24
            nn.ReLU(),
            nn.MaxPool2d(2),  # N x 64 x 12 x 12
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # N x 9216
            nn.Linear(64 * side * side, 128),  # N x 128
            nn.ReLU(),
            nn.Linear(128, num_classes),  # N x num_classes
        )


@register_model("mnist_cnn", input_size=28, in_channels=1)
def mnist_cnn(num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> MnistCNN:
    """The classic MNIST convnet: conv 32 3x3, conv 64 3x3, max pool 2, fc 128, fc 10 (ReLU).

    The layout of the Keras and PyTorch MNIST examples (both add dropout after the pool and the
    fc 128; this reference version leaves it out). On 28x28 input the flattened feature map has
    64 x 12 x 12 = 9,216 values, so the first fc layer holds 9,216 x 128 + 128 of the model's
    1,199,882 parameters.
    """
    return MnistCNN(num_classes, in_channels, input_size)


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
    def __init__(self, num_classes: int, in_channels: int, input_size: int) -> None:
        super().__init__()
        _check_side("fashion_cnn", input_size, 8)
        side = output_size(input_size, 3, padding=1)  # same conv
        side = output_size(output_size(side, 2, stride=2), 3)  # pool, valid conv
        side = output_size(side, 2, stride=2)  # pool
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),  # N x 32 x 28 x 28
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),  # N x 32 x 14 x 14
            nn.Conv2d(32, 64, 3),  # N x 64 x 12 x 12
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),  # N x 64 x 6 x 6
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # N x 2304
            nn.Linear(64 * side * side, 600),  # N x 600
            nn.ReLU(),
            nn.Dropout(0.25),
            nn.Linear(600, 120),  # N x 120
            nn.ReLU(),
            nn.Linear(120, num_classes),  # N x num_classes
        )


@register_model("fashion_cnn", input_size=28, in_channels=1)
def fashion_cnn(num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> FashionCNN:
    """The Fashion-MNIST tutorial CNN: two conv-BN-ReLU-pool blocks, fc 600 - 120 - 10.

    Block 1: conv 32 3x3 pad 1, batch norm, ReLU, max pool 2 (28 -> 14). Block 2: conv 64 3x3
    (no padding), batch norm, ReLU, max pool 2 (14 -> 12 -> 6). Then 64 x 6 x 6 = 2,304 features,
    fc 600, dropout 0.25, fc 120, fc 10. The widely copied Kaggle version stacks the three fc
    layers with no activation between them, which collapses them into one linear map; this one
    puts a ReLU after fc 600 and fc 120 (the parameter count, 1,475,338, is the same).
    """
    return FashionCNN(num_classes, in_channels, input_size)
