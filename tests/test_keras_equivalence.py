"""The course's Keras experiments E4-E6 against cnnlab's models, with Keras itself (Keras 3 on its
torch backend, a test-only dependency): the course's code builds each network, weights are copied
both ways, and the outputs and parameter counts agree. ``--init keras`` draws weights as Keras'
defaults do (glorot_uniform kernels, zero biases)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from keras import layers  # noqa: E402

from cnnlab.course import keras_code  # noqa: E402
from cnnlab.models import create_model  # noqa: E402
from cnnlab.models.init import INIT_SCHEMES, glorot_limit, initialize  # noqa: E402


# ---- the course's code, as it is written (E4 Sequential, E5/E6 functional), from the one copy
# cnnlab keeps of it (the network `cnnlab reproduce --keras` trains)
def course_e4() -> keras.Model:
    return keras_code.course_e4(keras)


def course_residual(pool_each: bool) -> keras.Model:
    return keras_code.course_residual(keras, pool_each)


EXPERIMENTS = {
    "E4": ("cifar_plain7", course_e4),
    "E5": ("cifar_residual", lambda: course_residual(False)),
    "E6": ("cifar_residual_pool", lambda: course_residual(True)),
}


def _pairs(keras_model: keras.Model, torch_model: torch.nn.Module) -> list:
    weighted = [layer for layer in keras_model.layers if layer.weights]
    modules = [
        m for m in torch_model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    assert len(weighted) == len(modules)
    return list(zip(weighted, modules))


def _flatten_shape(keras_model: keras.Model) -> tuple[int, int, int]:
    (flatten,) = [layer for layer in keras_model.layers if isinstance(layer, layers.Flatten)]
    return tuple(flatten.input.shape[1:])


def keras_to_torch(keras_model: keras.Model, torch_model: torch.nn.Module) -> None:
    """Keras kernels (kh, kw, in, out) / (in, out) into torch's (out, in, kh, kw) / (out, in);
    the first dense layer's rows go from Keras' H, W, C flatten order to torch's C, H, W."""
    height, width, channels = _flatten_shape(keras_model)
    first_dense = True
    for layer, module in _pairs(keras_model, torch_model):
        kernel, bias = (np.asarray(w) for w in layer.get_weights())
        if kernel.ndim == 4:
            weight = kernel.transpose(3, 2, 0, 1)
        elif first_dense:
            weight = kernel.reshape(height, width, channels, -1).transpose(2, 0, 1, 3)
            weight = weight.reshape(height * width * channels, -1).T
            first_dense = False
        else:
            weight = kernel.T
        module.weight.data = torch.tensor(np.ascontiguousarray(weight))
        module.bias.data = torch.tensor(bias)


def torch_to_keras(torch_model: torch.nn.Module, keras_model: keras.Model) -> None:
    height, width, channels = _flatten_shape(keras_model)
    first_dense = True
    for layer, module in _pairs(keras_model, torch_model):
        weight = module.weight.detach().numpy()
        if weight.ndim == 4:
            kernel = weight.transpose(2, 3, 1, 0)
        elif first_dense:
            kernel = weight.T.reshape(channels, height, width, -1).transpose(1, 2, 0, 3)
            kernel = kernel.reshape(height * width * channels, -1)
            first_dense = False
        else:
            kernel = weight.T
        layer.set_weights([kernel, module.bias.detach().numpy()])


def _outputs(keras_model: keras.Model, torch_model: torch.nn.Module) -> tuple:
    images = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    ours = keras_model(images)
    ours = ours.detach().cpu().numpy() if hasattr(ours, "detach") else np.asarray(ours)
    with torch.no_grad():
        logits = torch_model.eval()(torch.from_numpy(images).permute(0, 3, 1, 2))
    return ours, torch.softmax(logits, 1).numpy()


@pytest.mark.parametrize("key", list(EXPERIMENTS))
def test_course_code_and_cnnlab_model_are_one_network(key):
    name, build = EXPERIMENTS[key]
    keras.utils.set_random_seed(0)
    course = build()
    model = create_model(name)
    assert course.count_params() == sum(p.numel() for p in model.parameters())
    keras_to_torch(course, model)  # Keras' own glorot/zeros start, copied into cnnlab
    theirs, ours = _outputs(course, model)
    assert np.abs(theirs - ours).max() <= 1e-5
    # and back: cnnlab's weights (--init keras, another seed) into the course's network
    torch.manual_seed(1)
    initialize(model, "keras")
    torch_to_keras(model, course)
    theirs, ours = _outputs(course, model)
    assert np.abs(theirs - ours).max() <= 1e-5


