"""The explanations of the steps that pick, spread or move values rather than weigh them:
pooling, softmax, a residual add (or a product), a concatenation, flatten or reshape (where the
value came from) and LeNet-5's input fit (padding or a bilinear resize). Each returns its parts,
the number worked out here (``computed``) and one sentence."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .trace import Source, Step
from .trace_field import adaptive_window, sliding, source_positions


def _n(value: float) -> str:
    return f"{value:.4g}"


def pool(step: Step, inputs: list[torch.Tensor], position: tuple[int, ...]) -> dict:
    """A pooled value: the window it reads and the max, Lp norm or mean of that window."""
    given = inputs[0]
    module = step.module
    if module is None or isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        window, patch, padded_mask, divisor = _adaptive_window(step, given, position)
    else:
        window, patch, padded_mask, divisor = _sliding_window(module, given, position)
    where = f"rows {window[0]}..{window[2] - 1}, columns {window[1]}..{window[3] - 1}"
    pads = int(sum(sum(r) for r in padded_mask)) if padded_mask else 0
    part: dict[str, Any] = {"patch": [[_finite(v) for v in row] for row in patch.tolist()]}
    if padded_mask is not None:
        part["padded"] = padded_mask
    if isinstance(module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        return part | _max_pool(patch, where, pads)
    if isinstance(module, nn.LPPool2d):
        return part | _lp_pool(module, patch, where)
    return part | _avg_pool(module, patch, divisor, pads, where)


def _adaptive_window(
    step: Step, given: torch.Tensor, position: tuple[int, ...]
) -> tuple[tuple[int, ...], torch.Tensor, None, int]:
    """An adaptive pool's window (top, left, bottom, right), its values, no padding, and its
    size as the divisor."""
    channel, y, x = position
    (h, w), (oh, ow) = given.shape[1:], step.output.shape[1:]
    (top, bottom), (left, right) = adaptive_window(y, h, oh), adaptive_window(x, w, ow)
    patch = given[channel, top:bottom, left:right]
    return (top, left, bottom, right), patch, None, patch.numel()


def _sliding_window(
    module: nn.Module, given: torch.Tensor, position: tuple[int, ...]
) -> tuple[tuple[int, ...], torch.Tensor, list, int]:
    """A sliding pool's window, its values (padding included, cells past the end of a ceil_mode
    window dropped), which of them are padding, and the divisor an average pool uses."""
    channel, y, x = position
    moving = sliding(module)
    window = moving.window(y, x, y + 1, x + 1)
    (ph, pw), (dh, dw) = moving.padding, moving.dilation
    (kh, kw) = moving.kernel
    fill = -math.inf if isinstance(module, nn.MaxPool2d) else 0.0
    pads = (pw, pw + dw * kw, ph, ph + dh * kh)
    padded = F.pad(given[channel], pads, value=fill)
    real = F.pad(torch.ones_like(given[channel]), pads)
    top, left = window[0] + ph, window[1] + pw
    rows = slice(top, top + dh * (kh - 1) + 1, dh)
    cols = slice(left, left + dw * (kw - 1) + 1, dw)
    patch, inside = padded[rows, cols], real[rows, cols]
    # ceil_mode: a window that runs past the padded input keeps only its cells inside it
    keep_h = max(0, min(patch.shape[0], (given.shape[1] + 2 * ph - top + dh - 1) // dh))
    keep_w = max(0, min(patch.shape[1], (given.shape[2] + 2 * pw - left + dw - 1) // dw))
    patch, inside = patch[:keep_h, :keep_w], inside[:keep_h, :keep_w]
    divisor = patch.numel()
    if isinstance(module, nn.AvgPool2d):
        if module.divisor_override:
            divisor = module.divisor_override
        elif not module.count_include_pad:
            divisor = int(inside.sum())
        elif module.ceil_mode:  # cells past the padding never count
            in_padded = F.pad(torch.ones_like(given[channel]), (pw, pw, ph, ph), value=1.0)
            divisor = int(in_padded[rows, cols][:keep_h, :keep_w].numel())
    return window, patch, (inside == 0).tolist(), divisor


def _max_pool(patch: torch.Tensor, where: str, pads: int) -> dict[str, Any]:
    """The largest value of the window and where it sits."""
    flat = int(patch.argmax())
    winner = [flat // patch.shape[1], flat % patch.shape[1]]
    best = float(patch.max())
    note = f" ({pads} of them padding, -inf, which never wins)" if pads else ""
    text = (
        f"max pooling keeps the largest of the {patch.numel()} values in {where}{note}: "
        f"{_n(best)} at window row {winner[0]}, column {winner[1]}."
    )
    return {"op": "max", "winner": winner, "computed": best, "text": text}


def _lp_pool(module: nn.LPPool2d, patch: torch.Tensor, where: str) -> dict[str, Any]:
    """The window's Lp norm, (sum of x^p)^(1/p)."""
    p = float(module.norm_type)
    total = float(patch.double().pow(p).sum())
    value = total ** (1 / p) if total > 0 else 0.0
    text = f"Lp pooling (p = {_n(p)}) of the values in {where}: (sum of x^p)^(1/p) = {_n(value)}."
    return {"op": "lp", "norm_type": p, "computed": value, "text": text}


