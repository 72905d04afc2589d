"""L2-norm (power-average) pooling of the NumPy engine against PyTorch's ``nn.LPPool2d``:
forward, input gradient by autograd, finite differences, and the bridge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab import scratch as S
from cnnlab.errors import CnnlabError

from .test_layers import assert_twin

RNG = np.random.default_rng(16)


@pytest.mark.parametrize(
    "norm, kernel, stride, positive",
    [
        (2, 2, None, False),  # L2-norm pooling, the lesson's case
        (2, 3, 2, True),  # overlapping windows: gradients add up
        (3, 2, 1, True),  # odd power (torch gives nan for a negative window sum)
        (1.5, (2, 3), (2, 1), True),  # fractional power needs x >= 0, as in PyTorch
    ],
)
def test_lp_pool_matches_torch_autograd(norm, kernel, stride, positive):
    x = RNG.standard_normal((2, 3, 6, 7))
    if positive:
        x = np.abs(x) + 0.1
    assert_twin(S.LPPool2d(norm, kernel, stride), torch.nn.LPPool2d(norm, kernel, stride), x)


def test_lp_pool_finite_differences():
    x = RNG.standard_normal((1, 2, 5, 5))
    x += np.sign(x) * 0.5  # no window sum near 0, where sqrt's slope makes differences noisy
    errors = S.check_gradients(S.LPPool2d(2, 3, 2), x)
    assert max(errors.values()) < 1e-6


def test_l2_pool_is_the_window_norm_between_average_and_max():
    x = np.abs(RNG.standard_normal((1, 1, 4, 4))) + 0.01
    l2 = S.LPPool2d(2, 2)(x)
    windows = x.reshape(1, 1, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(1, 1, 2, 2, 4)
    np.testing.assert_allclose(l2, np.sqrt((windows**2).sum(-1)))
    assert (l2 >= S.MaxPool2d(2)(x) - 1e-12).all()  # the norm of a window >= its largest value
    assert (l2 <= 2 * S.MaxPool2d(2)(x) + 1e-12).all()  # sqrt(4) * max bounds it
    high = S.LPPool2d(60, 2)(x)  # large p approaches max pooling
    np.testing.assert_allclose(high, S.MaxPool2d(2)(x), rtol=0.03)


def test_torch_lp_pool_converts_through_the_bridge():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.ReLU(),
        torch.nn.LPPool2d(2, 2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 3 * 3, 3),
    ).double()
    x = RNG.standard_normal((2, 1, 8, 8))
    twin = S.from_torch(model)
    assert any(isinstance(layer, S.LPPool2d) for layer in _layers(twin))
    result = S.compare(model, x.astype(np.float32), np.array([0, 2]))
    assert result.worst() < 1e-6


def test_lp_pool_refuses_a_bad_power():
    with pytest.raises(CnnlabError, match="norm_type=0"):
        S.LPPool2d(0, 2)


def _layers(network):
    nodes = getattr(network, "nodes", None)
    if isinstance(nodes, dict):
        nodes = nodes.values()
    return [getattr(node, "layer", node) for node in nodes or []]
