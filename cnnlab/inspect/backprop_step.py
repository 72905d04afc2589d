"""One real SGD step of a trained CNN on one image, layer by layer, from the output back to the
image: the course's backward pass (BP1-BP4, up-sampling at each pool, the 180-degree-rotated
filter at each convolution) on a network that has learned something.

For every layer call the delta ``dL/d(output)`` arrives from above; the layer's own rule then
gives its parameter gradients and the delta it passes down, computed here by the course's
formulas and compared with torch autograd:

- convolution: ``dL/dW = input correlated with delta`` (BP4 summed over positions), ``dL/db =
  sum of delta`` (BP3), ``dL/dx = delta convolved with W rotated by 180 degrees``;
- linear: ``dL/dW = delta a^T``, ``dL/db = delta``, ``dL/dx = W^T delta`` (BP2 before sigma');
- max pooling: each window sends its delta to the cell that won the max; average pooling
  spreads it evenly (up-sampling);
- ReLU: ``sigma'(z)`` is 1 where ``z > 0`` and 0 elsewhere; batch norm in eval mode scales the
  delta by ``gamma / sqrt(var + eps)``.

The forward pass runs in eval mode (batch norm's running statistics, no dropout), so the step
is the gradient of this one image's loss; the update ``W <- W - lr dL/dW`` is applied to a copy
and the loss measured again. Steps between modules (a residual add copies the delta to both of
its inputs) have no row of their own.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._tracing import model_call
from ..errors import CnnlabError
from ..models.binary import class_probabilities, classification_loss, predicted_classes
from .hooks import forward_hooks
from .trace_field import conv_padding

POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
PASS_THROUGH = (nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten)


@dataclass
class LayerStep:
    """The backward pass at one layer call."""

    name: str
    kind: str
    shape: list[int]  # the output's shape (without the batch)
    delta_norm: float  # ||dL/d(output)||
    text: str  # what the rule does here, in words and numbers
    check: float | None = None  # max |course's rule - autograd| over what the rule computes
    weight_norm: float | None = None
    grad_norm: float | None = None
    update_norm: float | None = None  # lr * ||dL/dW||
    example: dict[str, Any] = field(default_factory=dict)  # a few numbers to print

    @property
    def relative_update(self) -> float | None:
        if not self.update_norm or not self.weight_norm:
            return None
        return self.update_norm / self.weight_norm


@dataclass
class SgdStep:
    target: int
    predicted: int
    lr: float
    loss_before: float
    loss_after: float
    p_before: float  # probability of the target class
    p_after: float
    layers: list[LayerStep]  # from the output down to the image

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for row, layer in zip(out["layers"], self.layers):
            row["relative_update"] = layer.relative_update
        return out


def _gap(ours: torch.Tensor, theirs: torch.Tensor | None) -> float:
    if theirs is None:
        return float(ours.abs().max())
    return float((ours - theirs).abs().max())


def _rounded(t: torch.Tensor) -> list:
    return [[round(float(v), 5) for v in row] for row in t]


def _conv_rule(module: nn.Conv2d, x: torch.Tensor, delta: torch.Tensor) -> dict[str, Any]:
    """The course's convolution backward: filter gradient by correlating the input with the
    delta map (unfold: every window of x beside the delta it met), input gradient by a full
    convolution of the (stride-dilated) delta with the filter rotated 180 degrees."""
    weight = module.weight.detach()
    (kh, kw), (sh, sw), (dh, dw) = module.kernel_size, module.stride, module.dilation
    ph, pw = conv_padding(module)
    out_c, height, width = delta.shape[1], x.shape[2], x.shape[3]
    windows = F.unfold(x, (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))
    groups = module.groups  # each group of outputs reads its own slice of the input channels
    per_in, per_out = windows.shape[1] // groups, out_c // groups
    grad_w = torch.cat(
        [
            delta[0, g * per_out : (g + 1) * per_out].reshape(per_out, -1)
            @ windows[0, g * per_in : (g + 1) * per_in].T
            for g in range(groups)
        ]
    ).reshape(weight.shape)
    spread = torch.zeros(1, out_c, (delta.shape[2] - 1) * sh + 1, (delta.shape[3] - 1) * sw + 1)
    spread[:, :, ::sh, ::sw] = delta  # a stride's skipped positions get zeros
    eh, ew = (kh - 1) * dh, (kw - 1) * dw  # the dilated filter's reach
    turned = weight.flip(2, 3)  # every filter rotated by 180 degrees
    rotated = torch.cat(  # per group: in x out x kh x kw
        [turned[g * per_out : (g + 1) * per_out].transpose(0, 1) for g in range(groups)]
    )
    full = F.conv2d(F.pad(spread, (ew, ew, eh, eh)), rotated, dilation=(dh, dw), groups=groups)
    full = full[:, :, ph : ph + height, pw : pw + width]  # drop what fell on the padding
    grad_x = F.pad(full, (0, width - full.shape[3], 0, height - full.shape[2]))
    return {"grad_w": grad_w, "grad_b": delta.sum((0, 2, 3)), "grad_x": grad_x, "rotated": rotated}


def _window_matrix(size: int, out: int, k: int, stride: int, pad: int, ceil: bool):
    """``size x out``: 1 where input cell i lies in window o (clipped to the image), and each
    window's divisor as PyTorch counts it with padding (cut at the padded edge)."""
    cover = torch.zeros(size, out)
    counted = torch.zeros(out)
    for o in range(out):
        start = o * stride - pad
        end = min(start + k, size + pad)
        counted[o] = end - start
        cover[max(start, 0) : min(end, size), o] = 1.0
    return cover, counted