def _avg_pool(
    module: nn.Module | None, patch: torch.Tensor, divisor: int, pads: int, where: str
) -> dict[str, Any]:
    """The window's sum over its divisor, and whether the padded zeros count."""
    total = float(patch.double().sum())
    mean = total / divisor
    if pads and module is not None and module.count_include_pad:
        why = f" (the {pads} padded zeros count: count_include_pad=True)"
    elif pads:
        why = f" (the {divisor} real cells only: the {pads} padded ones do not count)"
    else:
        why = ""
    text = (
        f"average pooling adds the values in {where} ({_n(total)}) and divides by "
        f"{divisor}{why}: {_n(mean)}."
    )
    return {"op": "avg", "mean": mean, "divisor": divisor, "computed": mean, "text": text}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def softmax(step: Step, inputs: list[torch.Tensor], position: tuple[int, ...]) -> dict:
    logits = inputs[0].flatten()
    (index,) = position if len(position) == 1 else (position[0],)
    shift = float(logits.max())
    exps = torch.exp(logits.double() - shift)
    total = float(exps.sum())
    value = float(exps[index]) / total
    ranked = sorted(range(logits.numel()), key=lambda i: -float(exps[i]))
    text = (
        f"each of the {logits.numel()} scores is exponentiated (after subtracting the largest, "
        f"{_n(shift)}, which changes nothing but keeps exp finite) and divided by the sum of all "
        f"exponentials: exp({_n(float(logits[index]))} - {_n(shift)}) / {_n(total)} = {_n(value)}."
    )
    return {
        "logits": logits.tolist(),
        "exps": exps.tolist(),
        "shift": shift,
        "sum_exp": total,
        "probabilities": (exps / total).tolist(),
        "ranked": ranked,
        "computed": value,
        "text": text,
    }


def binary(step: Step, inputs: list[torch.Tensor], position: tuple[int, ...]) -> dict:
    terms = []
    for source, value in zip(step.sources, inputs):
        at = tuple(p if s > 1 else 0 for p, s in zip(position[-value.ndim :], value.shape))
        terms.append({"source": source, "value": float(value[at])})
    constants = [v for v in _plain_args(step) if isinstance(v, (int, float))]
    numbers = [t["value"] for t in terms] + [float(v) for v in constants]
    if step.kind == "add":
        alpha = float((step.call[1] if step.call else {}).get("alpha", 1))
        result = numbers[0] + alpha * sum(numbers[1:]) if len(numbers) > 1 else numbers[0]
        sign = " + "
    else:
        result = math.prod(numbers)
        sign = " x "
    named = sign.join(f"{t['source']} {_n(t['value'])}" for t in terms)
    if constants:
        named += "".join(f"{sign}{_n(float(c))}" for c in constants)
    what = "the residual add sums" if step.kind == "add" and len(terms) == 2 else "it combines"
    text = f"{what} the values at this position: {named} = {_n(result)}."
    return {"terms": terms, "constants": constants, "computed": result, "text": text}


def _plain_args(step: Step) -> list[Any]:
    if step.call is None:
        return []
    args, _ = step.call
    return [a for a in args if not isinstance(a, Source)]


