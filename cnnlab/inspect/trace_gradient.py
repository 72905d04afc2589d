"""The backward view of one step of a :class:`~.trace.Trace`: the loss for a class (through
:mod:`cnnlab.models.binary`, so a one-logit head is read as its two classes), and by autograd
its gradient at that step: for a convolution's output channel the kernel and bias gradients,
the upstream map dL/d(output) and the share of dL/d(input) that flows back through it (the
upstream map convolved with the kernel rotated by 180 degrees); for a linear layer's output the
weight row and bias gradients and what flows back to its input; for a pooling layer the
up-sampling of the upstream map.

Each view is of this step's own call: for a module called twice, the gradient of the call the
step names (``relu#2``), not the sum over both calls.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._tracing import model_call
from ..models.binary import class_logits, classification_loss, predicted_classes
from .hooks import evaluating, forward_hooks
from .trace import Step, Trace
from .trace_explain import Unexplained
from .trace_field import conv_padding

MAX_VALUES = 262_144  # values of dL/d(input) sent back


def _n(value: float) -> str:
    return f"{value:.4g}"


def _call_number(step: Step) -> int:
    return int(step.name.rsplit("#", 1)[1]) if "#" in step.name else 1


def _loss_and_call(
    trace: Trace, step: Step, class_index: int | None
) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """The loss against ``class_index`` (default: the prediction), the class, the step's live
    input and output, and the loss's gradients with respect to both."""
    module = step.module
    wanted, seen = _call_number(step), 0
    kept: dict[str, torch.Tensor] = {}

    def hook(m: nn.Module, args: tuple, output: torch.Tensor) -> None:
        nonlocal seen
        seen += 1
        if seen == wanted:
            kept["input"], kept["output"] = args[0], output

    hooked = forward_hooks([(module, hook)])
    with hooked, model_call(), evaluating(trace.model), torch.enable_grad():
        logits = trace.model(trace.batch.clone().requires_grad_())
        if not isinstance(logits, torch.Tensor):
            logits = logits[0]
        classes = class_logits(logits).shape[1]
        target = int(predicted_classes(logits)[0]) if class_index is None else class_index
        if not 0 <= target < classes:
            raise Unexplained(
                f"class_index {target}: expected 0..{classes - 1} (or leave it out for the "
                "predicted class)"
            )
        loss = classification_loss(logits, torch.tensor([target]))
        grads = torch.autograd.grad(loss, [kept["output"], kept["input"]])
    return loss.detach(), target, kept["input"].detach(), kept["output"], grads


def _loss_text(trace: Trace, loss: torch.Tensor, target: int) -> str:
    binary = trace.logits.ndim == 2 and trace.logits.shape[1] == 1
    how = "binary cross-entropy of the one logit" if binary else "-log p"
    return f"loss = {how} (class {target}) = {_n(float(loss))}."


def input_gradient(
    conv: nn.Conv2d, upstream: torch.Tensor, channel: int, height: int, width: int
) -> torch.Tensor:
    """The part of dL/d(layer input) that flows through output channel ``channel``: the full
    convolution of its upstream map with the kernel rotated by 180 degrees (a transposed
    convolution), ``input channels of its group x height x width``."""
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


def step_gradient(
    trace: Trace, name: str, channel: int, class_index: int | None = None
) -> dict[str, Any]:
    """The backward view of output channel (or, for a linear step, output) ``channel`` of step
    ``name``: a convolution, a linear layer or a max/average pooling layer."""
    step = trace.step(name)
    if step.module is None or step.kind not in ("conv", "linear", "pool") or step.target:
        steps = [s.name for s in trace.steps.values() if s.kind in ("conv", "linear")]
        raise Unexplained(
            f"step {name!r}: expected a convolution or linear layer (or a max/average pooling "
            f"module), one of {', '.join(steps[:12])}"
        )
    size = step.output.shape[0]
    if not 0 <= channel < size:
        what = "outputs" if step.kind == "linear" else "output channels"
        raise Unexplained(f"channel {channel}: {name} has {size} {what}; pick 0..{size - 1}")
    if step.kind == "conv":
        return _conv(trace, step, channel, class_index)
    if step.kind == "linear":
        return _linear(trace, step, channel, class_index)
    if not isinstance(step.module, (nn.MaxPool2d, nn.AvgPool2d)):
        raise Unexplained(f"step {name!r}: only max and average pooling have a backward view")
    return _pool(trace, step, channel, class_index)


