"""Looking at a trained model: feature maps, filters, gradient flow and the most confident
mistakes. Every function returns data (tensors, dicts); :mod:`.plots` draws it. Grad-CAM and
saliency are in :mod:`.explain`, the hooks and layer names in :mod:`.hooks`.

Layer names are the module paths of ``model.named_modules()`` — the names ``cnnlab summary``
prints (``features.0``, ``layer1.0.conv1``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .._tracing import model_call
from ..errors import CnnlabError
from ..models.binary import class_probabilities
from .hooks import as_batch, capture, conv_layers, evaluating, forward_hooks, resolve_layer


@torch.no_grad()
def feature_maps(
    model: nn.Module, image: torch.Tensor, layers: Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """Output of each named layer for one (preprocessed) image: ``{name: C x H x W}``. With
    ``layers=None``, every leaf layer whose output is a stack of maps. The model's train/eval
    flags are left as they were."""
    with evaluating(model), capture(model, layers) as record:
        model(as_batch(image))
    maps = {name: out[0] for name, out in record["outputs"].items()}
    if layers is None:
        maps = {name: m for name, m in maps.items() if m.ndim == 3}
    else:
        maps = {name: maps[name] for name in layers if name in maps}
    return maps


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


def gradient_flow(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    steps: int = 5,
    lr: float = 0.01,
    optimizer: str = "sgd",
    adam_eps: float = 1e-8,
) -> dict[str, list[float]]:
    """Gradient norm of every weight (convolutions and fully connected layers, input to output)
    over ``steps`` training steps (``optimizer``: ``"sgd"`` or ``"adam"``, with ``adam_eps``):
    ``{layer: [norm at step 1, ...]}``. In a deep plain stack the first layers' norms fall far
    below the last ones' (vanishing gradients); a residual twin keeps them level."""
    if optimizer not in OPTIMIZERS:
        raise CnnlabError(f"optimizer {optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
    model.train()
    if optimizer == "adam":
        stepper: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr, eps=adam_eps)
    else:
        stepper = torch.optim.SGD(model.parameters(), lr=lr)
    weighted = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    norms: dict[str, list[float]] = {name: [] for name, _ in weighted}
    done = 0
    for images, labels in batches:
        stepper.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        for name, module in weighted:
            grad = module.weight.grad
            norms[name].append(float(grad.norm()) if grad is not None else 0.0)
        stepper.step()
        done += 1
        if done >= steps:
            break
    if done == 0:
        raise CnnlabError("gradient flow needs at least one batch")
    return norms


OPTIMIZERS = ("sgd", "adam")


@torch.no_grad()
def dead_relus(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> dict[str, float]:
    """For each call of an ``nn.ReLU`` module (in the order the forward pass makes them), the
    share of its units that output 0 for every one of ``images``: a channel of a feature map
    (0 at every position of every image) or one neuron of a fully connected layer. Such a unit
    passes no gradient back, so no step of gradient descent revives it from these images.

    A module called twice in one forward pass (torchvision's ``BasicBlock.relu``) is counted
    per call: ``"layer1.0.relu"`` and ``"layer1.0.relu (call 2)"``. Evaluated in eval mode
    (BatchNorm on its running statistics; every module's flag is given back)."""
    relus = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise CnnlabError(f"{type(model).__name__} has no nn.ReLU layer to count dead units of")
    # per (module, call), each unit's running maximum; in the order the forward pass makes them
    peaks: dict[tuple[str, int], torch.Tensor] = {}
    calls: dict[str, int] = {}

    def keep_peak(name: str):
        def hook(module: nn.Module, args, output: torch.Tensor) -> None:
            call = calls[name] = calls.get(name, 0) + 1
            # each unit's largest output over the batch (and over the positions of a map),
            # read before a later in-place operation can change the tensor
            peak = output.detach().transpose(0, 1).reshape(output.shape[1], -1).amax(1)
            kept = peaks.get((name, call))
            peaks[name, call] = peak if kept is None else torch.maximum(kept, peak)

        return hook

    with evaluating(model), forward_hooks([(m, keep_peak(name)) for name, m in relus]):
        for start in range(0, len(images), batch_size):
            calls.clear()
            model(images[start : start + batch_size])
    return {
        name if call == 1 else f"{name} (call {call})": int((peak <= 0).sum()) / len(peak)
        for (name, call), peak in peaks.items()
    }


@dataclass
class Mistake:
    index: int  # position in the test set
    true: int
    predicted: int
    confidence: float


@torch.no_grad()
def class_probabilities_of(
    model: nn.Module, images: torch.Tensor, preprocess=None, batch_size: int = 500
) -> torch.Tensor:
    """``N x classes`` probabilities of uint8 (``preprocess``) or ready ``images``, in eval mode
    and in batches (the model's train/eval flags are left as they were)."""
    probabilities = []
    with model_call(), evaluating(model):
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            batch = preprocess(batch) if preprocess else batch
            probabilities.append(class_probabilities(model(batch)))
    return torch.cat(probabilities)


def mistakes_by_confidence(
    probabilities: torch.Tensor, labels: torch.Tensor, k: int = 16
) -> list[Mistake]:
    """The ``k`` wrong predictions of ``probabilities`` made with the highest probability."""
    confidence, predicted = probabilities.max(dim=1)
    wrong = (predicted != labels).nonzero().flatten()
    order = wrong[confidence[wrong].argsort(descending=True)][:k]
    return [Mistake(int(i), int(labels[i]), int(predicted[i]), float(confidence[i])) for i in order]


def confident_mistakes(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    k: int = 16,
    preprocess=None,
    batch_size: int = 500,
) -> list[Mistake]:
    """The ``k`` wrong predictions made with the highest probability (the model's train/eval
    flags are left as they were)."""
    probabilities = class_probabilities_of(model, images, preprocess, batch_size)
    return mistakes_by_confidence(probabilities, labels, k)
