"""One step of a trace as the page draws it (a row of /analyze): its kind, a label, its shape,
the steps it reads, and its maps as one sprite with their ranges, or a vector's values (a
softmax's sorted by probability, the prediction first).

What one /analyze answer may carry is bounded: every step together gets at most
:data:`CELLS_BUDGET` map cells, shared evenly, so "show all" on a ResNet stays a few MiB."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..inspect.trace import Step
from .png import png, sprite

CELLS_BUDGET = 1_500_000  # map cells (pixels) in one /analyze answer, over all steps
VECTOR_SHOWN = 16  # values of a vector shown unless more channels are asked for


def step_view(step: Step, channels: int, steps: int) -> dict[str, Any]:
    """The row of step ``step``: up to ``channels`` maps (fewer when the answer's budget,
    shared by ``steps`` rows, runs out; ``channels_shown`` says how many) or values."""
    out = step.output
    shape = list(out.shape)
    view: dict[str, Any] = {
        "name": step.name,
        "kind": step.kind,
        "op": step.op,
        "reads": list(step.sources),
        "label": f"{step.name} · {step.op} · {'×'.join(map(str, shape))}",
        "shape": shape,
        "channels_total": shape[0],
        "min": float(out.min()),
        "max": float(out.max()),
        "layer_min": float(out.min()),
        "layer_max": float(out.max()),
    }
    if out.ndim == 3:
        per_map = shape[1] * shape[2]
        fits = max(1, CELLS_BUDGET // max(1, steps) // per_map)
        shown = out[: min(channels, fits)]
        lows, highs = shown.amin((1, 2)), shown.amax((1, 2))
        view["maps"] = [
            {"min": float(lo), "max": float(hi), "constant": bool(lo == hi) and per_map > 1}
            for lo, hi in zip(lows, highs)
        ]
        view["sprite"] = png(sprite(shown.numpy()))
        view["channels_shown"] = view["count"] = len(shown)
        view["budget_cut"] = len(shown) < min(channels, shape[0])
        return view
    # a vector: each value a 1x1 tile on the layer's one scale; softmax by probability
    count = min(shape[0], max(channels, VECTOR_SHOWN))
    by_size = step.kind == "softmax"
    order = out.argsort(descending=True)[:count] if by_size else torch.arange(count)
    values = out[order]
    view["maps"] = []
    view["indices"] = [int(i) for i in order]
    view["values"] = values.tolist()
    view["sorted"] = step.kind == "softmax"
    view["channels_shown"] = view["count"] = len(values)
    view["budget_cut"] = False
    view["sprite"] = png(values.numpy()[None].astype(np.float32), view["min"], view["max"])
    return view
