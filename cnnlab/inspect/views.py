"""Looking at a trained model: feature maps, filters, Grad-CAM, saliency, gradient flow and the
most confident mistakes. Every function returns data (tensors, dicts); :mod:`.plots` draws it.

Layer names are the module paths of ``model.named_modules()`` — the names ``cnnlab summary``
prints (``features.0``, ``layer1.0.conv1``).

Grad-CAM is written here rather than taken from pytorch-grad-cam or Captum: it is a dozen lines
(the gradient of the class score, averaged over each feature map, weights that map; the ReLU of
the sum), it reuses the same hook context as the feature maps, and each step stays visible to a
reader — which is the point of cnnlab. The test checks it against the closed form it reduces
to for a global-average-pooling network (Zhou et al.'s CAM).
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import CnnlabError, UnknownNameError


def layer_names(model: nn.Module) -> list[str]:
    """Every named module (containers too), in definition order."""
    return [name for name, _ in model.named_modules() if name]


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


@contextlib.contextmanager
def capture(
    model: nn.Module, layers: Sequence[str] | None = None, gradients: bool = False
) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
    """Record the outputs (and, with ``gradients``, their gradients) of the named layers while
    inside the ``with`` block; every hook is removed on exit, errors included.

    Yields ``{"outputs": {name: tensor}, "gradients": {name: tensor}}``, filled in execution
    order. ``layers=None`` means every leaf module.
    """
    if layers is None:
        targets = {n: m for n, m in model.named_modules() if n and not list(m.children())}
    else:
        targets = {n: resolve_layer(model, n) for n in layers}
    record: dict[str, dict[str, torch.Tensor]] = {"outputs": {}, "gradients": {}}
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, args, output):
            if not isinstance(output, torch.Tensor):
                return
            record["outputs"][name] = output.detach()
            if gradients and output.requires_grad:

                def keep(grad: torch.Tensor) -> None:
                    record["gradients"][name] = grad.detach()

                output.register_hook(keep)

        return hook

    try:
        for name, module in targets.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield record
    finally:
        for handle in handles:
            handle.remove()


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


def _batch(image: torch.Tensor) -> torch.Tensor:
    if image.ndim == 3:
        return image.unsqueeze(0)
    if image.ndim != 4 or image.shape[0] != 1:
        raise CnnlabError(f"expected one image, C x H x W, got shape {tuple(image.shape)}")
    return image


@torch.no_grad()
def feature_maps(
    model: nn.Module, image: torch.Tensor, layers: Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """Output of each named layer for one (preprocessed) image: ``{name: C x H x W}``. With
    ``layers=None``, every leaf layer whose output is a stack of maps. The model's train/eval
    flags are left as they were."""
    with evaluating(model), capture(model, layers) as record:
        model(_batch(image))
    maps = {name: out[0] for name, out in record["outputs"].items()}
    if layers is None:
        maps = {name: m for name, m in maps.items() if m.ndim == 3}
    else:
        maps = {name: maps[name] for name in layers if name in maps}
    return maps


def conv_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]


def filters(model: nn.Module, layer: str | None = None) -> tuple[str, torch.Tensor]:
    """A convolution's weights ``C_out x C_in/groups x kH x kW`` (the first one by default)."""
    convs = conv_layers(model)
    if not convs:
        raise CnnlabError(f"{type(model).__name__} has no convolution layer to show filters of")
    name = layer or convs[0]
    module = resolve_layer(model, name)
    if not isinstance(module, nn.modules.conv._ConvNd):
        raise CnnlabError(
            f"layer {name!r} is a {type(module).__name__}, not a convolution; convolutions: "
            f"{', '.join(convs)}"
        )
    return name, module.weight.detach().cpu()


@dataclass
class Explanation:
    """A heat map over the input for one class: ``heatmap`` is ``H x W`` in [0, 1]."""

    method: str
    heatmap: torch.Tensor
    class_index: int
    probability: float
    layer: str | None = None
    raw: torch.Tensor | None = None  # Grad-CAM at the layer's own resolution, before scaling


def _class_index(logits: torch.Tensor, target: int | None) -> int:
    classes = logits.shape[1]
    if target is None:
        return int(logits[0].argmax())
    if not 0 <= target < classes:
        raise CnnlabError(f"class {target} is out of range: the model has classes 0..{classes - 1}")
    return int(target)


