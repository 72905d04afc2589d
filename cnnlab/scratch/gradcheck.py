"""Finite-difference gradient checks: the hand-written backward against numerical slopes."""

from __future__ import annotations

import numpy as np

from .base import Layer


def numerical_gradient(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences ``(f(x + eps) - f(x - eps)) / 2 eps`` for every element of ``x``."""
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = f()
        flat[i] = saved - eps
        minus = f()
        flat[i] = saved
        out[i] = (plus - minus) / (2 * eps)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / max(|a|, |b|, 1e-8)`` over all elements."""
    return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-8)))


def check_gradients(
    layer: Layer, x: np.ndarray, tolerance: float = 1e-6, eps: float = 1e-6, seed: int = 0
) -> dict[str, float]:
    """Assert that ``layer.backward`` matches finite differences, for the input and every parameter
    (in a container such as ``Sequential``: every parameter of every layer it holds, named like
    ``"0.weight"``).

    The scalar checked is ``sum(forward(x) * r)`` with a fixed random ``r``, so every output
    element's gradient counts. Use float64: float32 differences are too coarse for 1e-6.

    Returns:
        The relative error of each checked array (``"input"`` and parameter names).

    Raises:
        AssertionError: naming the array whose gradient disagrees, and by how much.
    """
    x = np.array(x, dtype=np.float64)
    probe = np.random.default_rng(seed).standard_normal(layer(x).shape)

    def loss() -> float:
        return float((layer(x) * probe).sum())

    for p in layer.parameters():
        p.grad[...] = 0
    layer(x)
    analytic_dx = layer.backward(probe.copy())
    analytic = {
        "input": analytic_dx,
        **{n: p.grad.copy() for n, p in layer.named_parameters().items()},
    }
    numeric = {"input": numerical_gradient(loss, x, eps)}
    for name, p in layer.named_parameters().items():
        numeric[name] = numerical_gradient(loss, p.data, eps)
    errors = {name: relative_error(analytic[name], numeric[name]) for name in analytic}
    for name, error in errors.items():
        assert error < tolerance, (
            f"{type(layer).__name__}: gradient of {name} is off by relative error {error:.2e} "
            f"(tolerance {tolerance:.0e})"
        )
    return errors
