"""from_torch / compare: NumPy twins of PyTorch models agree layer by layer, forward and
backward, to 1e-6 (float64) and 1e-4 (float32) relative."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from cnnlab import scratch as S
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.scratch.bridge import UnsupportedLayerError

TOLERANCE = {np.float64: 1e-6, np.float32: 1e-4}
DTYPES = [np.float64, np.float32]


def images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


class Functional(nn.Module):
    """The functional spellings a hand-written forward uses, and a branch that joins twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.left = nn.Conv2d(4, 4, 1)
        self.right = nn.Conv2d(4, 2, 3, padding="same", bias=False)
        self.fc = nn.Linear(6 * 3 * 3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1))  # 10x10
        x = F.relu(self.conv(x))
        x = F.max_pool2d(x, 2)  # 5x5
        x = x + torch.tanh(self.left(x))  # residual add
        x = torch.cat([x, torch.sigmoid(self.right(x))], dim=1)  # 6 channels
        x = F.adaptive_avg_pool2d(x, 3)  # overlapping bins
        x = F.avg_pool2d(x, 1)
        return self.fc(x.view(x.size(0), -1))


LAYER_CASES = {
    "conv1d": (lambda: nn.Conv1d(3, 4, 3, stride=2, padding=1, dilation=2), (2, 3, 11)),
    "conv2d groups": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 9, 9)),
    "conv3d": (lambda: nn.Conv3d(2, 3, 2, padding="same"), (2, 2, 5, 5, 5)),
    "maxpool overlapping": (lambda: nn.MaxPool2d(3, 2, 1), (2, 3, 9, 9)),
    "avgpool": (lambda: nn.AvgPool2d(2), (2, 3, 8, 8)),
    "adaptive avg 1": (lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 7, 7)),
    "adaptive avg up": (lambda: nn.AdaptiveAvgPool2d((5, 3)), (2, 3, 2, 4)),
    "batchnorm": (lambda: nn.BatchNorm2d(3), (4, 3, 5, 5)),
    "lrn": (lambda: nn.LocalResponseNorm(5, 1e-2, 0.75, 2.0), (2, 7, 4, 4)),
    "leaky relu": (lambda: nn.LeakyReLU(0.2), (2, 3, 4, 4)),
    "softmax": (lambda: nn.Softmax(dim=1), (2, 3, 4, 4)),
    "zero pad": (lambda: nn.ZeroPad2d((1, 2, 0, 3)), (2, 3, 4, 4)),
    "linear": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(48, 7)), (2, 3, 4, 4)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_every_covered_layer_agrees(case, train, dtype):
    make, shape = LAYER_CASES[case]
    torch.manual_seed(0)
    body = make()
    if isinstance(body, nn.BatchNorm2d):  # non-trivial running statistics and affine weights
        body.running_mean.uniform_(-1, 1), body.running_var.uniform_(0.5, 2)
        body.weight.data.uniform_(0.5, 1.5), body.bias.data.uniform_(-1, 1)
    model = nn.Sequential(body, nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(shape))  # materialise the lazy layer
    result = S.compare(model, images(shape), np.array([0, 2] + [1] * (shape[0] - 2)), dtype, train)
    assert result.worst() < TOLERANCE[dtype], str(result)


@pytest.mark.parametrize("dtype", DTYPES)
def test_functional_forward_with_branches_agrees(dtype):
    torch.manual_seed(0)
    model = Functional()
    twin = S.from_torch(model, dtype)
    kinds = [node.kind for node in twin.nodes]
    assert {"pad", "relu", "max_pool2d", "add", "cat", "adaptive_avg_pool2d", "view"} <= set(kinds)
    add = next(node for node in twin.nodes if node.kind == "add")
    assert len(add.inputs) == 2  # the residual join reads two nodes
    result = S.compare(model, images((3, 3, 8, 8)), np.array([0, 4, 2]), dtype)
    assert result.worst() < TOLERANCE[dtype], str(result)


def test_mse_target_and_the_report():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    target = np.random.default_rng(1).standard_normal((2, 3))
    result = S.compare(model, images((2, 1, 6, 6)), target)
    assert result.loss[0] == pytest.approx(result.loss[1], rel=1e-12)
    rows = result.to_dicts()
    assert [row["kind"] for row in rows] == ["Conv2d", "ReLU", "Flatten", "Linear"]
    assert rows[0]["shape"] == [2, 2, 4, 4] and set(rows[0]["parameters"]) == {"weight", "bias"}
    text = str(result)
    assert "0.weight" not in text and "Conv2d" in text and "(model input)" in text


