"""Where a step's output came from: the window one output position reads on each of the step's
inputs, and its receptive field on the image, followed back through every step of a
:class:`~.trace.Trace` (both branches of a residual add, every input of a concatenation).

A region of a map is a box ``(y0, x0, y1, x1)`` (half-open); of a vector, ``(i0, i1)``. The
field is the union of the boxes reached on the model input, or ``unknown`` with the step that
stops the walk and why (never "the whole image" by mistake).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..arithmetic import same_padding
from .trace import INPUT, Step, Trace


def pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def conv_padding(conv: nn.Conv2d) -> tuple[int, int]:
    """The zeros (or other padding) added before the first row and column."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return 0, 0
        (kh, kw), (dh, dw) = conv.kernel_size, conv.dilation
        return same_padding(kh, dh)[0], same_padding(kw, dw)[0]  # the odd pixel goes after
    return pair(conv.padding)


@dataclass(frozen=True)
class Sliding:
    """A window sliding over a map: kernel, stride, padding, dilation per axis."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)

    def window(self, y0: int, x0: int, y1: int, x1: int) -> tuple[int, int, int, int]:
        """The input rows and columns (half-open, padding included, so maybe below 0 or past
        the edge) that output rows ``y0:y1`` and columns ``x0:x1`` read."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
        )
        return (
            y0 * sh - ph,
            x0 * sw - pw,
            (y1 - 1) * sh - ph + dh * (kh - 1) + 1,
            (x1 - 1) * sw - pw + dw * (kw - 1) + 1,
        )


def sliding(module: nn.Module | None) -> Sliding | None:
    """The sliding window of a convolution or a (non-adaptive) pooling layer."""
    if isinstance(module, nn.Conv2d):
        return Sliding(
            pair(module.kernel_size),
            pair(module.stride),
            conv_padding(module),
            pair(module.dilation),
        )
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d)):
        kernel = pair(module.kernel_size)
        stride = pair(module.stride) if module.stride else kernel
        padding = pair(getattr(module, "padding", 0))
        dilation = pair(getattr(module, "dilation", 1))
        return Sliding(kernel, stride, padding, dilation)
    return None


def adaptive_window(index: int, size_in: int, size_out: int) -> tuple[int, int]:
    """The input cells ``[start, end)`` that adaptive pooling gives output ``index``."""
    return index * size_in // size_out, math.ceil((index + 1) * size_in / size_out)


ALL = None  # the whole of a source
Back = list[tuple[int, Any, frozenset | None]]  # (source index, region or ALL, channels or None)


def _region_of(value: torch.Tensor, region: Any) -> Any:
    if region is not ALL:
        return region
    return (0, 0, value.shape[1], value.shape[2]) if value.ndim == 3 else (0, value.shape[0])


def _back(trace: Trace, step: Step, region: Any, channels: frozenset | None) -> Back | str:
    """The regions of ``step``'s inputs that ``region`` (channels ``channels``) of its output
    reads, or why cannot be said."""
    inputs = trace.inputs(step)
    if not step.sources:
        return "its input is not the output of one recorded step" + (
            f" (torch.fx could not trace this model: {trace.why_hooks}; cnnlab followed it by "
            "module calls only)"
            if trace.why_hooks
            else ""
        )
    out = step.output
    region = _region_of(out, region)
    kind = step.kind
    if kind in ("linear", "softmax"):
        return [(0, ALL, None)]
    if kind == "concat" and _stacks_channels(step, inputs):
        return _concat_back(inputs, region, channels)
    if kind in ("concat", "reshape", "flatten"):
        return _moved_back(step, inputs, region, channels)
    if kind == "lrn":
        return [(0, region, None)]
    if kind in ("relu", "activation", "batchnorm", "dropout", "identity", "add", "multiply"):
        back = []
        for i, value in enumerate(inputs):
            if value.ndim != out.ndim:
                back.append((i, ALL, None))  # broadcast from another rank: all of it
                continue
            r = region
            if value.ndim == 3:
                y0, x0, y1, x1 = region
                r = (0, 0, 1, 1) if value.shape[1:] == (1, 1) else (y0, x0, y1, x1)
            ch = frozenset({0}) if value.shape[0] == 1 and out.shape[0] > 1 else channels
            back.append((i, r, ch))
        return back
    if out.ndim != 3 or inputs[0].ndim != 3:
        return f"a {step.op} on shape {step.shape}: cnnlab follows windows on maps only"
    y0, x0, y1, x1 = region
    if kind == "conv":
        return [(0, sliding(step.module).window(y0, x0, y1, x1), None)]
    if kind == "pool":
        moving = sliding(step.module)
        if moving is not None:
            return [(0, moving.window(y0, x0, y1, x1), channels)]
        (h, w), (oh, ow) = inputs[0].shape[1:], out.shape[1:]
        if step.module is None:  # x.mean((2, 3)): every cell
            return [(0, ALL, channels)]
        top, left = adaptive_window(y0, h, oh)[0], adaptive_window(x0, w, ow)[0]
        bottom, right = adaptive_window(y1 - 1, h, oh)[1], adaptive_window(x1 - 1, w, ow)[1]
        return [(0, (top, left, bottom, right), channels)]
    if kind == "fit":
        (h, w), (oh, ow) = inputs[0].shape[1:], out.shape[1:]
        if (h, w) == (oh, ow):
            return [(0, region, channels)]
        if (oh - h, ow - w) == (4, 4):
            return [(0, (y0 - 2, x0 - 2, y1 - 2, x1 - 2), channels)]
        rows = _resized(y0, y1, h, oh)
        cols = _resized(x0, x1, w, ow)
        return [(0, (rows[0], cols[0], rows[1], cols[1]), channels)]
    return f"cnnlab does not know which inputs a {step.op} reads"


