"""torchvision's VGG, GoogLeNet and ResNet under cnnlab names, for any channel and class count,
with small-image variants, and ImageNet weights on request (from the torch cache, else
downloaded; offline, one line and nothing left behind) with the preprocessing they expect.

cnnlab does not copy torchvision's code: it builds torchvision's models and changes only what
a different input needs — the first convolution for 1-channel images, the stem for 32x32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CnnlabError, first_line
from ..outputs import progress_bars_shown
from ._registry import register_model


def _models():
    """``torchvision.models``, imported on first use: importing torchvision takes seconds and
    most cnnlab commands never build one of these models."""
    import torchvision.models

    return torchvision.models


def weights_file(name: str) -> tuple[Any, Path]:
    """The torchvision weights enum of ``name`` and where torch keeps its file."""
    weights = _models().get_model_weights(name).DEFAULT
    return weights, Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


@dataclass(frozen=True)
class ImageNetInput:
    """How a torchvision classifier's ImageNet weights read an image (their own
    ``transforms()``): shorter side resized to ``resize``, the central ``crop`` x ``crop``
    patch, scaled to 0..1 and normalized with ``mean`` and ``std``."""

    weights: Any  # the torchvision weights enum (its url, meta["categories"])
    mean: list[float]
    std: list[float]
    resize: int
    crop: int


def imagenet_input(name: str) -> ImageNetInput:
    """The ImageNet preprocessing of torchvision's model ``name``, from its weights' meta."""
    weights = _models().get_model_weights(name).DEFAULT
    transform = weights.transforms()
    if type(transform).__name__ != "ImageClassification":  # video, detection, ...
        raise CnnlabError(
            f"torchvision:{name} is not an image classifier; pick one of "
            "torchvision.models.list_models(torchvision.models), e.g. torchvision:resnet18"
        )
    return ImageNetInput(
        weights,
        [float(m) for m in transform.mean],
        [float(s) for s in transform.std],
        int(transform.resize_size[0]),
        int(transform.crop_size[0]),
    )


def declare_imagenet_input(model: nn.Module, name: str) -> nn.Module:
    """``model`` declaring (``cnnlab_input``) how torchvision's ImageNet weights of ``name``
    read an image; a model that is not an image classifier (video, detection) declares
    nothing."""
    try:
        imagenet = imagenet_input(name)
    except CnnlabError:
        return model
    model.cnnlab_input = {
        "mean": imagenet.mean,
        "std": imagenet.std,
        "size": imagenet.crop,
        "resize": imagenet.resize,
    }
    return model


def download(weights: Any) -> dict[str, torch.Tensor]:
    """torchvision's download into the torch cache (the only network access in cnnlab); the
    progress bar only on a terminal."""
    return weights.get_state_dict(progress=progress_bars_shown(True))


def _downloaded(name: str, weights: Any, path: Path, instead: str = "") -> dict[str, Any]:
    """``download``, and when it fails, the folders and file it made removed again (never
    one that was there before) and one line that says where to put the file by hand (or
    what to do ``instead``)."""
    created = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    try:
        return download(weights)
    except BaseException as error:
        if path.is_file():  # written but unreadable: not left to fail every later run
            path.unlink()
        for folder in created:  # deepest first; a folder someone else filled meanwhile stays
            try:
                folder.rmdir()
            except OSError:
                break
        if not isinstance(error, Exception):  # Ctrl-C: cleaned up, still an interrupt
            raise
        first = first_line(error, limit=200)
        raise CnnlabError(
            f"torchvision:{name}: cannot download its ImageNet weights ({type(error).__name__}:"
            f" {first}); fetch {weights.url} on a machine with internet access and put the "
            f"file at {path}" + (f", or {instead}" if instead else "")
        ) from None


def _cached_state(name: str, path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, not a checkpoint, ...
        raise CnnlabError(
            f"{path}: the cached ImageNet weights of {name} do not load "
            f"({type(error).__name__}); delete the file and run again to download it anew"
        ) from None


def pretrained_state(name: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``name``: from the torch cache when the file is
    there, else downloaded; offline without the file, an error that says where to put it."""
    weights, path = weights_file(name)
    return _cached_state(name, path) if path.is_file() else _downloaded(name, weights, path)


def pretrained_model(name: str, instead: str = "") -> nn.Module:
    """torchvision's model ``name`` with its ImageNet weights, built by torchvision itself (the
    options it sets for them, 1,000 classes); the file from the torch cache or downloaded
    (offline: an error that says where to put the file, or what to do ``instead``)."""
    weights, path = weights_file(name)
    if not path.is_file():
        _downloaded(name, weights, path, instead)
    try:
        model = _models().get_model(name, weights=weights)  # reads the file from the cache
        return declare_imagenet_input(model, name)
    except Exception as error:  # truncated, not a checkpoint, another model's weights
        raise CnnlabError(
            f"{path}: the cached ImageNet weights of {name} do not load "
            f"({type(error).__name__}); delete the file and run again to download it anew"
        ) from None


def _replace_first_conv(conv: nn.Conv2d, in_channels: int, pretrained: bool) -> nn.Conv2d:
    """A first convolution for ``in_channels``; with pretrained RGB filters, a gray input
    gets each filter's channel sum (the response of an RGB filter to a gray image)."""
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        bias=conv.bias is not None,
    )
    if pretrained and in_channels == 1:
        with torch.no_grad():
            new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    return new


