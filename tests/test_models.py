"""Every registered model: output shape, gradients everywhere, and a hand-derived size."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.models import create_model, get_model_entry, list_models, register_model


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
    "fashion_cnn": conv(3, 1, 32)
    + bn(32)
    + conv(3, 32, 64)
    + bn(64)
    + fc(2304, 600)
    + fc(600, 120)
    + fc(120, 10),
    # 7 valid convs: 32 -> 18, pool -> 9; 9*9*128 = 10368 -> 128 -> 128 -> 10
    "cifar_plain7": conv(3, 3, 128)
    + 6 * conv(3, 128, 128)
    + fc(10368, 128)
    + fc(128, 128)
    + fc(128, 10),
    # E5: a plain pair + 3 residual pairs = 8 same-padded convs keep 32x32, one pool -> 16;
    # 16*16*128 = 32768 -> 128 -> 128 (both linear) -> 10
    "cifar_residual": conv(3, 3, 128)
    + 7 * conv(3, 128, 128)
    + fc(32768, 128)
    + fc(128, 128)
    + fc(128, 10),
    # E6: the same 8 convs with a pool after each of the 3 residual pairs: 32 -> 4; 4*4*128
    "cifar_residual_pool": conv(3, 3, 128)
    + 7 * conv(3, 128, 128)
    + fc(2048, 128)
    + fc(128, 128)
    + fc(128, 10),
}

# The course material's own figures for its Keras models (issue 14: E4, E5, E6).
MATERIAL_COUNTS = {
    "cifar_plain7": 2_234_122,
    "cifar_residual": 5_248_906,
    "cifar_residual_pool": 1_316_746,
}


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


@pytest.mark.parametrize("name", sorted(MATERIAL_COUNTS))
def test_cifar_stacks_have_the_material_parameter_counts(name: str):
    model = create_model(name, num_classes=10, in_channels=3, input_size=32)
    assert sum(p.numel() for p in model.parameters()) == MATERIAL_COUNTS[name]


def _layers(model: torch.nn.Module) -> list[str]:
    """The leaf layers in call order (a residual pair's body, then its skip), by kind."""
    return [type(m).__name__ for m in model.modules() if not list(m.children())]


def test_cifar_stacks_are_wired_as_the_material_builds_them():
    from cnnlab.models.cifar_stacks import ResidualPair

    e4, e5, e6 = (
        create_model(n) for n in ("cifar_plain7", "cifar_residual", "cifar_residual_pool")
    )
    dense = ["Flatten", "Linear", "Linear", "Linear"]  # E5, E6: the hidden dense layers are linear
    pair = ["Conv2d", "ReLU"] * 2
    assert _layers(e4) == ["Conv2d", "ReLU"] * 7 + ["MaxPool2d", "Flatten"] + [
        "Linear",
        "ReLU",
    ] * 2 + ["Linear"]
    assert _layers(e5) == pair + pair * 3 + ["MaxPool2d"] + dense
    assert _layers(e6) == pair + (pair + ["MaxPool2d"]) * 3 + dense
    for model, pools in ((e5, 1), (e6, 3)):
        kinds = [type(m) for m in model.features]
        assert kinds[:2] == [torch.nn.Sequential] * 2  # the plain pair: no skip
        assert sum(k is ResidualPair for k in kinds) == 3
        assert sum(k is torch.nn.MaxPool2d for k in kinds) == pools
    assert all(c.padding == (1, 1) for c in e5.modules() if isinstance(c, torch.nn.Conv2d))
    features = {"cifar_plain7": 9 * 9 * 128, "cifar_residual": 32_768, "cifar_residual_pool": 2_048}
    for model, width in zip((e4, e5, e6), features.values()):
        assert model.classifier[1].in_features == width
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_residual_pair_adds_its_input_after_its_relus():
    model = create_model("cifar_residual")
    pair = model.features[2]  # features 0 and 1 are the plain pair
    x = -torch.rand(1, 128, 8, 8)
    # Keras: each convolution has its own ReLU, the addition none, so the sum may stay negative
    assert (pair(x) - x).min() >= 0 and pair(x).min() < 0
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
    assert list_models("cifar_residual*") == ["cifar_residual", "cifar_residual_pool"]
    assert "cifar_plain7" in list_models("cifar_*") and "lenet5" not in list_models("cifar_*")


def test_too_small_input_is_explained():
    with pytest.raises(CnnlabError, match="at least 16x16"):
        create_model("cifar_plain7", input_size=8)


IMAGENET_DESIGNS = {
    "alexnet2012",
    "googlenet_v1",
    "googlenet",
    "vgg11",
    "vgg11_bn",
    "vgg16",
    "vgg16_bn",
    "resnet18",
    "resnet34",
    "resnet50",
}


def _classes_of(model: torch.nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    return last.out_features


@pytest.mark.parametrize("name", list_models())
def test_each_design_defaults_to_its_own_class_count(name: str):
    """ImageNet designs are 1000-class networks (the counts docs/models.md and the papers give);
    the MNIST/CIFAR models and the *_cifar variants are 10-class ones."""
    want = 1000 if name in IMAGENET_DESIGNS else 10
    assert get_model_entry(name).default_num_classes == want
    with torch.device("meta"):
        model = create_model(name)
        assert model.cnnlab_spec["num_classes"] == want
        assert _classes_of(model) == want
        assert _classes_of(create_model(name, num_classes=7)) == 7


@pytest.mark.parametrize("name", ["resnet18", "vgg11", "alexnet2012", "googlenet_v1", "lenet5"])
def test_training_builds_the_data_sets_class_count(name: str):
    from types import SimpleNamespace

    from cnnlab.runs.start import build_model
    from cnnlab.train import TrainConfig

    entry = get_model_entry(name)
    data = SimpleNamespace(
        num_classes=10, channels=entry.default_in_channels, image_size=entry.default_input_size
    )
    with torch.device("meta"):
        model = build_model(TrainConfig(model=name), data)
    assert _classes_of(model) == 10 and model.cnnlab_spec["num_classes"] == 10


def _documented_counts() -> dict[str, tuple[int, int]]:
    """name -> (classes, parameters) from the two model tables of docs/models.md."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    counts, classes = {}, None
    for line in text.splitlines():
        header = re.match(r"\| name \| design \| parameters \((\d+) classes\) \|", line)
        if header:
            classes = int(header.group(1))
            continue
        if classes is None or not line.startswith("| `"):
            if not line.startswith("|"):
                classes = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        names = re.findall(r"`(\w+)`", cells[0])
        if "..." in cells[0]:  # resnet18_cifar ... resnet50_cifar: the ones between
            every = list_models("*_cifar")
            names = every[every.index(names[0]) : every.index(names[1]) + 1] + names[2:]
        row_classes = (
            int(re.search(r"\((\d+) classes\)", cells[-1]).group(1))
            if ("classes)" in cells[-1])
            else classes
        )
        numbers = [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]{3,}", cells[-1])]
        assert len(names) == len(numbers), line
        counts.update({n: (row_classes, c) for n, c in zip(names, numbers)})
    return counts


def test_docs_model_tables_agree_with_cnnlab_models(capsys):
    from cnnlab.cli import main

    assert main(["models"]) == 0
    printed = {}
    for line in capsys.readouterr().out.splitlines()[1:]:
        match = re.match(r"(\w+)\s+(\d+x\d+x\d+)\s+(\d+)\s+([\d,]+)\s", line)
        if match:
            printed[match.group(1)] = (int(match.group(3)), int(match.group(4).replace(",", "")))
    assert set(printed) == set(list_models())
    documented = _documented_counts()
    assert set(documented) == set(list_models())
    assert documented == printed
