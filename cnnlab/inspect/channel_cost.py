"""What grayscale saves: the multiply-adds of a model's first convolution and of the whole model
with 3 input channels (RGB) against 1 (gray), on the same image size (``cnnlab train
--image-channels 1``). Only the first convolution sees the channels, so only it gets cheaper:
its multiply-adds scale with the input channels (``H' W' x K K C_in x C_out``), the rest of the
network is unchanged. The counts are cnnlab's own (:func:`cnnlab.inspect.summary.summary`,
built on :mod:`cnnlab.arithmetic`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .summary import summary
from .table import fmt

# the side of each built-in data set's images, for the cost shown before any data is read;
# an image folder's side is only known once it is read (give --image-size)
NATIVE_SIDES = {"mnist": 28, "fashion-mnist": 28, "cifar10": 32, "digits": 8}


@dataclass
class ChannelCost:
    """Counts per input channel count (``{3: ..., 1: ...}``) for one model and image side."""

    model: str
    size: int
    first_conv: str  # the layer's name, e.g. "conv1" or "features.0"
    first_macs: dict[int, int]
    first_params: dict[int, int]
    model_macs: dict[int, int]

    def saving(self, rgb: int = 3, gray: int = 1) -> tuple[int, int]:
        """Multiply-adds saved per image (first conv, whole model) by ``gray`` channels."""
        return (
            self.first_macs[rgb] - self.first_macs[gray],
            self.model_macs[rgb] - self.model_macs[gray],
        )

    def lines(self, rgb: int = 3, gray: int = 1) -> list[str]:
        first, whole = self.saving(rgb, gray)
        share = whole / self.model_macs[rgb] if self.model_macs[rgb] else 0.0
        return [
            f"cost of the input channels ({self.model}, {self.size}x{self.size} images, "
            "multiply-adds per image):",
            f"  first convolution {self.first_conv}: {fmt(self.first_macs[rgb])} with {rgb} "
            f"channels, {fmt(self.first_macs[gray])} with {gray} "
            f"(saves {fmt(first)}, {first / self.first_macs[rgb]:.0%}; its weights "
            f"{fmt(self.first_params[rgb])} -> {fmt(self.first_params[gray])})",
            f"  whole model: {fmt(self.model_macs[rgb])} with {rgb} channels, "
            f"{fmt(self.model_macs[gray])} with {gray} (saves {fmt(whole)}, {share:.1%})",
            "  only the first convolution reads the channels; every later layer costs the same",
        ]


def channel_cost(
    model: str,
    size: int,
    num_classes: int | None = None,
    options: Mapping[str, Any] | None = None,
    channels: tuple[int, ...] = (3, 1),
) -> ChannelCost:
    """Build ``model`` once per channel count (weights are not needed: the summary runs on
    PyTorch's meta device) and count its first convolution's and its total multiply-adds."""
    from ..models import create_model

    first_macs, first_params, model_macs = {}, {}, {}
    first_name = "?"
    for count in channels:
        built = create_model(
            model, num_classes=num_classes, in_channels=count, input_size=size, **(options or {})
        )
        report = summary(built, (count, size, size), model)
        convs = [row for row in report.rows if row.kind.startswith("Conv")]
        first = convs[0] if convs else report.rows[0]
        first_name = first.name
        first_macs[count], first_params[count] = first.macs, first.params
        model_macs[count] = report.macs
    return ChannelCost(model, size, first_name, first_macs, first_params, model_macs)


def training_cost_lines(config: Any) -> list[str]:
    """The lines ``cnnlab train --image-channels`` prints before training: what the chosen
    channel count costs against the other one, for the config's model, options and image side
    (``config.image_size``, else the data set's own side). Empty when no channel count is
    chosen; a note when the side is not known before the data is read."""
    if config.image_channels is None:
        return []
    size = config.image_size or NATIVE_SIDES.get(config.dataset)
    if size is None:
        return [
            f"note: the cost of {config.image_channels} channel(s) is shown when the image side "
            f"is known before reading {config.dataset}: give --image-size N"
        ]
    classes = len(config.classes) if getattr(config, "classes", None) else None
    cost = channel_cost(config.model, size, classes, config.model_options)
    lines = cost.lines()
    _, whole = cost.saving()
    if config.image_channels == 1:
        lines.append(f"  training on gray images saves {fmt(whole)} multiply-adds per image")
    else:
        lines.append(f"  training on RGB images costs {fmt(whole)} more multiply-adds per image")
    return lines