def _build(name: str, num_classes: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    if not pretrained:
        return _models().get_model(name, weights=None, num_classes=num_classes, **kwargs)
    model = _models().get_model(name, weights=None, **kwargs)
    model.load_state_dict(pretrained_state(name))
    if num_classes != 1000:
        if hasattr(model, "fc"):
            model.fc = nn.Linear(model.fc.in_features, num_classes)
        else:
            last = model.classifier[-1]
            model.classifier[-1] = nn.Linear(last.in_features, num_classes)
    return model


def _first_conv_path(model: nn.Module) -> tuple[nn.Module, str]:
    if isinstance(model, _models().ResNet):
        return model, "conv1"
    if isinstance(model, _models().VGG):
        return model.features, "0"
    return model.conv1, "conv"  # GoogLeNet's BasicConv2d


def _adapt_channels(model: nn.Module, in_channels: int, pretrained: bool) -> nn.Module:
    if in_channels != 3:
        parent, attr = _first_conv_path(model)
        setattr(parent, attr, _replace_first_conv(getattr(parent, attr), in_channels, pretrained))
    return model


def _check_size(name: str, input_size: int, minimum: int) -> None:
    if input_size < minimum:
        raise CnnlabError(
            f"{name} needs images of at least {minimum}x{minimum}, got {input_size}x{input_size};"
            f" pick a model made for small images (cnnlab models '*_cifar')"
        )


def _register_imagenet(name: str, minimum: int, doc: str, **fixed: Any) -> None:
    def builder(
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int = 224,
        pretrained: bool = False,
    ) -> nn.Module:
        _check_size(name, input_size, minimum)
        options = dict(fixed)  # never change the registered defaults
        if name == "googlenet":
            options.setdefault("init_weights", not pretrained)
            if pretrained:  # as torchvision does for its ImageNet weights
                options.update(aux_logits=False, transform_input=True)
        model = _build(name, num_classes, pretrained, **options)
        return _adapt_channels(model, in_channels, pretrained)

    builder.__doc__ = doc
    builder.__name__ = name
    register_model(name, input_size=224, in_channels=3)(builder)


for _name in ("vgg11", "vgg11_bn", "vgg16", "vgg16_bn"):
    _register_imagenet(
        _name,
        32,
        f"""torchvision's {_name.upper().replace("_BN", " with batch norm")}
    (Simonyan & Zisserman 2014), configuration {"A" if "11" in _name else "D"}: 3x3
    convolutions in five stages, each ending in a 2x2 max pool, then fc 4096-4096-classes.
    ``pretrained=True`` loads torchvision's ImageNet weights.""",
    )
for _name, _depth in (("resnet18", 18), ("resnet34", 34), ("resnet50", 50)):
    _register_imagenet(
        _name,
        32,
        f"""torchvision's ResNet-{_depth} (He et al. 2015): a 7x7/2
    stem and 3x3/2 max pool, four stages of {"basic" if _depth < 50 else "bottleneck"} residual
    blocks, global average pooling, fc. ``pretrained=True`` loads torchvision's ImageNet
    weights.""",
    )
_register_imagenet(
    "googlenet",
    32,
    """torchvision's GoogLeNet: the batch-norm variant of
    Inception v1 with 3x3 convolutions where the paper has 5x5 (see ``googlenet_v1`` for the
    paper's network). No auxiliary classifiers; ``pretrained=True`` loads ImageNet weights.""",
    aux_logits=False,
)


# ------------------------------------------------------------------ variants for small images


def _resnet_cifar(name: str, num_classes: int, in_channels: int) -> nn.Module:
    model = _models().get_model(name, weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def _resnet_cifar_builder(base: str):
    def builder(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
        _check_size(f"{base}_cifar", input_size, 8)
        return _resnet_cifar(base, num_classes, in_channels)

    builder.__doc__ = f"""{base} for 32x32 images (the CIFAR ResNet stem of He et al.'s
    Section 4.2 practice): the 7x7/2 convolution becomes 3x3/1 and the max pool is removed, so
    the four stages see 32, 16, 8 and 4 pixels instead of 8, 4, 2 and 1."""
    builder.__name__ = f"{base}_cifar"
    return builder


for _name in ("resnet18", "resnet34", "resnet50"):
    register_model(f"{_name}_cifar", input_size=32, in_channels=3)(_resnet_cifar_builder(_name))


def _vgg_cifar(name: str, num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    _check_size(f"{name}_cifar", input_size, 32)
    model = _models().get_model(name, weights=None)
    model = _adapt_channels(model, in_channels, False)
    model.avgpool = nn.Identity()  # five pools take 32x32 to 1x1: 512 features
    side = input_size // 32
    model.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(512 * side * side, num_classes))
    return model


def _vgg_cifar_builder(base: str):
    def builder(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
        return _vgg_cifar(base, num_classes, in_channels, input_size)

    builder.__doc__ = f"""{base} for 32x32 images: torchvision's convolutional part unchanged
    (five pools take 32x32 to 1x1x512), the three ImageNet fc layers replaced by one (dropout
    0.5, 512 -> classes), as in the usual CIFAR-10 VGG."""
    builder.__name__ = f"{base}_cifar"
    return builder


for _name in ("vgg11_bn", "vgg16_bn"):
    register_model(f"{_name}_cifar", input_size=32, in_channels=3)(_vgg_cifar_builder(_name))
