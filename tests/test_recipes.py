"""Recipes (``cnnlab train --recipe``), the fast CIFAR-10 network, test-time flip averaging
and the recipe's device path without per-step host syncs (issue 15), on real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnlab.cli import main
from cnnlab.data import BatchLoader, Preprocess, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.train import TrainConfig, evaluate, fit, recipes
from cnnlab.train.recipes import RECIPES, recipe_config


def _train(tmp_path: Path, *flags: str) -> dict:
    """``cnnlab train FLAGS`` into tmp_path/runs/r; returns the saved config."""
    code = main(["train", *flags, "--runs-dir", str(tmp_path / "runs"), "--name", "r"])
    assert code == 0
    return json.loads((tmp_path / "runs" / "r" / "config.json").read_text())


# ---------------------------------------------------------------------------------- recipes


def test_recipe_list_names_every_recipe_with_a_line(capsys):
    assert main(["train", "--recipe", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = ["mnist-fast", "mnist-5s", "cifar10-fast", "cifar10-air"]
    assert [line.split()[0] for line in lines] == list(RECIPES) == names
    assert all(len(line.split()) > 4 for line in lines)


def test_unknown_recipe_and_recipe_with_resume_are_one_line_errors(tmp_path, capsys):
    assert main(["train", "--recipe", "mnist-slow", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "mnist-slow" in err and "mnist-fast" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--recipe", "mnist-fast", "--resume", "x"]) == 2
    assert "drop --recipe" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_typed_flags_are_told_from_defaults_in_every_spelling():
    from cnnlab.cli import build_parser

    parser = build_parser()
    typed = ["--recipe", "cifar10-fast", "--epochs=3", "--label-smooth", "0.1", "--no-test-flip"]
    args = parser.parse_args(["train", *typed, "--amp", "none", "-O", "a=1"])
    assert args.given == {"recipe", "epochs", "label_smoothing", "test_flip", "amp", "model_option"}
    assert (args.batch_size, args.amp, args.test_flip) == (TrainConfig.batch_size, "none", False)
    again = parser.parse_args(["train"])  # the defaults are back after the second parse
    assert again.given == set() and again.batch_size == TrainConfig.batch_size


def test_recipe_settings_reach_the_run_and_typed_flags_win(tmp_path, data_dir):
    """Flags typed beside the recipe win, also where they equal TrainConfig's defaults
    (--amp none, --no-test-flip) and when abbreviated (--label-smooth); the rest is the
    recipe's."""
    config = _train(
        tmp_path,
        "--recipe",
        "cifar10-fast",
        "--data-dir",
        str(data_dir),
        "--data-variant",
        "subset",
        "--train-subset",
        "1024",
        "--test-subset",
        "200",
        "--epochs",
        "1",
        "--amp",
        "none",
        "--no-test-flip",
        "--label-smooth",
        "0.1",
        "-O",
        "widths=[8,16,16,32]",
        "--no-progress",
    )
    recipe = RECIPES["cifar10-fast"].settings
    assert (config["amp"], config["test_flip"], config["label_smoothing"]) == ("none", False, 0.1)
    assert config["epochs"] == 1 and config["model_options"] == {"widths": [8, 16, 16, 32]}
    for key in ("model", "batch_size", "optimizer", "lr", "nesterov", "weight_decay", "augment"):
        assert config[key] == recipe[key], key
    assert config["warmup_epochs"] == pytest.approx(0.2)  # a fifth of the one epoch


def test_recipe_config_merges_model_options_and_keeps_bf16_only_where_fast(monkeypatch):
    config = recipe_config("mnist-fast", model_options={"activation": "relu"})
    assert config.model_options == {"modern": True, "activation": "relu"}
    monkeypatch.setattr(recipes, "bf16_is_fast", lambda device: False)
    assert recipe_config("cifar10-fast").amp == "none"
    assert recipe_config("cifar10-fast", amp="bf16").amp == "bf16"  # asked for: kept
    monkeypatch.setattr(recipes, "bf16_is_fast", lambda device: True)
    assert recipe_config("cifar10-fast").amp == "bf16"
    with pytest.raises(CnnlabError, match="learning_rate"):
        recipe_config("mnist-fast", learning_rate=1.0)


