"""Layer specs for ``cnnlab shapes``: the inline language (``"conv(32,5,s=1,p=2) relu pool(2)
lppool(2,norm=2) fc(10)"``), JSON/YAML layer files, and input shapes (``"1x28x28"``), each
refused in one line naming the bad value when it cannot be a layer."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CnnlabError

# name -> (kind, positional argument names)
LAYERS: dict[str, tuple[str, list[str]]] = {
    "conv": ("conv", ["out", "kernel", "stride", "padding", "dilation", "groups"]),
    "pool": ("maxpool", ["kernel", "stride", "padding", "dilation"]),
    "maxpool": ("maxpool", ["kernel", "stride", "padding", "dilation"]),
    "avgpool": ("avgpool", ["kernel", "stride", "padding"]),
    "minpool": ("minpool", ["kernel", "stride", "padding"]),
    "lppool": ("lppool", ["kernel", "stride", "norm"]),  # norm=2: L2-norm pooling
    "gap": ("gap", []),
    "adaptiveavgpool": ("adaptiveavgpool", ["out"]),
    "flatten": ("flatten", []),
    "fc": ("fc", ["out"]),
    "bn": ("batchnorm", []),
    "lrn": ("lrn", ["size"]),
    "dropout": ("dropout", ["p"]),
    **{name: (name, []) for name in ("relu", "leakyrelu", "tanh", "sigmoid", "softmax")},
}
ALIASES = {
    "conv1d": "conv",
    "conv2d": "conv",
    "conv3d": "conv",
    "maxpool2d": "maxpool",
    "avgpool2d": "avgpool",
    "lppool2d": "lppool",
    "l2pool": "lppool",
    "normpool": "lppool",
    "globalavgpool": "gap",
    "linear": "fc",
    "dense": "fc",
    "batchnorm": "bn",
    "batchnorm2d": "bn",
    "globalaveragepooling": "gap",
}
KEYS = {
    "s": "stride",
    "p": "padding",
    "d": "dilation",
    "g": "groups",
    "k": "kernel",
    "kernel_size": "kernel",
    "out_channels": "out",
    "filters": "out",
    "units": "out",
    "out_features": "out",
    "output_size": "out",
}


def lp_pool_text(norm: float) -> str:
    """What a power-average pooling window computes, for the table's formula column."""
    norm = int(norm) if float(norm).is_integer() else norm
    if norm == 2:
        return (
            "L2-norm pooling: sqrt(sum x^2) of each window, between average pooling (every "
            "value counts) and max pooling (only the largest); no parameters"
        )
    return (
        f"power-average pooling: (sum x^{norm})^(1/{norm}) of each window; p=1 sums the "
        "window, a large p approaches max pooling; no parameters"
    )


@dataclass
class LayerSpec:
    kind: str
    args: dict[str, Any]
    text: str


def _value(text: str) -> Any:
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.startswith("(") or "x" in text.lower() and not text.isalpha():
        parts = re.split(r"[x,()\s]+", text.lower().strip("()"))
        try:
            return tuple(int(p) for p in parts if p)
        except ValueError:  # "5xq": kept as text, refused with its name by _check_args
            return text
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text.strip("'\"")


