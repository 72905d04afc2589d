"""`cnnlab backprop SOURCE IMAGE`: one real SGD step of a trained network, layer by layer, each
layer's backward rule (the course's: rotated filters, up-sampling, BP2-BP4) against autograd."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cnnlab.cli import main
from cnnlab.inspect.backprop_step import _conv_rule, _pool_rule, sgd_step
from cnnlab.models import create_model


def _autograd(module: nn.Module, x: torch.Tensor):
    x = x.clone().requires_grad_()
    out = module(x)
    delta = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, *module.parameters()], delta)
    return delta, grads


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(3, 4, 3),
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.Conv2d(4, 6, 5, stride=3, padding=2, dilation=2),
        nn.Conv2d(4, 6, 3, padding="same", groups=2),
        nn.Conv2d(3, 5, (3, 1), stride=(2, 1), padding=(1, 0)),
    ],
)
def test_the_convolution_rule_is_autograds(conv):
    """dL/dx is the delta (spread by the stride) convolved with each filter turned by 180
    degrees; dL/dW is the input correlated with the delta; every stride, padding, dilation and
    grouping."""
    torch.manual_seed(0)
    x = torch.randn(1, conv.in_channels, 11, 12)
    delta, (grad_x, grad_w, grad_b) = _autograd(conv, x)
    rule = _conv_rule(conv, x, delta)
    assert torch.allclose(rule["grad_x"], grad_x, atol=1e-5)
    assert torch.allclose(rule["grad_w"], grad_w, atol=1e-5)
    assert torch.allclose(rule["grad_b"], grad_b, atol=1e-5)
    # without the rotation the input gradient is wrong: the turn is not decoration
    if conv.kernel_size == (3, 3) and conv.groups == 1:
        unturned = nn.Conv2d(conv.in_channels, conv.out_channels, 3, conv.stride, conv.padding)
        unturned.weight.data = conv.weight.data.flip(2, 3)
        wrong = _conv_rule(unturned, x, delta)["grad_x"]
        assert (wrong - grad_x).abs().max() > 1e-3


@pytest.mark.parametrize(
    "pool",
    [
        nn.MaxPool2d(2),
        nn.MaxPool2d(3, 2),  # overlapping windows (AlexNet): deltas add up at shared winners
        nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.AvgPool2d(2),
        nn.AvgPool2d(3, 2, 1, ceil_mode=True),
        nn.AvgPool2d(3, 2, 1, count_include_pad=False),
        nn.AdaptiveAvgPool2d(1),
        nn.AdaptiveMaxPool2d(1),
    ],
)
def test_up_sampling_is_autograds(pool):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 9, 10)
    delta, (grad_x,) = _autograd(pool, x)
    assert torch.allclose(_pool_rule(pool, x, delta), grad_x, atol=1e-6)


class TwoReaders(nn.Module):
    """A residual block whose input feeds both the convolution and the skip, and a functional
    in-place ReLU after a batch norm (as torchvision's GoogLeNet writes it)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.relu(self.bn(self.stem(x)), inplace=True)
        x = x + self.conv(x)
        return self.fc(self.pool(x).flatten(1))


@pytest.mark.parametrize(
    "model,shape",
    [
        (lambda: create_model("lenet5"), (1, 1, 28, 28)),
        (lambda: create_model("cifar_four"), (1, 3, 32, 32)),
        (lambda: create_model("cifar_residual_pool"), (1, 3, 32, 32)),
        (lambda: create_model("fashion_cnn", course=True), (1, 1, 28, 28)),
        (TwoReaders, (1, 1, 8, 8)),
    ],
)
def test_every_layer_of_a_real_network_is_checked_and_the_step_lowers_the_loss(model, shape):
    torch.manual_seed(0)
    net = model()
    before = [p.detach().clone() for p in net.parameters()]
    step = sgd_step(net, torch.randn(shape), target=1, lr=0.01)
    assert step.loss_after < step.loss_before  # a small step down the gradient
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # a copy stepped
    kinds = {layer.kind for layer in step.layers}
    assert {"Conv2d", "Linear"} <= kinds
    for layer in step.layers:
        if layer.kind in ("Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "ReLU", "Tanh"):
            assert layer.check is not None and layer.check < 1e-4, layer
        if layer.kind in ("Conv2d", "Linear"):
            assert layer.update_norm == pytest.approx(0.01 * layer.grad_norm)
    # output first, the image last: the order of the backward pass
    names = [layer.name for layer in step.layers]
    assert names.index(step.layers[-1].name) == len(names) - 1
    first_conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    last_row = [layer for layer in step.layers if layer.kind == "Conv2d"][-1]
    channel = last_row.example["channel"]
    turned = first_conv.weight.detach()[channel, 0].flip(0, 1)
    assert torch.allclose(torch.tensor(last_row.example["rotated"]), turned, atol=1e-5)


def test_command_steps_a_trained_run_on_a_test_image(runs_root, data_dir, capsys):
    args = ["backprop", str(runs_root / "lenet"), "test:0", "--data-dir", str(data_dir)]
    assert main(args) == 0
    out = capsys.readouterr().out
    for text in ("one SGD step", "rotated", "up-sampling", "BP4", "rule vs autograd", "after"):
        assert text in out, text
    assert main([*args, "--json", "--lr", "0.1", "--class", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["target"] == 3 and data["lr"] == 0.1
    assert data["loss_after"] < data["loss_before"]
    checked = [row["check"] for row in data["layers"] if row["check"] is not None]
    assert len(checked) >= 8 and max(checked) < 1e-4


@pytest.mark.parametrize(
    "extra,message",
    [
        ([], "give an image too"),
        (["test:0", "--lr", "-1"], "--lr -1.0: expected a positive learning rate"),
        (["test:0", "--class", "12"], "class 12: expected 0..9"),
    ],
)
def test_bad_real_steps_are_one_line_errors(runs_root, data_dir, extra, message, capsys):
    args = ["backprop", str(runs_root / "lenet"), *extra, "--data-dir", str(data_dir)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err
