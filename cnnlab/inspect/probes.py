"""Probing a trained model with changed inputs: which test images excite each channel of a
layer most (Zeiler & Fergus), how predictions hold up under noise, shifts, rotation and
elastic distortion (LeNet's demo), and how far a shift of the input shifts the feature maps
(translation equivariance) before pooling breaks it. Figures in :mod:`.lesson_plots`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms.v2 import functional as TF

from ..errors import CnnlabError
from ..models.binary import class_probabilities
from .hooks import capture, evaluating, forward_hooks, resolve_layer

ToInput = Callable[[torch.Tensor], torch.Tensor]  # uint8 images -> the model's input


# ------------------------------------------------------------------------- top activations


@dataclass
class TopActivation:
    channel: int
    index: int  # position in the image set
    value: float  # the channel's largest activation over the image
    box: tuple[int, int, int, int]  # (top, left, bottom, right) input pixels behind it


@torch.no_grad()
def _layer_outputs(model, images, preprocess, layer, batch_size):
    outputs = []
    with evaluating(model), capture(model, [layer]) as record:
        for start in range(0, len(images), batch_size):
            model(preprocess(images[start : start + batch_size]))
            outputs.append(record["outputs"][layer])
    return torch.cat(outputs)


def receptive_box(
    model: nn.Module, image: torch.Tensor, layer: str, channel: int, y: int, x: int
) -> tuple[int, int, int, int]:
    """The input pixels that activation ``(channel, y, x)`` of ``layer`` depends on, found by
    autograd (the nonzero gradient of that one value), as ``(top, left, bottom, right)``,
    bottom and right exclusive."""
    x_in = image[None].clone().requires_grad_(True)
    kept: dict[str, torch.Tensor] = {}  # capture() detaches; this hook keeps the graph
    keep = (resolve_layer(model, layer), lambda m, args, output: kept.setdefault("out", output))
    with forward_hooks([keep]), evaluating(model), torch.enable_grad():
        model(x_in)
    (grad,) = torch.autograd.grad(kept["out"][0, channel, y, x], x_in)
    nonzero = grad[0].abs().sum(0).nonzero()
    if len(nonzero) == 0:  # a dead unit: every input pixel could be behind it
        return (0, 0, image.shape[-2], image.shape[-1])
    (top, left), (bottom, right) = nonzero.min(0).values, nonzero.max(0).values
    return (int(top), int(left), int(bottom) + 1, int(right) + 1)


def top_activations(
    model: nn.Module,
    images: torch.Tensor,
    preprocess: ToInput,
    layer: str,
    per_channel: int = 4,
    max_channels: int = 16,
    batch_size: int = 250,
) -> list[list[TopActivation]]:
    """For each of the first ``max_channels`` channels of ``layer``: the ``per_channel``
    images (of ``images``, uint8 ``N x C x H x W``) whose strongest activation in that channel
    is largest, with the input box under that activation's receptive field."""
    if per_channel < 1:
        raise CnnlabError(f"--per-channel {per_channel}: expected at least 1 image per channel")
    resolve_layer(model, layer)
    outputs = _layer_outputs(model, images, preprocess, layer, batch_size)
    if outputs.ndim != 4:
        raise CnnlabError(
            f"layer {layer!r} gives {tuple(outputs.shape[1:])} per image, not C x H x W maps; "
            "name a convolution, activation or pooling layer (see `cnnlab summary`)"
        )
    count, channels = outputs.shape[:2]
    flat = outputs[:, :max_channels].flatten(2)  # N x C x HW
    best, where = flat.max(dim=2)  # N x C
    top = best.topk(min(per_channel, count), dim=0)  # K x C
    width = outputs.shape[-1]
    result = []
    for channel in range(min(channels, max_channels)):
        row = []
        for value, index in zip(top.values[:, channel], top.indices[:, channel]):
            spot = int(where[index, channel])
            x_in = preprocess(images[int(index) : int(index) + 1])[0]
            box = receptive_box(model, x_in, layer, channel, spot // width, spot % width)
            row.append(TopActivation(channel, int(index), float(value), box))
        result.append(row)
    return result


# ----------------------------------------------------------------------------- robustness

PERTURBATIONS = ("noise", "shift", "rotation", "elastic")
DEFAULT_LEVELS = {
    "noise": [0, 16, 32, 64, 96, 128],  # standard deviation of Gaussian noise, in 0..255 units
    "shift": [0, 2, 4, 6, 8, 10],  # pixels right and down
    "rotation": [0, 10, 20, 30, 45, 60],  # degrees counter-clockwise
    "elastic": [0, 1, 2, 3, 4, 6],  # displacement strength, in pixels
}
UNITS = {
    "noise": "noise std (0..255)",
    "shift": "pixels",
    "rotation": "degrees",
    "elastic": "displacement (pixels)",
}


def perturb(image: torch.Tensor, kind: str, level: float, seed: int = 0) -> torch.Tensor:
    """uint8 ``C x H x W`` image changed by ``kind`` at ``level`` (see :data:`UNITS`);
    level 0 gives the image back unchanged. Shifts and rotations fill with black."""
    if level == 0:
        return image.clone()
    generator = torch.Generator().manual_seed(seed)
    x = image.float()
    if kind == "noise":
        x = x + level * torch.randn(x.shape, generator=generator)
    elif kind == "shift":
        x = TF.affine(x, angle=0.0, translate=[int(level), int(level)], scale=1.0, shear=[0.0])
    elif kind == "rotation":
        x = TF.rotate(x, float(level), interpolation=TF.InterpolationMode.BILINEAR)
    elif kind == "elastic":
        # Simard et al. 2003: a random displacement field, smoothed by a Gaussian (sigma 4 on
        # their 28 x 28 digits; scaled down with smaller images, e.g. 8 x 8 digits)
        height, width = x.shape[-2:]
        field = torch.rand(1, 2, height, width, generator=generator) * 2 - 1
        sigma = 4.0 * min(1.0, min(height, width) / 28)
        size = 2 * round(2 * sigma) + 1  # +-2 sigma; 17 taps at sigma 4
        g = torch.exp(-((torch.arange(size) - size // 2) ** 2) / (2 * sigma**2))
        g = g / g.sum()
        field = F.conv2d(
            F.pad(field, (size // 2,) * 4, mode="reflect"),
            (g[:, None] * g[None, :]).expand(2, 1, size, size),
            groups=2,
        )
        field = field / field.abs().amax().clamp_min(1e-12) * level  # at most `level` pixels
        offsets = field.permute(0, 2, 3, 1) / torch.tensor([width / 2, height / 2])
        base = F.affine_grid(torch.eye(2, 3)[None], [1, 1, height, width], align_corners=False)
        x = F.grid_sample(x[None], base + offsets, align_corners=False)[0]
    else:
        raise CnnlabError(f"perturbation {kind!r}: expected one of {', '.join(PERTURBATIONS)}")
    return x.round().clamp(0, 255).to(torch.uint8)


@dataclass
class RobustnessStep:
    kind: str
    level: float
    image: torch.Tensor  # uint8 C x H x W
    predicted: int
    confidence: float  # probability of the predicted class
    reference: float  # probability of the class predicted for the unchanged image


@torch.no_grad()
def robustness(
    model: nn.Module,
    preprocess: ToInput,
    image: torch.Tensor,
    levels: dict[str, list[float]] | None = None,
    seed: int = 0,
) -> list[RobustnessStep]:
    """The prediction for ``image`` (uint8 ``C x H x W``) under each perturbation at each
    level, in steps."""
    levels = levels or DEFAULT_LEVELS
    steps = []
    with evaluating(model):
        original = int(class_probabilities(model(preprocess(image[None])))[0].argmax())
        for kind, kind_levels in levels.items():
            for level in kind_levels:
                changed = perturb(image, kind, level, seed)
                p = class_probabilities(model(preprocess(changed[None])))[0]
                steps.append(
                    RobustnessStep(
                        kind, level, changed, int(p.argmax()), float(p.max()), float(p[original])
                    )
                )
    return steps


# ------------------------------------------------------------------------------ translation


@dataclass
class LayerShift:
    """How layer ``name``'s maps follow an input shift: ``cells`` is the whole-cell shift that
    matches them best and ``error`` the relative difference left there (0 = they shifted
    exactly; the map is equivariant)."""

    name: str
    shape: tuple[int, ...]
    cells: int
    error: float


def shift_image(image: torch.Tensor, pixels: int) -> torch.Tensor:
    """``C x H x W`` moved ``pixels`` to the right, the left columns filled with 0 (black)."""
    shifted = torch.zeros_like(image)
    shifted[..., pixels:] = image[..., : image.shape[-1] - pixels]
    return shifted


def _shift_error(before: torch.Tensor, after: torch.Tensor, cells: int) -> float:
    # compare column j of `before` with column j + cells of `after`, away from the border
    # (an eighth of the width each side), where zero padding differs from the image
    width = before.shape[-1]
    trim = width // 8
    if cells >= width - 2 * trim:  # a shift past the compared columns: nothing to compare
        return float("nan")
    a = before[..., trim : width - cells - trim]
    b = after[..., trim + cells : width - trim]
    rows = before.shape[-2]
    a, b = a[..., rows // 8 : rows - rows // 8, :], b[..., rows // 8 : rows - rows // 8, :]
    if a.numel() == 0:
        return float("nan")
    return float((a - b).norm() / (b.norm() + a.norm() + 1e-12) * 2)


@torch.no_grad()
def translation(
    model: nn.Module, preprocess: ToInput, image: torch.Tensor, pixels: int
) -> tuple[list[LayerShift], torch.Tensor, torch.Tensor]:
    """Shift ``image`` (uint8 ``C x H x W``) ``pixels`` to the right and compare every layer's
    maps: for each, the whole-cell shift (0 .. ``pixels``) that explains the change best and
    the relative error left. Returns the layers and the class probabilities before and after.
    """
    if not 0 < pixels < image.shape[-1]:
        raise CnnlabError(f"--shift {pixels}: expected 1 .. {image.shape[-1] - 1} pixels")
    with evaluating(model), capture(model) as record:
        before_p = class_probabilities(model(preprocess(image[None])))[0]
        before = dict(record["outputs"])
        after_p = class_probabilities(model(preprocess(shift_image(image, pixels)[None])))[0]
        after = dict(record["outputs"])
    layers = []
    for name, out in before.items():
        if out.ndim != 4:
            continue
        errors = [(_shift_error(out[0], after[name][0], c), c) for c in range(pixels + 1)]
        errors = [(e, c) for e, c in errors if e == e]  # drop NaN (nothing left to compare)
        if errors:
            error, cells = min(errors)
            layers.append(LayerShift(name, tuple(out.shape[1:]), cells, error))
    return layers, before_p, after_p
