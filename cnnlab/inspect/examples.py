"""The course's worked examples as presets (``cnnlab example NAME``, ``--list`` for all).

A preset holds only the example's inputs (an image and a kernel, a pooling input, layer shapes,
layer specs); every answer is computed here by cnnlab, with its arithmetic spelled out: the
output sizes by :mod:`cnnlab.inspect.arithmetic`, the feature map and the pooling tables by the
NumPy engine (:func:`cnnlab.scratch.functional.correlate2d`, :mod:`cnnlab.scratch.pooling`),
parameters and multiply-adds by :mod:`cnnlab.arithmetic` (through :func:`.shapes.shape_table`
for the Inception comparison).

- ``correlation``: a 5x5 binary image correlated with the 3x3 kernel [[1,0,1],[0,1,0],[1,0,1]].
- ``pooling``: max, average and min pooling of a 4x4 input with a 2x2 window, stride 2.
- ``padding-stride``: a 7x7 input, padding 1, a 3x3 kernel and stride 2.
- ``inception-5x5``: the cost of Inception's 5x5 branch with and without a 1x1 reduction.
- ``parameters``: the parameters of 10 filters of 5x5x3.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import arithmetic
from ..errors import UnknownNameError
from ..scratch.functional import correlate2d
from ..scratch.pooling import AvgPool2d, MaxPool2d, MinPool2d
from .arithmetic import axis_size, conv_output_size
from .shapes import shape_table
from .table import dims_text, fmt


@dataclass
class Worked:
    """A solved example: the explanation (one string per line) and the answers (JSON-able)."""

    name: str
    title: str
    lines: list[str]
    results: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return "\n".join([self.title, "=" * len(self.title), *self.lines])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "inputs": self.inputs,
            "lines": self.lines,
            **self.results,
        }


@dataclass(frozen=True)
class Example:
    """A preset: its name, a title, its inputs only, and the function that solves it."""

    name: str
    title: str
    inputs: dict[str, Any]
    solver: Callable[[str, str, dict[str, Any]], Worked]

    def solve(self, inputs: dict[str, Any] | None = None) -> Worked:
        """Solve the preset, or the same example on other ``inputs`` (same keys)."""
        given = dict(self.inputs if inputs is None else inputs)
        worked = self.solver(self.name, self.title, given)
        worked.inputs = given
        return worked


def _grid(values: np.ndarray, indent: str = "  ") -> list[str]:
    """A matrix as aligned rows of numbers (``:g``: 3.25, 6, -1)."""
    cells = [[f"{v:g}" for v in row] for row in np.asarray(values, dtype=float)]
    width = max(len(c) for row in cells for c in row)
    return [indent + " ".join(c.rjust(width) for c in row) for row in cells]


def _side_by_side(blocks: list[tuple[str, list[str]]], gap: int = 4) -> list[str]:
    """Titled blocks of lines next to each other."""
    widths = [max(len(title), *(len(line) for line in lines)) for title, lines in blocks]
    height = max(len(lines) for _, lines in blocks)
    out = [(" " * gap).join(t.ljust(w) for (t, _), w in zip(blocks, widths)).rstrip()]
    for i in range(height):
        parts = [
            (lines[i] if i < len(lines) else "").ljust(w) for (_, lines), w in zip(blocks, widths)
        ]
        out.append((" " * gap).join(parts).rstrip())
    return out


def _size_line(size: int, kernel: int, stride: int, padding: int) -> tuple[int, str]:
    """The output size along one axis and its formula with the numbers."""
    axis = axis_size(size, kernel, stride, (padding, padding), 1)
    return axis.out, f"output size per axis: (N - F + 2P) / S + 1 = {axis.formula()}"


def _solve_correlation(name: str, title: str, inputs: dict[str, Any]) -> Worked:
    image, kernel = np.array(inputs["image"]), np.array(inputs["kernel"])
    stride, padding = inputs.get("stride", 1), inputs.get("padding", 0)
    feature_map = correlate2d(image, kernel, stride, padding)
    _, size_text = _size_line(image.shape[0], kernel.shape[0], stride, padding)
    lines = _side_by_side(
        [
            (f"image ({dims_text(image.shape)})", _grid(image)),
            (f"kernel ({dims_text(kernel.shape)})", _grid(kernel)),
        ]
    )
    lines += [
        size_text,
        "each output cell is the sum of the products of the kernel with the window under it",
        "(cross-correlation, what a CNN layer computes: the kernel is not flipped):",
    ]
    padded = np.pad(image, padding)
    kh, kw = kernel.shape
    for (i, j), value in np.ndenumerate(feature_map):
        r, c = i * stride, j * stride
        window = padded[r : r + kh, c : c + kw]
        products = " + ".join(f"{a:g}*{b:g}" for a, b in zip(window.ravel(), kernel.ravel()))
        lines.append(
            f"  out[{i},{j}] = {products} = {value:g}   "
            f"(window rows {r}-{r + kh - 1}, cols {c}-{c + kw - 1})"
        )
    lines += [f"feature map ({dims_text(feature_map.shape)}):", *_grid(feature_map)]
    return Worked(name, title, lines, {"feature_map": feature_map.tolist()})


def _solve_pooling(name: str, title: str, inputs: dict[str, Any]) -> Worked:
    x = np.array(inputs["input"], dtype=float)
    window, stride = inputs["window"], inputs["stride"]
    _, size_text = _size_line(x.shape[0], window, stride, 0)
    pools = {"max": MaxPool2d, "average": AvgPool2d, "min": MinPool2d}
    tables = {
        kind: pool(window, stride).forward(x[None, None])[0, 0] for kind, pool in pools.items()
    }
    lines = [f"input ({dims_text(x.shape)}):", *_grid(x), size_text]
    lines.append(f"each {window}x{window} window (stride {stride}) gives one cell of each table:")
    for (i, j), _ in np.ndenumerate(tables["max"]):
        r, c = i * stride, j * stride
        values = x[r : r + window, c : c + window].ravel()
        mean = f"({' + '.join(f'{v:g}' for v in values)}) / {values.size}"
        where = f"rows {r}-{r + window - 1}, cols {c}-{c + window - 1}"
        lines.append(
            f"  {where}: {' '.join(f'{v:g}' for v in values)} -> max {tables['max'][i, j]:g}, "
            f"average {mean} = {tables['average'][i, j]:g}, min {tables['min'][i, j]:g}"
        )
    lines += _side_by_side([(f"{kind} pooling", _grid(t)) for kind, t in tables.items()])
    return Worked(name, title, lines, {kind: t.tolist() for kind, t in tables.items()})


def _solve_padding_stride(name: str, title: str, inputs: dict[str, Any]) -> Worked:
    size, kernel = inputs["size"], inputs["kernel"]
    stride, padding = inputs["stride"], inputs["padding"]
    out = conv_output_size(size, kernel, stride, padding)
    _, size_text = _size_line(size, kernel, stride, padding)
    padded = size + 2 * padding
    lines = [
        f"a {size}x{size} input, padding {padding}, a {kernel}x{kernel} kernel, stride {stride}",
        f"padded input: {size} + 2*{padding} = {padded} rows, numbered -{padding}.."
        f"{size + padding - 1}: the {padding} outer row(s) on each side are zeros",
        size_text,
        f"the windows start every {stride} rows of the padded input:",
    ]
    for i in range(out):
        rows = range(i * stride - padding, i * stride - padding + kernel)
        zeros = [str(r) for r in rows if not 0 <= r < size]
        note = f" (row {', '.join(zeros)}: padding)" if zeros else ""
        lines.append(f"  output {i}: input rows {rows[0]}..{rows[-1]}{note}")
    after = out * stride - padding
    lines.append(
        f"  a next window would cover rows {after}..{after + kernel - 1}, past the last padded "
        f"row {size + padding - 1}: so {out} outputs per axis, a {out}x{out} feature map"
    )
    # the NumPy engine on a 7x7 image of ones with a kernel of ones: how many real (not padding)
    # pixels each window sees, and the output shape checked by running it
    seen = correlate2d(np.ones((size, size)), np.ones((kernel, kernel)), stride, padding)
    lines += ["real pixels under each window (a kernel of ones on an image of ones):", *_grid(seen)]
    return Worked(name, title, lines, {"output_size": out, "pixels_seen": seen.tolist()})


def _solve_inception(name: str, title: str, inputs: dict[str, Any]) -> Worked:
    shape = tuple(inputs["input"])
    lines = [f"input {dims_text(shape)} (channels x height x width)"]
    totals = {}
    for label, specs in inputs["designs"].items():
        report = shape_table(specs, shape)
        lines.append(f"{label}: {specs}")
        for row in report.rows:
            lines.append(
                f"  {row.spec}: {dims_text(row.input_shape)} -> {dims_text(row.output_shape)}; "
                f"multiply-adds {row.macs_formula}; params {row.params_formula}"
            )
        parts = " + ".join(fmt(row.macs) for row in report.rows)
        total = f"{parts} = {fmt(report.macs)}" if len(report.rows) > 1 else fmt(report.macs)
        lines.append(f"  total multiply-adds: {total} (~{report.macs / 1e6:.1f}M)")
        totals[label] = {"macs": report.macs, "params": report.params}
    first, second = list(totals)[:2]
    ratio = totals[first]["macs"] / totals[second]["macs"]
    lines.append(
        f"the {second} design needs {fmt(totals[first]['macs'])} / {fmt(totals[second]['macs'])} "
        f"= {ratio:.1f}x fewer multiply-adds, for the same output shape; parameters "
        f"{fmt(totals[first]['params'])} against {fmt(totals[second]['params'])}"
    )
    return Worked(name, title, lines, {"designs": totals, "ratio": ratio})


def _solve_parameters(name: str, title: str, inputs: dict[str, Any]) -> Worked:
    filters, kernel, channels = inputs["filters"], inputs["kernel"], inputs["in_channels"]
    per_filter = arithmetic.conv_weights_per_output(channels, kernel)
    total = arithmetic.conv_params(channels, filters, kernel)
    lines = [
        f"{filters} filters of {kernel}x{kernel}x{channels} (each spans all {channels} input "
        "channels)",
        f"one filter: {kernel}*{kernel}*{channels} = {per_filter} weights + 1 bias = "
        f"{per_filter + 1} parameters",
        f"{filters} filters: {filters} * ({per_filter} + 1) = {fmt(total)} parameters "
        f"({fmt(per_filter * filters)} weights, {filters} biases)",
        "the count does not depend on the input's width and height: the filters are shared "
        "across all positions",
    ]
    return Worked(name, title, lines, {"params": total, "weights_per_filter": per_filter})


_PRESETS = [
    Example(
        "correlation",
        "A 5x5 binary image correlated with a 3x3 kernel",
        {
            "image": [
                [1, 1, 1, 0, 0],
                [0, 1, 1, 1, 0],
                [0, 0, 1, 1, 1],
                [0, 0, 1, 1, 0],
                [0, 1, 1, 0, 0],
            ],
            "kernel": [[1, 0, 1], [0, 1, 0], [1, 0, 1]],
            "stride": 1,
            "padding": 0,
        },
        _solve_correlation,
    ),
    Example(
        "pooling",
        "Max, average and min pooling of a 4x4 input (2x2 window, stride 2)",
        {
            "input": [[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]],
            "window": 2,
            "stride": 2,
        },
        _solve_pooling,
    ),
    Example(
        "padding-stride",
        "A 7x7 input with padding 1, a 3x3 kernel and stride 2",
        {"size": 7, "kernel": 3, "stride": 2, "padding": 1},
        _solve_padding_stride,
    ),
    Example(
        "inception-5x5",
        "Inception's 5x5 branch with and without a 1x1 reduction",
        {
            "input": [192, 28, 28],
            "designs": {"direct": "conv(32,5,p=same)", "reduced": "conv(16,1) conv(32,5,p=same)"},
        },
        _solve_inception,
    ),
    Example(
        "parameters",
        "The parameters of 10 filters of 5x5x3",
        {"filters": 10, "kernel": 5, "in_channels": 3},
        _solve_parameters,
    ),
]
EXAMPLES: dict[str, Example] = {example.name: example for example in _PRESETS}


def get_example(name: str) -> Example:
    """The preset called ``name``; an unknown name is refused with the known ones."""
    if name in EXAMPLES:
        return EXAMPLES[name]
    close = difflib.get_close_matches(name, list(EXAMPLES), n=2)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UnknownNameError(
        f"example {name!r} is not a preset{hint} Known: {', '.join(EXAMPLES)} "
        "(cnnlab example --list)"
    )


def worked_example(name: str) -> Worked:
    """Solve the preset called ``name``: the explanation lines and the answers."""
    return get_example(name).solve()
