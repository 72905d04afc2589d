"""``cnnlab shapes``: a shape table from a list of layer specs, no model and no PyTorch needed.

Specs are written inline, ``"conv(32,5,s=1,p=2) relu pool(2) fc(10)"``, or as a JSON/YAML list
(``[{"type": "conv", "out": 32, "kernel": 5, "padding": 2}, "pool(2)", ...]``). Every layer is
checked; a layer that does not fit is reported and skipped (its input passes through unchanged)
so that the problems of the layers after it are reported too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CnnlabError
from . import arithmetic as A

# name -> (kind, positional argument names)
LAYERS: dict[str, tuple[str, list[str]]] = {
    "conv": ("conv", ["out", "kernel", "stride", "padding", "dilation", "groups"]),
    "pool": ("maxpool", ["kernel", "stride", "padding", "dilation"]),
    "maxpool": ("maxpool", ["kernel", "stride", "padding", "dilation"]),
    "avgpool": ("avgpool", ["kernel", "stride", "padding"]),
    "minpool": ("minpool", ["kernel", "stride", "padding"]),
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
    "conv1d": "conv", "conv2d": "conv", "conv3d": "conv", "maxpool2d": "maxpool",
    "avgpool2d": "avgpool", "globalavgpool": "gap", "linear": "fc", "dense": "fc",
    "batchnorm": "bn", "batchnorm2d": "bn", "globalaveragepooling": "gap",
}  # fmt: skip
KEYS = {
    "s": "stride", "p": "padding", "d": "dilation", "g": "groups", "k": "kernel",
    "kernel_size": "kernel", "out_channels": "out", "filters": "out", "units": "out",
    "out_features": "out", "output_size": "out",
}  # fmt: skip


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
_AXIS_EXAMPLE = {"out": "6", "kernel": "5 or 5x5", "stride": "2", "dilation": "2",
                 "padding": "2, 2x2, same or valid", "groups": "2", "size": "5"}  # fmt: skip


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


@dataclass
class ShapeReport:
    input_shape: tuple[int, ...]
    rows: list[A.Row]
    problems: list[str] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [row.to_dict() for row in self.rows]

    def __str__(self) -> str:
        footer = [
            f"parameters: {A.fmt(self.params)}    multiply-adds: {A.fmt(self.macs)} per image",
        ]
        if self.problems:
            footer.append(f"{len(self.problems)} problem(s):")
            footer += [f"  {p}" for p in self.problems]
        return A.format_table(self.rows, f"input {A._dims(self.input_shape)}", footer)


def shape_table(
    specs: str | Sequence[Any] | list[LayerSpec], input_shape: str | Sequence[int]
) -> ShapeReport:
    """Walk the layers from ``input_shape`` (no batch axis) and fill one row per layer."""
    if not (isinstance(specs, list) and specs and isinstance(specs[0], LayerSpec)):
        specs, _ = load_specs(specs)
    shape = parse_shape(input_shape)
    field_state = A.start_field(len(shape) - 1)
    rows: list[A.Row] = []
    counts: dict[str, int] = {}
    for spec in specs:
        counts[spec.kind] = counts.get(spec.kind, 0) + 1
        name = f"{spec.kind}{counts[spec.kind]}"
        row, new_shape, field_state = _layer(spec, name, shape, field_state)
        row.spec = spec.text
        if field_state is not None and row.output_shape is not None:
            row.receptive_field, row.jump = field_state
        rows.append(row)
        if row.problems and new_shape is None:
            row.formula = (row.formula + "  " if row.formula else "") + "[skipped: the next "
            row.formula += "layers are checked on this layer's input]"
        shape = new_shape or shape
    problems = [f"{row.name} ({row.spec}): {p}" for row in rows for p in row.problems]
    return ShapeReport(parse_shape(input_shape), rows, problems)


def _layer(spec: LayerSpec, name: str, shape: tuple[int, ...], field_state: A.Field):
    a, kind = spec.args, spec.kind
    if kind == "conv" or kind.endswith("pool") and kind not in ("gap", "adaptiveavgpool"):
        if len(shape) < 2:
            row = A.Row(name, kind, shape, None, problems=[
                f"{kind} needs a spatial input (C x H x W), got {A._dims(shape)}; put it before "
                "flatten/fc"])  # fmt: skip
            return row, None, field_state
        if "kernel" not in a or (kind == "conv" and "out" not in a):
            need = "out channels and kernel" if kind == "conv" else "kernel"
            row = A.Row(name, kind, shape, None, problems=[f"{kind} needs {need}"])
            return row, None, field_state
        label = f"Conv{len(shape) - 1}d" if kind == "conv" else kind
        row, new_field = A.window_row(
            name, label, shape, a["kernel"],
            a.get("stride", 1 if kind == "conv" else None), a.get("padding", 0),
            a.get("dilation", 1), field_state,
            out_channels=a["out"] if kind == "conv" else None, groups=a.get("groups", 1),
            bias=a.get("bias", True),
        )  # fmt: skip
        return row, row.output_shape, new_field
    if kind in ("gap", "adaptiveavgpool") and len(shape) < 2:
        row = A.Row(name, kind, shape, None, problems=[
            f"{kind} needs a spatial input (C x H x W), got {A._dims(shape)}; put it before "
            "flatten/fc"])  # fmt: skip
        return row, None, field_state
    if kind == "gap":
        row = A.Row(name, "global avg pool", shape, (shape[0],))
        row.formula = f"mean over {A._dims(shape[1:])} per channel"
        return row, row.output_shape, None
    if kind == "adaptiveavgpool":
        out = a.get("out", 1)
        outs = A._tuple(out, len(shape) - 1, "out")
        row = A.Row(name, "adaptive avg pool", shape, (shape[0], *outs))
        row.formula = (
            f"{A._dims(shape[1:])} -> {A._dims(outs)} (bins of about {shape[1] / outs[0]:.3g})"
        )
        return row, row.output_shape, None if outs != shape[1:] else field_state
    if kind == "flatten":
        size = 1
        for s in shape:
            size *= s
        row = A.Row(name, "flatten", shape, (size,))
        row.formula = " * ".join(map(str, shape)) + f" = {A.fmt(size)}"
        return row, row.output_shape, None
    if kind == "fc":
        if "out" not in a:
            return (
                A.Row(name, "fc", shape, None, problems=["fc needs its output size"]),
                None,
                field_state,
            )
        features = 1
        for s in shape:
            features *= s
        row = A.linear_row(name, features, int(a["out"]), a.get("bias", True))
        row.input_shape = shape
        if len(shape) > 1:
            row.problems.append(
                f"fc on a {A._dims(shape)} input: flatten it first (assumed here, "
                f"{A.fmt(features)} inputs)"
            )
        return row, row.output_shape, None
    if kind == "batchnorm":
        row = A.Row(name, "batch norm", shape, shape)
        row.params = 2 * shape[0]
        row.params_formula = (
            f"2*{shape[0]} = {A.fmt(row.params)} (scale and shift per channel; running "
            "mean/variance are buffers, not learned)"
        )
        return row, shape, field_state
    row = A.Row(name, kind, shape, shape)
    if kind == "dropout":
        row.formula = f"p = {a.get('p', 0.5)} (training only)"
    return row, shape, field_state


def compare_designs(
    designs: dict[str, str | Sequence[Any]], input_shape: str | Sequence[int]
) -> list[dict[str, Any]]:
    """Parameters and multiply-adds of alternative layer stacks on the same input, side by side
    (e.g. a 5x5 convolution against a 1x1 reduction followed by the 5x5)."""
    results = []
    for label, specs in designs.items():
        report = shape_table(specs, input_shape)
        results.append({
            "design": label, "layers": [row.spec for row in report.rows],
            "output_shape": list(report.rows[-1].output_shape or []),
            "params": report.params, "macs": report.macs, "problems": report.problems,
        })  # fmt: skip
    base = results[0]
    for result in results:
        result["params_vs_first"] = result["params"] / base["params"] if base["params"] else None
        result["macs_vs_first"] = result["macs"] / base["macs"] if base["macs"] else None
    return results


def format_designs(results: list[dict[str, Any]], input_shape: tuple[int, ...]) -> str:
    width = max(len(r["design"]) for r in results)
    lines = [f"input {A._dims(input_shape)}"]
    lines.append(f"{'design':<{width}}  {'output':<12} {'params':>12} {'mult-adds':>15}  vs first")
    for r in results:
        ratio = f"{r['macs_vs_first']:.3f}x" if r["macs_vs_first"] is not None else "-"
        lines.append(
            f"{r['design']:<{width}}  {A._dims(r['output_shape']):<12} {A.fmt(r['params']):>12} "
            f"{A.fmt(r['macs']):>15}  {ratio}"
        )
        for problem in r["problems"]:
            lines.append(f"  PROBLEM: {problem}")
    return "\n".join(lines)