def _conv(trace: Trace, step: Step, channel: int, class_index: int | None) -> dict[str, Any]:
    conv: nn.Conv2d = step.module
    loss, target, given, output, (upstream_all, _) = _loss_and_call(trace, step, class_index)
    with torch.enable_grad():  # this call's own kernel gradient
        again = conv(given)
        params = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
        grads = torch.autograd.grad(again, params, grad_outputs=upstream_all)
    weight_grad = grads[0][channel]
    bias_grad = float(grads[1][channel]) if conv.bias is not None else 0.0
    upstream = upstream_all[0, channel]
    per_group = conv.in_channels // conv.groups
    first = channel // (conv.out_channels // conv.groups) * per_group
    largest = int(weight_grad.abs().argmax())
    where = [largest // weight_grad[0].numel()] + list(
        divmod(largest % weight_grad[0].numel(), weight_grad.shape[2])
    )
    _, _, height, width = given.shape
    through = None
    if per_group * height * width <= MAX_VALUES:
        through = input_gradient(conv, upstream, channel, height, width)
    text = (
        f"{_loss_text(trace, loss, target)} Its gradient reaches {step.name} channel {channel} "
        f"as a {upstream.shape[0]}x{upstream.shape[1]} map dL/d(output) (sum "
        f"{_n(float(upstream.sum()))} = dL/d(bias)); each kernel weight's gradient is the "
        "correlation of the layer's input channel with that map. The largest in size is "
        f"input channel {first + where[0]}, row {where[1]}, column {where[2]}: "
        f"{_n(float(weight_grad.flatten()[largest]))}; a gradient step moves each weight "
        "against its gradient. Back to the layer's input, this channel passes on the full "
        "convolution of that map with its kernel rotated by 180 degrees (input_grad)."
    )
    return {
        "kind": "conv",
        "layer": step.name,
        "step": step.name,
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
        "has_bias": conv.bias is not None,
        "upstream": upstream.tolist(),
        "padding": list(conv_padding(conv)),
        "stride": list(conv.stride),
        "text": text,
    }


def _linear(trace: Trace, step: Step, index: int, class_index: int | None) -> dict[str, Any]:
    linear: nn.Linear = step.module
    loss, target, given, _, (upstream_all, _) = _loss_and_call(trace, step, class_index)
    if given.ndim != 2:
        raise Unexplained(
            f"step {step.name} reads an input of shape {list(given.shape[1:])}; the gradient "
            "view covers linear layers on a vector"
        )
    upstream = float(upstream_all[0, index])
    x = given[0]
    weight_grad = upstream * x  # dL/dW[index, k] = dL/dz_index * x_k
    through = upstream * linear.weight[index].detach()  # this output's share of dL/dx
    order = weight_grad.abs().argsort(descending=True)[:20].tolist()
    text = (
        f"{_loss_text(trace, loss, target)} Its gradient reaches output {index} of {step.name} "
        f"as dL/dz = {_n(upstream)} (= dL/d(bias)). Each weight of this output gets dL/dz "
        f"times the input it multiplies (dL/dW[{index}, k] = {_n(upstream)} x x_k: the largest "
        f"is input {order[0]}, {_n(float(weight_grad[order[0]]))}), and each input gets dL/dz "
        "times its weight (input_grad), summed over all outputs on the way back."
    )
    return {
        "kind": "linear",
        "layer": step.name,
        "step": step.name,
        "channel": index,
        "loss": float(loss),
        "class_index": target,
        "upstream": upstream,
        "bias_grad": upstream if linear.bias is not None else 0.0,
        "has_bias": linear.bias is not None,
        "weight_grad": weight_grad.tolist() if x.numel() <= MAX_VALUES else None,
        "input_grad": through.tolist() if x.numel() <= MAX_VALUES else None,
        "top": [{"index": k, "input": float(x[k]), "grad": float(weight_grad[k])} for k in order],
        "text": text,
    }


def _pool(trace: Trace, step: Step, channel: int, class_index: int | None) -> dict[str, Any]:
    loss, target, _, _, (upstream, through) = _loss_and_call(trace, step, class_index)
    how = (
        "each window's gradient goes to the cell that won the max; the others get 0"
        if isinstance(step.module, nn.MaxPool2d)
        else "each window's gradient is shared evenly by its cells"
    )
    text = (
        f"{_loss_text(trace, loss, target)} The pooling layer {step.name} learns nothing; "
        f"backwards it up-samples channel {channel}'s {upstream.shape[2]}x{upstream.shape[3]} "
        f"gradient map to its {through.shape[2]}x{through.shape[3]} input: {how}."
    )
    return {
        "kind": "pool",
        "layer": step.name,
        "step": step.name,
        "channel": channel,
        "loss": float(loss),
        "class_index": target,
        "upstream": upstream[0, channel].tolist(),
        "input_grad": through[0, channel].tolist(),
        "text": text,
    }
