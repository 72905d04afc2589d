"""The tiling fast path of the NumPy engine's max and min pooling (stride = kernel, no padding,
sides divisible: 2x2/2 pooling) against torch autograd, ties included (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab import scratch as S

RNG = np.random.default_rng(15)


def _relu_like(shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """Exact zeros and repeated values everywhere, as after a ReLU: many tied windows."""
    return np.maximum(RNG.standard_normal(shape), 0).round(1).astype(dtype)


@pytest.mark.parametrize("kernel", [2, (2, 3), 4])
@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tiled_pooling_matches_torch_forward_and_backward_with_ties(kernel, sign, dtype):
    x = sign * _relu_like((2, 3, 8, 12), dtype)
    layer = S.MaxPool2d(kernel) if sign == 1 else S.MinPool2d(kernel)
    xt = torch.tensor(x, requires_grad=True)
    want = sign * torch.nn.functional.max_pool2d(sign * xt, kernel)
    got = layer(x)
    assert layer.winners is not None  # the tiling path was taken
    assert got.dtype == dtype and np.array_equal(got, want.detach().numpy())
    dout = RNG.standard_normal(got.shape).astype(dtype)
    want.backward(torch.tensor(dout))
    dx = layer.backward(dout)
    assert dx.dtype == dtype and np.allclose(dx, xt.grad.numpy(), rtol=1e-6)
    # every window sends its gradient to exactly one input position
    assert np.count_nonzero(layer.winners) == got.size


def test_windows_that_do_not_tile_take_the_general_path():
    layer = S.MaxPool2d(2)
    x = RNG.standard_normal((1, 2, 9, 9))
    want = torch.nn.functional.max_pool2d(torch.tensor(x), 2).numpy()
    assert np.array_equal(layer(x), want) and layer.winners is None
    assert layer(RNG.standard_normal((1, 2, 8, 8))).shape == (1, 2, 4, 4)
    assert layer.winners is not None
