"""The base of every layer of the NumPy engine: :class:`Parameter` (an array and its gradient)
and :class:`Layer` (``forward``, ``backward``, named parameters, train/eval).

Parameters live on the layers only (``layer.parameters()``); nothing keeps a second copy.
"""

from __future__ import annotations

import numpy as np

from ..errors import CnnlabError


class Parameter:
    """A learnable array and its gradient (same shape)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.grad = np.zeros_like(data)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Layer:
    training = True

    def parameters(self) -> list[Parameter]:
        return list(self.named_parameters().values())

    def named_parameters(self) -> dict[str, Parameter]:
        """This layer's parameters and those of the layers it holds (as attributes or in
        lists), under dotted names such as ``"weight"`` or ``"block.0.weight"``; a parameter
        reached twice is listed once."""
        named: dict[str, Parameter] = {}
        seen: set[int] = set()
        for key, value in vars(self).items():
            for name, param in _parameters_of(key, value):
                if id(param) not in seen:
                    seen.add(id(param))
                    named[name] = param
        return named

    def train(self, mode: bool = True) -> Layer:
        self.training = mode
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        return self.forward(*inputs)


def _parameters_of(key: str, value: object) -> list[tuple[str, Parameter]]:
    """The parameters reachable from one attribute: itself, a held layer's, or a list's."""
    if isinstance(value, Parameter):
        return [(key, value)]
    if isinstance(value, Layer):
        return [(f"{key}.{name}", p) for name, p in value.named_parameters().items()]
    if isinstance(value, (list, tuple)):
        return [pair for i, item in enumerate(value) for pair in _parameters_of(f"{key}.{i}", item)]
    return []


def check_input(layer: str, x: np.ndarray, dims: int, channels: int | None) -> None:
    if x.ndim != dims + 2:
        axes = ["N", "C", *["D", "H", "W"][3 - dims :]]
        raise CnnlabError(
            f"{layer} expects a {dims + 2}-D input ({' x '.join(axes)}), got shape {x.shape}"
        )
    if channels is not None and x.shape[1] != channels:
        raise CnnlabError(
            f"{layer} expects {channels} input channels, got {x.shape[1]} (shape {x.shape})"
        )
