"""What cnnlab reads from a model beyond ``nn.Module``: every optional attribute, declared once.

A plain ``nn.Module`` that maps ``N x C x H x W`` images to ``N x classes`` scores works with
every command; a model (or one of its modules) may add any of these to change one thing, and
every reader goes through the accessors below, so this table is the whole interface:

=========================  =============================================================
attribute                  meaning (reader)
=========================  =============================================================
``cnnlab_spec``            dict: the registry entry's name, options, input channels and
                           size, classes; how a checkpoint rebuilds the model (set by
                           :func:`cnnlab.models.create_model`; read by training, loading)
``cnnlab_head``            str: the dotted path of the classifier's output layer
                           (transfer learning replaces it; default: the last ``nn.Linear``)
``cnnlab_input``           dict: how the model reads an image, ``mean`` and ``std`` per
                           channel (after scaling to 0..1), input ``size`` and the shorter
                           side to ``resize`` to before the central crop (torchvision's
                           models: their ImageNet weights' own transforms; read when an
                           untrained or published model is looked at; default: mean and std
                           0.5, the model's own input size)
``fx_leaf``                bool, on a module: torch.fx keeps it as one call (its forward
                           branches on the input's size; the trace, summary, NumPy bridge)
``numpy_twin``             str, on a module: the name of its twin in the NumPy engine
``optimizer_groups``       method ``(lr, weight_decay) -> param groups``: the model's own
                           parameter groups (``cifar_air``'s faster batch-norm shifts)
``initialize_from_data``   method ``(images)``: data-dependent initialisation of a new run
                           (``cifar_air``'s whitening layer), called once before training
``aux_loss_weight``        float: the weight of each auxiliary output's loss (GoogLeNet 0.3)
``cnnlab_fixed``           bool, on a parameter: the architecture keeps it fixed (untrained)
=========================  =============================================================

No torch import: the NumPy engine (floor 1) reads this module too.
"""

from __future__ import annotations

from typing import Any

ATTRIBUTES = (
    "cnnlab_spec",
    "cnnlab_head",
    "cnnlab_input",
    "fx_leaf",
    "numpy_twin",
    "optimizer_groups",
    "initialize_from_data",
    "aux_loss_weight",
    "cnnlab_fixed",
)
FIXED = "cnnlab_fixed"
AUX_LOSS_WEIGHT = 0.3  # GoogLeNet's, the default for a model with auxiliary outputs


def spec_of(model: Any) -> dict[str, Any] | None:
    """The registry spec a checkpoint rebuilds ``model`` from, or None (a user's model)."""
    return getattr(model, "cnnlab_spec", None)


def declared_head(model: Any) -> str | None:
    """The classifier output layer's path the model declares, or None (search for it)."""
    return getattr(model, "cnnlab_head", None)


def declared_input(model: Any) -> dict[str, Any] | None:
    """The model's own image preprocessing (``cnnlab_input``), or None (the default)."""
    return getattr(model, "cnnlab_input", None)


def is_fx_leaf(module: Any) -> bool:
    return bool(getattr(module, "fx_leaf", False))


def numpy_twin_of(module: Any) -> str | None:
    return getattr(module, "numpy_twin", None)


def own_optimizer_groups(model: Any, lr: float, weight_decay: float) -> list[Any] | None:
    """The model's own parameter groups, or None (train every parameter alike)."""
    groups = getattr(model, "optimizer_groups", None)
    return None if groups is None else groups(lr, weight_decay)


def initializes_from_data(model: Any) -> bool:
    return callable(getattr(model, "initialize_from_data", None))


def aux_loss_weight(model: Any) -> float:
    return float(getattr(model, "aux_loss_weight", AUX_LOSS_WEIGHT))


def is_fixed(parameter: Any) -> bool:
    return bool(getattr(parameter, FIXED, False))


__all__ = [
    "ATTRIBUTES",
    "FIXED",
    "aux_loss_weight",
    "declared_head",
    "declared_input",
    "initializes_from_data",
    "is_fixed",
    "is_fx_leaf",
    "numpy_twin_of",
    "own_optimizer_groups",
    "spec_of",
]
