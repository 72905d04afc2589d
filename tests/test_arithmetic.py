"""Convolution arithmetic, `cnnlab shapes`, and `cnnlab summary` against torchvision's
published parameter counts and multiply-adds."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.inspect import (
    ShapeError,
    compare_designs,
    conv_output_size,
    pool_output_size,
    same_padding,
    shape_table,
    summary,
)
from cnnlab.models import create_model, list_models

# ------------------------------------------------------------------------------- arithmetic


def test_output_size_formula_and_its_variants():
    assert conv_output_size(28, 5) == 24
    assert conv_output_size(28, 5, padding=2) == 28
    assert conv_output_size(227, 11, stride=4) == 55  # AlexNet's first layer
    assert conv_output_size(32, 3, dilation=2) == 28  # a dilated 3x3 spans 5 pixels
    assert conv_output_size(28, 5, padding="same") == 28
    assert conv_output_size(28, 4, padding="same") == 28  # even kernel: odd pixel after
    assert conv_output_size(28, 5, padding="valid") == 24
    assert conv_output_size((100,), 7, stride=3) == (32,)  # 1-D
    assert conv_output_size((16, 113, 113), (3, 7, 7), (1, 2, 2), (1, 3, 3)) == (16, 57, 57)
    # ResNet's stem on 224: 112.5, floored by PyTorch; exact=False accepts it
    assert conv_output_size(224, 7, 2, 3, exact=False) == 112
    assert pool_output_size(28, 2) == 14  # stride defaults to the kernel
    assert pool_output_size(55, 3, 2) == 27  # AlexNet's overlapping pooling
    assert same_padding(5) == (2, 2) and same_padding(4) == (1, 2) and same_padding(3, 2) == (2, 2)
    for n, k, s, p in [(31, 4, 3, 1), (64, 7, 2, 3), (9, 3, 1, 0)]:
        layer = nn.Conv2d(1, 1, k, s, p)
        if (n + 2 * p - k) % s == 0:
            assert conv_output_size(n, k, s, p) == layer(torch.zeros(1, 1, n, n)).shape[-1]


def test_a_remainder_is_an_error_with_the_formula_and_fixes():
    with pytest.raises(ShapeError) as error:
        conv_output_size(28, 5, stride=2)
    message = str(error.value)
    assert "(28 - 5 + 2*0) / 2 + 1 = 12.5 -> 12" in message
    # 28 + 2p - 5 is odd for every p: only an uneven padding, another stride or size fixes it
    assert "uneven padding 0 before, 1 after" in message
    assert "stride 1" in message and "input size 29" in message
    assert conv_output_size(29, 5, stride=2) == 13
    with pytest.raises(ShapeError) as error:
        conv_output_size(30, 4, stride=4)
    paddings = str(error.value).split("padding ")[1].split(";")[0].split(" or ")
    for p in map(int, paddings):  # every suggested padding really makes it whole
        assert conv_output_size(30, 4, stride=4, padding=p) > 0


def test_kernel_too_large_and_bad_pooling_are_explained():
    with pytest.raises(ShapeError, match=r"spans 7 pixels but the padded input has 5.*< 1"):
        conv_output_size(5, 7)
    with pytest.raises(ShapeError, match="at most half the kernel"):
        pool_output_size(10, 2, padding=2)
    with pytest.raises(ShapeError, match="'same' keeps the size only at stride 1"):
        conv_output_size(28, 3, stride=2, padding="same")
    with pytest.raises(ShapeError, match="one number or 2"):
        conv_output_size((28, 28), (3, 3, 3))


# ------------------------------------------------------------------------------------ shapes

LENET = "conv(6,5) tanh avgpool(2) conv(16,5) tanh avgpool(2) conv(120,5) flatten fc(84) fc(10)"


def test_shape_table_of_lenet5_explains_every_number():
    report = shape_table(LENET, "1x32x32")
    rows = {row.name: row for row in report.rows}
    assert rows["conv1"].output_shape == (6, 28, 28)
    assert rows["conv1"].formula.startswith("(32 - 5 + 2*0) / 1 + 1 = 28")
    assert rows["conv1"].params == 5 * 5 * 1 * 6 + 6
    assert rows["conv1"].params_formula == "5*5*1*6 + 6 = 156"
    assert rows["conv1"].macs == 6 * 28 * 28 * 25
    assert rows["conv2"].params == 2416 and rows["conv3"].output_shape == (120, 1, 1)
    # receptive field by hand: 5, pool -> 6, +4*2 = 14, pool -> 16, +4*4 = 32
    names = ("conv1", "avgpool1", "conv2", "avgpool2", "conv3")
    fields = [rows[n].receptive_field for n in names]
    assert fields == [(5, 5), (6, 6), (14, 14), (16, 16), (32, 32)]
    assert rows["fc1"].receptive_field is None and rows["fc1"].receptive_text() == "all"
    assert report.params == 61_706  # the model's count (tests/test_models.py)
    assert report.params == sum(p.numel() for p in create_model("lenet5").parameters())
    assert not report.problems
    text = str(report)
    assert "5*5*6*16 + 16 = 2,416" in text and "parameters: 61,706" in text


def test_shape_table_reports_every_problem_and_keeps_going():
    report = shape_table("conv(8,4,s=3) conv(4,40) pool(2) conv(3,3,s=2) fc(3)", "1x28x28")
    kinds = [p.split(":")[0] for p in report.problems]
    assert len(report.problems) == 4, report.problems
    assert kinds[0].startswith("conv2") and "padded input has 9" in report.problems[0]
    assert "4.5 -> 4" in report.problems[1]  # the pool still ran on conv1's 9x9 output
    assert "(4 - 3 + 2*0) / 2 + 1 = 1.5 -> 1" in report.problems[2]
    assert "flatten it first" in report.problems[3]


def test_one_and_three_dimensional_inputs():
    one = shape_table("conv(16,7,s=2,p=3) pool(2) gap fc(5)", "1x100")
    assert one.rows[0].output_shape == (16, 50) and one.rows[1].output_shape == (16, 25)
    three = shape_table("conv(64,(3,7,7),s=(1,2,2),p=(1,3,3))", "3x16x113x113")
    row = three.rows[0]
    assert row.output_shape == (64, 16, 57, 57)
    assert row.params == 3 * 7 * 7 * 3 * 64 + 64
    assert row.receptive_field == (3, 7, 7)


def test_layer_files_and_bad_specs(tmp_path):
    spec = {"input": [1, 28, 28], "layers": [
        {"type": "conv", "out": 32, "kernel": 3}, "relu", {"type": "pool", "kernel": 2},
        {"type": "flatten"}, {"type": "fc", "out": 10}]}  # fmt: skip
    (tmp_path / "net.json").write_text(json.dumps(spec))
    (tmp_path / "net.yaml").write_text(
        "input: [1, 28, 28]\nlayers:\n  - {type: conv, out: 32, kernel: 3}\n  - relu\n"
        "  - pool(2)\n  - flatten\n  - {type: fc, out: 10}\n"
    )
    from cnnlab.inspect.shapes import load_specs

    for name in ("net.json", "net.yaml"):
        specs, shape = load_specs(tmp_path / name)
        report = shape_table(specs, shape)
        assert report.rows[-1].output_shape == (10,)
        assert report.params == 3 * 3 * 32 + 32 + 32 * 13 * 13 * 10 + 10
    with pytest.raises(CnnlabError, match="unknown layer 'convv'.*did you mean conv"):
        shape_table("convv(3,3)", "1x8x8")
    with pytest.raises(CnnlabError, match="has no option 'q'"):
        shape_table("conv(3,3,q=1)", "1x8x8")
    with pytest.raises(CnnlabError, match="expected channels x size"):
        shape_table("conv(3,3)", "28")


def test_inception_style_design_comparison():
    results = compare_designs(
        {"5x5": "conv(32,5,p=2)", "1x1 then 5x5": "conv(16,1) conv(32,5,p=2)"}, "192x28x28"
    )
    direct, reduced = results
    assert direct["params"] == 5 * 5 * 192 * 32 + 32
    assert direct["macs"] == 28 * 28 * 32 * 5 * 5 * 192 == 120_422_400
    assert reduced["macs"] == 28 * 28 * 16 * 192 + 28 * 28 * 32 * 5 * 5 * 16 == 12_443_648
    assert reduced["output_shape"] == direct["output_shape"] == [32, 28, 28]
    assert reduced["macs_vs_first"] == pytest.approx(0.1033, abs=1e-4)


def test_shapes_command(capsys):
    assert main(["shapes", LENET, "--input", "1x32x32"]) == 0
    assert "(14 - 5 + 2*0) / 1 + 1 = 10" in capsys.readouterr().out
    assert main(["shapes", "conv(4,40)", "--input", "1x9x9", "--json"]) == 1  # a problem
    data = json.loads(capsys.readouterr().out)
    assert data["problems"] and data["layers"][0]["output_shape"] is None
    assert main(["shapes", "--input", "192x28x28", "--compare", "conv(32,5,p=2)",
                 "--compare", "conv(16,1) conv(32,5,p=2)"]) == 0  # fmt: skip
    assert "12,443,648" in capsys.readouterr().out


# ----------------------------------------------------------------------------------- summary


@pytest.mark.parametrize(
    "name, options", [
        ("alexnet", {}), ("vgg16", {}), ("googlenet", {"aux_logits": False}),
        ("resnet18", {}), ("resnet50", {}),
    ],
)  # fmt: skip
def test_summary_matches_torchvision_published_counts(name, options):
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    with torch.device("meta"):
        if name == "googlenet":
            options = {**options, "init_weights": False}
        model = torchvision.models.get_model(name, weights=None, **options)
    report = summary(model, "3x224x224", name)
    assert report.total_params == meta["num_params"]
    assert round(report.macs / 1e9, 3) == meta["_ops"]  # torchvision's "GFLOPS" are mult-adds
    assert sum(row.params for row in report.rows) == report.total_params


def test_summary_receptive_fields_and_residual_branches():
    with torch.device("meta"):
        alexnet = torchvision.models.alexnet()
        vgg = torchvision.models.vgg16()
        resnet = torchvision.models.resnet18()
    # published receptive fields of the last convolution: AlexNet 195, VGG-16 212
    last_conv = lambda r: [row for row in r.rows if row.kind == "Conv2d"][-1]  # noqa: E731
    assert last_conv(summary(alexnet, "3x224x224")).receptive_field == (163, 163)
    assert [r for r in summary(alexnet, "3x224x224").rows if r.name == "features.12"][0]\
        .receptive_field == (195, 195)  # fmt: skip
    assert [r for r in summary(vgg, "3x224x224").rows if r.name == "features.30"][0]\
        .receptive_field == (212, 212)  # fmt: skip
    rows = {row.name: row for row in summary(resnet, "3x224x224").rows}
    # the skip path of layer3.0 starts at layer2's output (RF 99), the main path grows to 147;
    # the sum sees the larger
    assert rows["layer3.0.downsample.0"].receptive_field == (99, 99)
    assert rows["layer3.0.conv2"].receptive_field == (147, 147)
    assert rows["add_4"].receptive_field == (147, 147)
    assert rows["layer4.1.conv2"].receptive_field == (435, 435)
    assert "layer1.0.relu (again)" in rows  # a module called twice is listed twice
    assert rows["layer3.0.conv1"].notes and "14.5 -> 14" in rows["layer3.0.conv1"].notes[0]


def test_summary_of_cnnlab_models_and_what_it_leaves_alone():
    small = ["lenet5", "mnist_cnn", "fashion_mlp", "fashion_cnn", "cifar_plain7",
             "cifar_residual", "cifar_residual_pool", "resnet18_cifar",
             "vgg11_bn_cifar"]  # fmt: skip
    assert set(small) <= set(list_models())
    for name in small:
        model = create_model(name)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        spec = model.cnnlab_spec
        report = summary(model, f"{spec['in_channels']}x{spec['input_size']}x{spec['input_size']}")
        assert report.total_params == sum(p.numel() for p in model.parameters())
        assert report.rows[-1].output_shape == (10,)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert next(model.parameters()).device.type == "cpu"


class Branchy(nn.Module):
    """Branches on a shape (torch.fx cannot trace it) and, optionally, on values (the meta
    device cannot run it)."""

    def __init__(self, on_values: bool) -> None:
        super().__init__()
        self.on_values = on_values
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        x = self.conv(x)
        if x.shape[-1] > 100:
            x = x * 2
        if self.on_values and x.sum() > 1e9:
            x = x / 2
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("on_values", [False, True])
def test_summary_falls_back_to_hooks_for_untraceable_models(on_values):
    report = summary(Branchy(on_values), "1x8x8")
    assert [row.name for row in report.rows] == ["conv", "fc"]
    assert report.rows[0].output_shape == (4, 6, 6)
    assert report.total_params == 4 * 9 + 4 + 144 * 2 + 2
    assert any("fx trace" in note for note in report.notes)
    assert any("real forward" in note for note in report.notes) == on_values


def test_summary_command(capsys):
    assert main(["summary", "lenet5", "--input", "1x28x28"]) == 0
    out = capsys.readouterr().out
    assert "61,706" in out and "(32 - 5 + 2*0) / 1 + 1 = 28" in out
    assert "fx trace" not in out  # LeNet's FitTo32 stays one call; receptive fields work
    report = summary(create_model("lenet5", input_size=28), "1x28x28")
    assert [r.receptive_field for r in report.rows if r.name == "features.6"] == [(32, 32)]
    assert main(["summary", "torchvision:resnet18", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_params"] == 11_689_512 and round(data["macs"] / 1e9, 3) == 1.814
    assert main(["summary", "lenet5", "--input", "3x28x28"]) == 0  # 3 channels: rebuilt
    assert main(["summary", "nosuchmodel"]) == 2
    assert "nosuchmodel" in capsys.readouterr().err
