"""One output number of any layer, computed again in the open from the layer's real input: a
convolution's products over every input channel, a ReLU's before and after, a pooling window
and its winner, batch norm's affine with its statistics, a linear layer's dot product, where a
flattened value came from, and softmax from logits to probabilities. Every answer also gives
the value the layer itself produced (``value``), so the page (and the tests) can check one
against the other, and where the number came from on the previous map and on the input image.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import (
    INPUT,
    NoChain,
    Recording,
    adaptive_window,
    conv_padding,
    input_window,
    layer_kind,
    receptive_field,
    sliding,
)

TOP_TERMS = 20
SOFTMAX = "softmax"  # the name of the softmax a model without a softmax layer is given


class Unexplained(Exception):
    """A position or layer that cannot be explained; the message says why and what to do."""


def _n(value: float) -> str:
    return f"{value:.4g}"


def softmax_layer(model: nn.Module) -> str | None:
    """The name of the model's own softmax layer, or ``None`` (then :data:`SOFTMAX` names the
    softmax of its logits)."""
    for name, module in model.named_modules():
        if name and layer_kind(module) == "softmax":
            return name
    return None


def explain(
    model: nn.Module, recording: Recording, layer: str, channel: int, y: int, x: int
) -> dict[str, Any]:
    """The explanation of output ``(channel, y, x)`` of ``layer`` (1-D layers: ``channel`` is
    the output index; ``y`` and ``x`` are ignored)."""
    modules = dict(model.named_modules())
    if layer == SOFTMAX and softmax_layer(model) is None:
        return _softmax(layer, recording.logits[0], torch.softmax(recording.logits[0], 0), channel)
    module = modules.get(layer) if layer else None
    if module is None or layer not in recording.outputs:
        known = [n for n in recording.order if n in recording.outputs]
        raise Unexplained(
            f"layer {layer!r}: expected a layer of this model that produced a map, e.g. "
            f"{', '.join(known[:6])}; pick one from the analyze answer's layers"
        )
    kind = layer_kind(module)
    out = recording.outputs[layer]
    given = recording.inputs[layer]
    position = _position(layer, out, channel, y, x)
    try:
        previous = recording.predecessor(layer)
    except NoChain as why:
        raise Unexplained(
            f"{why}, so its window cannot be shown on a previous map; explain "
            "a layer whose input is one earlier layer's output (a convolution after a ReLU)"
        ) from None
    if kind == "softmax":
        return _softmax(layer, given.flatten(), out.flatten(), channel)
    value = float(out[position])
    base: dict[str, Any] = {"kind": kind, "layer": layer, "value": value, "window": None}
    box = (y, x, y + 1, x + 1) if out.ndim == 3 else None
    if kind == "conv":
        part, window = _conv(module, given, channel, y, x)
    elif kind in ("relu", "activation", "dropout"):
        part, window = _elementwise(module, kind, given, out, position)
    elif kind == "pool":
        part, window = _pool(module, given, out, channel, y, x)
    elif kind == "batchnorm":
        part, window = _batchnorm(module, given, out, position)
    elif kind == "linear":
        part, window = _linear(module, given, channel)
    elif kind == "flatten":
        part, window = _flatten(given, channel)
        source = part["source"]
        if given.ndim == 3:
            box = (source["y"], source["x"], source["y"] + 1, source["x"] + 1)
            base["receptive_field"] = _field_of(model, recording, previous, box)
    else:
        part, window = _moved(module, layer, given, out, position)
    if window is not None:
        y0, x0, y1, x1 = window
        base["window"] = {"layer": previous, "y0": y0, "x0": x0, "y1": y1, "x1": x1}
    if "receptive_field" not in base:
        base["receptive_field"] = receptive_field(model, recording, layer, box) if box else None
    where = f"channel {channel}, row {y}, column {x}" if out.ndim == 3 else f"output {channel}"
    base["text"] = f"{layer} ({type(module).__name__}) at {where}: " + part.pop("text")
    base["text"] += f" The layer gave {_n(value)}."
    return base | part


def _field_of(
    model: nn.Module, recording: Recording, layer: str, box: tuple[int, int, int, int]
) -> dict[str, int] | None:
    if layer == INPUT:
        return {"y0": box[0], "x0": box[1], "y1": box[2], "x1": box[3]}
    return receptive_field(model, recording, layer, box)


def _position(layer: str, out: torch.Tensor, channel: int, y: int, x: int) -> tuple[int, ...]:
    if out.ndim == 3:
        c_out, height, width = out.shape
        if not (0 <= channel < c_out and 0 <= y < height and 0 <= x < width):
            raise Unexplained(
                f"channel {channel}, y {y}, x {x}: layer {layer} has {c_out} channels of "
                f"{height}x{width}; pick channel 0..{c_out - 1}, y 0..{height - 1}, "
                f"x 0..{width - 1}"
            )
        return channel, y, x
    if out.ndim == 1:
        if not 0 <= channel < out.shape[0]:
            raise Unexplained(
                f"channel {channel}: layer {layer} has {out.shape[0]} outputs; pick 0.."
                f"{out.shape[0] - 1} (y and x are 0 for a 1-D layer)"
            )
        return (channel,)
    raise Unexplained(
        f"layer {layer}: its output has shape {list(out.shape)}; the explorer explains maps "
        "(C x H x W) and vectors (N) only"
    )


def _patch(padded: torch.Tensor, window: tuple[int, int, int, int], dilation: tuple[int, int]):
    """Rows and columns of ``padded`` under a window whose corner is given in unpadded
    coordinates shifted by the padding already (``window`` indexes ``padded``)."""
    top, left, bottom, right = window
    return padded[..., top : bottom : dilation[0], left : right : dilation[1]]


def _conv(conv: nn.Conv2d, given: torch.Tensor, channel: int, y: int, x: int):
    moving = sliding(conv)
    (ph, pw), (dh, dw) = conv_padding(conv), conv.dilation
    window = moving.window(y, x, y + 1, x + 1)
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    padded = F.pad(given, (pw, pw + dw, ph, ph + dh), mode=mode) if (ph or pw) else given
    shifted = (window[0] + ph, window[1] + pw, window[2] + ph, window[3] + pw)
    per_group = conv.in_channels // conv.groups
    first = channel // (conv.out_channels // conv.groups) * per_group
    weights = conv.weight[channel].detach()
    channels, total = [], 0.0
    for j in range(per_group):
        patch = _patch(padded[first + j], shifted, (dh, dw))
        products = patch * weights[j]
        subtotal = float(products.sum())
        total += subtotal
        channels.append(
            {
                "index": first + j,
                "kernel": weights[j].tolist(),
                "patch": patch.tolist(),
                "products": products.tolist(),
                "subtotal": subtotal,
            }
        )
    bias = float(conv.bias[channel].detach()) if conv.bias is not None else 0.0
    kh, kw = conv.kernel_size
    subtotals = " + ".join(_n(c["subtotal"]) for c in channels[:8])
    more = f" + ... ({len(channels) - 8} more)" if len(channels) > 8 else ""
    text = (
        f"the {kh}x{kw} kernel of each of the {per_group} input channels multiplies the window "
        f"rows {window[0]}..{window[2] - 1}, columns {window[1]}..{window[3] - 1} of its input "
        f"({kh * kw * per_group} products); the channel subtotals {subtotals}{more} plus the "
        f"bias {_n(bias)} give {_n(total + bias)}."
    )
    part = {
        "channels": channels,
        "bias": bias,
        "sum": total + bias,
        "padding": [ph, pw],
        "stride": list(moving.stride),
        "dilation": [dh, dw],
        "text": text,
    }
    return part, window


FUNCTIONS = {
    "ReLU": "max(0, x)",
    "Tanh": "tanh(x)",
    "Sigmoid": "1 / (1 + exp(-x))",
    "Dropout": "x (dropout passes every value unchanged at inference)",
}


def _elementwise(module: nn.Module, kind: str, given, out, position):
    name = type(module).__name__
    function = FUNCTIONS.get(name, FUNCTIONS["Dropout"] if kind == "dropout" else f"{name}(x)")
    before, after = float(given[position]), float(out[position])
    text = f"{name} computes {function}: it turns {_n(before)} into {_n(after)}."
    part = {"function": function, "before": before, "after": after, "text": text}
    window = (position[1], position[2], position[1] + 1, position[2] + 1) if out.ndim == 3 else None
    return part, window


def _moved(module: nn.Module, layer: str, given, out, position):
    """A layer of no known kind that keeps each value or moves it (LeNet's zero-padding fit):
    where this output came from, found from the numbers."""
    box = None
    if out.ndim == 3:
        row, col = position[1], position[2]
        box = input_window(module, given, out, (row, col, row + 1, col + 1))
        if box is not None:
            box = (box[0], box[1], box[0] + 1, box[1] + 1)
    if box is None or given.shape[0] != out.shape[0]:
        raise Unexplained(
            f"layer {layer!r} is a {type(module).__name__}, which the explorer does not explain "
            "value by value; pick a convolution, activation, pooling, batch norm, linear, "
            "flatten or softmax layer"
        )
    y, x = box[0], box[1]
    inside = 0 <= y < given.shape[1] and 0 <= x < given.shape[2]
    before = float(given[position[0], y, x]) if inside else 0.0
    where = f"input row {y}, column {x}" if inside else "the zero border it adds"
    text = f"{type(module).__name__} passes on the value at {where}: {_n(before)}."
    part = {"function": "moves values (padding)", "before": before, "after": float(out[position])}
    return part | {"text": text}, (y, x, y + 1, x + 1)


def _pool(module: nn.Module, given: torch.Tensor, out: torch.Tensor, channel: int, y: int, x: int):
    moving = sliding(module)
    if moving is None:  # adaptive pooling
        (h, w), (oh, ow) = given.shape[1:], out.shape[1:]
        (top, bottom), (left, right) = adaptive_window(y, h, oh), adaptive_window(x, w, ow)
        window, patch = (top, left, bottom, right), given[channel, top:bottom, left:right]
        divisor = patch.numel()
    else:
        window = moving.window(y, x, y + 1, x + 1)
        (ph, pw), dilation = moving.padding, moving.dilation
        fill = -math.inf if isinstance(module, nn.MaxPool2d) else 0.0
        padded = F.pad(given[channel], (pw, pw + moving.kernel[1], ph, ph + moving.kernel[0]))
        if fill:
            padded = F.pad(
                given[channel], (pw, pw + moving.kernel[1], ph, ph + moving.kernel[0]), value=fill
            )
        shifted = (window[0] + ph, window[1] + pw, window[2] + ph, window[3] + pw)
        patch = _patch(padded, shifted, dilation)
        patch = patch[: max(0, given.shape[1] + 2 * ph - shifted[0])]  # ceil_mode overhang
        patch = patch[:, : max(0, given.shape[2] + 2 * pw - shifted[1])]
        divisor = patch.numel()
        if isinstance(module, nn.AvgPool2d):
            if module.divisor_override:
                divisor = module.divisor_override
            elif not module.count_include_pad:
                real = torch.ones_like(given[channel])
                real = F.pad(real, (pw, pw + moving.kernel[1], ph, ph + moving.kernel[0]))
                divisor = int(_patch(real, shifted, dilation).sum())
    rows = f"rows {window[0]}..{window[2] - 1}, columns {window[1]}..{window[3] - 1}"
    part: dict[str, Any] = {"patch": patch.tolist()}
    if isinstance(module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        flat = int(patch.argmax())
        winner = [flat // patch.shape[1], flat % patch.shape[1]]
        part |= {"op": "max", "winner": winner}
        part["text"] = (
            f"max pooling keeps the largest of the {patch.numel()} values in {rows}: "
            f"{_n(float(patch.max()))} at window row {winner[0]}, column {winner[1]}."
        )
    elif isinstance(module, nn.LPPool2d):
        p = float(module.norm_type)
        part |= {"op": "lp", "norm_type": p}
        part["text"] = f"Lp pooling (p = {_n(p)}) of the values in {rows}: (sum of x^p)^(1/p)."
    else:
        mean = float(patch.sum()) / divisor
        part |= {"op": "avg", "mean": mean, "divisor": divisor}
        part["text"] = (
            f"average pooling adds the values in {rows} ({_n(float(patch.sum()))}) and divides "
            f"by {divisor}: {_n(mean)}."
        )
    return part, window


def _batchnorm(module: nn.Module, given, out, position):
    c = position[0]
    if module.running_mean is not None and not module.training:
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
    window = (position[1], position[2], position[1] + 1, position[2] + 1) if out.ndim == 3 else None
    return part | {"text": text}, window


def _linear(module: nn.Linear, given: torch.Tensor, channel: int):
    if given.ndim != 1:
        raise Unexplained(
            f"this linear layer reads an input of shape {list(given.shape)}; the explorer "
            "explains linear layers on a vector (after a flatten) only"
        )
    weights = module.weight[channel].detach()
    products = weights * given
    bias = float(module.bias[channel].detach()) if module.bias is not None else 0.0
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
    total = float(products.sum()) + bias
    text = (
        f"the dot product of the {given.numel()} inputs with this output's {given.numel()} "
        f"weights ({_n(float(products.sum()))}; the largest term is input {order[0]}: "
        f"{_n(terms[0]['input'])} x {_n(terms[0]['weight'])}) plus the bias {_n(bias)} gives "
        f"{_n(total)}."
    )
    part = {"count": given.numel(), "top_terms": terms, "bias": bias, "sum": total, "text": text}
    return part, None


def _flatten(given: torch.Tensor, index: int):
    if given.ndim == 3:
        _, height, width = given.shape
        c, rest = divmod(index, height * width)
        source = {"channel": c, "y": rest // width, "x": rest % width}
        text = (
            f"flatten lays the {'x'.join(map(str, given.shape))} maps out row by row, channel "
            f"after channel: output {index} = {index} // ({height}*{width}) -> channel {c}, "
            f"row {source['y']}, column {source['x']} of its input "
            f"({_n(float(given[c, source['y'], source['x']]))})."
        )
    else:
        source = {"channel": index, "y": 0, "x": 0}
        text = f"flatten passes input {index} through unchanged."
    return {"source": source, "text": text}, None


def _softmax(layer: str, logits: torch.Tensor, probabilities: torch.Tensor, index: int):
    if not 0 <= index < logits.numel():
        raise Unexplained(
            f"channel {index}: softmax has {logits.numel()} outputs; pick 0..{logits.numel() - 1}"
        )
    shift = float(logits.max()) if float(logits.max()) > 80 else 0.0  # exp(80) ~ 5e34
    exps = torch.exp(logits.double() - shift)
    total = float(exps.sum())
    shifted = f" after subtracting the largest logit {_n(shift)}" if shift else ""
    text = (
        f"{layer}, output {index}: each logit is exponentiated{shifted} and divided by the sum "
        f"of all {logits.numel()} exponentials: exp({_n(float(logits[index]))}) / "
        f"{_n(total)} = {_n(float(exps[index]) / total)}."
    )
    return {
        "kind": "softmax",
        "layer": layer,
        "value": float(probabilities[index]),
        "text": text,
        "window": None,
        "receptive_field": None,
        "logits": logits.tolist(),
        "exps": exps.tolist(),
        "shift": shift,
        "sum_exp": total,
        "probabilities": probabilities.tolist(),
    }