def _pool_rule(module: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor | None:
    """Up-sampling: a max pool's delta goes to each window's winner (added up where windows
    overlap), an average pool's is shared evenly by the cells its window averaged."""
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        if delta.shape[2:] != (1, 1):
            return None
        if isinstance(module, nn.AdaptiveAvgPool2d):
            return delta.expand_as(x) / (x.shape[2] * x.shape[3])
        winners = x.flatten(2).argmax(2, keepdim=True)  # one window: the whole map
        grad = torch.zeros(x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        return grad.scatter_add_(2, winners, delta.flatten(2)).reshape(x.shape)
    if isinstance(module, nn.MaxPool2d):
        _, winners = F.max_pool2d(
            x,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            ceil_mode=module.ceil_mode,
            return_indices=True,
        )
        grad = torch.zeros(x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        grad.scatter_add_(2, winners.flatten(2), delta.flatten(2))
        return grad.reshape(x.shape)
    pair = nn.modules.utils._pair
    (kh, kw), (sh, sw), (ph, pw) = (
        pair(module.kernel_size),
        pair(module.stride or module.kernel_size),
        pair(module.padding),
    )
    rows, by_rows = _window_matrix(x.shape[2], delta.shape[2], kh, sh, ph, module.ceil_mode)
    cols, by_cols = _window_matrix(x.shape[3], delta.shape[3], kw, sw, pw, module.ceil_mode)
    if module.divisor_override:
        divisor = torch.full((delta.shape[2], delta.shape[3]), float(module.divisor_override))
    elif module.count_include_pad:
        divisor = torch.outer(by_rows, by_cols)
    else:  # only the cells inside the image count
        divisor = torch.outer(rows.sum(0), cols.sum(0))
    return rows @ (delta / divisor) @ cols.T


def _checked(*gaps: float | None) -> float:
    return max(g for g in gaps if g is not None)


def _conv_row(row: LayerStep, conv: nn.Conv2d, x, delta, grad_x, frozen: bool) -> None:
    rule = _conv_rule(conv, x.detach(), delta)
    has_bias = conv.bias is not None and conv.bias.grad is not None
    row.check = _checked(
        _gap(rule["grad_x"], grad_x),
        None if frozen else _gap(rule["grad_w"], conv.weight.grad),
        _gap(rule["grad_b"], conv.bias.grad) if has_bias else None,
    )
    channel = int(delta[0].flatten(1).norm(dim=1).argmax())
    kernel = conv.weight.detach()[channel, 0]
    row.example = {
        "channel": channel,
        "filter": _rounded(kernel),
        "rotated": _rounded(kernel.flip(0, 1)),
    }
    row.text = (
        f"dL/dW = input correlated with delta ({tuple(conv.weight.shape)}), dL/db = sum "
        f"of delta; dL/dx = delta convolved with the filter rotated 180 degrees "
        f"(output channel {channel}, the largest delta, input channel 0 shown)"
        + ("; the filter is frozen (not trained), so only dL/dx is used" if frozen else "")
    )


def _linear_row(row: LayerStep, linear: nn.Linear, x, delta, grad_x, frozen: bool) -> None:
    a, d = x.detach().reshape(-1, linear.in_features), delta.reshape(-1, linear.out_features)
    has_bias = linear.bias is not None and linear.bias.grad is not None
    row.check = _checked(
        _gap(d @ linear.weight.detach(), grad_x.reshape(d.shape[0], -1)),
        None if frozen else _gap(d.T @ a, linear.weight.grad),
        _gap(d.sum(0), linear.bias.grad) if has_bias else None,
    )
    row.text = (
        f"BP4 dL/dW = delta a^T ({linear.out_features} x {linear.in_features} outer "
        "product), BP3 dL/db = delta, dL/da = W^T delta (BP2 before sigma')"
    )


def _pool_row(row: LayerStep, pool: nn.Module, x, delta, grad_x) -> None:
    up = _pool_rule(pool, x.detach(), delta)
    if up is None:
        row.text = "up-sampling of an adaptive pool with several windows: autograd's only"
        return
    row.check = _gap(up, grad_x)
    how = "each window's winner" if isinstance(pool, nn.MaxPool2d) else "delta / window size"
    row.text = (
        f"up-sampling: {int((up != 0).sum()):,} of {up.numel():,} input cells receive a delta "
        f"({how})"
    )


def _pointwise_row(row: LayerStep, module: nn.Module, x, out, delta, grad_x) -> None:
    """Activations (sigma'(z) read from the output), eval-mode batch norm, pass-throughs."""
    if isinstance(module, nn.ReLU):
        passed = out.detach() > 0
        row.check = _gap(delta * passed, grad_x)
        row.text = (
            f"sigma'(z) = 1 where z > 0: {int(passed.sum()):,} of {passed.numel():,} cells "
            "pass their delta, the rest get 0"
        )
    elif isinstance(module, (nn.Tanh, nn.Sigmoid)):
        a = out.detach()
        tanh = isinstance(module, nn.Tanh)
        slope = 1 - a**2 if tanh else a * (1 - a)
        row.check = _gap(delta * slope, grad_x)
        row.text = (
            f"sigma'(z) = {'1 - a^2' if tanh else 'a (1 - a)'}, read from the output a: the "
            f"delta shrinks to {float((delta * slope).norm()):.4g} (mean slope "
            f"{float(slope.mean()):.3f})"
        )
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)) and not module.training:
        scale = module.weight.detach() / torch.sqrt(module.running_var + module.eps)
        view = (1, -1) + (1,) * (delta.dim() - 2)
        row.check = _gap(delta * scale.view(view), grad_x)
        row.text = "eval-mode batch norm: delta times gamma / sqrt(running var + eps)"
    elif isinstance(module, PASS_THROUGH):
        row.check = _gap(delta.reshape(x.shape), grad_x)
        row.text = "the delta passes back unchanged (reshaped to the input's shape)"
    else:
        row.text = "autograd's gradient (no course rule for this layer here)"


def _row(
    name: str,
    module: nn.Module,
    x: torch.Tensor,
    out: torch.Tensor,
    delta: torch.Tensor,
    grad_x: torch.Tensor | None,
    lr: float,
) -> LayerStep:
    """The layer's rule applied to its delta, beside autograd's ``grad_x`` (what this call
    passes down) and its parameters' ``.grad``."""
    row = LayerStep(name, type(module).__name__, list(out.shape[1:]), float(delta.norm()), "")
    weighted = isinstance(module, (nn.Conv2d, nn.Linear))
    frozen = weighted and module.weight.grad is None
    if weighted and not frozen:
        row.weight_norm = float(module.weight.detach().norm())
        row.grad_norm = float(module.weight.grad.norm())
        row.update_norm = lr * row.grad_norm
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":
        _conv_row(row, module, x, delta, grad_x, frozen)
    elif isinstance(module, nn.Conv2d):
        row.text = f"{module.padding_mode}-padded convolution: autograd's gradient only"
    elif isinstance(module, nn.Linear):
        _linear_row(row, module, x, delta, grad_x, frozen)
    elif isinstance(module, POOLS):
        _pool_row(row, module, x, delta, grad_x)
    else:
        _pointwise_row(row, module, x, out, delta, grad_x)
    return row


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if not list(m.children()) and name]


