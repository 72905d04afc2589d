"""The model registry: one name per builder, looked up by `create_model`."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..errors import CnnlabError, UnknownNameError
from ..model_interface import FIXED
from .binary import BINARY_OPTION, make_binary

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
        return argument in GENERIC_OPTIONS or argument in inspect.signature(self.builder).parameters

    def options(self) -> dict[str, object]:
        """The options ``-O key=value`` takes, with their defaults: the builder's own, then the
        ones every model takes (``binary``)."""
        own = {
            name: parameter.default
            for name, parameter in inspect.signature(self.builder).parameters.items()
            if name not in ("num_classes", "in_channels", "input_size")
        }
        return {**own, **GENERIC_OPTIONS}

    @property
    def default_num_classes(self) -> int:
        """The class count the design was made for: its builder's default (1000 for the
        ImageNet architectures, 10 for the MNIST/CIFAR models and the ``*_cifar`` variants)."""
        parameter = inspect.signature(self.builder).parameters.get("num_classes")
        default = parameter.default if parameter is not None else None
        return default if isinstance(default, int) and not isinstance(default, bool) else 10


_REGISTRY: dict[str, ModelEntry] = {}
# options every registered model takes, with their defaults (binary: one logit and a sigmoid
# in place of the two-class softmax output, see cnnlab.models.binary)
GENERIC_OPTIONS: dict[str, object] = {BINARY_OPTION: False}


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
            summary=_first_sentence(doc),
        )
        return builder

    return decorator


def fix_parameter(parameter: nn.Parameter) -> None:
    """Keep ``parameter`` out of training for good: ``requires_grad`` off, and marked so that
    transfer learning's ``--strategy full`` leaves it fixed too
    (:func:`cnnlab.model_interface.is_fixed`)."""
    parameter.requires_grad_(False)
    setattr(parameter, FIXED, True)


def _first_sentence(doc: str) -> str:
    """The docstring's first sentence, joined across lines ("torchvision's GoogLeNet: the
    batch-norm variant of" would stop mid-phrase at the line end)."""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    end = re.search(r"(?<!\bal)\.(\s|$)", paragraph)  # "et al." ends no sentence
    sentence = paragraph[: end.start() + 1] if end else paragraph
    return sentence if len(sentence) <= 110 else sentence[:107].rsplit(" ", 1)[0] + " ..."


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


def _check_options(entry: ModelEntry, kwargs: dict[str, object]) -> None:
    """Every option is one the builder takes (or a generic one), of the type it takes."""
    unknown = [k for k in kwargs if not entry.accepts(k)]
    if unknown:
        raise CnnlabError(
            f"model {entry.name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(entry.options())}"
        )
    for key, value in kwargs.items():
        _check_option_type(entry, key, value)


def create_model(
    name: str,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
    **kwargs: object,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        num_classes: size of the output layer; the design's own when None (1000 for the
            ImageNet architectures, 10 for the others: :attr:`ModelEntry.default_num_classes`).
            Training passes the data set's class count.
        in_channels: image channels (1 gray, 3 RGB); the design's default when None.
        input_size: image side in pixels; the design's default when None.
        **kwargs: options of that model's builder (e.g. ``modern=True`` for ``lenet5``).

    Returns:
        The model, in training mode, with ``cnnlab_spec`` recording how it was built.
    """
    entry = get_model_entry(name)
    num_classes = entry.default_num_classes if num_classes is None else num_classes
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise CnnlabError(f"num_classes={num_classes!r}: expected a positive integer")
    in_channels = entry.default_in_channels if in_channels is None else in_channels
    input_size = entry.default_input_size if input_size is None else input_size
    if in_channels < 1 or input_size < 1:
        raise CnnlabError(
            f"in_channels={in_channels}, input_size={input_size}: both must be positive"
        )
    _check_options(entry, kwargs)
    own = {k: v for k, v in kwargs.items() if k not in GENERIC_OPTIONS}
    try:
        model = entry.builder(
            num_classes=num_classes, in_channels=in_channels, input_size=input_size, **own
        )
    except (MemoryError, RuntimeError) as err:  # torch's allocator raises RuntimeError
        if not isinstance(err, MemoryError) and "allocate" not in str(err):
            raise
        options = ", ".join(f"{k}={v!r}" for k, v in own.items()) or "its default options"
        raise CnnlabError(
            f"model {entry.name!r} with {options}, num_classes={num_classes}: its weights need "
            "more memory than this machine can give; choose smaller options (e.g. widths)"
        ) from None
    if kwargs.get(BINARY_OPTION):
        model = make_binary(model, num_classes, entry.name)
    model.cnnlab_spec = {
        "name": entry.name,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "input_size": input_size,
        "kwargs": dict(kwargs),
    }
    return model


def _check_option_type(entry: ModelEntry, key: str, value: object) -> None:
    """Refuse an option whose value is not of the kind its default is (``-O modern=maybe`` is a
    string, and a non-empty string would quietly count as true)."""
    default = entry.options()[key]
    if default is inspect.Parameter.empty or default is None:
        return
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        expected = "a number"
    elif isinstance(default, str):
        ok, expected = isinstance(value, str), "a string"
    elif isinstance(default, (list, tuple)):
        ok, expected = isinstance(value, (list, tuple)), "a list"
        default = list(default)
    else:
        return
    if not ok:
        example = str(default).lower() if isinstance(default, bool) else default
        if isinstance(default, list):
            example = "[" + ",".join(str(v) for v in default) + "]"
        raise CnnlabError(
            f"model option {key}={value!r}: expected {expected} (the default is {default!r}), "
            f"e.g. -O {key}={example}"
        )
