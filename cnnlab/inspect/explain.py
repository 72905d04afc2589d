"""Why did the model say that? Heat maps over the input for one class: Grad-CAM and saliency.

Both follow the shape of pytorch-grad-cam: a base class, :class:`BaseCAM`, owns what every
method shares — eval mode and the hooks for the ``with`` block (the model's train/eval flags
given back and every hook removed on exit, errors included), the forward pass, the class
score's gradient, the scaling to [0, 1] — and each method supplies only its heat map: Grad-CAM
weights the feature maps of a layer, saliency takes the gradient at the input.

The gradient is taken with ``torch.autograd.grad``, which fills no ``.grad``: the parameters'
gradients are left as they were.

Grad-CAM is written here rather than taken from pytorch-grad-cam or Captum: it is a dozen lines
(the gradient of the class score, averaged over each feature map, weights that map; the ReLU of
the sum), it reuses the same hook context as the feature maps, and each step stays visible to a
reader — which is the point of cnnlab. The test checks it against the closed form it reduces
to for a global-average-pooling network (Zhou et al.'s CAM).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import CnnlabError
from ..models.binary import class_logits
from .hooks import as_batch, capture, conv_layers, evaluating


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


class BaseCAM:
    """What every heat-map method shares. Used as a context manager (``with GradCAM(model) as
    cam: cam(image)``) the model stays in eval mode with the hooks on ``layers`` for the whole
    block; called outside one, each call sets them up and releases them itself.

    A call runs the model on one image, picks the class (``target``, or the predicted one),
    takes the gradient of its score (before softmax) with respect to the input — on its way
    there the hooks record each hooked layer's output and gradient in :attr:`record` — and
    hands both to :meth:`heatmap`, the one thing a method defines.
    """

    method = ""

    def __init__(self, model: nn.Module, layers: Sequence[str] = ()) -> None:
        self.model = model
        self.layers = list(layers)
        self.record: dict[str, dict[str, torch.Tensor]] = {"outputs": {}, "gradients": {}}
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> BaseCAM:
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.enable_grad())
            stack.enter_context(evaluating(self.model))
            self.record = stack.enter_context(capture(self.model, self.layers, gradients=True))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.__exit__(*exc_info)

    def __call__(self, image: torch.Tensor, target: int | None = None) -> Explanation:
        x = as_batch(image).clone()
        with self if self._stack is None else contextlib.nullcontext():
            for recorded in self.record.values():
                recorded.clear()
            x.requires_grad_(True)  # so that every layer's output carries a gradient
            logits = class_logits(self.model(x))  # a binary head's z: [-z/2, z/2]
            index = _class_index(logits, target)
            (gradient,) = torch.autograd.grad(logits[0, index], x)
        heat, layer, raw = self.heatmap(x, gradient)
        heat = heat / heat.max() if heat.max() > 0 else heat
        probability = float(torch.softmax(logits.detach(), dim=1)[0, index])
        return Explanation(
            self.method,
            heat.detach(),
            index,
            probability,
            layer,
            None if raw is None else raw.detach(),
        )

    def heatmap(
        self, x: torch.Tensor, gradient: torch.Tensor
    ) -> tuple[torch.Tensor, str | None, torch.Tensor | None]:
        """``(H x W heat map, not yet scaled; layer it came from; raw map)`` from the input
        batch ``x``, the class score's gradient with respect to it and :attr:`record`."""
        raise NotImplementedError


class GradCAM(BaseCAM):
    """Grad-CAM (Selvaraju et al. 2017). With ``A_k`` the k-th map of the target layer and
    ``y_c`` the class score (before softmax): ``alpha_k = mean over pixels of dy_c / dA_k``;
    ``cam = ReLU(sum_k alpha_k A_k)``, resized to the image bilinearly and divided by its
    maximum. Without ``layer``, every convolution is hooked and the last one the forward pass
    runs whose maps are larger than 1x1 is used."""

    method = "grad-cam"

    def __init__(self, model: nn.Module, layer: str | None = None) -> None:
        candidates = [layer] if layer else conv_layers(model)
        if not candidates:
            raise CnnlabError(f"{type(model).__name__} has no convolution; give --layer explicitly")
        super().__init__(model, candidates)
        self.layer = layer

    def weights(self, activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """``alpha_k``: the gradient averaged over each feature map."""
        return gradient.mean(dim=(1, 2))

    def heatmap(self, x, gradient):
        outputs, gradients = self.record["outputs"], self.record["gradients"]
        executed = list(outputs)
        if not executed:
            raise CnnlabError(f"layer {self.layers[0]!r} did not run in the forward pass")
        # default: the last convolution whose maps still have more than one pixel (LeNet's C5
        # is 1x1: a heat map from it would be one flat value)
        spatial = [n for n in executed if outputs[n][0, 0].numel() > 1]
        name = self.layer or (spatial or executed)[-1]
        activation = outputs[name][0]
        layer_gradient = gradients.get(name)
        if activation.ndim != 3 or layer_gradient is None:
            raise CnnlabError(
                f"layer {name!r} gives {tuple(activation.shape)}; Grad-CAM needs a layer with "
                "feature maps (C x H x W), such as a convolution"
            )
        weights = self.weights(activation, layer_gradient[0])
        raw = F.relu((weights[:, None, None] * activation).sum(dim=0))
        heat = F.interpolate(
            raw[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        return heat[0, 0], name, raw


class Saliency(BaseCAM):
    """Plain saliency (Simonyan et al. 2014): ``|d y_c / d x|``, the largest over the colour
    channels, divided by its maximum. No layer is hooked."""

    method = "saliency"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, ())

    def heatmap(self, x, gradient):
        return gradient[0].abs().amax(dim=0), None, None


def grad_cam(
    model: nn.Module, image: torch.Tensor, target: int | None = None, layer: str | None = None
) -> Explanation:
    """Grad-CAM for class ``target`` (the predicted class by default) at ``layer`` (by default
    the last convolution the forward pass runs whose maps are larger than 1x1); see
    :class:`GradCAM`. The model is left as it was: its train/eval flags, its parameters'
    ``.grad`` and no hook left behind."""
    return GradCAM(model, layer)(image, target)


def saliency(model: nn.Module, image: torch.Tensor, target: int | None = None) -> Explanation:
    """Saliency for class ``target`` (the predicted class by default); see :class:`Saliency`.
    Like :func:`grad_cam` it leaves the model's train/eval flags and its parameters' ``.grad``
    as they were."""
    return Saliency(model)(image, target)
