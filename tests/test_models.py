"""Every registered model: output shape, gradients everywhere, and a hand-derived size."""

from __future__ import annotations

import pytest
import torch

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.models import create_model, list_models, register_model


def conv(k: int, c_in: int, c_out: int) -> int:
    """Parameters of a k x k convolution: one k*k*c_in filter plus a bias per output channel."""
    return k * k * c_in * c_out + c_out


def fc(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def bn(channels: int) -> int:
    return 2 * channels  # scale and shift; running statistics are buffers, not parameters


# Each count written out from the layer list in the model's docstring, for 10 classes.
HAND_COUNTS = {
    # C1 5x5 1->6, C3 5x5 6->16, C5 5x5 16->120, F6 120->84, output 84->10
    "lenet5": conv(5, 1, 6) + conv(5, 6, 16) + conv(5, 16, 120) + fc(120, 84) + fc(84, 10),
    # conv 1->32, conv 32->64, flatten 64*12*12 = 9216, fc 128, fc 10
    "mnist_cnn": conv(3, 1, 32) + conv(3, 32, 64) + fc(9216, 128) + fc(128, 10),
    # 784 -> 256 -> 128 -> 10 (dropout has no parameters)
    "fashion_mlp": fc(784, 256) + fc(256, 128) + fc(128, 10),
    # conv 1->32 + BN, conv 32->64 + BN, 64*6*6 = 2304 -> 600 -> 120 -> 10
    "fashion_cnn": conv(3, 1, 32) + bn(32) + conv(3, 32, 64) + bn(64)
    + fc(2304, 600) + fc(600, 120) + fc(120, 10),
    # 7 valid convs: 32 -> 18, pool -> 9; 9*9*128 = 10368 -> 128 -> 128 -> 10
    "cifar_plain7": conv(3, 3, 128) + 6 * conv(3, 128, 128)
    + fc(10368, 128) + fc(128, 128) + fc(128, 10),
    # same-padded convs keep 32x32, one pool -> 16; 16*16*128 = 32768
    "cifar_residual": conv(3, 3, 128) + 6 * conv(3, 128, 128)
    + fc(32768, 128) + fc(128, 128) + fc(128, 10),
    # a pool after each of 3 pairs: 32 -> 4; 4*4*128 = 2048
    "cifar_residual_pool": conv(3, 3, 128) + 6 * conv(3, 128, 128)
    + fc(2048, 128) + fc(128, 128) + fc(128, 10),
}  # fmt: skip


def test_every_registered_model_has_a_hand_count():
    assert set(HAND_COUNTS) <= set(list_models())
    assert HAND_COUNTS["lenet5"] == 61_706  # the well-known LeNet-5 figure


@pytest.mark.parametrize("name", sorted(HAND_COUNTS))
def test_parameter_count_matches_hand_derivation(name: str):
    model = create_model(name, num_classes=10, input_size=28 if name in _MNIST else 32)
    assert sum(p.numel() for p in model.parameters()) == HAND_COUNTS[name]


_MNIST = {"mnist_cnn", "fashion_mlp", "fashion_cnn"}


@pytest.mark.parametrize("name", sorted(HAND_COUNTS))
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shape_and_every_parameter_gets_a_gradient(name: str, channels: int):
    size = 28 if name in _MNIST else 32
    model = create_model(name, num_classes=7, in_channels=channels, input_size=size)
    images = torch.randn(4, channels, size, size)
    out = model(images)
    assert out.shape == (4, 7)
    out.logsumexp(dim=1).sum().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}.{param_name} got no gradient"
        assert param.grad.abs().sum() > 0, f"{name}.{param_name} got an all-zero gradient"


@pytest.mark.parametrize("size", [8, 28, 32])
def test_lenet5_fits_any_input_to_its_32x32_field(size: int):
    model = create_model("lenet5", input_size=size, modern=True)
    assert model(torch.randn(2, 1, size, size)).shape == (2, 10)
    # C5 must see exactly 16 x 5 x 5 whatever the input size
    seen = {}
    model.features[6].register_forward_hook(lambda m, i, o: seen.update(shape=i[0].shape))
    model(torch.randn(1, 1, size, size))
    assert seen["shape"] == (1, 16, 5, 5)


def test_lenet5_classic_and_modern_differ_in_activation_and_pooling():
    classic, modern = create_model("lenet5"), create_model("lenet5", modern=True)
    assert isinstance(classic.features[1], torch.nn.Tanh)
    assert isinstance(classic.features[2], torch.nn.AvgPool2d)
    assert isinstance(modern.features[1], torch.nn.ReLU)
    assert isinstance(modern.features[2], torch.nn.MaxPool2d)


def test_residual_pair_adds_its_input():
    model = create_model("cifar_residual")
    pair = model.features[1]
    for param in pair.parameters():
        torch.nn.init.zeros_(param)
    x = torch.randn(1, 128, 8, 8)
    assert torch.equal(pair(x), x)  # a zeroed body leaves only the skip connection


def test_unknown_model_names_the_closest_matches():
    with pytest.raises(UnknownNameError, match="did you mean lenet5"):
        create_model("lenet")


def test_unknown_builder_option_lists_the_valid_ones():
    with pytest.raises(CnnlabError, match="its options are: modern"):
        create_model("lenet5", moderne=True)


def test_duplicate_registration_is_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet5", input_size=32, in_channels=1)(lambda **kw: None)


def test_list_models_filters_by_pattern():
    assert list_models("cifar_*") == ["cifar_plain7", "cifar_residual", "cifar_residual_pool"]


def test_too_small_input_is_explained():
    with pytest.raises(CnnlabError, match="at least 16x16"):
        create_model("cifar_plain7", input_size=8)
