"""Feature maps, filters, Grad-CAM, saliency, gradient flow, mistakes and the `cnnlab show`
commands, on models trained here on real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.data.batches import Preprocess
from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.inspect import (
    capture,
    confident_mistakes,
    dead_relus,
    feature_maps,
    filters,
    grad_cam,
    gradient_flow,
    saliency,
)
from cnnlab.models import create_model
from cnnlab.models.init import glorot_limit


@pytest.fixture(scope="session")
def mnist_test(data_dir):
    return load_dataset("mnist", "test", root=data_dir)


def _no_hooks(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
        for m in model.modules()
    )


def test_capture_removes_its_hooks_even_after_an_error(lenet):
    model = lenet.model
    with capture(model, ["features.0", "classifier.1"]) as record:
        model(torch.zeros(2, 1, 28, 28))
    assert list(record["outputs"]) == ["features.0", "classifier.1"]
    assert record["outputs"]["features.0"].shape == (2, 6, 28, 28)
    assert _no_hooks(model)
    with pytest.raises(RuntimeError), capture(model) as record:
        model(torch.zeros(2, 3, 28, 28))  # wrong channels: the forward fails mid-way
    assert _no_hooks(model)
    match = r"'features.9'.*Did you mean features\.\d"
    with pytest.raises(UnknownNameError, match=match), capture(model, ["features.9"]):
        pass
    assert _no_hooks(model)


def test_feature_maps_of_a_real_digit(lenet, mnist_test):
    image = lenet.preprocess(torch.as_tensor(mnist_test.images[:1]))[0]
    maps = feature_maps(lenet.model, image)
    assert list(maps)[:3] == ["fit", "features.0", "features.1"]
    assert maps["features.0"].shape == (6, 28, 28) and maps["features.5"].shape == (16, 5, 5)
    assert all(m.ndim == 3 for m in maps.values())  # the fc outputs are left out
    assert (maps["features.1"] >= 0).all()  # after the ReLU
    # the map equals the convolution computed by hand
    conv = lenet.model.features[0]
    want = torch.nn.functional.conv2d(
        torch.nn.functional.pad(image[None], (2, 2, 2, 2)), conv.weight, conv.bias
    )[0]
    assert torch.allclose(maps["features.0"], want, atol=1e-5)
    only = feature_maps(lenet.model, image, ["features.3"])
    assert list(only) == ["features.3"]
    assert _no_hooks(lenet.model)


def test_filters(lenet):
    name, weight = filters(lenet.model)
    assert name == "features.0" and weight.shape == (6, 1, 5, 5)
    assert filters(lenet.model, "features.3")[1].shape == (16, 6, 5, 5)
    with pytest.raises(CnnlabError, match="not a convolution; convolutions: features.0"):
        filters(lenet.model, "features.1")


def test_grad_cam_equals_cam_for_a_global_average_pooling_network():
    # For conv -> ReLU -> GAP -> linear, dy_c/dA_k = w_ck / (H W) at every pixel, so Grad-CAM
    # reduces to Zhou et al.'s CAM: ReLU(sum_k w_ck A_k) / (H W).
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    image = torch.randn(3, 12, 12)
    result = grad_cam(model, image, target=2, layer="1")
    activation = model[1](model[0](image[None]))[0]
    cam = torch.relu((model[4].weight[2][:, None, None] * activation).sum(0)) / 144
    assert torch.allclose(result.raw, cam, atol=1e-6)
    assert result.heatmap.shape == (12, 12) and float(result.heatmap.max()) == pytest.approx(1)
    assert result.class_index == 2
    default = grad_cam(model, image, target=2)
    assert default.layer == "0"  # the last convolution the forward runs
    assert _no_hooks(model)


def test_grad_cam_of_lenet_equals_the_formula_by_autograd(lenet, mnist_test):
    """The hook pipeline against the definition, computed without hooks: split LeNet at C3's
    output A, differentiate the class score by A, weight A by the averaged gradient."""
    model = lenet.model
    for i in range(3):
        image = lenet.preprocess(torch.as_tensor(mnist_test.images[i : i + 1]))
        result = grad_cam(model, image[0])
        assert result.layer == "features.3"  # C5 (features.6) is 1x1: skipped by default
        activation = model.features[:4](model.fit(image)).detach().requires_grad_(True)
        logits = model.classifier(model.features[4:](activation))
        assert result.class_index == int(logits.argmax()) == int(mnist_test.labels[i])
        (gradient,) = torch.autograd.grad(logits[0, result.class_index], activation)
        want = torch.relu((gradient[0].mean((1, 2))[:, None, None] * activation[0]).sum(0))
        assert torch.allclose(result.raw, want, atol=1e-5)
        assert float(result.heatmap.min()) >= 0 and float(result.heatmap.max()) == pytest.approx(1)
    with pytest.raises(CnnlabError, match="class 10 is out of range"):
        grad_cam(model, image[0], target=10)


def test_saliency_looks_at_the_strokes(lenet, mnist_test):
    """On real digits the input gradient is larger on the strokes than on the background."""
    for i in range(10):
        raw = torch.as_tensor(mnist_test.images[i : i + 1])
        result = saliency(lenet.model, lenet.preprocess(raw)[0])
        stroke = raw[0, 0] > 64
        assert result.heatmap[stroke].mean() > 1.5 * result.heatmap[~stroke].mean()
        x = lenet.preprocess(raw).requires_grad_(True)
        lenet.model(x)[0, result.class_index].backward()
        want = x.grad[0].abs().amax(0)
        assert torch.allclose(result.heatmap, want / want.max(), atol=1e-6)


def test_gradient_flow_shows_vanishing_gradients_in_the_plain_twin(data_dir):
    data = load_dataset("cifar10", "test", root=data_dir, variant="subset")
    mean, std = data.channel_stats()
    x = Preprocess(mean, std)(torch.as_tensor(data.images[:32]))
    y = torch.as_tensor(data.labels[:32]).long()
    batches = [(x[:16], y[:16]), (x[16:], y[16:])]
    ratios = {}
    for skip in (False, True):
        torch.manual_seed(0)
        model = create_model("cifar_residual", pairs=6, skip=skip)
        flow = gradient_flow(model, batches, steps=2)
        assert list(flow)[0] == "features.0.0" and list(flow)[-1] == "classifier.3"
        assert all(len(v) == 2 for v in flow.values())
        means = [sum(v) / 2 for v in flow.values()]
        ratios[skip] = means[0] / means[-1]
    assert ratios[False] < 1e-3 * ratios[True], ratios  # first layer starved without skips


def _small_relu_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(inplace=True),  # inplace: the count must read the output, not a view of it
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
        nn.ReLU(),
        nn.Linear(5, 3),
    )


def test_dead_relus_counts_units_that_are_zero_for_every_image():
    model = _small_relu_net()
    images = torch.rand(40, 1, 8, 8)
    with torch.no_grad():
        model[0].weight.abs_()  # every channel positive on these all-positive images ...
        model[0].bias.fill_(0.1)
        model[0].bias[[1, 3]] = -100.0  # ... except channels 1 and 3: off everywhere
        model[3].bias.fill_(50.0)
        model[3].bias[0] = -1e4  # one of the 5 fully connected units off for every image
    assert dead_relus(model, images, batch_size=16) == {"1": 0.5, "4": 0.2}
    # a unit alive for a single image, the last of the last batch, is not dead
    lone = images.clone()
    lone[-1] = 0.0
    with torch.no_grad():
        model[0].weight[1] = -10.0  # channel 1: below zero wherever the image is not black ...
        model[0].bias[1] = 0.5  # ... and on only for the black image
    assert dead_relus(model, lone, batch_size=16)["1"] == 0.25
    assert dead_relus(model, lone[:-1], batch_size=16)["1"] == 0.5
    with pytest.raises(CnnlabError, match="no nn.ReLU layer"):
        dead_relus(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), images)


def test_dead_relus_counts_each_call_of_a_shared_relu():
    class TwoCalls(nn.Module):  # one ReLU module used twice, as torchvision's BasicBlock does
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.relu = nn.Linear(4, 6), nn.Linear(6, 2), nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.b(self.relu(self.a(x))))

    model = TwoCalls()
    with torch.no_grad():
        model.a.bias[:3] = -1e3  # half of the first call's units off, half on
        model.a.bias[3:] = 1e3
        model.b.bias.fill_(1e3)  # every unit of the second call on
    shares = dead_relus(model, torch.rand(10, 4), batch_size=4)
    assert shares == {"relu": 0.5, "relu (call 2)": 0.0}


def test_a_fully_dead_layer_passes_no_gradient_below_it():
    model = _small_relu_net()
    with torch.no_grad():
        model[3].bias.fill_(-1e4)  # every fully connected ReLU off: the E4 run that stayed at 10%
    images, labels = torch.rand(16, 1, 8, 8), torch.randint(0, 3, (16,))
    bias = model[5].bias.detach().clone()
    flow = gradient_flow(model, [(images, labels)] * 3, steps=3, optimizer="adam", lr=1e-3)
    assert flow == {"0": [0.0] * 3, "3": [0.0] * 3, "5": [0.0] * 3}  # every weight stuck
    assert not torch.equal(model[5].bias, bias)  # only the output bias learns: the class prior
    assert dead_relus(model, images)["4"] == 1.0


def test_gradient_flow_steps_with_adam_when_asked():
    # Adam's first step moves every weight with a gradient by about lr (m / sqrt(v) = sign(g))
    model = _small_relu_net()
    before = model[5].weight.detach().clone()
    images, labels = torch.rand(16, 1, 8, 8), torch.randint(0, 3, (16,))
    gradient_flow(model, [(images, labels)], steps=1, lr=1e-3, optimizer="adam", adam_eps=1e-7)
    moved = (model[5].weight.detach() - before).abs()
    assert torch.allclose(moved[moved > 0], torch.full_like(moved[moved > 0], 1e-3), rtol=1e-2)
    with pytest.raises(CnnlabError, match="optimizer 'rmsprop'"):
        gradient_flow(model, [(images, labels)], optimizer="rmsprop")


def test_confident_mistakes_are_wrong_and_sorted(lenet, mnist_test):
    images = torch.as_tensor(mnist_test.images[:2000])
    labels = torch.as_tensor(mnist_test.labels[:2000]).long()
    mistakes = confident_mistakes(lenet.model, images, labels, 10, lenet.preprocess)
    assert 0 < len(mistakes) <= 10
    assert all(m.true != m.predicted for m in mistakes)
    confidences = [m.confidence for m in mistakes]
    assert confidences == sorted(confidences, reverse=True)
    with torch.no_grad():
        probs = torch.softmax(lenet.model(lenet.preprocess(images[[mistakes[0].index]])), 1)
    assert int(probs.argmax()) == mistakes[0].predicted
    assert float(probs.max()) == pytest.approx(mistakes[0].confidence, rel=1e-5)


# ------------------------------------------------------------------------------- the commands


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_show_commands_write_pictures(runs_root, data_dir, tmp_path, capsys):
    base = ["--runs-dir", str(runs_root), "--data-dir", str(data_dir)]
    out = tmp_path / "maps.png"
    assert main(["show", "featuremaps", "lenet", "test:0", "--out", str(out), *base]) == 0
    assert _png(out)[0] > 500
    assert "features.0               6x28x28" in capsys.readouterr().out
    assert main(["show", "featuremaps", "lenet", "test:1", "--layer", "features.3", *base]) == 0
    assert _png(runs_root / "lenet" / "inspect" / "featuremaps-test-1.png")
    assert main(["show", "filters", "cifar", *base]) == 0
    assert _png(runs_root / "cifar" / "inspect" / "filters-features.0.0.png")
    cat = data_dir / "photos" / "chelsea.png"
    assert main(["show", "cam", "cifar", str(cat), "--class", "cat", *base]) == 0
    printed = capsys.readouterr().out
    assert (
        "cam for class cat" in printed
        and "resized 451x300 to 48x32, centre-cropped to 32x32" in printed
    )
    assert _png(runs_root / "cifar" / "inspect" / "cam-chelsea-cat.png")
    assert main(["show", "saliency", "lenet", "test:2", *base]) == 0
    assert main(["show", "mistakes", "lenet", "-k", "6", *base]) == 0
    assert "predicted" in capsys.readouterr().out
    assert _png(runs_root / "lenet" / "inspect" / "mistakes.png")
    assert main(["show", "curves", "lenet", *base]) == 0
    assert main(["show", "confusion", "lenet", *base]) == 0
    assert _png(runs_root / "lenet" / "inspect" / "confusion.png")


def test_show_gradflow_command(data_dir, tmp_path, capsys):
    out = tmp_path / "flow.png"
    args = [
        "show",
        "gradflow",
        "cifar_residual:pairs=4,skip=false",
        "cifar_residual:pairs=4",
        "--steps",
        "1",
        "--batch-size",
        "8",
        "--variant",
        "subset",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("gradient norm first layer") == 2
    assert printed.count("dead ReLU units after 1 step(s) (0 for all 8 images)") == 2
    assert _png(out)[1] > 800  # a second row: the dead units


def test_show_gradflow_init_and_adam(data_dir, tmp_path, capsys, monkeypatch):
    from cnnlab.cli import show

    built = {}
    real = show._gradflow_model

    def spy(text, args, data, scaled):
        built[text], preprocess = real(text, args, data, scaled)
        return built[text], preprocess

    monkeypatch.setattr(show, "_gradflow_model", spy)
    common = ["--variant", "subset", "--data-dir", str(data_dir), "--input-scaling", "unit"]
    args = [
        "show",
        "gradflow",
        "cifar_four:init=keras",
        "cifar_four",
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
    ]
    assert main([*args, "--steps", "1", "--batch-size", "4", "--json", *common,
                 "--out", str(tmp_path / "f.png")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("{") : printed.rindex("}") + 1])
    assert set(report) == {"gradient_norms", "dead_relus"}
    assert set(report["dead_relus"]) == {"cifar_four:init=keras", "cifar_four"}
    # after one Adam step (each value moves by about lr = 1e-3) the keras-built net still
    # shows its start: glorot-uniform weights within +-limit, zero biases; PyTorch's does not
    keras_conv = built["cifar_four:init=keras"].features[0]
    torch_conv = built["cifar_four"].features[0]
    limit = glorot_limit(keras_conv.weight)
    assert limit - 0.01 < float(keras_conv.weight.detach().abs().max()) < limit + 2e-3
    assert float(keras_conv.bias.detach().abs().max()) < 2e-3
    assert float(torch_conv.weight.detach().abs().max()) > limit + 0.02
    assert float(torch_conv.bias.detach().abs().max()) > 0.02
    bad = ["show", "gradflow", "cifar_four:init=glorot", *common, "--out", str(tmp_path / "g.png")]
    assert main(bad) == 2
    assert "init=glorot is not an initialisation; expected init= one of torch, keras" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "g.png").exists()
    typo = ["show", "gradflow", "cifar_fuor:init=keras", *common, "--out", str(tmp_path / "t.png")]
    assert main(typo) == 2
    err = capsys.readouterr().err
    assert "'cifar_fuor' is not a model name" in err and "Did you mean cifar_four" in err


def test_show_gradflow_on_a_network_whose_head_is_dead(data_dir, tmp_path, capsys, monkeypatch):
    """The E4 run that stayed at chance: the output layer's input is all 0, so its weight gets
    no gradient either; the view says so instead of dividing by zero."""
    from cnnlab.cli import show

    real = show._gradflow_model

    def dead_head(text, args, data, scaled):
        model, preprocess = real(text, args, data, scaled)
        with torch.no_grad():
            model.classifier[1].bias.fill_(-1e4)  # every unit of the first dense ReLU off
        return model, preprocess

    monkeypatch.setattr(show, "_gradflow_model", dead_head)
    argv = ["show", "gradflow", "cifar_plain7:init=keras", "--steps", "1", "--batch-size", "4"]
    argv += ["--variant", "subset", "--data-dir", str(data_dir), "--out", str(tmp_path / "d.png")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "ratio - (no gradient at the last)" in printed and "classifier.2 100%" in printed


@pytest.mark.parametrize(
    "args, message",
    [
        (["featuremaps", "lenet", "test:0", "--layer", "features.99"], "no layer named"),
        (["cam", "lenet", "test:0", "--class", "12"], "classes 0..9"),
        (["cam", "lenet", "test:0", "--class", "zebra"], "not a class of this run"),
        (["featuremaps", "lenet", "test:99999"], "the test set has images 0..1999"),
        (["featuremaps", "lenet", "CORRUPT"], "not an image"),
        (["featuremaps", "lenet", "missing.png"], "no such file"),
        (["filters", "lenet", "--layer", "classifier.1"], "not a convolution"),
    ],
)
def test_show_bad_input_is_explained_and_writes_nothing(
    runs_root, data_dir, tmp_path, capsys, args, message
):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    args = [str(corrupt) if a == "CORRUPT" else a for a in args]
    out = tmp_path / "out.png"
    code = main(
        [
            "show",
            *args,
            "--runs-dir",
            str(runs_root),
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_wrong_channel_images_are_converted_with_a_notice(lenet, data_dir):
    from cnnlab.runs.load import read_image

    image, notes = read_image(data_dir / "photos" / "coffee.png", 1, 28)
    assert image.shape == (1, 1, 28, 28) and any("converted RGB to L" in n for n in notes)
    result = grad_cam(lenet.model, lenet.preprocess(image)[0])
    assert 0 <= result.class_index < 10 and np.isfinite(result.heatmap.numpy()).all()


def _dropout_bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


@pytest.mark.parametrize("explain", ["grad-cam", "saliency"])
def test_explanations_restore_train_mode_per_module(explain):
    model = _dropout_bn_net().train()
    model[1].eval()  # a frozen BatchNorm inside a training model keeps its own flag
    modes = {name: m.training for name, m in model.named_modules()}
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    model[3].register_forward_pre_hook(lambda m, args: seen.append(m.training))
    image = torch.randn(3, 8, 8)
    first = grad_cam(model, image) if explain == "grad-cam" else saliency(model, image)
    again = grad_cam(model, image) if explain == "grad-cam" else saliency(model, image)
    assert seen == [False, False]  # explained in eval mode: no dropout, deterministic
    assert torch.equal(first.heatmap, again.heatmap)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(torch.equal(stats[k], v) for k, v in model.state_dict().items())
    model[3]._forward_pre_hooks.clear()
    assert _no_hooks(model)


@pytest.mark.parametrize("explain", ["grad-cam", "saliency"])
def test_explanations_leave_parameter_gradients_alone(explain):
    model = _dropout_bn_net().eval()
    image = torch.randn(3, 8, 8)
    explain_fn = grad_cam if explain == "grad-cam" else saliency
    explain_fn(model, image)
    assert all(p.grad is None for p in model.parameters())  # None stays None
    model(torch.randn(2, 3, 8, 8)).sum().backward()  # a training step's gradients, pending
    before = {name: p.grad.clone() for name, p in model.named_parameters()}
    result = explain_fn(model, image)
    assert all(torch.equal(p.grad, before[name]) for name, p in model.named_parameters())
    assert float(result.heatmap.max()) == pytest.approx(1)
    assert _no_hooks(model)


def test_explanations_restore_the_mode_after_an_error():
    model = _dropout_bn_net().train()
    with pytest.raises(CnnlabError, match="out of range"):
        grad_cam(model, torch.randn(3, 8, 8), target=7)
    with pytest.raises(CnnlabError, match="out of range"):
        saliency(model, torch.randn(3, 8, 8), target=7)
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert _no_hooks(model)


def test_summary_of_a_run_names_the_input_it_was_trained_on(runs_root, capsys):
    """A run's model is fixed: a wrong channel count or a 3-D input is one line naming the
    input, what the run was trained on and the fix (it was five lines of torch.fx text)."""
    argv = ["summary", "lenet", "--runs-dir", str(runs_root)]
    for given in ("3x28x28", "1x28x28x28"):
        assert main([*argv, "--input", given]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert captured.out == "" and "\n" not in err, err
        assert f"--input {given}" in err and "1x28x28" in err
    assert main([*argv, "--num-classes", "5"]) == 2
    assert "run lenet has 10 classes" in capsys.readouterr().err
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "(lenet5, 10 classes) on input 1x28x28" in out


def test_capture_keeps_a_layers_output_when_an_inplace_relu_follows():
    from cnnlab.inspect import capture

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(inplace=True))
    x = torch.randn(1, 1, 8, 8)
    with capture(model, ["0"]) as record:
        model(x)
    conv = model[0](x).detach()
    assert conv.min() < 0  # the ReLU would have zeroed these in a shared view
    assert torch.equal(record["outputs"]["0"], conv)


def test_show_gradflow_reads_a_run_with_its_own_scaling(runs_root, data_dir, capsys):
    # a trained run keeps the preprocessing it was trained with, whatever --input-scaling says
    norms = []
    for scaling in ("none", "standard"):
        argv = ["show", "gradflow", "lenet", "--dataset", "mnist", "--steps", "2"]
        argv += ["--batch-size", "16", "--input-scaling", scaling, "--json"]
        argv += ["--runs-dir", str(runs_root), "--data-dir", str(data_dir)]
        assert main([*argv, "--out", str(runs_root / f"flow-{scaling}.png")]) == 0
        printed = capsys.readouterr().out
        norms.append(json.loads(printed[printed.index("{") : printed.rindex("}") + 1]))
    first, second = (n["gradient_norms"]["lenet"] for n in norms)  # x / 1 against x / 255
    assert first.keys() == second.keys() and min(first["features.0"]) > 0
    for layer, values in first.items():
        assert values == pytest.approx(second[layer], rel=1e-5), layer
    assert norms[0]["dead_relus"] == norms[1]["dead_relus"]
