"""The model registry: one name per builder, looked up by `create_model`."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..errors import CnnlabError, UnknownNameError

ModelBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder and what it was designed for."""

    name: str
    builder: ModelBuilder
    default_input_size: int  # pixels per side the design assumes
    default_in_channels: int
    summary: str  # first line of the builder's docstring

    def accepts(self, argument: str) -> bool:
        return argument in inspect.signature(self.builder).parameters


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, *, input_size: int, in_channels: int
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register a builder under ``name``.

    Args:
        name: the name users pass to :func:`create_model`; lowercase, unique.
        input_size: the side in pixels the architecture was designed for.
        in_channels: the channel count the architecture was designed for.
    """

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(
                f"model name {name!r} is already registered by "
                f"{_REGISTRY[name].builder.__module__}.{_REGISTRY[name].builder.__name__}; "
                "pick another name"
            )
        doc = inspect.getdoc(builder) or ""
        _REGISTRY[name] = ModelEntry(
            name=name,
            builder=builder,
            default_input_size=input_size,
            default_in_channels=in_channels,
            summary=doc.splitlines()[0] if doc else "",
        )
        return builder

    return decorator


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (e.g. ``"cifar_*"``), sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern.lower()))


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; unknown names are answered with the closest matches."""
    key = name.lower()
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownNameError(
            f"unknown model {name!r}; {hint}`cnnlab models` lists all {len(_REGISTRY)} models"
        )
    return _REGISTRY[key]


def create_model(
    name: str,
    num_classes: int = 10,
    in_channels: int | None = None,
    input_size: int | None = None,
    **kwargs: object,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        num_classes: size of the output layer.
        in_channels: image channels (1 gray, 3 RGB); the design's default when None.
        input_size: image side in pixels; the design's default when None.
        **kwargs: options of that model's builder (e.g. ``modern=True`` for ``lenet5``).

    Returns:
        The model, in training mode, with ``cnnlab_spec`` recording how it was built.
    """
    entry = get_model_entry(name)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise CnnlabError(f"num_classes={num_classes!r}: expected a positive integer")
    in_channels = entry.default_in_channels if in_channels is None else in_channels
    input_size = entry.default_input_size if input_size is None else input_size
    if in_channels < 1 or input_size < 1:
        raise CnnlabError(
            f"in_channels={in_channels}, input_size={input_size}: both must be positive"
        )
    unknown = [k for k in kwargs if not entry.accepts(k)]
    if unknown:
        options = [
            p
            for p in inspect.signature(entry.builder).parameters
            if p not in ("num_classes", "in_channels", "input_size")
        ]
        raise CnnlabError(
            f"model {entry.name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(options) or 'none'}"
        )
    model = entry.builder(
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
        **kwargs,
    )
    model.cnnlab_spec = {
        "name": entry.name,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "input_size": input_size,
        "kwargs": dict(kwargs),
    }
    return model
