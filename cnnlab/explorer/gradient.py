"""The backward view of one convolution kernel: the cross-entropy loss for a class, and by
autograd its gradient with respect to one output channel's kernel (every input channel) and
bias, with the upstream gradient map dL/d(output) of which each kernel channel's gradient is
the correlation with the layer's input (the tests check both against autograd)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .explain import Unexplained
from .layers import conv_padding


def _n(value: float) -> str:
    return f"{value:.4g}"


MAX_INPUT_GRADIENT = 262_144  # values of dL/d(input) sent back (input channels x H x W)


def input_gradient(
    conv: nn.Conv2d, upstream: torch.Tensor, channel: int, height: int, width: int
) -> torch.Tensor:
    """The part of dL/d(layer input) that flows through output channel ``channel``: the full
    convolution of its upstream gradient map with the kernel rotated by 180 degrees (a
    transposed convolution), ``input channels of its group x height x width``."""
    weight = conv.weight[channel : channel + 1].detach()
    spread = F.conv_transpose2d(
        upstream[None, None],
        weight,
        stride=conv.stride,
        padding=conv_padding(conv),
        dilation=conv.dilation,
    )[0]
    # rows and columns no window reached (the stride's remainder, 'same' padding) get nothing
    spread = F.pad(
        spread, (0, max(0, width - spread.shape[2]), 0, max(0, height - spread.shape[1]))
    )
    return spread[:, :height, :width]


def kernel_gradient(
    model: nn.Module, batch: torch.Tensor, layer: str, channel: int, class_index: int | None
) -> dict[str, Any]:
    """The cross-entropy loss (against ``class_index``, default the prediction) and its gradient
    with respect to output channel ``channel``'s kernel and bias of convolution ``layer``, by
    autograd; with the upstream gradient dL/d(output map) of that channel, of which each kernel
    channel's gradient is the correlation with the layer's input, and the share of dL/d(input)
    that flows back through this channel (:func:`input_gradient`; left out, ``None``, above
    :data:`MAX_INPUT_GRADIENT` values). The caller holds the locks."""
    conv = dict(model.named_modules()).get(layer)
    if isinstance(conv, (nn.MaxPool2d, nn.AvgPool2d)):
        return pool_gradient(model, batch, layer, conv, channel, class_index)
    if not isinstance(conv, nn.Conv2d):
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        raise Unexplained(
            f"layer {layer!r}: expected a convolution (or a max/average pooling layer), one of "
            f"{', '.join(convs[:12])}"
        )
    if not 0 <= channel < conv.out_channels:
        raise Unexplained(
            f"channel {channel}: {layer} has {conv.out_channels} output channels; pick 0.."
            f"{conv.out_channels - 1}"
        )
    kept: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        kept["output"] = output
        kept["input"] = args[0].detach()
        output.retain_grad()

    handle = conv.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(batch)
            target = int(logits.argmax(1)) if class_index is None else class_index
            if not 0 <= target < logits.shape[1]:
                raise Unexplained(
                    f"class_index {target}: expected 0..{logits.shape[1] - 1} (or leave it out "
                    "for the predicted class)"
                )
            loss = F.cross_entropy(logits, torch.tensor([target]))
            params = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
            grads = torch.autograd.grad(loss, params + [kept["output"]])
            loss = loss.detach()
    finally:
        handle.remove()
    weight_grad = grads[0][channel]
    bias_grad = float(grads[1][channel]) if conv.bias is not None else 0.0
    upstream = grads[-1][0, channel]
    per_group = conv.in_channels // conv.groups
    first = channel // (conv.out_channels // conv.groups) * per_group
    largest = int(weight_grad.abs().argmax())
    where = [largest // weight_grad[0].numel()] + list(
        divmod(largest % weight_grad[0].numel(), weight_grad.shape[2])
    )
    _, _, height, width = kept["input"].shape
    through = None
    if per_group * height * width <= MAX_INPUT_GRADIENT:
        through = input_gradient(conv, upstream, channel, height, width)
    text = (
        f"loss = -log p(class {target}) = {_n(float(loss))}. Its gradient reaches {layer} "
        f"channel {channel} as a {upstream.shape[0]}x{upstream.shape[1]} map dL/d(output) (sum "
        f"{_n(float(upstream.sum()))} = dL/d(bias)); each kernel weight's gradient is the "
        "correlation of the layer's input channel with that map. The largest in size is "
        f"input channel {first + where[0]}, row {where[1]}, column {where[2]}: "
        f"{_n(float(weight_grad.flatten()[largest]))}; a gradient step moves each weight "
        "against its gradient. Back to the layer's input, this channel passes on the full "
        "convolution of that map with its kernel rotated by 180 degrees (input_grad)."
    )
    return {
        "layer": layer,
        "channel": channel,
        "loss": float(loss),
        "class_index": target,
        "channels": [
            {
                "index": first + j,
                "grad": weight_grad[j].tolist(),
                "input_grad": through[j].tolist() if through is not None else None,
            }
            for j in range(per_group)
        ],
        "bias_grad": bias_grad,
        "upstream": upstream.tolist(),
        "padding": list(conv_padding(conv)),
        "stride": list(conv.stride),
        "text": text,
    }


def _loss_and_grads(
    model: nn.Module, batch: torch.Tensor, module: nn.Module, class_index: int | None, extra=()
) -> tuple[torch.Tensor, int, dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
    """Cross-entropy against ``class_index`` (default: the prediction) and its gradients with
    respect to ``module``'s output and input (and ``extra`` tensors)."""
    kept: dict[str, torch.Tensor] = {}

    def hook(m: nn.Module, args: tuple, output: torch.Tensor) -> None:
        kept["output"], kept["input"] = output, args[0]

    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(batch.clone().requires_grad_())
            target = int(logits.argmax(1)) if class_index is None else class_index
            if not 0 <= target < logits.shape[1]:
                raise Unexplained(
                    f"class_index {target}: expected 0..{logits.shape[1] - 1} (or leave it out "
                    "for the predicted class)"
                )
            loss = F.cross_entropy(logits, torch.tensor([target]))
            grads = torch.autograd.grad(loss, [kept["output"], kept["input"], *extra])
    finally:
        handle.remove()
    return loss.detach(), target, kept, grads


