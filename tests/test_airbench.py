"""cifar_air (airbench94 for CPUs): the whitening layer computed from data, the identity-started
convolutions, the faster batch-norm shifts, lookahead, and the cifar10-air recipe end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnlab import run_folder
from cnnlab.cli import main
from cnnlab.data import Preprocess, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.run_folder import load_checkpoint
from cnnlab.train import make_optimizer
from cnnlab.train.recipes import recipe_config
from cnnlab.train.steps import Lookahead, WeightAverage
from cnnlab.train.validation import validation_split


@pytest.fixture(scope="module")
def cifar(data_dir: Path):
    train = load_dataset("cifar10", "train", root=data_dir, variant="subset")
    test = load_dataset("cifar10", "test", root=data_dir, variant="subset")
    return train, test


def _whitened(model, images: torch.Tensor) -> torch.Tensor:
    """The whitening layer's outputs without its bias, one row per 2x2 patch position."""
    with torch.no_grad():
        out = torch.nn.functional.conv2d(images, model.whiten.weight)
    return out.permute(0, 2, 3, 1).reshape(-1, out.shape[1])


def test_whitening_layer_decorrelates_real_cifar_patches(cifar):
    train, _ = cifar
    images = Preprocess(*train.channel_stats())(train.images[:2000])
    model = create_model("cifar_air")
    model.initialize_from_data(images)
    out = _whitened(model, images)
    first = out[:, :12]  # the 12 eigen-directions; channels 12..23 are their negatives
    assert torch.equal(out[:, 12:], -first)
    covariance = first.T @ first / len(first)
    off_diagonal = covariance - torch.diag(covariance.diagonal())
    assert off_diagonal.abs().max() < 1e-3  # decorrelated
    # unit variance up to the 5e-4 added to each eigenvalue: ev / (ev + 5e-4) <= 1
    assert covariance.diagonal().max() < 1.0 + 1e-4
    assert covariance.diagonal()[:6].min() > 0.99  # the large directions are fully scaled
    # the first filter is the direction of largest variance: the mean brightness of the patch
    top = model.whiten.weight[0].flatten()
    assert (top > 0).all() or (top < 0).all()
    assert not model.whiten.weight.requires_grad and model.whiten.bias.requires_grad


def test_groups_start_as_identity_and_batch_norm_scales_are_fixed():
    model = create_model("cifar_air", widths=[8, 16, 16])
    conv = model.groups[1].conv1  # 8 -> 16 channels
    x = torch.randn(2, 8, 6, 6)
    out = conv(x)
    assert torch.allclose(out[:, :8], x)  # the first 8 filters pass their channel through
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not m.weight.requires_grad and m.eps == 1e-12 for m in norms)
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    with pytest.raises(CnnlabError, match="widths"):
        create_model("cifar_air", widths=[8, 16])
    with pytest.raises(CnnlabError, match="at least 9x9"):
        create_model("cifar_air", input_size=8)


def test_batch_norm_shifts_learn_64_times_faster_with_the_same_decay_per_step():
    model = create_model("cifar_air", widths=[8, 8, 8])
    config = recipe_config("cifar10-air", model_options={"widths": [8, 8, 8]})
    optimizer = make_optimizer(model, config)
    others, shifts = optimizer.param_groups  # the base rate first: the one the trainer logs
    assert others["lr"] == pytest.approx(config.lr)
    assert shifts["lr"] == pytest.approx(64 * config.lr)
    assert shifts["lr"] * shifts["weight_decay"] == pytest.approx(
        others["lr"] * others["weight_decay"]
    )
    norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert {id(p) for p in shifts["params"]} == norm_biases
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model.whiten.weight) not in trained and id(model.whiten.bias) in trained


class Killed(Exception):
    pass


def _killed_after_epoch_1(monkeypatch, args: list[str]) -> None:
    """``cnnlab ARGS`` killed right after epoch 1's checkpoint (writing metrics.csv fails)."""

    def killed(*args, **kwargs):
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(run_folder, "write_metrics", killed)
        with pytest.raises(Killed):
            main(args)