def test_mnist_fast_recipe_learns_mnist(tmp_path, data_dir):
    """The recipe as the CLI runs it, cut to a fifth of MNIST and one epoch: it must already
    be well on the way to its 99% (the full recipe is measured by benchmarks/speed.py)."""
    _train(
        tmp_path,
        "--recipe",
        "mnist-fast",
        "--data-dir",
        str(data_dir),
        "--train-subset",
        "12000",
        "--test-subset",
        "2000",
        "--epochs",
        "1",
        "--no-progress",
    )
    metrics = (tmp_path / "runs" / "r" / "metrics.csv").read_text().splitlines()
    header, last = metrics[0].split(","), metrics[-1].split(",")
    assert float(last[header.index("test_acc")]) > 0.85


# ----------------------------------------------------------------------------- cifar_fast


def test_cifar_fast_shapes_options_and_errors():
    model = create_model("cifar_fast")
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    wide = create_model("cifar_fast", widths=[64, 128, 256, 512], num_classes=100)
    assert wide(torch.zeros(1, 3, 32, 32)).shape == (1, 100)
    assert sum(p.numel() for p in wide.parameters()) > 6_000_000  # Page's ResNet-9: 6.57M
    with pytest.raises(CnnlabError, match="widths"):
        create_model("cifar_fast", widths=[32, 64])
    with pytest.raises(CnnlabError, match="8x8"):
        create_model("cifar_fast", input_size=4)


def test_cifar10_fast_recipe_learns_on_real_cifar_with_bf16_channels_last(data_dir):
    """The recipe's whole path (bf16 autocast, channels_last, augmentation on uint8 batches,
    label smoothing, Nesterov one-cycle, test-time flip) learns real CIFAR-10 images."""
    config = recipe_config(
        "cifar10-fast", epochs=3, batch_size=64, lr=0.1, amp="bf16", progress=False
    )
    train = load_dataset("cifar10", "train", root=data_dir, variant="subset").subset(2000)
    test = load_dataset("cifar10", "test", root=data_dir, variant="subset").subset(500)
    torch.manual_seed(0)
    model = create_model("cifar_fast", widths=[8, 16, 32, 32])
    result = fit(model, (train, test), config)
    assert model.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert result.history[-1]["test_acc"] > 0.25  # chance: 0.10
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


# --------------------------------------------------------------------------- test-time flip


def test_test_flip_scores_the_mean_of_image_and_mirror(data_dir):
    test = load_dataset("cifar10", "test", root=data_dir, variant="subset").subset(300)
    torch.manual_seed(0)
    model = create_model("cifar_fast", widths=[8, 8, 16, 16]).eval()
    preprocess = Preprocess(*test.channel_stats())
    loader = BatchLoader(test, 128, shuffle=False)
    loss, accuracy, confusion = evaluate(model, loader, preprocess, 10, flip=True)
    with torch.no_grad():
        x = preprocess(test.images)
        logits = (model(x) + model(x.flip(-1))) / 2
    expected = torch.nn.functional.cross_entropy(logits, test.labels).item()
    assert loss == pytest.approx(expected, rel=1e-4)
    assert accuracy == pytest.approx((logits.argmax(1) == test.labels).float().mean().item())
    plain = evaluate(model, loader, preprocess, 10)
    assert plain[0] != pytest.approx(loss)  # the mirror changed the scores


def test_test_translate_scores_airbench_s_six_views(data_dir):
    """--test-translate 1 with --test-flip: half the mirrored pair, a quarter each of the pairs
    shifted one pixel up-left and down-right (reflected edges), as airbench's TTA."""
    test = load_dataset("cifar10", "test", root=data_dir, variant="subset").subset(200)
    torch.manual_seed(0)
    model = create_model("cifar_fast", widths=[8, 8, 16, 16]).eval()
    preprocess = Preprocess(*test.channel_stats())
    loader = BatchLoader(test, 128, shuffle=False)
    loss, accuracy, _ = evaluate(model, loader, preprocess, 10, flip=True, translate=1)
    with torch.no_grad():
        x = preprocess(test.images)
        pair = lambda v: (model(v) + model(v.flip(-1))) / 2  # noqa: E731
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        up_left, down_right = padded[..., :32, :32], padded[..., 2:, 2:]
        assert torch.equal(up_left[..., 1:, 1:], x[..., :-1, :-1])  # the image moved down-right
        logits = 0.5 * pair(x) + 0.25 * (pair(up_left) + pair(down_right))
    expected = torch.nn.functional.cross_entropy(logits, test.labels).item()
    assert loss == pytest.approx(expected, rel=1e-4)
    assert accuracy == pytest.approx((logits.argmax(1) == test.labels).float().mean().item())
    assert evaluate(model, loader, preprocess, 10, flip=True)[0] != pytest.approx(loss)


