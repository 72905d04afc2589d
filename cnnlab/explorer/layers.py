"""What the explorer needs to know about a model's layers: their kind (conv, pool, ...), a short
label, one recorded forward pass (every leaf layer's input before and output after its call),
which layer feeds which, and the window of a layer's input that one output position reads.

The chain is found from the numbers, not from the code: a layer's predecessor is the latest
layer (in call order) whose output equals this layer's input, or ``input`` when the model input
itself does. A layer fed by anything else (a residual sum, a slice, a concatenation) has no
predecessor and :class:`NoChain` says so.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

INPUT = "input"
KINDS = (
    "conv",
    "relu",
    "activation",
    "pool",
    "batchnorm",
    "linear",
    "flatten",
    "softmax",
    "dropout",
    "other",
)
ACTIVATIONS = (
    nn.Tanh,
    nn.Sigmoid,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.Softplus,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.PReLU,
    nn.SELU,
    nn.CELU,
)
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
# the layers whose output at a position depends on their input at that position only
ELEMENTWISE = ("relu", "activation", "batchnorm", "dropout")


def layer_kind(module: nn.Module) -> str:
    """One of :data:`KINDS` for this module."""
    for kind, types in (
        ("conv", (nn.Conv2d,)),
        ("relu", (nn.ReLU,)),
        ("activation", ACTIVATIONS),
        ("pool", POOLS),
        ("batchnorm", (nn.BatchNorm1d, nn.BatchNorm2d)),
        ("linear", (nn.Linear,)),
        ("flatten", (nn.Flatten,)),
        ("softmax", (nn.Softmax,)),
        ("dropout", (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)),
    ):
        if isinstance(module, types):
            return kind
    return "other"


def layer_label(name: str, module: nn.Module | None, shape: list[int]) -> str:
    """``conv1 · Conv2d · 6×24×24``."""
    kind = type(module).__name__ if module is not None else "softmax of the logits"
    return f"{name} · {kind} · {'×'.join(map(str, shape))}"


def same_values(a: torch.Tensor | None, b: torch.Tensor) -> bool:
    """Whether ``a`` holds exactly ``b``'s values in the same order (maybe reshaped)."""
    return a is not None and a.numel() == b.numel() and torch.equal(a.flatten(), b.flatten())


class NoChain(Exception):
    """A layer whose input is not the output of one earlier layer (nor the model input)."""


@dataclass
class Recording:
    """One forward pass of a batch of one: each leaf layer's input (before its call, so an
    in-place layer cannot change it) and output, in call order."""

    image: torch.Tensor  # the preprocessed model input, C x H x W
    logits: torch.Tensor  # 1 x classes
    order: list[str] = field(default_factory=list)
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)
    earlier: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # shared modules

    def predecessor(self, name: str) -> str:
        """The layer whose output is ``name``'s input, or :data:`INPUT`."""
        if self.calls[name] > 1:
            raise NoChain(f"layer {name} is called {self.calls[name]} times in one forward pass")
        given = self.inputs.get(name)
        if given is None:
            raise NoChain(f"layer {name} was not called on a tensor")
        before = self.order[: self.order.index(name)]
        for other in reversed(before):  # a reshape between them (torch.flatten) counts
            if same_values(self.outputs.get(other), given):
                return other
        if same_values(self.image, given):
            return INPUT
        for other, outputs in self.earlier.items():
            if any(same_values(out, given) for out in outputs):
                raise NoChain(
                    f"layer {name}'s input is an earlier output of {other}, a module called "
                    f"{self.calls[other]} times in one pass (the maps show its last call only)"
                )
        raise NoChain(
            f"layer {name}'s input is not the output of one earlier layer (a residual sum, a "
            "slice or a concatenation feeds it)"
        )


def record(model: nn.Module, batch: torch.Tensor) -> Recording:
    """Run ``model`` on ``batch`` (1 x C x H x W, preprocessed) recording every leaf layer.
    The caller holds the run's lock and :func:`cnnlab._tracing.model_call`."""
    leaves = {n: m for n, m in model.named_modules() if n and not list(m.children())}
    recording = Recording(batch[0].detach().clone(), torch.empty(0))
    handles = []

    def before(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            recording.calls[name] += 1
            if args and isinstance(args[0], torch.Tensor):
                recording.inputs[name] = args[0][0].detach().clone()

        return hook

    def after(name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            recording.order.append(name)
            if isinstance(output, torch.Tensor):
                if name in recording.outputs:  # a module used twice (torchvision's ReLUs)
                    recording.earlier.setdefault(name, []).append(recording.outputs[name])
                recording.outputs[name] = output[0].detach().clone()

        return hook

    try:
        for name, module in leaves.items():
            handles.append(module.register_forward_pre_hook(before(name)))
            handles.append(module.register_forward_hook(after(name)))
        with torch.no_grad():
            recording.logits = model(batch).detach()
    finally:
        for handle in handles:
            handle.remove()
    return recording


# ----------------------------------------------------------------------------- geometry


def pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def conv_padding(conv: nn.Conv2d) -> tuple[int, int]:
    """The zeros (or other padding) added before the first row and column."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return 0, 0
        (kh, kw), (dh, dw) = conv.kernel_size, conv.dilation
        return dh * (kh - 1) // 2, dw * (kw - 1) // 2  # 'same': torch pads the rest after
    return pair(conv.padding)


@dataclass(frozen=True)
class Sliding:
    """A window sliding over a map: kernel, stride, padding, dilation per axis."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)

    def window(self, y0: int, x0: int, y1: int, x1: int) -> tuple[int, int, int, int]:
        """The input rows and columns (half-open, padding included) that output rows
        ``y0:y1`` and columns ``x0:x1`` read."""
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


def sliding(module: nn.Module) -> Sliding | None:
    """The sliding window of a convolution or a (non-adaptive) pooling layer."""
    if isinstance(module, nn.Conv2d):
        return Sliding(
            pair(module.kernel_size), pair(module.stride), conv_padding(module), module.dilation
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


def input_window(
    module: nn.Module | None, given: torch.Tensor, out: torch.Tensor, box: tuple[int, int, int, int]
) -> tuple[int, int, int, int] | None:
    """The part of a layer's input (``given``, C x H x W) that output rows/columns ``box``
    (half-open, ``y0, x0, y1, x1``) read; ``None`` when it is the whole input (or unknown)."""
    y0, x0, y1, x1 = box
    if given.ndim != 3 or out.ndim != 3:
        return None
    kind = layer_kind(module) if module is not None else "other"
    moving = sliding(module) if module is not None else None
    if moving is not None:
        return moving.window(y0, x0, y1, x1)
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        (h, w), (oh, ow) = given.shape[1:], out.shape[1:]
        top, left = adaptive_window(y0, h, oh)[0], adaptive_window(x0, w, ow)[0]
        return top, left, adaptive_window(y1 - 1, h, oh)[1], adaptive_window(x1 - 1, w, ow)[1]
    if kind in ELEMENTWISE or given.shape[1:] == out.shape[1:]:
        return box if given.shape[1:] == out.shape[1:] else None
    # a layer that pads evenly (LeNet's 28 -> 32 fit): the input is the middle of the output
    (h, w), (oh, ow) = given.shape[1:], out.shape[1:]
    dy, dx = (oh - h) // 2, (ow - w) // 2
    evenly = oh >= h and ow >= w and given.shape[0] == out.shape[0]
    if evenly and torch.equal(out[:, dy : dy + h, dx : dx + w], given):
        return y0 - dy, x0 - dx, y1 - dy, x1 - dx
    return None


def clip(box: tuple[int, int, int, int], height: int, width: int) -> tuple[int, int, int, int]:
    """``box`` inside ``height x width``; empty (``y1 == y0``) when it lies outside."""
    y0, x0, y1, x1 = box
    y0, x0 = min(max(y0, 0), height), min(max(x0, 0), width)
    return y0, x0, max(min(y1, height), y0), max(min(x1, width), x0)


def receptive_field(
    model: nn.Module, recording: Recording, layer: str, box: tuple[int, int, int, int] | None
) -> dict[str, int] | None:
    """The input-image pixels (clipped, half-open) that output ``box`` of ``layer`` depends on,
    followed back layer by layer; ``None`` when that is the whole image."""
    modules = dict(model.named_modules())
    _, height, width = recording.image.shape
    name = layer
    while box is not None:
        module = modules.get(name)
        box = input_window(module, recording.inputs[name], recording.outputs[name], box)
        if box is None:
            return None
        try:
            name = recording.predecessor(name)
        except NoChain:
            return None
        if name == INPUT:
            break
        if recording.outputs[name].ndim != 3:
            return None
    if box is None:
        return None
    y0, x0, y1, x1 = clip(box, height, width)
    if (y0, x0, y1, x1) == (0, 0, height, width):
        return None
    return {"y0": y0, "x0": x0, "y1": y1, "x1": x1}
