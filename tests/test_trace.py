"""Tracing any CNN end to end (cnnlab.inspect.trace*): every step of every registered model,
torchvision's ResNet-18, DenseNet-121 and GoogLeNet explained and recomputed in the open within
1e-5 of torch; module calls counted (a shared ReLU is two steps); the residual add and the
concatenation as steps; receptive fields through both branches checked against autograd; the
gradient view of convolutions and linear layers (a binary head included) against autograd; the
`cnnlab trace` command."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cnnlab.cli import main
from cnnlab.inspect.trace import record_trace
from cnnlab.inspect.trace_explain import Unexplained, explain_value
from cnnlab.inspect.trace_gradient import step_gradient
from cnnlab.models import list_models, resolve_model

TOLERANCE = 1e-5  # relative to the value's size (at least 1; a long sum: a tenth of its terms')


def positions(step) -> list[tuple[int, int, int]]:
    """A corner and the far corner of a step's output (padding and ceil mode live there)."""
    out = step.output
    if out.ndim == 3:
        c, h, w = out.shape
        return [(0, 0, 0), (c - 1, h - 1, w - 1)]
    return [(0, 0, 0), (out.shape[0] - 1, 0, 0)]


def check_every_step(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Trace ``model`` on a random input and explain every step at a few positions: the number
    worked out in the open matches what torch computed, every receptive field is known, and the
    trace's logits are the model's own. Returns the number of steps."""
    torch.manual_seed(0)
    model.eval()
    batch = torch.randn(1, *shape)
    trace = record_trace(model, batch)
    assert trace.traced, trace.why_hooks
    with torch.no_grad():
        direct = model(batch)
    assert torch.allclose(trace.logits, direct, atol=1e-5)
    for name, step in trace.steps.items():
        assert step.output.ndim in (1, 3), (name, step.shape)
        for c, y, x in positions(step):
            told = explain_value(trace, name, c, y, x)
            assert told["value"] == float(step.output[(c, y, x)[: step.output.ndim]])
            # float32 rounding grows with the terms a sum adds up (its magnitude)
            size = max(1.0, abs(told["value"]), told.get("magnitude", 0.0) / 10)
            assert abs(told["computed"] - told["value"]) <= TOLERANCE * size, (name, c, y, x)
            assert "unknown" not in told["receptive_field"], (name, told["receptive_field"])
    return len(trace.steps)


REGISTERED = list_models()


@pytest.mark.parametrize("name", REGISTERED)
def test_every_step_of_every_registered_model_is_recomputed_in_the_open(name):
    resolved = resolve_model(name, materialize=True)
    shape = tuple(int(v) for v in resolved.made_for.split("x"))
    if shape[1] > 64 and "alexnet" not in name:  # ImageNet designs: a smaller image will do
        shape = (shape[0], 64, 64)
    assert check_every_step(resolved.model, shape) > 5


@pytest.mark.parametrize("name,steps", [("resnet18", 70), ("densenet121", 432), ("googlenet", 198)])
def test_torchvisions_residual_dense_and_inception_networks_trace_whole(name, steps):
    options = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    model = torchvision.models.get_model(name, **options)
    assert check_every_step(model, (3, 64, 64)) == steps


def test_the_residual_add_is_a_step_and_each_call_of_a_shared_relu_another():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    trace = record_trace(model, torch.randn(1, 3, 64, 64))
    names = trace.names()
    assert names[names.index("layer1.0.bn2") + 1 :][:2] == ["layer1.0.add", "layer1.0.relu#2"]
    add = trace.steps["layer1.0.add"]
    assert add.kind == "add" and add.sources == ["layer1.0.bn2", "maxpool"]
    assert trace.steps["layer2.0.add"].sources == ["layer2.0.bn2", "layer2.0.downsample.1"]
    assert trace.steps["layer1.0.relu#1"].sources == ["layer1.0.bn1"]  # the first call
    assert trace.steps["layer1.0.relu#2"].sources == ["layer1.0.add"]  # after the sum
    told = explain_value(trace, "layer1.0.add", 5, 3, 4)
    bn2, identity = trace.steps["layer1.0.bn2"].output, trace.steps["maxpool"].output
    assert told["computed"] == pytest.approx(float(bn2[5, 3, 4] + identity[5, 3, 4]), abs=1e-6)
    assert [w["step"] for w in told["windows"]] == ["layer1.0.bn2", "maxpool"]
    # no step of ResNet-18 is refused, and none reads the output of a call that is not its own
    assert not [n for n, s in trace.steps.items() if not s.sources]


def test_the_receptive_field_covers_every_pixel_the_value_depends_on():
    """Through both branches of a residual block and a strided downsample: every input pixel
    with a non-zero gradient lies in the field, and the field is no bigger than the arithmetic
    of the convolution branch says (the widest path)."""
    torch.manual_seed(1)
    model = torchvision.models.resnet18().eval()
    batch = torch.randn(1, 3, 128, 128)
    trace = record_trace(model, batch)
    # the arithmetic: 7 + 2x2 (pool) + 4 convs x 2 x 4 = 43 after layer1's two blocks... the
    # first block's add: 7 + 4 + 2 x 2 x 4 = 27; layer2.0's: 43 + 2 x 4 + 2 x 8 = 67
    for name, side in [("layer1.0.add", 27), ("layer2.0.add", 67)]:
        block = trace.steps[name.replace("add", "relu#2")].output  # relu(add): the largest
        inner = block[:, 4:-4, 4:-4]
        c, rest = divmod(int(inner.argmax()), inner.shape[1] * inner.shape[2])
        y, x = (int(v) + 4 for v in divmod(rest, inner.shape[2]))
        field = explain_value(trace, name, c, y, x)["receptive_field"]
        assert not field["whole"] and max(field["size"]) <= side
        kept: dict[str, torch.Tensor] = {}
        module = dict(model.named_modules())[name.rsplit(".", 1)[0]]
        handle = module.register_forward_hook(lambda m, a, o, kept=kept: kept.update(out=o))
        image = batch.clone().requires_grad_()
        model(image)
        handle.remove()
        (grad,) = torch.autograd.grad(kept["out"][0, c, y, x], image)
        rows, cols = grad[0].abs().sum(0).nonzero(as_tuple=True)
        assert rows.numel() > 0
        assert field["y0"] <= int(rows.min()) and int(rows.max()) < field["y1"]
        assert field["x0"] <= int(cols.min()) and int(cols.max()) < field["x1"]


def test_a_shared_relu_in_a_registered_model_gives_one_step_per_call():
    model = resolve_model("fashion_cnn", materialize=True).model.eval()
    trace = record_trace(model, torch.randn(1, 1, 28, 28))
    shared = [n for n in trace.names() if "#" in n]
    assert shared and all(n.endswith(("#1", "#2", "#3")) for n in shared)
    first, second = (trace.steps[n] for n in shared[:2])
    assert first.output.shape != second.output.shape or not torch.equal(first.output, second.output)
    for name in shared:
        told = explain_value(trace, name, *positions(trace.steps[name])[1])
        assert told["computed"] == pytest.approx(told["value"], abs=1e-6)


def test_the_digits_lenets_field_goes_through_its_bilinear_fit():
    """LeNet-5 on 8x8 digits enlarges them to 32x32: a first-layer value reads about 2x2 of
    the digit's pixels, never "the whole image"."""
    model = resolve_model("lenet5", shape=(1, 8, 8), materialize=True).model.eval()
    trace = record_trace(model, torch.randn(1, 1, 8, 8))
    first_conv = next(n for n, s in trace.steps.items() if s.kind == "conv")
    field = explain_value(trace, first_conv, 0, 3, 3)["receptive_field"]
    assert not field["whole"] and 2 <= field["size"][0] <= 3 and 2 <= field["size"][1] <= 3
    fit = trace.steps[trace.steps[first_conv].sources[0]]
    assert fit.kind == "fit"
    told = explain_value(trace, fit.name, 0, 13, 17)
    assert "bilinearly" in told["text"]
    assert told["computed"] == pytest.approx(told["value"], abs=1e-6)


class Branching(nn.Module):
    """A forward that branches on a tensor's value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv(x))
        if x.sum() > 0:  # data-dependent control flow
            x = x * 1.0
        return self.fc(torch.flatten(x, 1))


def test_a_model_fx_cannot_trace_is_followed_by_module_calls():
    torch.manual_seed(0)
    trace = record_trace(Branching().eval(), torch.randn(1, 1, 8, 8))
    assert not trace.traced and "control flow" in trace.why_hooks
    assert trace.names() == ["conv", "relu", "fc", "softmax"]
    assert trace.steps["fc"].sources == ["relu"]  # the values tell: a flatten in between
    told = explain_value(trace, "conv", 2, 3, 3)
    assert told["computed"] == pytest.approx(told["value"], abs=1e-6)
    assert told["receptive_field"]["size"] == [3, 3]
    fc = explain_value(trace, "fc", 1)
    assert fc["computed"] == pytest.approx(fc["value"], abs=1e-5)


def test_bad_steps_and_positions_are_one_sentence():
    trace = record_trace(torchvision.models.resnet18().eval(), torch.randn(1, 3, 32, 32))
    with pytest.raises(Exception, match="no step of that name.*Did you mean layer1.0.add"):
        explain_value(trace, "layer1.0.ad", 0, 0, 0)
    with pytest.raises(Unexplained, match="step conv1 has 64 channels of 16x16"):
        explain_value(trace, "conv1", 64, 0, 0)
    long = "x" * 10_000
    with pytest.raises(Exception, match=r"\(10000 characters\)") as caught:
        explain_value(trace, long, 0, 0, 0)
    assert len(str(caught.value)) < 600


# ---------------------------------------------------------------------------------- gradients


def test_linear_and_convolution_gradients_are_autograds():
    torch.manual_seed(0)
    model = resolve_model("lenet5", materialize=True).model.eval()
    batch = torch.randn(1, 1, 32, 32)
    trace = record_trace(model, batch)
    linear = next(n for n, s in reversed(trace.steps.items()) if s.kind == "linear")
    module = trace.steps[linear].module
    told = step_gradient(trace, linear, 4, class_index=7)
    logits = model(batch)
    loss = F.cross_entropy(logits, torch.tensor([7]))
    weight, bias = torch.autograd.grad(loss, [module.weight, module.bias])
    assert told["loss"] == pytest.approx(float(loss), abs=1e-6)
    assert told["weight_grad"] == pytest.approx(weight[4].tolist(), abs=1e-6)
    assert told["bias_grad"] == pytest.approx(float(bias[4]), abs=1e-6)
    conv = next(n for n, s in trace.steps.items() if s.kind == "conv")
    told = step_gradient(trace, conv, 2, class_index=7)
    (weight,) = torch.autograd.grad(
        F.cross_entropy(model(batch), torch.tensor([7])), [trace.steps[conv].module.weight]
    )
    for part in told["channels"]:
        expected = weight[2, part["index"]].flatten().tolist()
        assert sum(part["grad"], []) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(Unexplained, match="expected a convolution or linear layer"):
        step_gradient(trace, "softmax", 0)


def test_a_binary_head_has_two_classes_with_a_loss_each():
    """One logit z: class 1 is accepted and class 0's loss is -log(1 - sigmoid(z)), not 0."""
    torch.manual_seed(0)
    model = resolve_model("lenet5", num_classes=2, options={"binary": True}, materialize=True)
    model = model.model.eval()
    batch = torch.randn(1, 1, 32, 32)
    trace = record_trace(model, batch)
    assert trace.steps["softmax"].shape == [2]
    z = float(model(batch)[0, 0])
    conv = next(n for n, s in trace.steps.items() if s.kind == "conv")
    for target, expected in [(0, -torch.log(1 - torch.sigmoid(torch.tensor(z)))), (1, None)]:
        told = step_gradient(trace, conv, 0, class_index=target)
        if expected is not None:
            assert told["loss"] == pytest.approx(float(expected), abs=1e-5) and told["loss"] > 0
        assert any(abs(v) > 0 for part in told["channels"] for row in part["grad"] for v in row)
    with pytest.raises(Unexplained, match="class_index 2: expected 0..1"):
        step_gradient(trace, conv, 0, class_index=2)


# -------------------------------------------------------------------------------- the command


def test_cnnlab_trace_on_a_run_a_name_and_torchvision(lenet, runs_root, capsys, data_dir, tmp_path):
    args = ["--runs-dir", str(runs_root), "--data-dir", str(data_dir)]
    assert main(["trace", "lenet", "test:0", *args]) == 0
    listing = capsys.readouterr().out
    assert "steps in execution order" in listing and "features.0" in listing
    assert main(["trace", "lenet", "test:0", "--step", "features.3", "--at", "2,4,4", *args]) == 0
    out = capsys.readouterr().out
    assert "computed here:" in out and "receptive field: image rows" in out
    assert (
        main(
            [
                "trace",
                "lenet",
                "test:0",
                "--step",
                "features.3",
                "--at",
                "2,4,4",
                "--json",
                "--gradient",
                *args,
            ]
        )
        == 0
    )
    answer = json.loads(capsys.readouterr().out)
    assert answer["step"] == "features.3" and answer["gradient"]["kind"] == "conv"
    assert abs(answer["computed"] - answer["value"]) < 1e-5
    picture = tmp_path / "noise.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (120, 30, 200)).save(picture)
    assert main(["trace", "torchvision:resnet18", str(picture), "--input", "3x64x64"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("<- residual add") == 8
    assert (
        main(["trace", "cifar_residual", str(picture), "--step", "features.2.add", "--at", "0,1,1"])
        == 0
    )
    assert "the residual add sums" in capsys.readouterr().out
    assert main(["trace", "lenet", "test:0", "--step", "features.3", "--at", "1,2", *args]) == 2
    assert "--at '1,2': step features.3 has output [16, 10, 10]" in capsys.readouterr().err


def test_lenets_background_pad_is_explained_with_the_level_it_used():
    """E1's LeNet-5 pads a 28x28 digit with the digit's own background level; a frame value is
    that level (the median of the image's border), an inner value is the pixel itself."""
    from cnnlab.models import create_model

    torch.manual_seed(0)
    image = torch.full((1, 1, 28, 28), -0.42)
    image[..., 6:20, 8:18] = torch.rand(14, 10) * 2  # a bright stroke inside
    for pad, level in (("background", -0.42), ("zero", 0.0)):
        model = create_model("lenet5", input_size=28, pad=pad).eval()
        trace = record_trace(model, image)
        frame = explain_value(trace, "fit", 0, 0, 5)
        assert frame["computed"] == pytest.approx(level) == frame["value"]
        assert ("background level" in frame["text"]) == (pad == "background")
        inner = explain_value(trace, "fit", 0, 10, 12)
        assert inner["computed"] == pytest.approx(float(image[0, 0, 8, 10]))
