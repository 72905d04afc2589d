"""The classic architectures: torchvision's under cnnlab names (counts equal torchvision's
published metadata), the faithful AlexNet 2012, GoogLeNet v1 and LeNet-5's C3 table (counts
derived by hand), small-image variants, and ImageNet weights from the local torch cache."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.inspect import summary
from cnnlab.models import create_model
from cnnlab.models.classic import INCEPTION_TABLE
from cnnlab.models.lenet import C3_TABLE
from cnnlab.train import training_loss


def conv(k: int, c_in: int, c_out: int) -> int:
    return k * k * c_in * c_out + c_out


def fc(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


TORCHVISION = [
    "vgg11",
    "vgg11_bn",
    "vgg16",
    "vgg16_bn",
    "googlenet",
    "resnet18",
    "resnet34",
    "resnet50",
]


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_models_match_the_published_counts(name):
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    with torch.device("meta"):
        model = create_model(name, num_classes=1000, in_channels=3, input_size=224)
    assert sum(p.numel() for p in model.parameters()) == meta["num_params"]


def alexnet_count(groups: int, classes: int = 1000) -> int:
    g = groups
    return (
        conv(11, 3, 96)
        + (5 * 5 * 96 // g * 256 + 256)
        + conv(3, 256, 384)
        + (3 * 3 * 384 // g * 384 + 384)
        + (3 * 3 * 384 // g * 256 + 256)
        + fc(9216, 4096)
        + fc(4096, 4096)
        + fc(4096, classes)
    )


def test_alexnet2012_is_the_paper_network():
    assert alexnet_count(2) == 60_965_224 and alexnet_count(1) == 62_378_344
    for groups in (2, 1):
        with torch.device("meta"):
            model = create_model("alexnet2012", num_classes=1000, groups=groups)
        assert sum(p.numel() for p in model.parameters()) == alexnet_count(groups)
    report = summary(create_model("alexnet2012", groups=2), "3x227x227")
    shapes = [row.output_shape for row in report.rows if row.kind in ("Conv2d", "MaxPool2d")]
    as_text = ["x".join(map(str, (s[1], s[2], s[0]))) for s in shapes]
    assert as_text == [
        "55x55x96",
        "27x27x96",
        "27x27x256",
        "13x13x256",
        "13x13x384",
        "13x13x384",
        "13x13x256",
        "6x6x256",
    ]
    assert [row.output_shape for row in report.rows if row.kind == "Flatten"] == [(9216,)]
    lrn = [m for m in create_model("alexnet2012").modules() if isinstance(m, nn.LocalResponseNorm)]
    assert len(lrn) == 2
    # the paper's formula: b = a / (2 + 1e-4 * sum over 5 neighbouring maps of a^2) ^ 0.75
    a = torch.randn(1, 7, 2, 2) * 30
    padded = torch.nn.functional.pad(a**2, (0, 0, 0, 0, 2, 2))
    sums = torch.stack([padded[:, i : i + 5].sum(1) for i in range(7)], 1)
    assert torch.allclose(lrn[0](a), a / (2 + 1e-4 * sums) ** 0.75, atol=1e-5)
    with pytest.raises(CnnlabError, match="at least 67x67"):
        create_model("alexnet2012", input_size=32)


def googlenet_v1_count(classes: int, aux: bool) -> int:
    total, c_in = conv(7, 3, 64) + conv(1, 64, 64) + conv(3, 64, 192), 192
    for c1, r3, c3, r5, c5, proj in INCEPTION_TABLE.values():
        total += (
            conv(1, c_in, c1)
            + conv(1, c_in, r3)
            + conv(3, r3, c3)
            + conv(1, c_in, r5)
            + conv(5, r5, c5)
            + conv(1, c_in, proj)
        )
        c_in = c1 + c3 + c5 + proj
    assert c_in == 1024
    total += fc(1024, classes)
    if aux:  # on 4a (512 channels) and 4d (528)
        total += sum(conv(1, c, 128) + fc(2048, 1024) + fc(1024, classes) for c in (512, 528))
    return total


def test_googlenet_v1_has_true_5x5_branches_lrn_and_auxiliary_heads():
    model = create_model("googlenet_v1", num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == googlenet_v1_count(1000, True)
    plain = create_model("googlenet_v1", num_classes=10, aux_logits=False)
    assert sum(p.numel() for p in plain.parameters()) == googlenet_v1_count(10, False)
    assert model.inception3a.branch3[1][0].kernel_size == (5, 5)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.modules()) == 2
    small = create_model("googlenet_v1", num_classes=5, input_size=96).train()
    images, labels = torch.randn(2, 3, 96, 96), torch.tensor([1, 4])
    main, aux1, aux2 = small(images)
    loss, logits = training_loss((main, aux1, aux2), labels, 0.0, small)
    ce = torch.nn.functional.cross_entropy
    want = ce(main, labels) + 0.3 * (ce(aux1, labels) + ce(aux2, labels))
    assert torch.allclose(loss, want) and logits is main
    loss.backward()
    assert small.aux1.fc[-1].weight.grad.abs().sum() > 0  # the auxiliary heads learn
    assert small.eval()(images).shape == (2, 5)  # evaluation: the main output only
    report = summary(create_model("googlenet_v1", aux_logits=False), "3x224x224")
    sizes = [
        row.output_shape[1]
        for row in report.rows
        if row.kind == "MaxPool2d" and not row.name.endswith("branch4.0")
    ]
    assert sizes == [56, 28, 14, 7]  # Caffe's ceil-mode pooling sizes
    with pytest.raises(CnnlabError, match="aux_logits=False"):
        create_model("googlenet_v1", input_size=32)


def test_lenet5_c3_connection_table():
    assert sum(len(t) for t in C3_TABLE) == 60
    model = create_model("lenet5", c3_table=True)
    c3 = model.features[3]
    assert sum(p.numel() for p in c3.parameters()) == 1516  # the paper's C3 count
    assert sum(p.numel() for p in model.parameters()) == 61_706 - 2416 + 1516
    x = torch.randn(1, 6, 14, 14)
    base = c3(x)
    bumped = x.clone()
    bumped[:, 0] += 1  # S2 map 0 feeds C3 maps 0, 4, 5, 6, 9, 10, 11, 12, 14, 15 only
    changed = (c3(bumped) - base).abs().flatten(2).amax(2)[0] > 0
    assert changed.nonzero().flatten().tolist() == [j for j, t in enumerate(C3_TABLE) if 0 in t]


SMALL = [
    "resnet18_cifar",
    "resnet34_cifar",
    "resnet50_cifar",
    "vgg11_bn_cifar",
    "vgg16_bn_cifar",
    "googlenet",
    "resnet18",
    "vgg11",
]


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("channels", [1, 3])
def test_any_channels_and_classes(name, channels):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_channels=channels, input_size=32).eval()
    with torch.no_grad():
        assert model(torch.randn(2, channels, 32, 32)).shape == (2, 7)


def test_cifar_resnet_keeps_the_resolution():
    report = summary(create_model("resnet18_cifar"), "3x32x32")
    rows = {row.name: row for row in report.rows}
    assert rows["conv1"].output_shape == (64, 32, 32)
    assert rows["layer4.1.conv2"].output_shape == (512, 4, 4)
    with pytest.raises(CnnlabError, match="at least 32x32"):
        create_model("vgg16_bn_cifar", input_size=28)


def test_pretrained_weights_come_from_the_torch_cache(tmp_path, monkeypatch):
    from cnnlab.models.tv_models import weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights, path = weights_file("resnet18")
    assert path.parent == tmp_path / "hub" / "checkpoints"

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    import cnnlab.models.tv_models

    # tests never touch the network
    monkeypatch.setattr(cnnlab.models.tv_models, "download", offline)
    with pytest.raises(CnnlabError, match=f"put the file at {path}"):
        create_model("resnet18", pretrained=True)
    # a file in the cache is used without any download
    torch.manual_seed(1)
    reference = torchvision.models.resnet18()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference.state_dict(), path)
    model = create_model("resnet18", num_classes=10, in_channels=1, pretrained=True)
    assert torch.equal(model.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    assert torch.allclose(model.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    assert model.fc.out_features == 10


@pytest.mark.parametrize("name, size", [("alexnet2012", 227), ("googlenet_v1", 96)])
def test_faithful_models_take_gray_images_and_any_class_count(name, size):
    model = create_model(name, num_classes=3, in_channels=1, input_size=size).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, size, size)).shape == (1, 3)
