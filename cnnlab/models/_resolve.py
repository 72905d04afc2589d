"""A model from a text that names one: a cnnlab model name, ``torchvision:NAME`` or
``package.module:callable``. Run folders are resolved one floor up, by
:func:`cnnlab.runs.sources.resolve_model_or_run`.

``torchvision:NAME`` has one meaning everywhere: ``torchvision.models.get_model(NAME)``, any
model in ``torchvision.models.list_models()``. With ``pretrained=True`` (transfer learning)
it carries torchvision's ImageNet weights and is built through cnnlab's registered wrapper of
the same name, so that a run trained from it can be rebuilt from its checkpoint.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CnnlabError, first_line
from ._registry import create_model, get_model_entry, list_models
from .tv_models import declare_imagenet_input

TORCHVISION = "torchvision:"


@dataclass
class ResolvedModel:
    """A model, a label that names it (and the class count used), and the input it was made
    for (``"3x224x224"``; None for a user's ``module:callable``)."""

    model: nn.Module
    label: str
    made_for: str | None


def names_a_model(text: str) -> bool:
    """Whether ``text`` names a model rather than a run folder: a registered name,
    ``torchvision:NAME``, or ``module:callable`` that is not an existing path."""
    return (
        text in list_models()
        or text.startswith(TORCHVISION)
        or (":" in text and not Path(text).exists())
    )


def check_num_classes(num_classes: int | None) -> None:
    if num_classes is not None and num_classes < 1:
        raise CnnlabError(f"--num-classes {num_classes}: expected a positive number, e.g. 10")


def check_image_input(what: str, shape: tuple[int, ...] | None, made_for: str) -> None:
    """cnnlab's models and runs take 2-D images: C x H x W."""
    if shape is not None and len(shape) != 3:
        raise CnnlabError(
            f"--input {'x'.join(map(str, shape))}: {what} takes images as C x H x W (channels, "
            f"height, width; no batch axis), e.g. --input {made_for}"
        )


def check_run_input(
    text: str,
    input_shape: str | None,
    shape: tuple[int, ...] | None,
    num_classes: int | None,
    in_channels: int,
    input_size: int,
    classes: int,
) -> str:
    """Check ``--input`` (as given and as parsed: ``shape``) and ``--num-classes`` against run
    ``text``'s trained model (for ``in_channels`` x ``input_size`` images and ``classes``
    outputs); returns the input it was made for."""
    made_for = f"{in_channels}x{input_size}x{input_size}"
    check_image_input(f"run {text}", shape, made_for)
    if num_classes is not None and num_classes != classes:
        raise CnnlabError(
            f"--num-classes {num_classes}: run {text} has {classes} classes, fixed by its "
            "training; leave --num-classes out"
        )
    if shape and shape[0] != in_channels:
        raise CnnlabError(
            f"--input {input_shape}: run {text} was trained on {made_for} images "
            f"({in_channels} channel(s), not {shape[0]}); give --input {made_for} or "
            "leave --input out"
        )
    return made_for


def resolve_model(
    text: str,
    shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    options: dict[str, Any] | None = None,
    pretrained: bool = False,
    materialize: bool = False,
) -> ResolvedModel:
    """The model ``text`` names (see :func:`names_a_model`), for inputs of ``shape`` (C x H x W,
    no batch axis; the design's own when None) and ``num_classes`` outputs (the design's own
    when None). Without ``pretrained``, registry and torchvision models are built on the meta
    device (shapes only: no memory for the weights), or with ``materialize`` on the CPU with
    their random initial weights (seed torch's generator first for a repeatable model)."""
    options = dict(options or {})
    check_num_classes(num_classes)
    if pretrained:
        if not text.startswith(TORCHVISION):
            raise CnnlabError(f"{text}: pretrained weights come from torchvision:NAME")
        model = create_model(text[len(TORCHVISION) :], num_classes=1000, pretrained=True)
        return ResolvedModel(model, f"{text} (1000 classes)", "3x224x224")
    if text in list_models():
        return _registered(text, shape, num_classes, options, materialize)
    if text.startswith(TORCHVISION):
        return _torchvision(text, num_classes, options, materialize)
    if ":" in text:
        return _user_model(text, shape, options)
    raise CnnlabError(
        f"{text!r}: expected a cnnlab model name, torchvision:NAME or module:callable"
    )


def _registered(
    text: str,
    shape: tuple[int, ...] | None,
    num_classes: int | None,
    options: dict[str, Any],
    materialize: bool = False,
) -> ResolvedModel:
    entry = get_model_entry(text)
    made_for = f"{entry.default_in_channels}x{entry.default_input_size}x" + str(
        entry.default_input_size
    )
    check_image_input(text, shape, made_for)
    channels = shape[0] if shape else entry.default_in_channels
    size = shape[1] if shape else entry.default_input_size
    for key in ("in_channels", "input_size"):
        if key in options:
            raise CnnlabError(f"-O {key}: give the input shape with --input, e.g. {made_for}")
    classes = num_classes or options.pop("num_classes", None) or entry.default_num_classes
    with torch.device("cpu" if materialize else "meta"):
        model = create_model(
            text, num_classes=classes, in_channels=channels, input_size=size, **options
        )
    return ResolvedModel(model, f"{text} ({classes} classes)", made_for)


def _torchvision(
    text: str, num_classes: int | None, options: dict[str, Any], materialize: bool = False
) -> ResolvedModel:
    import torchvision

    name = text.split(":", 1)[1]
    if name not in torchvision.models.list_models():
        raise CnnlabError(
            f"torchvision has no model {name!r}; see torchvision.models.list_models()"
        )
    kwargs = dict(options)
    if num_classes:
        kwargs["num_classes"] = num_classes
    if name.startswith(("googlenet", "inception")):
        kwargs.setdefault("init_weights", False)
    try:
        with torch.device("cpu" if materialize else "meta"):
            model = torchvision.models.get_model(name, weights=None, **kwargs)
    except NotImplementedError:  # a builder that reads tensor values (RegNet's widths)
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    except TypeError as error:
        raise CnnlabError(f"{text} -O {' -O '.join(options)}: {error}") from None
    declare_imagenet_input(model, name)
    classes = kwargs.get("num_classes", 1000)
    video = torchvision.models.list_models(torchvision.models.video)
    made_for = "3x16x112x112" if name in video else "3x224x224"
    return ResolvedModel(model, f"{text} ({classes} classes)", made_for)


def _user_model(text: str, shape: tuple[int, ...] | None, options: dict[str, Any]) -> ResolvedModel:
    module_name, _, attr = text.partition(":")
    if not shape:
        raise CnnlabError(f"{text}: give --input, e.g. --input 3x32x32")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise CnnlabError(f"cannot import {text}: {error}") from None
    if isinstance(factory, nn.Module):
        model = factory
    elif callable(factory):
        try:
            model = factory(**options)
        except Exception as error:  # the user's own code: its first line, not a traceback
            first = first_line(error, limit=200)
            raise CnnlabError(
                f"{text}({', '.join(f'{k}={v!r}' for k, v in options.items())}) failed: "
                f"{type(error).__name__}: {first}"
            ) from None
    else:
        model = factory
    if not isinstance(model, nn.Module):
        raise CnnlabError(
            f"{text} gave {type(model).__name__} {str(model)[:40]!r}, not a torch.nn.Module;"
            " name a model class or a function that returns one, e.g. torchvision.models:"
            "resnet18"
        )
    return ResolvedModel(model, text, None)