def test_keras_init_has_keras_statistics_over_seeds():
    model = create_model("cifar_residual_pool")
    layers_ = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        assert initialize(model, "keras", generator) == len(layers_)
        for module in layers_:
            weight = module.weight.detach()
            window = weight[0][0].numel() if weight.dim() > 2 else 1
            fan_in, fan_out = weight.shape[1] * window, weight.shape[0] * window
            expected = 2.0 / (fan_in + fan_out)  # the variance of U(-l, l), l = sqrt(6/(in+out))
            assert weight.var().item() == pytest.approx(expected, rel=0.1)
            assert weight.abs().max().item() <= glorot_limit(weight) + 1e-7
            assert torch.count_nonzero(module.bias) == 0
    # Keras' own initializer draws from the same law as cnnlab's
    drawn = np.asarray(keras.initializers.GlorotUniform(seed=0)((3, 3, 128, 128)))
    assert drawn.var() == pytest.approx(2.0 / (2 * 9 * 128), rel=0.05)


def test_torch_init_is_left_alone_and_a_third_of_keras_variance_for_3x3x128():
    model = create_model("cifar_plain7")
    conv = model.features[1][0]
    before = conv.weight.detach().clone()
    assert initialize(model, "torch") == 0
    assert torch.equal(conv.weight, before)
    torch_var = conv.weight.var().item()  # kaiming-uniform(a=sqrt(5)): 1/(3 fan_in)
    initialize(model, "keras", torch.Generator().manual_seed(0))
    assert conv.weight.var().item() / torch_var == pytest.approx(3.0, rel=0.1)
    assert "normal-0.01" in INIT_SCHEMES
    initialize(model, "normal-0.01", torch.Generator().manual_seed(0))
    assert conv.weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_the_course_keras_experiments_train_from_keras_defaults():
    from cnnlab.course.reproduce import KERAS_CIFAR
    from cnnlab.data import load_dataset
    from cnnlab.runs.start import build_model
    from cnnlab.train import TrainConfig, make_optimizer

    assert (KERAS_CIFAR["init"], KERAS_CIFAR["adam_eps"], KERAS_CIFAR["batch_size"]) == (
        "keras",
        1e-7,
        32,
    )
    train = load_dataset("digits", "train")
    torch.manual_seed(0)
    model = build_model(TrainConfig(init="keras", adam_eps=1e-7), train)
    weighted = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert all(torch.count_nonzero(m.bias) == 0 for m in weighted)
    optimizer = make_optimizer(model, TrainConfig(init="keras", adam_eps=1e-7))
    assert optimizer.defaults["eps"] == 1e-7 and optimizer.defaults["betas"] == (0.9, 0.999)
    # PyTorch's defaults stay PyTorch's
    torch.manual_seed(0)
    plain = build_model(TrainConfig(), train)
    assert any(torch.count_nonzero(m.bias) for m in plain.modules() if hasattr(m, "bias"))
    assert make_optimizer(plain, TrainConfig()).defaults["eps"] == 1e-8


def test_train_command_records_init_and_adam_eps(tmp_path):
    import json

    from cnnlab.cli import main

    args = ["train", "--epochs", "1", "--no-progress", "--runs-dir", str(tmp_path)]
    assert main([*args, "--init", "keras", "--adam-eps", "1e-7", "--name", "k"]) == 0
    saved = json.loads((tmp_path / "k" / "config.json").read_text())
    assert (saved["init"], saved["adam_eps"]) == ("keras", 1e-7)
    with pytest.raises(SystemExit) as stop:  # argparse's own refusal of a choice
        main([*args, "--init", "xavier", "--name", "bad"])
    assert stop.value.code == 2
    assert main([*args, "--adam-eps", "0", "--name", "bad"]) == 2
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("key", ["E4", "E6"])
def test_dead_relus_counted_alike_in_keras_and_cnnlab(key, tmp_path):
    """The report's two dead-unit columns count the same thing: on one network (cnnlab's
    weights copied into the course's Keras model) with units switched off by large negative
    biases, Keras' count layer by layer equals cnnlab's."""
    from cnnlab.inspect import dead_relus

    name, build = EXPERIMENTS[key]
    keras.utils.set_random_seed(0)
    course = build()
    torch.manual_seed(0)
    model = create_model(name)
    initialize(model, "keras")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():  # a different share of each convolution's channels off
        for i, conv in enumerate(convs):
            conv.bias[: 8 * (i + 1)] = -1e3
    torch_to_keras(model, course)
    saved = tmp_path / "course.keras"
    course.save(saved)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    theirs = keras_code.dead_relus(saved, images, batch_size=16)
    ours = dead_relus(model, images.float() / 255, batch_size=16)
    assert len(theirs) == len(ours) == {"E4": 9, "E6": 8}[key]
    assert list(theirs.values()) == list(ours.values())
    for i in range(len(convs)):
        assert list(ours.values())[i] >= 8 * (i + 1) / 128
    assert len(set(list(ours.values())[: len(convs)])) == len(convs)  # the order is checked too
