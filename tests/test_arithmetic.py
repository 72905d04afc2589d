"""Convolution arithmetic, `cnnlab shapes`, and `cnnlab summary` against torchvision's
published parameter counts and multiply-adds."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

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


def _fixes_by_search(axis) -> list[str]:
    """The fix suggestions by the original unit-by-unit search (the definition the closed form
    must agree with; it loops once per pixel of kernel and stride, so only for small ones)."""
    tips = []
    size, extent, stride = axis.size, axis.extent, axis.stride
    paddings = [
        p
        for p in range(0, extent + stride)
        if size + 2 * p >= extent and (size + 2 * p - extent) % stride == 0
    ][:3]
    if paddings:
        tips.append("padding " + " or ".join(map(str, paddings)))
    else:
        total = next(
            t
            for t in range(1, extent + stride + 1)
            if size + t >= extent and (size + t - extent) % stride == 0
        )
        tips.append(f"uneven padding {total // 2} before, {total - total // 2} after")
    if not axis.fits:
        tips.append(f"a kernel of at most {axis.padded}")
    else:
        span = axis.padded - extent
        limit = max(2 * stride, axis.kernel)
        strides = [s for s in range(1, min(span, limit) + 1) if span % s == 0 and s != stride]
        near = sorted(strides, key=lambda s: abs(s - stride))[:2]
        if near:
            tips.append("stride " + " or ".join(map(str, sorted(near))))
    for delta in range(1, stride + extent + 1):
        for n in (size + delta, size - delta):
            padded = n + sum(axis.pad)
            if n > 0 and padded >= extent and (padded - extent) % stride == 0:
                return [*tips, f"input size {n}"]
    return tips


def test_fixes_in_closed_form_equal_the_search_they_replace():
    from cnnlab.inspect.arithmetic import axis_size

    checked = 0
    for size in range(1, 24):
        for kernel in range(1, 10):
            for stride in range(1, 8):
                for dilation in (1, 2, 3):
                    for pad in ((0, 0), (1, 1), (2, 1), (0, 3)):
                        axis = axis_size(size, kernel, stride, pad, dilation)
                        if axis.fits and not axis.remainder:
                            continue
                        assert axis.fixes() == _fixes_by_search(axis), axis
                        checked += 1
    assert checked > 10_000


@pytest.mark.parametrize(
    "size, kernel, stride",
    [
        (28, 10**9, 1),
        (28, 2, 10**9),
        (10**12, 2, 10**9 + 7),
        (10**12, 3, 999_999_937),
        (997, 10**12, 10**12 - 1),
    ],
)
def test_fixes_for_huge_kernels_and_strides_are_instant_and_right(size, kernel, stride):
    from cnnlab.inspect.arithmetic import axis_size

    started = time.perf_counter()
    axis = axis_size(size, kernel, stride, (0, 0), 1)
    tips = axis.fixes()
    assert time.perf_counter() - started < 1  # the search looped 10^9 times: minutes
    for tip in tips:  # every suggestion really makes the division exact
        if tip.startswith("padding "):
            for p in map(int, tip[8:].split(" or ")):
                fixed = axis_size(size, kernel, stride, (p, p), 1)
                assert fixed.fits and not fixed.remainder
        elif tip.startswith("stride "):
            for s in map(int, tip[7:].split(" or ")):
                fixed = axis_size(size, kernel, s, (0, 0), 1)
                assert fixed.fits and not fixed.remainder
        elif tip.startswith("input size "):
            fixed = axis_size(int(tip[11:]), kernel, stride, (0, 0), 1)
            assert fixed.fits and not fixed.remainder
    assert any(tip.startswith("input size") for tip in tips)


@pytest.mark.parametrize("spec", ["conv(6,1000000000)", "pool(2,s=1000000000)"])
def test_shapes_with_huge_kernel_or_stride_answers_at_once(spec, capsys):
    """These hung: the fix search looped once per pixel of kernel and stride."""
    result = []
    worker = threading.Thread(
        target=lambda: result.append(main(["shapes", spec, "--input", "1x28x28"])), daemon=True
    )
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), f"cnnlab shapes {spec!r} still running after 20 s"
    assert result == [1]  # one problem, reported with its fixes
    out = capsys.readouterr().out
    assert "Fix:" in out and "input size" in out
    assert "1 -> 1" not in out  # 1 + 26/10^9 is shown as such, not rounded to "1 -> 1"


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
    spec = {
        "input": [1, 28, 28],
        "layers": [
            {"type": "conv", "out": 32, "kernel": 3},
            "relu",
            {"type": "pool", "kernel": 2},
            {"type": "flatten"},
            {"type": "fc", "out": 10},
        ],
    }
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


@pytest.mark.parametrize(
    "spec, bad",
    [
        ("conv(6,5xq)", "kernel='5xq'"),
        ("fc(abc)", "out='abc'"),
        ("conv(6,5,g=0)", "groups=0"),
        ("adaptiveavgpool(0)", "out=0"),
        ("conv(6,5.5)", "kernel=5.5"),
        ("conv(-1,3)", "out=-1"),
        ("conv(0,5)", "out=0"),
        ("flatten fc(-5)", "out=-5"),
        ("dropout(7)", "p=7"),
        ("dropout(-0.1)", "p=-0.1"),
        ("dropout(1)", "p=1"),
        ("dropout(nan)", "p=nan"),
        ("conv(6,3,s=0)", "stride=0"),
        ("conv(6,3,d=0)", "dilation=0"),
        ("conv(6,3,p=-1)", "padding=-1"),
        ("pool(2,s=0)", "stride=0"),
        ("pool(0)", "kernel=0"),
        ("conv(6,0)", "kernel=0"),
        ("conv(6,3x0)", "kernel=(3, 0)"),
        ("lrn(0)", "size=0"),
        ("conv(6,3,p=foo)", "padding='foo'"),
        ("conv(6,3,bias=2)", "bias=2"),
        ("conv(6,(3,3,3,3))", "kernel=(3, 3, 3, 3)"),
        ("conv(true,3)", "out=True"),
        ("conv(6,10000000000000)", "kernel=10000000000000"),
    ],
)
def test_impossible_layer_values_are_refused_in_one_line(spec, bad, capsys):
    assert main(["shapes", spec, "--input", "1x28x28"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err and err.startswith("cnnlab shapes: error: ")
    assert bad in err
    with pytest.raises(CnnlabError, match=re.escape(bad)):  # the Python API refuses them too
        shape_table(spec, "1x28x28")


def test_layer_values_that_stay_allowed():
    report = shape_table(
        "conv(6,3,p=0) dropout(0) dropout(0.99) pool(2,p=1) conv(4,3x3,p=same)"
        " adaptiveavgpool(2x2) flatten fc(3,bias=false)",
        "1x28x28",
    )
    assert [row.output_shape for row in report.rows][-1] == (3,)
    assert report.rows[-1].params == 16 * 3
    assert shape_table("conv(6,5.0)", "1x28x28").rows[0].output_shape == (6, 24, 24)
    # p is dropout's own option (elsewhere short for padding)
    assert shape_table("dropout(p=0.3)", "1x8x8").rows[0].formula.startswith("p = 0.3")


@pytest.mark.parametrize(
    "content, bad",
    [
        ('{"input": "abc", "layers": ["conv(6,5)"]}', "'abc'"),
        ('{"input": 5, "layers": ["conv(6,5)"]}', "input=5"),
        (
            '{"input": [1, 28, 28], "layers": [{"type": "conv", "out": "six", "kernel": 5}]}',
            "out='six'",
        ),
        ('{"input": [1, "a", 28], "layers": ["conv(6,5)"]}', "[1, 'a', 28]"),
        ('{"input": [0, 28, 28], "layers": ["conv(6,5)"]}', "[0, 28, 28]"),
        ('{"input": [1, 28, 28], "layers": [{"type": "dropout", "p": 2}]}', "p=2"),
        (
            '{"input": [1, 28, 28], "layers": [{"type": "conv", "out": 6, "kernel": [5, -5]}]}',
            "kernel=(5, -5)",
        ),
    ],
)
def test_bad_values_in_layer_files_are_refused_in_one_line(content, bad, tmp_path, capsys):
    path = tmp_path / "net.json"
    path.write_text(content)
    assert main(["shapes", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and bad in err and "net.json" in err


def test_yaml_errors_stay_on_one_line(tmp_path, capsys):
    (tmp_path / "net.yaml").write_text("input: [1, 28\n")
    assert main(["shapes", str(tmp_path / "net.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "net.yaml" in err


def test_global_pooling_after_flatten_is_a_problem_not_a_crash():
    report = shape_table("flatten adaptiveavgpool(2) gap fc(3)", "1x8x8")
    assert len(report.problems) == 2 and "needs a spatial input" in report.problems[0]
    assert report.rows[-1].output_shape == (3,)


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
    assert (
        main(
            [
                "shapes",
                "--input",
                "192x28x28",
                "--compare",
                "conv(32,5,p=2)",
                "--compare",
                "conv(16,1) conv(32,5,p=2)",
            ]
        )
        == 0
    )
    assert "12,443,648" in capsys.readouterr().out


# ----------------------------------------------------------------------------------- summary


@pytest.mark.parametrize(
    "name, options",
    [
        ("alexnet", {}),
        ("vgg16", {}),
        ("googlenet", {"aux_logits": False}),
        ("resnet18", {}),
        ("resnet50", {}),
        # Linear layers at every position (tokens, pixels) and attention's products: these
        # showed 0.320 G and 0.173 G when a Linear was counted once per image
        ("convnext_tiny", {}),
        ("vit_b_16", {}),
        # attention inside a torch.fx-wrapped function, and einsum: torch's flop counter
        ("swin_t", {}),
        ("maxvit_t", {}),
    ],
)
def test_summary_matches_torchvision_published_counts(name, options):
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    with torch.device("meta"):
        if name == "googlenet":
            options = {**options, "init_weights": False}
        model = torchvision.models.get_model(name, weights=None, **options)
    report = summary(model, "3x224x224", name)
    assert report.total_params == meta["num_params"]
    assert round(report.macs / 1e9, 3) == meta["_ops"]  # torchvision's "GFLOPS" are mult-adds
    direct = sum(report.direct.values())  # a ViT's class token, ConvNeXt's layer scales
    assert sum(row.params for row in report.rows) + direct == report.total_params
    assert (direct > 0) == (name in ("convnext_tiny", "vit_b_16", "swin_t", "maxvit_t"))


def test_summary_receptive_fields_and_residual_branches():
    with torch.device("meta"):
        alexnet = torchvision.models.alexnet()
        vgg = torchvision.models.vgg16()
        resnet = torchvision.models.resnet18()
    # published receptive fields of the last convolution: AlexNet 195, VGG-16 212
    last_conv = lambda r: [row for row in r.rows if row.kind == "Conv2d"][-1]  # noqa: E731
    assert last_conv(summary(alexnet, "3x224x224")).receptive_field == (163, 163)
    assert [r for r in summary(alexnet, "3x224x224").rows if r.name == "features.12"][
        0
    ].receptive_field == (195, 195)
    assert [r for r in summary(vgg, "3x224x224").rows if r.name == "features.30"][
        0
    ].receptive_field == (212, 212)
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
    small = [
        "lenet5",
        "mnist_cnn",
        "fashion_mlp",
        "fashion_cnn",
        "cifar_plain7",
        "cifar_residual",
        "cifar_residual_pool",
        "resnet18_cifar",
        "vgg11_bn_cifar",
    ]
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


class TinyAttention(nn.Module):
    """Tokens through every kind of product summary counts, with sizes small enough to count
    by hand: L = 5 tokens of E = 8 features, 2 heads."""

    def __init__(self, batch_first: bool = True) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=batch_first)
        self.batch_first = batch_first
        self.qkv = nn.Linear(8, 24)
        self.head = nn.Linear(8, 4)

    def forward(self, x):  # x: N x 3 x 5 (3 channels at 5 positions)
        tokens = self.embed(x.transpose(1, 2))  # N x 5 x 8
        if self.batch_first:
            tokens = self.attention(tokens, tokens, tokens, need_weights=False)[0]
        else:
            t = tokens.transpose(0, 1)
            tokens = self.attention(t, t, t, need_weights=False)[0].transpose(0, 1)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)  # N x 5 x 8 each
        scores = q @ k.transpose(1, 2)  # N x 5 x 5
        mixed = torch.matmul(scores.softmax(-1), v)  # N x 5 x 8
        fused = F.scaled_dot_product_attention(q, k, mixed)
        mixed = torch.einsum("nld,nmd->nlm", fused, k) @ v  # 5x5 by einsum, then 5x8
        return self.head(mixed.mean(1))


@pytest.mark.parametrize("batch_first", [True, False])
def test_summary_counts_linear_per_position_and_attention_by_hand(batch_first):
    report = summary(TinyAttention(batch_first), "3x5")
    macs = {row.name: row.macs for row in report.rows if row.macs}
    length, e = 5, 8
    assert macs["embed"] == length * 3 * 8  # once per token, not once per image
    assert macs["qkv"] == length * 8 * 24
    # projections q, k, v, out (4 L E^2) + Q K^T and A V (2 L^2 E)
    assert macs["attention"] == 4 * length * e * e + 2 * length * length * e
    assert macs["matmul"] == length * length * 8  # q @ k^T: 5x5 outputs, 8 terms each
    assert macs["matmul_1"] == length * 8 * 5  # A V: 5x8 outputs, 5 terms each
    assert macs["scaled_dot_product_attention"] == 2 * length * length * 8
    assert macs["einsum"] == length * length * 8  # counted by torch's flop counter
    assert macs["matmul_2"] == length * 8 * 5
    assert macs["head"] == 8 * 4  # on the mean: one position
    rows = {row.name: row for row in report.rows}
    assert rows["embed"].macs_formula == "5 positions x 3*8 = 120"
    assert "Q.K^T and A.V 2*5*5*8" in rows["attention"].macs_formula
    assert report.macs == sum(macs.values())
    assert "not counted: biases, normalization, activations, softmax" in str(report)


def test_summary_agrees_with_torch_flop_counter_on_a_real_forward():
    """An independent count: torch.utils.flop_counter on a real forward pass, FLOPs / 2."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    for model, shape in [
        (TinyAttention(), (3, 5)),
        (TinyAttention(batch_first=False), (3, 5)),
        (torchvision.models.vit_b_32(image_size=64, num_classes=7), (3, 64, 64)),
        (torchvision.models.convnext_tiny(num_classes=5), (3, 64, 64)),
    ]:
        model.eval()
        # the flop counter has no formula for the fused CPU attention kernels: the math
        # backend spells attention out as matrix products it counts
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *shape))
        report = summary(model, shape)
        assert report.macs == counter.get_total_flops() // 2, type(model).__name__