def test_lookahead_pulls_weights_to_the_slow_copy_and_ends_on_it():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    lookahead = Lookahead(model)
    total = 10
    with torch.no_grad():
        model.weight.fill_(1.0)
    lookahead.after_step(model, 3, total)  # not a multiple of 5: nothing happens
    assert model.weight.flatten().tolist() == [1.0, 1.0]
    lookahead.after_step(model, 5, total)
    decay = 0.95**5 * 0.5**3
    assert model.weight.flatten().tolist() == pytest.approx([1 - decay] * 2)
    assert lookahead.slow["weight"].flatten().tolist() == pytest.approx([1 - decay] * 2)
    with torch.no_grad():
        model.weight.fill_(5.0)
    lookahead.after_step(model, total, total)  # the last step: back to the slow copy
    assert model.weight.flatten().tolist() == pytest.approx([1 - decay] * 2)


def test_ema_averages_every_step_with_a_warm_up_and_ends_on_the_average():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, 0.9)
    assert average.factor(1) == pytest.approx(2 / 11) and average.factor(1000) == 0.9
    expected = 0.0
    for step, value in enumerate([1.0, 2.0, 3.0], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        average.after_step(model, step, 10)
        d = min(0.9, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * value
        assert model.weight.flatten().tolist() == [value, value]  # training is undisturbed
        assert average.average["weight"].flatten().tolist() == pytest.approx([expected] * 2)
    with torch.no_grad():
        model.weight.fill_(4.0)
    average.after_step(model, 10, 10)  # the last step: the model takes the average
    expected = 0.55 * expected + 0.45 * 4.0  # still warming up: (1 + 10) / (10 + 10)
    assert model.weight.flatten().tolist() == pytest.approx([expected] * 2)


def test_ema_run_resumes_exactly_and_refuses_lookahead(tmp_path, monkeypatch, capsys, data_dir):
    """--ema 0.9 on real images: the checkpoint keeps the average, a run killed after epoch 1
    and resumed ends with the same weights as one run straight through; with --lookahead the
    two would fight over the final weights, so that is refused."""
    common = [
        "train",
        "--model",
        "cifar_air",
        "-O",
        "widths=[8,8,8]",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(data_dir),
        "--data-variant",
        "subset",
        "--train-subset",
        "256",
        "--test-subset",
        "64",
        "--batch-size",
        "64",
        "--optimizer",
        "sgd",
        "--lr",
        "0.05",
        "--ema",
        "0.9",
        "--no-progress",
        "--runs-dir",
        str(tmp_path),
    ]
    assert main([*common, "--epochs", "2", "--name", "whole"]) == 0
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert set(whole["ema"]) == {k for k, v in whole["model"].items() if v.is_floating_point()}
    for key, value in whole["ema"].items():  # the run ended at the average
        assert torch.equal(whole["model"][key], value), key

    _killed_after_epoch_1(monkeypatch, [*common, "--epochs", "2", "--name", "cut"])
    assert main(["train", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    resumed = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    for key, value in whole["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    assert main([*common, "--lookahead", "--name", "both"]) == 2
    assert "--ema" in capsys.readouterr().err and not (tmp_path / "both").exists()


def test_cifar10_air_recipe_learns_real_cifar_and_resumes_exactly(
    tmp_path, monkeypatch, cifar, data_dir
):
    """The recipe's whole path on real images: whitening computed by fit from the training
    images, lookahead, test flip, bf16 + channels_last; a run stopped after epoch 1 and
    resumed ends with the same weights as one run straight through."""
    common = [
        "train",
        "--recipe",
        "cifar10-air",
        "--data-dir",
        str(data_dir),
        "--data-variant",
        "subset",
        "--train-subset",
        "1024",
        "--test-subset",
        "500",
        "--batch-size",
        "64",
        "--lr",
        "0.4",
        "-O",
        "widths=[16,32,32]",
        "--amp",  # chosen here, not by the probe's clock: both runs train alike
        "none",
        "--no-progress",
        "--runs-dir",
        str(tmp_path),
    ]
    assert main([*common, "--epochs", "3", "--name", "whole"]) == 0
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    config = json.loads((tmp_path / "whole" / "config.json").read_text())
    assert config["lookahead"] and config["model"] == "cifar_air"
    assert "lookahead" in whole
    history = whole["history"]
    assert history[-1]["test_acc"] > 0.2 and history[-1]["train_loss"] < history[0]["train_loss"]

    # the whitening filters are those of the training images (the recipe's validation split
    # held out), as the run scaled them
    train, _ = cifar
    subset, held_out = validation_split(train.subset(1024, seed=0), config["val_split"], 0)
    assert config["val_split"] == 0.1 and len(held_out) == 1024 - len(subset)
    mean, std = whole["normalization"]["mean"], whole["normalization"]["std"]
    reference = create_model("cifar_air", widths=[16, 32, 32])
    reference.initialize_from_data(Preprocess(mean, std)(subset.images[:5000]))
    assert torch.allclose(
        whole["model"]["whiten.weight"], reference.whiten.weight, rtol=1e-4, atol=1e-5
    )

    # killed after epoch 1's checkpoint, resumed: the same weights as the run straight through
    _killed_after_epoch_1(monkeypatch, [*common, "--epochs", "3", "--name", "cut"])
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 1
    assert main(["train", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    resumed = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert resumed["epoch"] == 3
    for key, value in whole["model"].items():
        assert torch.equal(resumed["model"][key], value), key


def test_transfer_keeps_the_whitening_and_the_fixed_scales(cifar):
    """A transferred cifar_air keeps the whitening it learned (fit does not recompute it from
    the new data), and --strategy full leaves what the architecture fixes untrained."""
    from cnnlab.train import TrainConfig, fit
    from cnnlab.train.transfer import Strategy, replace_head, trainable_groups

    train, test = cifar
    model = create_model("cifar_air", widths=[8, 8, 8])
    with torch.no_grad():
        model.whiten.weight.fill_(0.123)
    replace_head(model, 10)
    groups, _ = trainable_groups(model, Strategy("full"), 1e-3)
    trained = {id(p) for group in groups for p in group["params"]}
    fixed = [model.whiten.weight] + [
        m.weight for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
    ]
    assert all(not p.requires_grad and id(p) not in trained for p in fixed)
    assert model.whiten.bias.requires_grad and id(model.whiten.bias) in trained
    config = TrainConfig(
        model="cifar_air",
        dataset="cifar10",
        epochs=1,
        batch_size=64,
        progress=False,
        model_options={"widths": [8, 8, 8]},
        transfer={"strategy": "full"},
    )
    fit(model, (train.subset(256, seed=0), test.subset(64, seed=0)), config)
    assert torch.equal(model.whiten.weight, torch.full_like(model.whiten.weight, 0.123))


def test_whitening_of_grey_images_stays_finite():
    """Equal colour channels make the patch covariance singular: its zero eigenvalues may
    come out slightly negative, which must not turn the filters into NaN."""
    torch.manual_seed(0)
    grey = torch.rand(64, 1, 12, 12).expand(-1, 3, -1, -1) * 255  # unnormalized, as 0..255
    model = create_model("cifar_air", widths=[8, 8, 8])
    model.initialize_from_data(grey)
    assert torch.isfinite(model.whiten.weight).all()


def test_model_options_of_the_wrong_kind_are_explained():
    expected = r"widths=32: expected a list .* -O widths=\[32,128,128\]"
    with pytest.raises(CnnlabError, match=expected):
        create_model("cifar_air", widths=32)
    with pytest.raises(CnnlabError, match=r"-O widths=\[32,64,128,256\]"):
        create_model("cifar_fast", widths=64)


def test_a_damaged_lookahead_entry_is_named():
    model = torch.nn.Linear(2, 1)
    for damaged in ({"weight": torch.zeros(1, 2)}, {"weight": "x", "bias": 1}):
        with pytest.raises(CnnlabError, match="'lookahead' entry"):
            Lookahead(model, damaged)
        with pytest.raises(CnnlabError, match="'ema' entry"):
            WeightAverage(model, 0.9, damaged)


def test_a_model_too_big_to_allocate_is_explained():
    """360 GB of weights: the allocator refuses, and the error names the options instead of
    torch's allocator traceback (the registry's check, for every model)."""
    with pytest.raises(CnnlabError, match=r"'cifar_air' with widths=\[100000, .* smaller options"):
        create_model("cifar_air", widths=[100_000] * 3)
