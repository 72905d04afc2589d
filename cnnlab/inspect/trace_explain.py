"""One output number of any step of a :class:`~.trace.Trace`, computed again in the open from
the step's real input: a convolution's products over every input channel, an activation's
before and after, a pooling window and its winner, batch norm's affine with its statistics, a
linear layer's dot product, a residual add's two terms, where a concatenated or flattened value
came from, local response normalisation's neighbours, and softmax from logits to probabilities.

Every answer holds ``value`` (what the step itself produced, by torch) and ``computed`` (the
same number worked out here from the parts shown), the window it read on each input and its
receptive field on the image (:mod:`.trace_field`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CnnlabError
from .trace import INPUT, Step, Trace
from .trace_field import conv_padding, receptive_field, sliding, step_windows
from .trace_ops import binary, fit, moved, pool, softmax

TOP_TERMS = 20


class Unexplained(CnnlabError):
    """A position or step that cannot be explained; the message says why and what to do."""


def _n(value: float) -> str:
    return f"{value:.4g}"


def check_position(step: Step, channel: int, y: int, x: int) -> tuple[int, ...]:
    """``(channel, y, x)`` of a map or ``(index,)`` of a vector, checked against the output."""
    out = step.output
    if out.ndim == 3:
        c_out, height, width = out.shape
        if not (0 <= channel < c_out and 0 <= y < height and 0 <= x < width):
            raise Unexplained(
                f"channel {channel}, y {y}, x {x}: step {step.name} has {c_out} channels of "
                f"{height}x{width}; pick channel 0..{c_out - 1}, y 0..{height - 1}, "
                f"x 0..{width - 1}"
            )
        return channel, y, x
    if out.ndim == 1:
        if not 0 <= channel < out.shape[0]:
            raise Unexplained(
                f"channel {channel}: step {step.name} has {out.shape[0]} outputs; pick 0.."
                f"{out.shape[0] - 1} (y and x are 0 for a vector)"
            )
        return (channel,)
    raise Unexplained(
        f"step {step.name}: its output has shape {step.shape}; cnnlab explains maps (C x H x W) "
        "and vectors (N) only"
    )


def explain_value(trace: Trace, name: str, channel: int, y: int = 0, x: int = 0) -> dict:
    """The explanation of output ``(channel, y, x)`` of step ``name`` (a vector's output
    ``channel``; ``y`` and ``x`` are then ignored)."""
    step = trace.step(name)
    position = check_position(step, channel, y, x)
    inputs = trace.inputs(step)
    if not step.sources:
        raise Unexplained(
            f"step {name} ({step.op}) reads no recorded step's output (its input was computed "
            "by something cnnlab did not see); pick a step whose sources are listed"
        )
    explainers = {
        "conv": _conv,
        "relu": _elementwise,
        "activation": _elementwise,
        "dropout": _elementwise,
        "identity": _elementwise,
        "pool": pool,
        "batchnorm": _batchnorm,
        "lrn": _lrn,
        "linear": _linear,
        "softmax": softmax,
        "add": binary,
        "multiply": binary,
        "concat": moved,
        "reshape": moved,
        "flatten": moved,
        "fit": fit,
    }
    explainer = explainers.get(step.kind)
    if explainer is None:
        raise Unexplained(
            f"step {name} is a {step.op}, which cnnlab does not explain value by value; pick a "
            "convolution, activation, pooling, normalisation, linear, add, concatenation, "
            "flatten or softmax step"
        )
    part = explainer(step, inputs, position)
    value = float(step.output[position])
    where = (
        f"channel {channel}, row {y}, column {x}" if step.output.ndim == 3 else f"output {channel}"
    )
    windows = step_windows(trace, step, position)
    answer: dict[str, Any] = {
        "kind": step.kind,
        "step": name,
        "layer": name,
        "op": step.op,
        "position": list(position),
        "value": value,
        "computed": part.pop("computed"),
        "sources": list(step.sources),
        "windows": windows,
        "window": next((w for w in windows if "y0" in w), None),  # the first map window
        "receptive_field": receptive_field(trace, name, position),
    }
    answer["text"] = f"{name} ({step.op}) at {where}: " + part.pop("text")
    answer["text"] += f" The step gave {_n(value)}."
    return answer | part


# ----------------------------------------------------------------------------- kinds


def _conv(step: Step, inputs: list[torch.Tensor], position: tuple[int, ...]) -> dict:
    conv: nn.Conv2d = step.module
    given = inputs[0]
    channel, y, x = position
    moving = sliding(conv)
    (ph, pw), (dh, dw) = conv_padding(conv), conv.dilation
    window = moving.window(y, x, y + 1, x + 1)
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    pads = (pw, pw + dw * conv.kernel_size[1], ph, ph + dh * conv.kernel_size[0])
    padded = F.pad(given[None], pads, mode=mode)[0]
    top, left = window[0] + ph, window[1] + pw
    per_group = conv.in_channels // conv.groups
    first = channel // (conv.out_channels // conv.groups) * per_group
    weights = conv.weight[channel].detach()
    kh, kw = conv.kernel_size
    rows = slice(top, top + dh * (kh - 1) + 1, dh)
    cols = slice(left, left + dw * (kw - 1) + 1, dw)
    patches = padded[first : first + per_group, rows, cols]
    products = patches * weights
    subtotals = products.double().sum((1, 2))
    total = float(subtotals.sum())
    channels = [
        {"index": first + j, "kernel": k, "patch": p, "products": q, "subtotal": t}
        for j, (k, p, q, t) in enumerate(
            zip(weights.tolist(), patches.tolist(), products.tolist(), subtotals.tolist())
        )
    ]
    bias = float(conv.bias[channel].detach()) if conv.bias is not None else 0.0
    subtotals = " + ".join(_n(c["subtotal"]) for c in channels[:8])
    more = f" + ... ({len(channels) - 8} more)" if len(channels) > 8 else ""
    text = (
        f"the {kh}x{kw} kernel of each of the {per_group} input channels multiplies the window "
        f"rows {window[0]}..{window[2] - 1}, columns {window[1]}..{window[3] - 1} of its input "
        f"({kh * kw * per_group} products); the channel subtotals {subtotals}{more} plus the "
        f"bias {_n(bias)} give {_n(total + bias)}."
    )
    outside = (
        window[0] < 0 or window[1] < 0 or window[2] > given.shape[1] or window[3] > given.shape[2]
    )
    if outside:
        text += (
            f" Cells outside the {given.shape[1]}x{given.shape[2]} input are padding "
            f"({mode} padding)."
        )
    return {
        "channels": channels,
        "bias": bias,
        "sum": total + bias,
        "computed": total + bias,
        "magnitude": float(products.double().abs().sum()) + abs(bias),
        "padding": [ph, pw],
        "stride": list(moving.stride),
        "dilation": [dh, dw],
        "formula": f"sum of {kh * kw * per_group} products + bias = {_n(total)} + {_n(bias)} "
        f"= {_n(total + bias)}",
        "text": text,
    }


FUNCTIONS = {
    "ReLU": "max(0, x)",
    "Tanh": "tanh(x)",
    "Sigmoid": "1 / (1 + exp(-x))",
    "ReLU6": "min(max(0, x), 6)",
}


def _elementwise(step: Step, inputs: list[torch.Tensor], position: tuple[int, ...]) -> dict:
    before = float(inputs[0][position])
    if step.kind in ("dropout", "identity"):
        function = "x (passes every value unchanged at inference)"
        after = before
    else:
        name = type(step.module).__name__
        function = FUNCTIONS.get(name, f"{name}(x)")
        if name == "ReLU":
            after = max(0.0, before)
        elif name == "Sigmoid":
            after = 1 / (1 + math.exp(-before)) if before > -700 else 0.0
        elif name == "Tanh":
            after = math.tanh(before)
        else:  # the module on this one number
            after = float(step.module(inputs[0][position].reshape(1)).reshape(()))
    text = f"{function.split(' (')[0]} turns {_n(before)} into {_n(after)}."
    if step.kind in ("dropout", "identity"):
        text = f"{step.op} passes {_n(before)} on unchanged (dropout is off at inference)."
    return {"function": function, "before": before, "after": after, "computed": after, "text": text}


def _batchnorm(step: Step, inputs: list[torch.Tensor], position: tuple[int, ...]) -> dict:
    module, given = step.module, inputs[0]
    c = position[0]
    if module.running_mean is not None:
        mean, var = float(module.running_mean[c]), float(module.running_var[c])
        where = "the running statistics learned in training"
    else:
        values = given[c] if given.ndim == 3 else given
        mean, var = float(values.mean()), float(values.var(unbiased=False))
        where = "this input's own statistics (the layer keeps none)"
    gamma = float(module.weight[c].detach()) if module.weight is not None else 1.0
    beta = float(module.bias[c].detach()) if module.bias is not None else 0.0
    x, eps = float(given[position]), float(module.eps)
    y = (x - mean) / math.sqrt(var + eps) * gamma + beta
    text = (
        f"batch norm with {where}: (x - mean) / sqrt(var + eps) * gamma + beta = "
        f"({_n(x)} - {_n(mean)}) / sqrt({_n(var)} + {eps:g}) * {_n(gamma)} + {_n(beta)} = {_n(y)}."
    )
    part = {"x": x, "mean": mean, "var": var, "eps": eps, "gamma": gamma, "beta": beta, "y": y}
    return part | {"computed": y, "text": text}


def _lrn(step: Step, inputs: list[torch.Tensor], position: tuple[int, ...]) -> dict:
    module: nn.LocalResponseNorm = step.module
    given = inputs[0]
    c = position[0]
    rest = position[1:]
    n, alpha, beta, k = module.size, module.alpha, module.beta, module.k
    low, high = max(0, c - n // 2), min(given.shape[0], c + (n - 1) // 2 + 1)
    neighbours = [float(given[(j, *rest)]) for j in range(low, high)]
    squares = sum(v * v for v in neighbours)
    x = float(given[position])
    value = x / (k + alpha / n * squares) ** beta
    text = (
        f"local response normalisation divides by (k + alpha/n * sum of the squares of channels "
        f"{low}..{high - 1} at this position)^beta = ({_n(k)} + {_n(alpha)}/{n} * "
        f"{_n(squares)})^{_n(beta)}: {_n(x)} becomes {_n(value)}."
    )
    return {
        "x": x,
        "neighbours": neighbours,
        "channels": [low, high],
        "computed": value,
        "text": text,
    }


def _linear(step: Step, inputs: list[torch.Tensor], position: tuple[int, ...]) -> dict:
    given = inputs[0]
    if given.ndim != 1:
        raise Unexplained(
            f"step {step.name} reads an input of shape {list(given.shape)}; cnnlab explains "
            "linear layers on a vector (after a flatten) only"
        )
    (index,) = position
    module: nn.Linear = step.module
    weights = module.weight[index].detach()
    products = weights * given
    bias = float(module.bias[index].detach()) if module.bias is not None else 0.0
    order = products.abs().argsort(descending=True)[:TOP_TERMS].tolist()
    terms = [
        {
            "index": i,
            "weight": float(weights[i]),
            "input": float(given[i]),
            "product": float(products[i]),
        }
        for i in order
    ]
    dot = float(products.double().sum())
    total = dot + bias
    text = (
        f"the dot product of the {given.numel()} inputs with this output's {given.numel()} "
        f"weights ({_n(dot)}; the largest term is input {order[0]}: "
        f"{_n(terms[0]['input'])} x {_n(terms[0]['weight'])}) plus the bias {_n(bias)} gives "
        f"{_n(total)}."
    )
    return {
        "count": given.numel(),
        "top_terms": terms,
        "bias": bias,
        "sum": total,
        "computed": total,
        "magnitude": float(products.double().abs().sum()) + abs(bias),
        "text": text,
    }


__all__ = ["INPUT", "Unexplained", "channel_contributions", "check_position", "explain_value"]


def channel_contributions(trace: Trace, name: str, channel: int, limit: int = 16) -> dict:
    """A convolution's output map ``channel`` taken apart: each input channel's correlation with
    its kernel slice (a map of the output's size), the bias, and their sum, which is the output
    map. The ``limit`` input channels that contribute most (by total size) come first."""
    step = trace.step(name)
    if step.kind != "conv":
        convs = [n for n, s in trace.steps.items() if s.kind == "conv"]
        raise Unexplained(f"step {name!r}: expected a convolution, one of {', '.join(convs[:12])}")
    conv: nn.Conv2d = step.module
    check_position(step, channel, 0, 0)
    given = trace.inputs(step)[0]
    per_group = conv.in_channels // conv.groups
    first = channel // (conv.out_channels // conv.groups) * per_group
    (ph, pw) = conv_padding(conv)
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    part = given[None, first : first + per_group]
    if isinstance(conv.padding, str) and conv.padding == "same":
        padded, padding = part, "same"
    else:
        padded, padding = F.pad(part, (pw, pw, ph, ph), mode=mode), 0
    weight = conv.weight[channel].detach()[:, None]  # per_group x 1 x kh x kw
    with torch.no_grad():
        maps = F.conv2d(
            padded,
            weight,
            stride=conv.stride,
            padding=padding,
            dilation=conv.dilation,
            groups=per_group,
        )[0]
    bias = float(conv.bias[channel].detach()) if conv.bias is not None else 0.0
    total = maps.double().sum(0) + bias
    output = step.output[channel]
    order = maps.abs().sum((1, 2)).argsort(descending=True)[:limit]
    return {
        "step": name,
        "channel": channel,
        "inputs": [first + int(j) for j in order],
        "maps": maps[order],
        "bias": bias,
        "sum": total.float(),
        "output": output,
        "max_difference": float((total - output.double()).abs().max()),
        "count": per_group,
        "text": (
            f"{name} channel {channel} is the sum of {per_group} maps, one per input channel "
            f"(that channel correlated with its {conv.kernel_size[0]}x{conv.kernel_size[1]} "
            f"kernel slice), plus the bias {_n(bias)}; shown: the {len(order)} input channels "
            "that contribute most."
        ),
    }