@pytest.mark.parametrize(
    "argv, bad",
    [
        (["builtins:int", "--input", "3x8x8"], "builtins:int gave int"),
        (["builtins:int"], "builtins:int"),  # asks for --input before running anything
        (["os.path:join", "--input", "3x8x8"], "os.path:join() failed: TypeError"),
        (["lenet5", "--input", "1x28x28x28"], "--input 1x28x28x28"),
        (["lenet5", "--input", "1x28"], "--input 1x28"),
        (["torchvision:resnet18", "--input", "3x224x224x2"], "input of 3x224x224x2"),
        (["torchvision:resnet18", "--input", "2x64x64"], "input of 2x64x64"),
        (["lenet5", "--num-classes", "0"], "--num-classes 0"),
        (["lenet5", "-O", "modern"], "'modern'"),
        (["lenet5", "--input", "1x0x28"], "'1x0x28'"),
    ],
)
def test_summary_errors_are_one_line_naming_the_input(argv, bad, capsys):
    assert main(["summary", *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and "\n" not in err and err.startswith("cnnlab summary: error: ")
    assert bad in err


def test_summary_error_names_what_the_model_was_made_for(capsys):
    """torch.fx appends five lines of graph text to the shape error: one line remains, with the
    input, PyTorch's reason and the shape to give instead."""
    assert main(["summary", "torchvision:resnet18", "--input", "2x64x64"]) == 2
    err = capsys.readouterr().err.strip()
    assert "(at conv1: " in err  # the layer that refused it
    assert err.endswith("give --input 3x224x224 (C x H x W, no batch axis)")
    with pytest.raises(CnnlabError, match="is a int, not a torch.nn.Module"):
        summary(3, "1x8x8")  # type: ignore[arg-type]


def test_imagenet_designs_default_to_their_1000_classes(capsys):
    assert main(["summary", "vgg16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("vgg16 (1000 classes) on input 3x224x224")
    assert "parameters: 138,357,544" in out  # torchvision's published VGG-16 count
    assert main(["summary", "vgg16_bn_cifar"]) == 0
    assert capsys.readouterr().out.startswith("vgg16_bn_cifar (10 classes) on input 3x32x32")
    assert main(["summary", "lenet5", "--num-classes", "7", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "lenet5 (7 classes)" and data["layers"][-1]["output_shape"] == [7]