def moved(step: Step, inputs: list[torch.Tensor], position: tuple[int, ...]) -> dict:
    """A value moved, not changed (flatten, view, concatenation): where it came from."""
    source_index, where = source_positions(step, inputs, position)
    source = step.sources[source_index]
    value = float(inputs[source_index][where])
    given = inputs[source_index]
    coords = ", ".join(f"{n} {i}" for n, i in zip(_axes(given), where))
    if step.kind == "flatten" and given.ndim == 3:
        c, h, w = given.shape
        text = (
            f"flatten lays the {c}x{h}x{w} maps out row by row, channel after channel: output "
            f"{position[0]} = channel {where[0]} x {h * w} + row {where[1]} x {w} + column "
            f"{where[2]}, so it is {coords} of {source} ({_n(value)})."
        )
    elif step.kind == "concat":
        offset = sum(inputs[i].shape[0] for i in range(source_index))
        text = (
            f"the concatenation stacks its {len(inputs)} inputs' channels one after another; "
            f"channel {position[0]} is channel {position[0] - offset} of input {source_index + 1} "
            f"({source}, channels {offset}..{offset + given.shape[0] - 1}): {_n(value)}."
        )
    else:
        text = (
            f"{step.op} moves values without changing them: this one is {coords} of {source} "
            f"({_n(value)})."
        )
    return {
        "source": {"step": source, "position": list(where)} | dict(zip(_axes(given), where)),
        "computed": value,
        "text": text,
    }


def _axes(value: torch.Tensor) -> list[str]:
    return (
        ["channel", "y", "x"]
        if value.ndim == 3
        else ["index"]
        if value.ndim == 1
        else [f"axis {i}" for i in range(value.ndim)]
    )


def fit(step: Step, inputs: list[torch.Tensor], position: tuple[int, ...]) -> dict:
    """LeNet-5's input fit: unchanged, zero-padded by 2 (28x28) or resized bilinearly."""
    given = inputs[0]
    channel, y, x = position
    (h, w), (oh, ow) = given.shape[1:], step.output.shape[1:]
    if (h, w) == (oh, ow):
        value = float(given[position])
        return {
            "function": "unchanged",
            "computed": value,
            "text": f"the image is already {oh}x{ow}: {_n(value)} passes unchanged.",
        }
    if (oh - h, ow - w) == (4, 4):
        inside = 2 <= y < h + 2 and 2 <= x < w + 2
        zero = getattr(step.module, "pad", "zero") == "zero"
        if zero:
            level, how = 0.0, "2 zeros on each side"
        else:
            plane = given[channel]
            ring = torch.cat([plane[0], plane[-1], plane[1:-1, 0], plane[1:-1, -1]])
            level = float(ring.median())  # the lower median, as the fit takes it
            how = (
                f"2 pixels of the image's background level on each side ({_n(level)}, the "
                "median of its border pixels)"
            )
        value = float(given[channel, y - 2, x - 2]) if inside else level
        where = f"input row {y - 2}, column {x - 2}" if inside else "the 2-pixel border"
        return {
            "function": "zero-pad 2" if zero else "background-pad 2",
            "computed": value,
            "text": f"the 28x28 image is padded to 32x32 with {how}: this value comes from "
            f"{where}: {_n(value)}.",
        }
    (y0, y1, fy), (x0, x1, fx) = _bilinear(y, h, oh), _bilinear(x, w, ow)
    corners = [[float(given[channel, a, b]) for b in (x0, x1)] for a in (y0, y1)]
    value = (
        corners[0][0] * (1 - fy) * (1 - fx)
        + corners[0][1] * (1 - fy) * fx
        + corners[1][0] * fy * (1 - fx)
        + corners[1][1] * fy * fx
    )
    text = (
        f"the {h}x{w} image is resized bilinearly to {oh}x{ow}: this pixel lies between input "
        f"rows {y0}-{y1} and columns {x0}-{x1} (fractions {_n(fy)}, {_n(fx)}); the weighted mean "
        f"of those four pixels is {_n(value)}."
    )
    return {
        "function": "bilinear resize",
        "corners": corners,
        "fractions": [fy, fx],
        "computed": value,
        "text": text,
    }


def _bilinear(index: int, size_in: int, size_out: int) -> tuple[int, int, float]:
    """The two input cells an output cell of a bilinear resize (align_corners=False) reads,
    and the weight of the second."""
    source = max((index + 0.5) * size_in / size_out - 0.5, 0.0)
    low = min(int(math.floor(source)), size_in - 1)
    high = min(low + 1, size_in - 1)
    return low, high, source - low