def _stacks_channels(step: Step, inputs: list[torch.Tensor]) -> bool:
    """Whether a concatenation stacks maps of one size along the channels (Inception, DenseNet)."""
    out = step.output
    return (
        out.ndim == 3
        and all(v.ndim == 3 and v.shape[1:] == out.shape[1:] for v in inputs)
        and sum(v.shape[0] for v in inputs) == out.shape[0]
        and len(inputs) > 0
        and _concat_dim(step) in (1, -3)
    )


def _concat_dim(step: Step) -> int:
    args, kwargs = step.call or ((), {})
    return int(kwargs.get("dim", args[1] if len(args) > 1 else 0))


def _concat_back(inputs: list[torch.Tensor], region: Any, channels: frozenset | None) -> Back:
    back: Back = []
    start = 0
    for i, value in enumerate(inputs):
        end = start + value.shape[0]
        if channels is None:
            back.append((i, region, None))
        else:
            mine = frozenset(c - start for c in channels if start <= c < end)
            if mine:
                back.append((i, region, mine))
        start = end
    return back


def _resized(start: int, end: int, size_in: int, size_out: int) -> tuple[int, int]:
    """Input cells a bilinear resize (align_corners=False) reads for outputs ``start:end``."""
    low = max((start + 0.5) * size_in / size_out - 0.5, 0.0)
    high = max((end - 1 + 0.5) * size_in / size_out - 0.5, 0.0)
    return min(int(math.floor(low)), size_in - 1), min(int(math.floor(high)) + 2, size_in)


