"""A binary head for any model: one logit, a sigmoid and binary cross-entropy, in place of two
softmax outputs (``-O binary=true``, with a two-class data set: ``--classes cat,dog``).

For two classes the two heads say the same thing: softmax over ``(a, b)`` depends only on
``b - a``, so one logit ``z = b - a`` is enough, and ``sigmoid(z)`` is exactly the softmax
probability of the second class (``softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]``). The
binary head has half the output layer's parameters (``features + 1`` instead of
``2 * (features + 1)``) and the same accuracy within noise.

Whatever reads a model's outputs goes through :func:`classification_loss`,
:func:`predicted_classes` and :func:`class_logits`, which accept both forms: ``N x classes``
scores, or ``N x 1`` logits of the second class.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import CnnlabError

BINARY_OPTION = "binary"  # the generic model option: -O binary=true


def make_binary(model: nn.Module, num_classes: int, name: str) -> nn.Module:
    """Replace the output layer(s) of ``model`` (every ``nn.Linear`` with ``num_classes``
    outputs: the main head, and auxiliary heads such as GoogLeNet's) by one-logit layers
    with the same inputs. ``num_classes`` must be 2."""
    if num_classes != 2:
        raise CnnlabError(
            f"model {name!r} -O binary=true with {num_classes} classes: a binary head (one "
            "logit, sigmoid) is for two classes; pick two with --classes A,B (e.g. "
            "--classes cat,dog) or leave -O binary out"
        )
    heads = [
        (parent, child_name, child)
        for parent in model.modules()
        for child_name, child in parent.named_children()
        if isinstance(child, nn.Linear) and child.out_features == num_classes
    ]
    if not heads:
        raise CnnlabError(
            f"model {name!r} -O binary=true: it has no fully connected output layer "
            f"(nn.Linear with {num_classes} outputs) to replace; pick a model whose last layer "
            "is nn.Linear, e.g. lenet5"
        )
    for parent, child_name, old in heads:
        new = nn.Linear(old.in_features, 1, bias=old.bias is not None)
        new.to(device=old.weight.device, dtype=old.weight.dtype)
        setattr(parent, child_name, new)
    model.binary_head = True
    return model


def is_binary(logits: torch.Tensor) -> bool:
    """Whether ``logits`` are one binary logit per image (``N x 1``)."""
    return logits.dim() == 2 and logits.shape[1] == 1


def class_logits(logits: torch.Tensor) -> torch.Tensor:
    """``N x classes`` scores whose softmax is the class probabilities and whose arg-max is the
    prediction: one binary logit ``z`` becomes ``[-z/2, z/2]`` (softmax depends only on the
    difference, ``z``, so it gives ``[1 - sigmoid(z), sigmoid(z)]``), and each class's score
    grows with the evidence for it, as a gradient-based heat map needs."""
    if is_binary(logits):
        return torch.cat([-logits / 2, logits / 2], dim=1)
    return logits


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``N x classes`` probabilities: the softmax of :func:`class_logits`, so one binary logit
    ``z`` gives ``[1 - sigmoid(z), sigmoid(z)]``."""
    return torch.softmax(class_logits(logits), dim=1)


def predicted_classes(logits: torch.Tensor) -> torch.Tensor:
    """The predicted class of each row: ``logit > 0`` (probability above one half) for a
    binary head, else the arg-max."""
    if is_binary(logits):
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def classification_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy over ``N x classes`` scores, or binary cross-entropy with logits over one
    logit (labels 0 and 1; label smoothing moves the targets to ``eps/2`` and ``1 - eps/2``,
    which is what cross-entropy's smoothing does with two classes)."""
    if is_binary(logits):
        targets = labels.to(logits.dtype) * (1 - label_smoothing) + label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits[:, 0], targets, reduction=reduction)
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing, reduction=reduction)