def _spec(name: str, positional: Sequence[Any], keywords: dict[str, Any], text: str) -> LayerSpec:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in LAYERS:
        import difflib

        close = difflib.get_close_matches(key, list(LAYERS) + list(ALIASES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise CnnlabError(
            f"unknown layer {name!r} in {text!r}{hint} Known: {', '.join(sorted(LAYERS))}"
        )
    kind, names = LAYERS[key]
    if len(positional) > len(names):
        raise CnnlabError(
            f"{text!r}: {key} takes at most {len(names)} positional values ({', '.join(names)})"
        )
    args = dict(zip(names, positional))
    for k, v in keywords.items():
        k = k if k in names else KEYS.get(k, k)  # dropout(p=0.3): p is its own option
        if k not in names and k != "bias":
            raise CnnlabError(
                f"{text!r}: {key} has no option {k!r}; options: {', '.join(names + ['bias'])}"
            )
        args[k] = v
    return LayerSpec(kind, _check_args(args, text), text)


MAX_NUMBER = 10**12  # larger sizes are typing mistakes, and would overflow float formatting
_AT_LEAST = {"padding": 0}  # every other whole-number option must be at least 1
_AXIS_EXAMPLE = {
    "out": "6",
    "kernel": "5 or 5x5",
    "stride": "2",
    "dilation": "2",
    "padding": "2, 2x2, same or valid",
    "groups": "2",
    "size": "5",
    "norm": "2",
}


def _whole(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (5 or 5.0; not True, not 5.5)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _check_args(args: dict[str, Any], text: str) -> dict[str, Any]:
    """Refuse option values no layer can have (a negative channel count, a stride of 0,
    ``dropout(7)``), naming the value; returns the values normalized (lists to tuples)."""
    checked = {}
    for name, value in args.items():
        if name == "bias":
            if not isinstance(value, bool):
                raise CnnlabError(f"{text}: bias={value!r}: expected true or false")
        elif name == "p":
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value < 1  # also refuses nan
            ):
                raise CnnlabError(
                    f"{text}: p={value!r}: expected a drop probability from 0 up to (not "
                    "including) 1, e.g. dropout(0.5)"
                )
        elif name == "padding" and isinstance(value, str) and value.lower() in ("same", "valid"):
            value = value.lower()
        else:
            value = _check_whole(name, value, text)
        checked[name] = value
    return checked


def _check_whole(name: str, value: Any, text: str) -> int | tuple[int, ...]:
    least = _AT_LEAST.get(name, 1)
    parts = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    numbers = [_whole(v) for v in parts]
    if not 1 <= len(parts) <= 3 or any(n is None for n in numbers):
        raise CnnlabError(
            f"{text}: {name}={value!r}: expected a whole number (or one per axis, e.g. 5x5); "
            f"write e.g. {name}={_AXIS_EXAMPLE.get(name, '1')}"
        )
    for number in numbers:
        if not least <= number <= MAX_NUMBER:
            limit = f"at least {least}" if number < least else f"at most {MAX_NUMBER:,}"
            several = isinstance(value, (list, tuple))
            shown = tuple(numbers) if several else number
            raise CnnlabError(
                f"{text}: {name}={shown}: {'each number ' if several else ''}must be {limit}; "
                f"write e.g. {name}={_AXIS_EXAMPLE.get(name, '1').split(' ')[0].rstrip(',')}"
            )
    return numbers[0] if not isinstance(value, (list, tuple)) else tuple(numbers)


def parse_specs(text: str) -> list[LayerSpec]:
    """``"conv(32,5,s=1,p=2) relu pool(2)"`` -> layer specs (separators: spaces, commas
    outside parentheses, ``->`` or ``|``)."""
    specs = []
    position = 0
    pattern = re.compile(
        r"\s*(?:->|\||,)?\s*([A-Za-z_][\w]*)\s*(\(([^()]*(?:\([^()]*\)[^()]*)*)\))?"
    )
    text = text.strip()
    while position < len(text):
        match = pattern.match(text, position)
        if not match or match.end() == position:
            raise CnnlabError(
                f"cannot read the layer list at {text[position : position + 20]!r}; write layers "
                "like conv(32,5,s=1,p=2) pool(2) fc(10)"
            )
        position = match.end()
        name, body = match.group(1), match.group(3) or ""
        positional, keywords = [], {}
        for part in _split_args(body):
            if "=" in part:
                k, v = part.split("=", 1)
                keywords[k.strip()] = _value(v)
            else:
                positional.append(_value(part))
        specs.append(_spec(name, positional, keywords, match.group(0).strip(" ->|,")))
        while position < len(text) and text[position] in " \t\n,|->":
            position += 1
    if not specs:
        raise CnnlabError("no layers given; write e.g. conv(32,5,p=2) pool(2) fc(10)")
    return specs


def _split_args(body: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        current += ch
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def load_specs(
    source: str | Path | Sequence[Any],
) -> tuple[list[LayerSpec], tuple[int, ...] | None]:
    """Specs from inline text, a ``.json``/``.yaml`` file, or a list of dicts/strings. A file
    may also be ``{"input": [1, 28, 28], "layers": [...]}``; the input shape is returned too."""
    input_shape = None
    if isinstance(source, (str, Path)) and Path(source).suffix.lower() in (
        ".json",
        ".yaml",
        ".yml",
    ):
        path = Path(source)
        if not path.is_file():
            raise CnnlabError(f"layer file {path} does not exist")
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(path.read_text())
            else:
                import yaml

                data = yaml.safe_load(path.read_text())
        except Exception as error:  # YAML's messages span lines: keep them on one
            raise CnnlabError(f"cannot read {path}: {' '.join(str(error).split())}") from error
        if isinstance(data, dict):
            if data.get("input") is not None:
                given = data["input"]
                if not isinstance(given, (str, list)):
                    raise CnnlabError(
                        f"{path}: input={given!r}: expected a shape without the batch axis, "
                        'e.g. "input": [1, 28, 28] or "input": "1x28x28"'
                    )
                input_shape = parse_shape(given, f"{path}: input")
            data = data.get("layers")
        if not isinstance(data, list):
            raise CnnlabError(f"{path}: expected a list of layers (or {{input, layers}})")
        try:
            return _specs_from_list(data), input_shape
        except CnnlabError as error:
            raise CnnlabError(f"{path}: {error}") from None
    if isinstance(source, str):
        return parse_specs(source), input_shape
    return _specs_from_list(source), input_shape


def _specs_from_list(source: Sequence[Any]) -> list[LayerSpec]:
    specs = []
    for item in source:
        if isinstance(item, str):
            specs.extend(parse_specs(item))
        elif isinstance(item, dict):
            item = dict(item)
            name = item.pop("type", None) or item.pop("layer", None)
            if name is None:
                raise CnnlabError(f"layer {item}: needs a 'type' (conv, pool, fc, ...)")
            specs.append(
                _spec(str(name), [], item, json.dumps({"type": name, **item}, default=str))
            )
        else:
            raise CnnlabError(f"layer {item!r}: expected a string or a mapping")
    return specs


def parse_shape(text: str | Sequence[int], what: str = "input shape") -> tuple[int, ...]:
    """``"1x28x28"`` (C x H x W; C x L for 1-D, C x D x H x W for 3-D) -> ``(1, 28, 28)``.
    Refuses anything else (letters, zero or negative sizes, sizes above ``MAX_NUMBER``) with
    one line that names ``what`` and the value."""
    if isinstance(text, str):
        parts: list[Any] = [v for v in re.split(r"[x,\s]+", text.strip().lower()) if v]
        try:
            shape = tuple(int(v) for v in parts)
        except ValueError:
            shape = ()
    elif isinstance(text, (list, tuple)):
        whole = [_whole(v) for v in text]
        shape = () if any(v is None for v in whole) else tuple(whole)  # type: ignore[arg-type]
    else:
        shape = ()
    if not 2 <= len(shape) <= 4 or min(shape) < 1:
        raise CnnlabError(
            f"{what} {text!r}: expected channels x size, e.g. 1x28x28 (2-D), 1x100 (1-D) "
            "or 3x16x112x112 (3-D)"
        )
    if max(shape) > MAX_NUMBER:
        raise CnnlabError(f"{what} {text!r}: sizes may be at most {MAX_NUMBER:,}")
    return shape
