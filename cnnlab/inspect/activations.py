"""Activation functions and their derivatives, the derivatives computed by autograd (never
typed in), for the lesson "why sigmoid's gradient vanishes and ReLU is cheap"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F


def _softmax_first(x: torch.Tensor) -> torch.Tensor:
    # the probability of class 0 when its logit is x and two other classes have logits 0
    logits = torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], dim=-1)
    return torch.softmax(logits, dim=-1)[..., 0]


ACTIVATIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], str]] = {
    "sigmoid": (torch.sigmoid, "1 / (1 + e^-x): squashes to (0, 1); slope at most 1/4"),
    "tanh": (torch.tanh, "(e^x - e^-x) / (e^x + e^-x): squashes to (-1, 1); slope at most 1"),
    "relu": (torch.relu, "max(0, x): slope 1 for x > 0, 0 below; one comparison"),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), "x for x > 0, 0.1 x below: never a zero slope"),
    "elu": (F.elu, "x for x > 0, e^x - 1 below: smooth, mean output nearer 0"),
    "gelu": (F.gelu, "x * Phi(x): a smooth ReLU (BERT, ViT)"),
    "softmax": (
        _softmax_first,
        "e^x / (e^x + e^0 + e^0): class 0's probability against two logits at 0",
    ),
}


@dataclass
class ActivationCurve:
    """One activation on a grid of inputs: its values and its derivative (by autograd)."""

    name: str
    formula: str
    x: torch.Tensor
    y: torch.Tensor
    derivative: torch.Tensor

    @property
    def max_derivative(self) -> float:
        return float(self.derivative.max())

    @property
    def x_of_max_derivative(self) -> float:
        return float(self.x[self.derivative.argmax()])


def activation_curves(
    names: list[str] | None = None, low: float = -6.0, high: float = 6.0, points: int = 1201
) -> list[ActivationCurve]:
    """Each activation and its derivative on ``points`` inputs from ``low`` to ``high``;
    the derivative is ``d activation(x) / dx`` from ``torch.autograd.grad``."""
    curves = []
    for name in names or list(ACTIVATIONS):
        function, formula = ACTIVATIONS[name]
        x = torch.linspace(low, high, points, dtype=torch.float64, requires_grad=True)
        y = function(x)
        (derivative,) = torch.autograd.grad(y.sum(), x)  # each y[i] depends on x[i] alone
        curves.append(ActivationCurve(name, formula, x.detach(), y.detach(), derivative))
    return curves


def vanishing_factor(max_derivative: float, layers: int) -> float:
    """The most a gradient can keep after passing ``layers`` such activations: each
    multiplies it by at most the derivative's maximum (the chain rule)."""
    return max_derivative**layers