def pool_gradient(
    model: nn.Module,
    batch: torch.Tensor,
    layer: str,
    pool: nn.Module,
    channel: int,
    class_index: int | None,
) -> dict[str, Any]:
    """A pooling layer's backward pass for one channel, by autograd: the upstream gradient map
    and what it becomes on the layer's input (max pooling: each value goes to its window's
    winning cell, the others get 0; average pooling: spread evenly over the window)."""
    loss, target, kept, (upstream, through) = _loss_and_grads(model, batch, pool, class_index)
    if not 0 <= channel < upstream.shape[1]:
        raise Unexplained(
            f"channel {channel}: {layer} has {upstream.shape[1]} channels; pick 0.."
            f"{upstream.shape[1] - 1}"
        )
    how = (
        "each window's gradient goes to the cell that won the max; the others get 0"
        if isinstance(pool, nn.MaxPool2d)
        else "each window's gradient is shared evenly by its cells"
    )
    text = (
        f"loss = -log p(class {target}) = {_n(float(loss))}. The pooling layer {layer} learns "
        f"nothing; backwards it up-samples channel {channel}'s "
        f"{upstream.shape[2]}x{upstream.shape[3]} gradient map to its "
        f"{through.shape[2]}x{through.shape[3]} input: {how}."
    )
    return {
        "kind": "pool",
        "layer": layer,
        "channel": channel,
        "loss": float(loss),
        "class_index": target,
        "upstream": upstream[0, channel].tolist(),
        "input_grad": through[0, channel].tolist(),
        "text": text,
    }