def _index_replay(step: Step, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """The step replayed on tensors of indices: each output cell holds the global index of the
    input cell it was moved from (inputs numbered one after another)."""
    known = getattr(step, "_index_replay", None)
    if known is not None and known[2] is inputs[0]:
        return known[0], known[1]
    offsets, tensors, start = [], [], 0
    for value in inputs:
        offsets.append(start)
        tensors.append(
            torch.arange(start, start + value.numel(), dtype=torch.float64).reshape(1, *value.shape)
        )
        start += value.numel()
    moved = step.replay(*tensors)
    step._index_replay = (moved[0], offsets, inputs[0])  # the same for every position
    return moved[0], offsets


def source_positions(
    step: Step, inputs: list[torch.Tensor], position: tuple[int, ...]
) -> tuple[int, tuple[int, ...]]:
    """The input (its index among ``inputs``) and the position in it that output ``position`` of
    a moving step (flatten, view, concatenation) was taken from."""
    moved, offsets = _index_replay(step, inputs)
    index = int(moved[position])
    source = max(i for i, o in enumerate(offsets) if o <= index)
    where = torch.unravel_index(torch.tensor(index - offsets[source]), inputs[source].shape)
    return source, tuple(int(v) for v in where)


def _moved_back(step: Step, inputs: list[torch.Tensor], region: Any, channels) -> Back | str:
    moved, offsets = _index_replay(step, inputs)
    if moved.ndim == 3:
        y0, x0, y1, x1 = region
        picked = moved[:, y0:y1, x0:x1]
        if channels is not None:
            picked = picked[sorted(channels)]
    elif moved.ndim == 1:
        picked = moved[region[0] : region[1]]
    else:
        return f"a {step.op} to shape {step.shape}: cnnlab follows maps and vectors only"
    indices = picked.flatten().long()
    back: Back = []
    for i, (value, offset) in enumerate(zip(inputs, offsets)):
        mine = indices[(indices >= offset) & (indices < offset + value.numel())] - offset
        if not mine.numel():
            continue
        where = torch.unravel_index(mine, value.shape)
        if value.ndim == 3:
            c, y, x = where
            box = (int(y.min()), int(x.min()), int(y.max()) + 1, int(x.max()) + 1)
            back.append((i, box, frozenset(int(v) for v in c.unique())))
        elif value.ndim == 1:
            back.append((i, (int(mine.min()), int(mine.max()) + 1), None))
        else:
            back.append((i, ALL, None))
    return back


def _clip(value: torch.Tensor, region: Any) -> Any:
    """``region`` inside ``value``'s shape, or None when nothing of it lies inside."""
    if region is ALL:
        return _region_of(value, ALL)
    if value.ndim == 3:
        y0, x0, y1, x1 = region
        h, w = value.shape[1:]
        y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
        return (y0, x0, y1, x1) if y1 > y0 and x1 > x0 else None
    i0, i1 = max(region[0], 0), min(region[1], value.shape[0])
    return (i0, i1) if i1 > i0 else None


def _as_source(
    output: torch.Tensor, given: torch.Tensor, region: Any, channels: frozenset | None
) -> tuple[Any, frozenset | None]:
    """A region of what a step was given, on its source's output: the same when the shapes
    agree, else (a reshape between two module calls) through the flat order of the values."""
    if output.shape == given.shape:
        return region, channels
    flat = torch.arange(given.numel()).reshape(given.shape)
    picked = (
        flat[:, region[0] : region[2], region[1] : region[3]]
        if len(region) == 4
        else flat[region[0] : region[1]]
    )
    if channels is not None and given.ndim == 3:
        picked = picked[sorted(channels)]
    where = torch.unravel_index(picked.flatten(), output.shape)
    if output.ndim == 3:
        c, y, x = where
        box = (int(y.min()), int(x.min()), int(y.max()) + 1, int(x.max()) + 1)
        return box, frozenset(int(v) for v in c.unique())
    return (int(where[0].min()), int(where[0].max()) + 1), None


def _union(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if len(a) == 4:
        return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
    return (min(a[0], b[0]), max(a[1], b[1]))


def _start(step: Step, position: tuple[int, ...]) -> tuple[Any, frozenset | None]:
    if len(position) == 3:
        c, y, x = position
        return (y, x, y + 1, x + 1), frozenset({c})
    return (position[0], position[0] + 1), None


def step_windows(trace: Trace, step: Step, position: tuple[int, ...]) -> list[dict[str, Any]]:
    """The window output ``position`` of ``step`` reads on each of its inputs (a map's window
    unclipped, so that it shows the padding; ``all`` when it reads the whole input)."""
    region, channels = _start(step, position)
    back = _back(trace, step, region, channels)
    if isinstance(back, str):
        return []
    windows = []
    for index, found, chans in back:
        source = step.sources[index]
        value = trace.inputs(step)[index]
        window: dict[str, Any] = {"layer": source, "step": source, "input": index}
        if found is ALL:
            window["all"] = True
        elif len(found) == 4:
            window |= dict(zip(("y0", "x0", "y1", "x1"), found))
        else:
            window |= {"i0": found[0], "i1": found[1]}
        if chans is not None and value.ndim == 3:
            window["channels"] = sorted(chans)
        windows.append(window)
    return windows


def receptive_field(trace: Trace, name: str, position: tuple[int, ...]) -> dict[str, Any]:
    """The input-image pixels (clipped, half-open) output ``position`` of step ``name`` depends
    on, through every path back to the input; ``whole`` says whether that is all of the image.
    ``{"unknown": why}`` when a step on the way cannot be followed."""
    order = list(trace.steps)
    regions: dict[str, tuple[Any, frozenset | None]] = {name: _start(trace.steps[name], position)}
    reached = None
    for current in reversed(order[: order.index(name) + 1]):
        if current not in regions:
            continue
        region, channels = regions.pop(current)
        step = trace.steps[current]
        back = _back(trace, step, region, channels)
        if isinstance(back, str):
            return {"unknown": f"step {current} ({step.op}): {back}"}
        inputs = trace.inputs(step)
        for index, found, chans in back:
            source = step.sources[index]
            clipped = _clip(inputs[index], found)
            if clipped is None:
                continue
            clipped, chans = _as_source(trace.value_of(source), inputs[index], clipped, chans)
            if source == INPUT:
                reached = _union(reached, clipped)
                continue
            known, known_channels = regions.get(source, (None, frozenset()))
            merged_channels = (
                None if chans is None or known_channels is None else known_channels | chans
            )
            regions[source] = (_union(known, clipped), merged_channels)
    if reached is None or len(reached) != 4:
        return {"unknown": f"step {name} does not lead back to the input image's pixels"}
    y0, x0, y1, x1 = reached
    _, height, width = trace.image.shape
    whole = (y0, x0, y1, x1) == (0, 0, height, width)
    return {"y0": y0, "x0": x0, "y1": y1, "x1": x1, "whole": whole, "size": [y1 - y0, x1 - x0]}
