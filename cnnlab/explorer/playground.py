"""The page's playground: the arithmetic of one square convolution (``/api/arithmetic``) and
the course's worked examples as presets (``/api/presets``), solved by
:mod:`cnnlab.inspect.examples` (never typed in here)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .. import arithmetic
from ..inspect.arithmetic import axis_problem, axis_size
from ..inspect.examples import EXAMPLES

# the bounds /api/arithmetic accepts for each of its numbers (the page's fields use the same)
ARITHMETIC_BOUNDS = {
    "n": (1, 4096),
    "kernel": (1, 512),
    "stride": (1, 512),
    "padding": (0, 512),
    "dilation": (1, 64),
    "in_channels": (1, 4096),
    "out_channels": (1, 4096),
}


class OutOfBounds(ValueError):
    """A playground number outside :data:`ARITHMETIC_BOUNDS` (the message says which)."""


def conv_arithmetic(
    n: int,
    kernel: int,
    stride: int,
    padding: int,
    dilation: int,
    in_channels: int,
    out_channels: int,
) -> dict[str, Any]:
    """Output size of a square 2-D convolution with the formula filled in (or what is wrong
    and how to fix it), its parameters and multiply-adds, from :mod:`cnnlab.arithmetic`."""
    given = {
        "n": n,
        "kernel": kernel,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "in_channels": in_channels,
        "out_channels": out_channels,
    }
    for label, (low, high) in ARITHMETIC_BOUNDS.items():
        if not low <= given[label] <= high:
            raise OutOfBounds(
                f"{label}={given[label]}: expected a whole number in {low}..{high}; "
                f"set {label} within that range"
            )
    axis = axis_size(n, kernel, stride, (padding, padding), dilation)
    problem = axis_problem(axis, "output size")
    out = axis.out if axis.fits else 0
    params = arithmetic.conv_params(in_channels, out_channels, kernel)
    macs = arithmetic.conv_macs(in_channels, out_channels, kernel, (out, out))
    return {
        "out": out,
        "formula": axis.formula(),
        "valid": problem is None,
        "problem": problem,
        "extent": axis.extent,
        "padded": axis.padded,
        "params": params,
        "params_formula": f"{kernel}*{kernel}*{in_channels}*{out_channels} + {out_channels}"
        f" = {params:,}",
        "macs": macs,
        "macs_formula": f"{out}x{out}x{out_channels} outputs x "
        f"{kernel}*{kernel}*{in_channels} = {macs:,}",
        "bounds": {k: list(v) for k, v in ARITHMETIC_BOUNDS.items()},
    }


# which playground each worked example opens in
PRESET_KINDS = {
    "correlation": "correlate",
    "pooling": "pool",
    "padding-stride": "arithmetic",
    "inception-5x5": "cost",
    "parameters": "arithmetic",
}
PARAMETERS_INPUT_SIZE = 32  # the 10-filter example has no input size; the count needs none


def _playground_fields(name: str, inputs: dict[str, Any]) -> dict[str, int]:
    """An arithmetic preset's inputs as the playground's fields."""
    if name == "padding-stride":
        return {
            "n": inputs["size"],
            "kernel": inputs["kernel"],
            "stride": inputs["stride"],
            "padding": inputs["padding"],
            "dilation": 1,
            "in_channels": 1,
            "out_channels": 1,
        }
    return {  # parameters: 10 filters of 5x5x3
        "n": PARAMETERS_INPUT_SIZE,
        "kernel": inputs["kernel"],
        "stride": 1,
        "padding": 0,
        "dilation": 1,
        "in_channels": inputs["in_channels"],
        "out_channels": inputs["filters"],
    }


@lru_cache(maxsize=1)
def presets() -> list[dict[str, Any]]:
    """The course's worked examples: key, title, playground kind, inputs, the answers cnnlab
    computes and the explanation text (one line of the worked example per line)."""
    out = []
    for key, example in EXAMPLES.items():
        worked = example.solve()
        kind = PRESET_KINDS.get(key, "cost")
        inputs = dict(example.inputs)
        answer = dict(worked.results)
        if kind == "arithmetic":
            inputs = _playground_fields(key, example.inputs)
            answer["playground"] = conv_arithmetic(**inputs)
        out.append(
            {
                "key": key,
                "title": example.title,
                "kind": kind,
                "inputs": inputs,
                "answer": answer,
                "text": "\n".join(worked.lines),
            }
        )
    return out
