"""im2col/col2im, correlation vs true convolution, and the gradient of a correlation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab import scratch as S
from cnnlab.scratch.functional import col2im, im2col

RNG = np.random.default_rng(1)


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1), (3, 2)])
def test_fast_correlation_equals_the_loop_definition(stride, padding):
    image, kernel = RNG.standard_normal((11, 9)), RNG.standard_normal((3, 4))
    assert np.allclose(
        S.correlate2d(image, kernel, stride, padding),
        S.correlate2d_naive(image, kernel, stride, padding),
    )


def test_convolution_is_correlation_with_the_kernel_rotated():
    image = RNG.standard_normal((8, 8))
    kernel = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, -1.0]])  # asymmetric
    assert not np.allclose(S.convolve2d(image, kernel), S.correlate2d(image, kernel))
    assert np.allclose(S.convolve2d(image, kernel), S.correlate2d(image, np.rot90(kernel, 2)))
    # scipy-free check of the textbook definition: (f * g)[i, j] = sum f[i - u, j - v] g[u, v]
    full = S.convolve2d_full(image, kernel)
    i, j = 5, 4
    by_hand = sum(
        image[i - u, j - v] * kernel[u, v]
        for u in range(3)
        for v in range(3)
        if 0 <= i - u < 8 and 0 <= j - v < 8
    )
    assert full[i, j] == pytest.approx(by_hand)


def test_input_gradient_of_a_correlation_is_a_full_convolution():
    image, kernel = RNG.standard_normal((7, 6)), RNG.standard_normal((3, 3))
    layer = S.Conv2d(1, 1, 3, bias=False)
    layer.weight.data = kernel[None, None].copy()
    out = layer(image[None, None])
    dout = RNG.standard_normal(out.shape)
    dx = layer.backward(dout)[0, 0]
    assert np.allclose(dx, S.convolve2d_full(dout[0, 0], kernel))


def test_col2im_is_the_adjoint_of_im2col():
    # <im2col(x), c> == <x, col2im(c)> for every x, c: the defining property of the adjoint
    x = RNG.standard_normal((2, 3, 9, 8))
    k, s, d = (3, 2), (2, 1), (1, 2)
    cols = im2col(x, k, s, d)
    c = RNG.standard_normal(cols.shape)
    assert np.vdot(cols, c) == pytest.approx(np.vdot(x, col2im(c, x.shape, k, s, d)))


def test_im2col_rows_are_the_windows_unfold_sees():
    x = RNG.standard_normal((2, 3, 6, 7))
    cols = im2col(x, (3, 3), (1, 2), (1, 1))  # (C*9) x (N*OH*OW)
    unfold = torch.nn.functional.unfold(torch.tensor(x), 3, stride=(1, 2))  # N x C*9 x L
    assert np.allclose(cols, unfold.permute(1, 0, 2).reshape(27, -1).numpy())


def test_output_size_formula():
    assert S.output_size(32, 5, 1, (2, 2), 1) == 32  # (32 - 5 + 2*2) / 1 + 1
    assert S.output_size(227, 11, 4, (0, 0), 1) == 55  # AlexNet's first layer
    assert S.output_size(7, 3, 1, (0, 0), 2) == 3  # dilation 2: a 3x3 kernel spans 5