def test_small_size_trains_the_first_epochs_on_scaled_down_images_and_tests_at_full_size(data_dir):
    """--small-size 16 --small-epochs 2 of 3: the model's training inputs are the augmented
    batch scaled down (antialiased) in epochs 1-2 and full size in epoch 3; every test is at
    32 x 32; a resumed run keeps the schedule (it is by epoch)."""
    train = load_dataset("cifar10", "train", root=data_dir, variant="subset").subset(128)
    test = load_dataset("cifar10", "test", root=data_dir, variant="subset").subset(64)
    config = TrainConfig(
        model="cifar_air",
        epochs=3,
        batch_size=64,
        small_size=16,
        small_epochs=2,
        augment=True,
        progress=False,
        lr=0.01,
    )
    torch.manual_seed(0)
    model = create_model("cifar_air", widths=[8, 8, 8])
    seen: list[tuple[bool, int, int]] = []
    model.register_forward_pre_hook(
        lambda m, args: seen.append((m.training, len(args[0]), args[0].shape[-1]))
    )
    fit(model, (train, test), config, verbose=False)
    trained = [side for training, n, side in seen if training]
    tested = {side for training, n, side in seen if not training and n > 2}  # 2: the checks'
    assert (False, 2, 16) in seen  # the check tried the small size before training
    assert trained == [16] * 4 + [32] * 2  # 2 steps an epoch
    assert tested == {32}
    # the scaled batch is what Pillow's bilinear resize makes of the full picture
    import numpy as np
    from PIL import Image

    from cnnlab.train.steps import scaled_down

    full = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    for side in (16, 24):
        pillow = Image.fromarray(full[0, 0].numpy(), mode="F").resize((side, side), Image.BILINEAR)
        assert np.allclose(scaled_down(full, side)[0, 0].numpy(), np.asarray(pillow), atol=1e-5)


def test_small_size_is_refused_when_not_smaller_or_when_the_model_cannot_take_it(data_dir):
    train = load_dataset("cifar10", "train", root=data_dir, variant="subset").subset(64)
    test = load_dataset("cifar10", "test", root=data_dir, variant="subset").subset(32)
    config = TrainConfig(model="cifar_air", epochs=2, batch_size=32, progress=False)
    with pytest.raises(CnnlabError, match="--small-size 32: cifar10 images are 32 x 32"):
        fit(
            create_model("cifar_air", widths=[8, 8, 8]),
            (train, test),
            TrainConfig(**{**config.__dict__, "small_size": 32, "small_epochs": 1}),
        )
    with pytest.raises(CnnlabError, match="--small-size 24: the model cannot take 24 x 24"):
        fit(
            create_model("cifar_four"),  # flattens a fixed-size map
            (train, test),
            TrainConfig(**{**config.__dict__, "small_size": 24, "small_epochs": 1}),
        )


def test_test_flip_is_refused_for_digits(data_dir):
    train = load_dataset("mnist", "train", root=data_dir).subset(256)
    test = load_dataset("mnist", "test", root=data_dir).subset(100)
    config = TrainConfig(model="lenet5", epochs=1, test_flip=True, progress=False)
    with pytest.raises(CnnlabError, match="--test-flip on mnist"):
        fit(create_model("lenet5", input_size=28), (train, test), config)
    with pytest.raises(CnnlabError, match="test_flip"):
        TrainConfig(test_flip="yes")  # type: ignore[arg-type]


# ----------------------------------------------------------------- no per-step host syncs


def _host_syncs(monkeypatch, steps: int, data_dir) -> int:
    """How often a one-epoch recipe fit of ``steps`` steps reads a tensor back to Python."""
    train = load_dataset("cifar10", "train", root=data_dir, variant="subset").subset(64 * steps)
    test = load_dataset("cifar10", "test", root=data_dir, variant="subset").subset(100)
    config = recipe_config(
        "cifar10-fast",
        epochs=1,
        batch_size=64,
        model_options={"widths": [8, 8, 8, 8]},
        progress=False,
    )
    model = create_model("cifar_fast", widths=[8, 8, 8, 8])
    calls = {"n": 0}
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            calls["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    fit(model, (train, test), config)
    monkeypatch.undo()
    return calls["n"]


def test_the_training_steps_never_wait_for_the_device(monkeypatch, data_dir):
    """On a GPU every ``.item()``, ``float(t)`` or ``if t:`` stalls the pipeline; the recipe's
    training loop makes as many of them in 4 steps as in 16 (only per-epoch work does)."""
    assert _host_syncs(monkeypatch, 4, data_dir) == _host_syncs(monkeypatch, 16, data_dir)


def test_cnnlab_eval_tests_a_test_flip_run_as_training_did(tmp_path, data_dir):
    from cnnlab.runs.load import evaluate_run, load_run
    from cnnlab.runs.start import train_run

    config = recipe_config(
        "cifar10-fast",
        data_dir=str(data_dir),
        data_variant="subset",
        train_subset=256,
        test_subset=200,
        epochs=1,
        batch_size=64,
        model_options={"widths": [8, 8, 8, 8]},
        amp="none",  # evaluate_run tests in float32: the same numbers
        progress=False,
    )
    assert config.test_flip
    result = train_run(config, tmp_path, "flip")
    evaluation = evaluate_run(load_run(tmp_path / "flip"))
    assert evaluation.accuracy == pytest.approx(result.test_accuracy)
    assert evaluation.loss == pytest.approx(result.history[-1]["test_loss"], rel=1e-6)


def test_the_probe_measures_each_precision_and_layout_and_trains_with_the_fastest(tmp_path, caplog):
    """--probe (the fast recipes set it) times fp32 and bf16, standard and channels_last, on
    the real model and batch, leaves the model as it was, and the run records what it chose."""
    import json
    import logging

    import torch

    from cnnlab.models import create_model
    from cnnlab.runs.start import train_run
    from cnnlab.train import TrainConfig
    from cnnlab.train.probe import probe
    from cnnlab.train.recipes import recipe_config

    model = create_model("lenet5", modern=True, input_size=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    found = probe(model, images, labels, seconds=0.02)
    assert set(found.speeds) == {"fp32", "fp32 channels_last", "bf16", "bf16 channels_last"}
    fastest = max(found.speeds, key=found.speeds.get)
    assert fastest.startswith("bf16" if found.amp == "bf16" else "fp32")
    assert ("channels_last" in fastest) == found.channels_last
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    no_bf16 = probe(model, images, labels, bf16_ok=False, seconds=0.02)
    assert set(no_bf16.speeds) == {"fp32", "fp32 channels_last"} and no_bf16.amp == "none"
    assert "is fastest here" in found.line and "img/s" in found.line

    config = TrainConfig(epochs=1, probe=True, progress=False, train_subset=256, batch_size=64)
    with caplog.at_level(logging.INFO, logger="cnnlab"):
        train_run(config, tmp_path, "probed")
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("probe:"))
    saved = json.loads((tmp_path / "probed" / "config.json").read_text())
    chosen = ("bf16" if saved["amp"] == "bf16" else "fp32") + (
        ", channels_last" if saved["channels_last"] else ""
    )
    assert line.startswith(f"probe: {chosen} is fastest here")
    assert saved["probe"] is False  # the choice is recorded: a rerun from config.json keeps it
    # a recipe probes unless the user chose the precision or layout
    assert recipe_config("mnist-fast").probe
    assert not recipe_config("mnist-fast", amp="none").probe
    assert not recipe_config("mnist-fast", channels_last=False).probe


def test_mnist_5s_is_mnist_fast_on_fewer_images_tested_with_shifts():
    """The 5-second recipe changes two things: it trains on 40,000 of the images, and scores
    each test image with its 1-pixel shifts too (test time only)."""
    fast, quick = recipe_config("mnist-fast"), recipe_config("mnist-5s")
    assert quick.train_subset == 40_000 and fast.train_subset is None
    assert quick.test_translate == 1 and fast.test_translate == 0
    assert {**vars(quick), "train_subset": None, "test_translate": 0} == vars(fast)
