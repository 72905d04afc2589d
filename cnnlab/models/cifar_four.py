"""The four-layer CIFAR-10 network of AlexNet's Figure 1 (Krizhevsky et al. 2012), built to
compare activations: three 5x5 convolutions and one dense layer, with ReLU or tanh units.

The paper says only "a four-layer convolutional neural network"; its authors' cuda-convnet
ships this design for CIFAR-10 (the ``layers-80sec`` configuration): conv 32 -> max pool 3/2 ->
conv 32 -> average pool 3/2 -> conv 64 -> average pool 3/2 -> dense 10. cnnlab drops that
configuration's local response normalization (the figure compares activations, not
normalizations) and pads the pools by one, so 32 -> 16 -> 8 -> 4 exactly.
"""

from __future__ import annotations

from torch import nn

from ..arithmetic import output_size
from ..errors import CnnlabError
from ._base import FeaturesClassifier
from ._registry import register_model

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
WIDTHS = (32, 32, 64)


class FourLayerNet(FeaturesClassifier):
    """conv5-``act``-maxpool, conv5-``act``-avgpool, conv5-``act``-avgpool, dense."""

    def __init__(self, num_classes: int, in_channels: int, input_size: int, activation: str):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise CnnlabError(
                f"activation={activation!r}: expected one of {', '.join(ACTIVATIONS)} "
                "(-O activation=relu or -O activation=tanh)"
            )
        unit = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        channels, side = in_channels, input_size
        pools = (nn.MaxPool2d(3, 2, padding=1),) + tuple(
            nn.AvgPool2d(3, 2, padding=1, count_include_pad=False) for _ in range(2)
        )
        for width, pool in zip(WIDTHS, pools):
            layers += [nn.Conv2d(channels, width, 5, padding=2), unit(), pool]
            channels = width
            side = output_size(output_size(side, 5, padding=2), 3, stride=2, padding=1)
        if side < 1:
            raise CnnlabError(f"input_size={input_size}: cifar_four needs images of at least 1x1")
        self.features = nn.Sequential(*layers)
        features = channels * side * side  # 64 x 4 x 4 = 1,024 at 32x32
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes))


@register_model("cifar_four", input_size=32, in_channels=3)
def cifar_four(
    num_classes: int = 10, in_channels: int = 3, input_size: int = 32, activation: str = "relu"
) -> FourLayerNet:
    """AlexNet's Figure-1 network: three 5x5 convolutions (32, 32, 64) and a dense layer.

    ``activation`` is ``relu`` (default) or ``tanh``; everything else, including the 89,578
    parameters at 32x32, is the same, so ``cnnlab reproduce --only e2-relu-vs-tanh`` compares
    the units alone: the paper's network reached 25% training error about six times faster
    with ReLU.
    """
    return FourLayerNet(num_classes, in_channels, input_size, activation)
