"""Every scratch layer against PyTorch autograd (forward, input gradient, parameter gradients)
and against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab import scratch as S
from cnnlab.errors import CnnlabError

RNG = np.random.default_rng(0)


def assert_twin(layer, module, x, dtype=np.float64, rtol=1e-6, copy=("weight", "bias")):
    """Same forward, same input gradient, same parameter gradients as the torch module."""
    x = x.astype(dtype)
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    module = module.to(torch_dtype)
    for name in copy:
        param = getattr(layer, name, None)
        if param is not None:
            param.data = param.data.astype(dtype)
            param.grad = np.zeros_like(param.data)
            getattr(module, name).data = torch.tensor(param.data)
    xt = torch.tensor(x, requires_grad=True)
    expected = module(xt)
    got = layer(x)
    scale = max(float(np.abs(expected.detach().numpy()).max()), 1e-12)
    assert np.abs(got - expected.detach().numpy()).max() / scale < rtol, "forward differs"
    dout = RNG.standard_normal(got.shape).astype(dtype)
    expected.backward(torch.tensor(dout))
    dx = layer.backward(dout)
    scale = max(float(np.abs(xt.grad.numpy()).max()), 1e-12)
    assert np.abs(dx - xt.grad.numpy()).max() / scale < rtol, "input gradient differs"
    for name in copy:
        param = getattr(layer, name, None)
        if param is not None:
            want = getattr(module, name).grad.numpy()
            assert np.abs(param.grad - want).max() / max(np.abs(want).max(), 1e-12) < rtol, name


CONV_CASES = [
    dict(stride=1, padding=0),
    dict(stride=2, padding=1),
    dict(stride=1, padding="same", dilation=2),
    dict(stride=2, padding=1, groups=2),
    dict(stride=3, padding="valid", groups=4, bias=False),
]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-6), (np.float32, 1e-4)])
def test_convolution_matches_torch(dims, case, dtype, rtol):
    scratch_class = {1: S.Conv1d, 2: S.Conv2d, 3: S.Conv3d}[dims]
    torch_class = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[dims]
    layer, module = scratch_class(4, 8, 3, **case), torch_class(4, 8, 3, **case)
    x = RNG.standard_normal((2, 4, *[10] * dims))
    assert_twin(layer, module, x, dtype, rtol)


@pytest.mark.parametrize(
    "layer, module",
    [
        (lambda: S.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2)),
        (lambda: S.MaxPool2d(3, 2, 1), lambda: torch.nn.MaxPool2d(3, 2, 1)),  # overlapping
        (lambda: S.AvgPool2d(2), lambda: torch.nn.AvgPool2d(2)),
        (lambda: S.AvgPool2d(3, 2, 1), lambda: torch.nn.AvgPool2d(3, 2, 1)),
        (lambda: S.Flatten(), lambda: torch.nn.Flatten()),
        (lambda: S.ReLU(), lambda: torch.nn.ReLU()),
        (lambda: S.LeakyReLU(0.1), lambda: torch.nn.LeakyReLU(0.1)),
        (lambda: S.Tanh(), lambda: torch.nn.Tanh()),
        (lambda: S.Sigmoid(), lambda: torch.nn.Sigmoid()),
        (lambda: S.Softmax(1), lambda: torch.nn.Softmax(1)),
        (
            lambda: S.LocalResponseNorm(5, 1e-2, 0.75, 2.0),
            lambda: torch.nn.LocalResponseNorm(5, 1e-2, 0.75, 2.0),
        ),
        (
            lambda: S.LocalResponseNorm(4, 0.5, 0.6, 1.0),
            lambda: torch.nn.LocalResponseNorm(4, 0.5, 0.6, 1.0),
        ),
        (
            lambda: S.GlobalAvgPool(),
            lambda: torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()),
        ),
    ],
)
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-6), (np.float32, 1e-4)])
def test_parameter_free_layers_match_torch(layer, module, dtype, rtol):
    x = RNG.standard_normal((3, 6, 9, 9))
    assert_twin(layer(), module(), x, dtype, rtol, copy=())


@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 1)])
def test_max_pool_ties_route_to_the_first_position_like_torch(kernel, stride):
    # ReLU outputs are full of exact zeros: every all-zero window is a tie
    x = np.maximum(RNG.standard_normal((2, 3, 8, 8)), 0).round(1)
    assert_twin(S.MaxPool2d(kernel, stride), torch.nn.MaxPool2d(kernel, stride), x, copy=())


def test_bilinear_resize_matches_torch_interpolate():
    x = RNG.standard_normal((2, 3, 5, 8))
    for size in [(32, 32), (3, 4), (5, 8)]:
        want = torch.nn.functional.interpolate(
            torch.tensor(x), size=size, mode="bilinear", align_corners=False
        )
        assert np.allclose(S.Resize2d(size)(x), want.numpy(), atol=1e-12)


def test_min_pool_is_max_pool_of_the_negation():
    x = RNG.standard_normal((2, 3, 8, 8))
    module = torch.nn.MaxPool2d(3, 2, 1)
    xt = torch.tensor(x, requires_grad=True)
    expected = -module(-xt)
    layer = S.MinPool2d(3, 2, 1)
    assert np.allclose(layer(x), expected.detach().numpy())
    dout = RNG.standard_normal(expected.shape)
    expected.backward(torch.tensor(dout))
    assert np.allclose(layer.backward(dout), xt.grad.numpy())


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-6), (np.float32, 1e-4)])
def test_linear_matches_torch(dtype, rtol):
    assert_twin(S.Linear(12, 5), torch.nn.Linear(12, 5), RNG.standard_normal((4, 12)), dtype, rtol)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_torch_and_tracks_running_stats(training):
    layer, module = S.BatchNorm2d(4), torch.nn.BatchNorm2d(4).double()
    layer.weight.data = RNG.standard_normal(4)
    layer.bias.data = RNG.standard_normal(4)
    if not training:  # evaluation uses running statistics from two earlier batches
        for _ in range(2):
            batch = RNG.standard_normal((5, 4, 6, 6)) * 3 + 1
            layer(batch)
            module(torch.tensor(batch))
    layer.train(training)
    module.train(training)
    assert_twin(layer, module, RNG.standard_normal((5, 4, 6, 6)) * 2 + 0.5)
    assert np.allclose(layer.running_mean, module.running_mean.numpy())
    assert np.allclose(layer.running_var, module.running_var.numpy())


def test_dropout_scales_in_training_and_passes_in_eval():
    layer = S.Dropout(0.25, rng=np.random.default_rng(1))
    x = np.ones((200, 100))
    y = layer(x)
    assert set(np.unique(y)) == {0.0, 1 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.01
    assert np.array_equal(layer.backward(np.ones_like(x)), y)  # same mask, same scale
    layer.eval()
    assert np.array_equal(layer(x), x)


def test_add_and_concat_route_gradients():
    a, b = RNG.standard_normal((2, 3, 4, 4)), RNG.standard_normal((2, 5, 4, 4))
    concat = S.Concat()
    y = concat(a, b)
    da, db = concat.backward(y)
    assert np.array_equal(da, a) and np.array_equal(db, b)
    add = S.Add()
    assert np.array_equal(add(a, a), 2 * a)
    assert all(np.array_equal(g, a) for g in add.backward(a))
    with pytest.raises(CnnlabError, match="one shape"):
        add(a, b)


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: S.Conv2d(2, 3, 3, stride=2, padding=1, dilation=1), (2, 2, 5, 5)),
        (lambda: S.Conv1d(2, 4, 2, dilation=2, groups=2), (2, 2, 7)),
        (lambda: S.Conv3d(1, 2, 2, padding=1), (1, 1, 3, 3, 3)),
        (lambda: S.MaxPool2d(2), (2, 2, 4, 4)),
        (lambda: S.MinPool2d(3, 2, 1), (1, 2, 5, 5)),
        (lambda: S.AvgPool2d(3, 2, 1), (1, 2, 5, 5)),
        (lambda: S.GlobalAvgPool(), (2, 3, 3, 3)),
        (lambda: S.Linear(6, 4), (3, 6)),
        (lambda: S.LeakyReLU(0.2), (3, 7)),
        (lambda: S.Tanh(), (3, 7)),
        (lambda: S.Sigmoid(), (3, 7)),
        (lambda: S.Softmax(1), (3, 7)),
        (lambda: S.BatchNorm2d(3), (4, 3, 2, 2)),
        (lambda: S.LocalResponseNorm(3, 0.5, 0.75, 1.0), (2, 5, 2, 2)),
        (lambda: S.AdaptiveAvgPool2d((3, 2)), (2, 2, 5, 3)),
        (lambda: S.Resize2d((7, 5)), (2, 2, 3, 4)),
        (lambda: S.ZeroPad2d((1, 0, 2, 1)), (2, 2, 3, 3)),
        (lambda: S.Reshape((("dim", 0), 3, -1)), (2, 3, 2, 2)),
    ],
)
def test_finite_differences_agree_in_float64(make, shape):
    x = RNG.standard_normal(shape)
    if shape == (2, 2, 4, 4):
        x = np.arange(np.prod(shape), dtype=float).reshape(shape) * 0.1  # no ties in max pooling
        RNG.shuffle(x.reshape(-1))
    errors = S.check_gradients(make(), x)
    assert max(errors.values()) < 1e-6


def test_gradient_checker_catches_a_wrong_backward():
    class Broken(S.Tanh):
        def backward(self, dout):
            return dout * (1 - self.y)  # forgot the square

    with pytest.raises(AssertionError, match="gradient of input is off"):
        S.check_gradients(Broken(), RNG.standard_normal((2, 5)))


def test_bad_input_shows_the_formula():
    with pytest.raises(CnnlabError, match=r"expects 3 input channels, got 1"):
        S.Conv2d(3, 4, 3)(np.zeros((1, 1, 8, 8)))
    with pytest.raises(CnnlabError, match=r"expects a 4-D input"):
        S.Conv2d(3, 4, 3)(np.zeros((3, 8, 8)))
    with pytest.raises(CnnlabError, match=r"kernel extent 7 is larger than the padded input 6"):
        S.Conv2d(1, 1, 7, padding=1)(np.zeros((1, 1, 4, 4)))
    with pytest.raises(
        CnnlabError, match=r"\(8 \+ 2\*0 - 3\) / 2 \+ 1 = 3\.50 is not a whole number"
    ):
        S.Conv2d(1, 1, 3, stride=2, exact=True)(np.zeros((1, 1, 8, 8)))
    with pytest.raises(CnnlabError, match="'same' keeps the size only at stride 1"):
        S.Conv2d(1, 1, 3, stride=2, padding="same")


def test_sequential_lists_the_parameters_of_its_layers():
    net = S.Sequential(S.Conv2d(1, 2, 3), S.ReLU(), S.Sequential(S.Flatten(), S.Linear(8, 3)))
    names = list(net.named_parameters())
    assert names == ["0.weight", "0.bias", "2.1.weight", "2.1.bias"]
    assert net.parameters() == list(net.named_parameters().values())


def test_gradient_checker_checks_parameters_inside_a_sequential(monkeypatch):
    def make():
        return S.Sequential(S.Conv2d(1, 2, 3), S.Tanh(), S.Flatten(), S.Linear(8, 3))

    x = RNG.standard_normal((2, 1, 4, 4))
    errors = S.check_gradients(make(), x)
    assert set(errors) == {"input", "0.weight", "0.bias", "3.weight", "3.bias"}
    assert max(errors.values()) < 1e-6

    right = S.Linear.backward

    def wrong_dw(self, dout):  # input gradient still right, weight gradient off
        dx = right(self, dout)
        self.weight.grad *= 1.5
        return dx

    monkeypatch.setattr(S.Linear, "backward", wrong_dw)
    with pytest.raises(AssertionError, match=r"gradient of 3\.weight is off"):
        S.check_gradients(make(), x)