def test_compare_points_at_the_layer_that_is_wrong(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    x, target = images((2, 1, 6, 6)), np.array([0, 1])
    assert S.compare(model, x, target).worst() < 1e-12
    monkeypatch.setattr(S.ReLU, "backward", lambda self, dout: dout)  # forgets the mask
    rows = {row.kind: row for row in S.compare(model, x, target).layers}
    assert all(row.activation[1] < 1e-12 for row in rows.values())  # forward still agrees
    assert rows["ReLU"].gradient[1] < 1e-12  # the gradient arriving at the ReLU is right ...
    assert rows["Conv2d"].gradient[1] > 0.1  # ... the one it passes on is not
    assert rows["Conv2d"].parameters["weight"][1] > 0.1


def test_compare_leaves_the_model_untouched():
    model = create_model("fashion_cnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    S.compare(model, images((2, 1, 28, 28)), np.array([1, 2]), train=True)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats too
    assert next(model.parameters()).grad is None


CNNLAB_MODELS = [
    ("lenet5", 1, 28, {}),
    ("lenet5", 1, 8, {"modern": False}),
    ("lenet5", 1, 32, {}),
    ("mnist_cnn", 1, 28, {}),
    ("fashion_mlp", 1, 28, {}),
    ("fashion_cnn", 1, 28, {}),
    ("cifar_plain7", 3, 32, {}),
    ("cifar_residual", 3, 32, {}),
    ("cifar_residual_pool", 3, 32, {}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, channels, size, options", CNNLAB_MODELS)
def test_cnnlab_models_agree(name, channels, size, options, dtype):
    torch.manual_seed(0)
    model = create_model(name, in_channels=channels, input_size=size, **options)
    result = S.compare(model, images((2, channels, size, size)), np.array([3, 7]), dtype, True)
    assert result.worst() < TOLERANCE[dtype], str(result)


@pytest.mark.parametrize("dtype", DTYPES)
def test_torchvision_resnet18_agrees(dtype):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    twin = S.from_torch(model, dtype)
    assert sum(node.kind == "add" for node in twin.nodes) == 8  # one per BasicBlock
    names = set(twin.named_parameters())
    assert names == {name for name, _ in model.named_parameters()}
    for train in (False, True):
        result = S.compare(model, images((2, 3, 64, 64)), np.array([1, 9]), dtype, train)
        assert result.worst() < TOLERANCE[dtype], str(result)


@pytest.mark.parametrize("dtype", DTYPES)
def test_torchvision_vgg11_agrees(dtype):
    torch.manual_seed(0)
    model = torchvision.models.vgg11(num_classes=10)
    # 32x32 input: the features end at 1x1 and the adaptive pool repeats it to 7x7, as in torch
    result = S.compare(model, images((2, 3, 32, 32)), np.array([4, 0]), dtype)
    assert result.worst() < TOLERANCE[dtype], str(result)
    assert result.layers[-1].shape == (2, 10)


def test_unsupported_layer_is_named_with_its_type():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU(), nn.Flatten())
    with pytest.raises(UnsupportedLayerError, match=r"layer '1' \(torch\.nn\..*GELU\).*Conv2d"):
        S.from_torch(model)


def test_unsupported_options_and_functions_are_explained():
    with pytest.raises(UnsupportedLayerError, match="ceil_mode=False"):
        S.from_torch(nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)))
    with pytest.raises(UnsupportedLayerError, match="padding_mode='zeros'"):
        S.from_torch(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")))

    class Gelu(nn.Module):
        def forward(self, x):
            return F.gelu(x)

    with pytest.raises(UnsupportedLayerError, match="'gelu'.*supported functions"):
        S.from_torch(Gelu())

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.conv(self.conv(x))

    with pytest.raises(UnsupportedLayerError, match="weight sharing"):
        S.from_torch(Shared())


def test_untraceable_forward_is_a_clear_error():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(CnnlabError, match="could not trace Branchy"):
        S.from_torch(Branchy())


def test_scratch_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, cnnlab.scratch; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 7, 7)),
        (lambda: nn.Linear(5, 3), (4, 5)),
        (lambda: nn.BatchNorm2d(3), (4, 3, 5, 5)),
        (lambda: nn.ReLU(), (2, 3, 4, 4)),
    ],
)
@pytest.mark.parametrize("train", [False, True])
def test_a_bare_layer_becomes_a_one_layer_network(make, shape, train):
    torch.manual_seed(0)
    module = make().double().train(train)
    twin = S.from_torch(module)
    assert len(twin.nodes) == 1 and twin.training == train
    assert set(twin.named_parameters()) == {name for name, _ in module.named_parameters()}
    x = images(shape)
    xt = torch.tensor(x, requires_grad=True)
    out_t = module(xt)
    probe = np.random.default_rng(1).standard_normal(tuple(out_t.shape))
    (out_t * torch.tensor(probe)).sum().backward()
    out = twin(x)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(twin.backward(probe), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, torch_param in module.named_parameters():
        got = twin.named_parameters()[name].grad
        np.testing.assert_allclose(got, torch_param.grad.numpy(), rtol=1e-10, atol=1e-12)
    if isinstance(module, nn.Conv2d):  # compare() takes the bare layer too
        assert S.compare(module, x, np.zeros((2, 4, 4, 4))).worst() < 1e-6


def test_a_bare_unsupported_layer_is_still_named():
    with pytest.raises(UnsupportedLayerError, match="'gelu'.*no NumPy twin"):
        S.from_torch(nn.GELU())