Call = tuple[str, nn.Module, torch.Tensor, torch.Tensor]  # name, module, its input, its output


@contextmanager
def _recording(model: nn.Module) -> Iterator[list[Call]]:
    """Every leaf module call of the forward passes inside the block, in order (a module
    called twice is ``name#2``). Each output is handed on as a copy, so a later in-place step
    (``F.relu(x, inplace=True)``) changes the copy and the recorded output keeps its own
    gradient."""
    calls: list[Call] = []
    counts: dict[str, int] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple, out: Any) -> Any:
            if not (args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor)):
                return None
            counts[name] = counts.get(name, 0) + 1
            calls.append(
                (name if counts[name] == 1 else f"{name}#{counts[name]}", module, args[0], out)
            )
            return out.clone()

        return record

    with forward_hooks((m, hook(name)) for name, m in _leaves(model)):
        yield calls


def _logits(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    out = model(batch)
    return out if isinstance(out, torch.Tensor) else out[0]  # a model with auxiliary heads


def sgd_step(
    model: nn.Module, batch: torch.Tensor, target: int | None = None, lr: float = 0.01
) -> SgdStep:
    """One SGD step of a copy of ``model`` on the one preprocessed image ``batch`` (1 x C x H
    x W) against class ``target`` (default: the prediction), every layer call's backward pass
    computed by the course's rule and checked against autograd."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if getattr(module, "inplace", False):
            module.inplace = False  # keep each call's output as its own tensor
    with model_call(), torch.enable_grad(), _recording(model) as calls:
        logits = _logits(model, batch.clone().requires_grad_())
        predicted = int(predicted_classes(logits)[0])
        target = predicted if target is None else target
        probabilities = class_probabilities(logits.detach())[0]
        if not 0 <= target < probabilities.numel():
            raise CnnlabError(
                f"class {target}: expected 0..{probabilities.numel() - 1} (or leave it out "
                "for the predicted class)"
            )
        loss = classification_loss(logits, torch.tensor([target]))
        model.zero_grad()
        outputs = [out for *_, out in calls]
        deltas = torch.autograd.grad(loss, outputs, retain_graph=True, allow_unused=True)
        rows = []
        for (name, module, x, out), delta in zip(calls, deltas):
            if delta is None:  # an output the loss does not read (an auxiliary head)
                continue
            # what this call alone passes down (an input read twice, as by a residual block,
            # gets the other reader's share elsewhere)
            (grad_x,) = torch.autograd.grad(out, x, delta, retain_graph=True, allow_unused=True)
            rows.append((name, module, x, out, delta, grad_x))
        loss.backward()
    layers = [_row(*row, lr) for row in rows]
    with torch.no_grad(), model_call():
        for parameter in model.parameters():
            if parameter.grad is not None:
                parameter -= lr * parameter.grad
        after = _logits(model, batch)
    return SgdStep(
        target,
        predicted,
        lr,
        float(loss.detach()),
        float(classification_loss(after, torch.tensor([target]))),
        float(probabilities[target]),
        float(class_probabilities(after)[0, target]),
        layers[::-1],
    )


def step_lines(step: SgdStep, classes: list[str], what: str) -> list[str]:
    """The step as text, from the output down to the image."""

    def name(k: int) -> str:
        return classes[k] if k < len(classes) else str(k)

    lines = [
        f"one SGD step on {what}: class {step.target} ({name(step.target)}), predicted "
        f"{name(step.predicted)}; loss -log p = {step.loss_before:.4f}, lr {step.lr:g}",
        "forward in eval mode (batch norm's running statistics, no dropout); backward from the "
        "output to the image, each layer's rule checked against autograd:",
        "",
    ]
    for layer in step.layers:
        check = "" if layer.check is None else f"   rule vs autograd: {layer.check:.1e}"
        lines.append(
            f"{layer.name} ({layer.kind}, out {'x'.join(map(str, layer.shape))}): "
            f"|delta| = {layer.delta_norm:.4g}{check}"
        )
        lines.append(f"    {layer.text}")
        if layer.update_norm is not None:
            relative = layer.relative_update
            lines.append(
                f"    update: lr x |dL/dW| = {layer.update_norm:.4g} on |W| = "
                f"{layer.weight_norm:.4g}"
                + (f" ({relative:.2e} of it)" if relative is not None else "")
            )
        if layer.example:
            shown = " / ".join(" ".join(f"{v:8.4f}" for v in r) for r in layer.example["filter"])
            turned = " / ".join(" ".join(f"{v:8.4f}" for v in r) for r in layer.example["rotated"])
            lines.append(f"    filter   {shown}")
            lines.append(f"    rotated  {turned}")
    lines += [
        "",
        f"after the step (W <- W - {step.lr:g} dL/dW on a copy): loss {step.loss_before:.4f} -> "
        f"{step.loss_after:.4f}, p({name(step.target)}) {step.p_before:.2%} -> "
        f"{step.p_after:.2%}",
    ]
    return lines