def grad_cam(
    model: nn.Module, image: torch.Tensor, target: int | None = None, layer: str | None = None
) -> Explanation:
    """Grad-CAM (Selvaraju et al. 2017) for class ``target`` (the predicted class by default).

    With ``A_k`` the k-th map of the target layer and ``y_c`` the class score (before softmax):
    ``alpha_k = mean over pixels of dy_c / dA_k``; ``cam = ReLU(sum_k alpha_k A_k)``, resized
    to the image bilinearly and divided by its maximum. The default layer is the last
    convolution the forward pass runs whose maps are larger than 1x1.

    The model is left as it was: every module's train/eval flag is restored, the parameters'
    ``.grad`` are not touched (the gradient is taken with ``torch.autograd.grad``, which fills
    no ``.grad``) and the hooks are removed.
    """
    x = _batch(image).clone()
    candidates = [layer] if layer else conv_layers(model)
    if not candidates:
        raise CnnlabError(f"{type(model).__name__} has no convolution; give --layer explicitly")
    with (
        torch.enable_grad(),
        evaluating(model),
        capture(model, candidates, gradients=True) as record,
    ):
        x.requires_grad_(True)  # so that every layer's output carries a gradient
        logits = model(x)
        index = _class_index(logits, target)
        # the layer hooks record dy_c / dA_k on the way to x
        torch.autograd.grad(logits[0, index], x)
    executed = list(record["outputs"])
    if not executed:
        raise CnnlabError(f"layer {candidates[0]!r} did not run in the forward pass")
    # default: the last convolution whose maps still have more than one pixel (LeNet's C5 is
    # 1x1: a heat map from it would be one flat value)
    spatial = [n for n in executed if record["outputs"][n][0, 0].numel() > 1]
    name = layer or (spatial or executed)[-1]
    activation = record["outputs"][name][0]
    gradient = record["gradients"].get(name)
    if activation.ndim != 3 or gradient is None:
        raise CnnlabError(
            f"layer {name!r} gives {tuple(activation.shape)}; Grad-CAM needs a layer with "
            "feature maps (C x H x W), such as a convolution"
        )
    weights = gradient[0].mean(dim=(1, 2))  # alpha_k
    raw = F.relu((weights[:, None, None] * activation).sum(dim=0))
    heat = F.interpolate(raw[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
    heat = heat[0, 0]
    heat = heat / heat.max() if heat.max() > 0 else heat
    probability = float(torch.softmax(logits.detach(), dim=1)[0, index])
    return Explanation("grad-cam", heat.detach(), index, probability, name, raw.detach())


def saliency(model: nn.Module, image: torch.Tensor, target: int | None = None) -> Explanation:
    """Plain saliency (Simonyan et al. 2014): ``|d y_c / d x|``, the largest over the colour
    channels, divided by its maximum. Like :func:`grad_cam` it leaves the model's train/eval
    flags and its parameters' ``.grad`` as they were."""
    x = _batch(image).clone().requires_grad_(True)
    with torch.enable_grad(), evaluating(model):
        logits = model(x)
        index = _class_index(logits, target)
        (gradient,) = torch.autograd.grad(logits[0, index], x)
    heat = gradient[0].abs().amax(dim=0)
    heat = heat / heat.max() if heat.max() > 0 else heat
    probability = float(torch.softmax(logits.detach(), dim=1)[0, index])
    return Explanation("saliency", heat.detach(), index, probability)


def gradient_flow(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    steps: int = 5,
    lr: float = 0.01,
) -> dict[str, list[float]]:
    """Gradient norm of every weight (convolutions and fully connected layers, input to output)
    over ``steps`` SGD steps: ``{layer: [norm at step 1, ...]}``. In a deep plain stack the
    first layers' norms fall far below the last ones' (vanishing gradients); a residual twin
    keeps them level."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    weighted = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    norms: dict[str, list[float]] = {name: [] for name, _ in weighted}
    done = 0
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        for name, module in weighted:
            grad = module.weight.grad
            norms[name].append(float(grad.norm()) if grad is not None else 0.0)
        optimizer.step()
        done += 1
        if done >= steps:
            break
    if done == 0:
        raise CnnlabError("gradient flow needs at least one batch")
    return norms


@dataclass
class Mistake:
    index: int  # position in the test set
    true: int
    predicted: int
    confidence: float


@torch.no_grad()
def confident_mistakes(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, k: int = 16,
    preprocess=None, batch_size: int = 500,
) -> list[Mistake]:  # fmt: skip
    """The ``k`` wrong predictions made with the highest probability (the model's train/eval
    flags are left as they were)."""
    probabilities = []
    with evaluating(model):
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            batch = preprocess(batch) if preprocess else batch
            probabilities.append(torch.softmax(model(batch), dim=1))
    probs = torch.cat(probabilities)
    confidence, predicted = probs.max(dim=1)
    wrong = (predicted != labels).nonzero().flatten()
    order = wrong[confidence[wrong].argsort(descending=True)][:k]
    return [Mistake(int(i), int(labels[i]), int(predicted[i]), float(confidence[i])) for i in order]
