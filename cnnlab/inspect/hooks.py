"""Reaching inside a model: its layers by name, hooks that record what they compute, and the
eval mode a look at a trained model runs in (every flag given back afterwards).

Layer names are the module paths of ``model.named_modules()`` — the names ``cnnlab summary``
prints (``features.0``, ``layer1.0.conv1``).
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import CnnlabError, UnknownNameError


def layer_names(model: nn.Module) -> list[str]:
    """Every named module (containers too), in definition order."""
    return [name for name, _ in model.named_modules() if name]


def conv_layers(model: nn.Module) -> list[str]:
    """The names of the model's convolutions, in definition order."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called ``name``; an unknown name is answered with the close ones and the
    list of names."""
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    names = layer_names(model)
    close = difflib.get_close_matches(name, names, n=4, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
    raise UnknownNameError(
        f"no layer named {name!r} in {type(model).__name__}.{hint} Layers: {shown}"
    )


def as_batch(image: torch.Tensor) -> torch.Tensor:
    """One image, ``C x H x W`` (or already ``1 x C x H x W``), as a batch of one."""
    if image.ndim == 3:
        return image.unsqueeze(0)
    if image.ndim != 4 or image.shape[0] != 1:
        raise CnnlabError(f"expected one image, C x H x W, got shape {tuple(image.shape)}")
    return image


Hook = Callable[..., Any]


@contextlib.contextmanager
def forward_hooks(
    after: Iterable[tuple[nn.Module, Hook]], before: Iterable[tuple[nn.Module, Hook]] = ()
) -> Iterator[None]:
    """Each ``(module, hook)`` of ``after`` a forward hook (``hook(module, args, output)``)
    and each of ``before`` a forward pre-hook (``hook(module, args)``) inside the ``with``
    block; every hook is removed on exit, errors included. The one place cnnlab hooks a model."""
    handles = []
    try:
        for module, hook in before:
            handles.append(module.register_forward_pre_hook(hook))
        for module, hook in after:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def capture(
    model: nn.Module,
    layers: Sequence[str] | None = None,
    gradients: bool = False,
    inputs: bool = False,
) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
    """Record the outputs (and, with ``gradients``, their gradients; with ``inputs``, the
    first tensor each layer was called on) of the named layers while inside the ``with``
    block; every hook is removed on exit, errors included.

    Yields ``{"outputs": {name: tensor}, "gradients": {name: tensor}}`` (and ``"inputs"``),
    filled in execution order. ``layers=None`` means every leaf module.
    """
    if layers is None:
        targets = {n: m for n, m in model.named_modules() if n and not list(m.children())}
    else:
        targets = {n: resolve_layer(model, n) for n in layers}
    record: dict[str, dict[str, torch.Tensor]] = {"outputs": {}, "gradients": {}}
    if inputs:
        record["inputs"] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, args, output):
            if inputs and args and isinstance(args[0], torch.Tensor):
                record["inputs"][name] = args[0].detach().clone()  # see below
            if not isinstance(output, torch.Tensor):
                return
            # a copy: a next ReLU(inplace=True) (VGG, ResNet) would overwrite a view of it
            record["outputs"][name] = output.detach().clone()
            if gradients and output.requires_grad:

                def keep(grad: torch.Tensor) -> None:
                    record["gradients"][name] = grad.detach()

                output.register_hook(keep)

        return hook

    with forward_hooks((module, make_hook(name)) for name, module in targets.items()):
        yield record


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the ``with`` block; on exit every module gets back its own
    training flag (a model in train mode, or one with a few modules frozen in eval, is left as
    it was), errors included."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode
