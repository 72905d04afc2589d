"""`cnnlab reproduce`: the course's experiments with the course's recipes, real trainings, and
a report (Markdown, JSON, one PNG each) next to the material's logged figures."""

from __future__ import annotations

import json

import pytest

from cnnlab.cli import main
from cnnlab.models import create_model
from cnnlab.reproduce import EXPERIMENTS, config_for, markdown


def test_reproduce_quick_writes_the_report(tmp_path, data_dir, capsys):
    out = tmp_path / "table.md"
    args = [
        "reproduce",
        "--quick",
        "--only",
        "e7-fashion-dnn",
        "--runs-dir",
        str(tmp_path),
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    text = out.read_text()
    assert "| E7 Fashion-MNIST DNN" in text and "about 86% test accuracy" in text
    row = [line for line in text.splitlines() if line.startswith("| E7")][0]
    accuracy = float(row.split("|")[3].strip().rstrip("%")) / 100
    assert 0.55 < accuracy < 0.95  # 50 steps on 5,000 real images (chance: 10%)
    report = json.loads(out.with_suffix(".json").read_text())[0]
    assert report["settings"]["shuffle"] is False and report["settings"]["batch_size"] == 100
    # test accuracy every 50 iterations, as the material measures it: 5,000 / 100 = 50 steps
    assert [s["step"] for s in report["steps"]] == [50]
    assert (tmp_path / "table-e7-fashion-dnn.png").stat().st_size > 10_000
    assert main(args) == 0  # a second run gets its own folder, nothing is overwritten
    assert len(list((tmp_path / "reproduce").iterdir())) == 2
    assert main(["reproduce", "--only", "nope", "--runs-dir", str(tmp_path)]) == 2
    assert "experiments are e1-lenet5-mnist" in capsys.readouterr().err


def test_the_recipes_are_the_materials():
    by_key = {e.key: e for e in EXPERIMENTS}
    for key in ("e4-cifar-plain7", "e5-cifar-residual", "e6-cifar-residual-pool"):
        config = config_for(by_key[key], quick=False, data_dir=None, progress=False)
        assert (config.optimizer, config.lr, config.schedule, config.batch_size) == (
            "adam",
            1e-3,
            "none",
            32,
        )
        assert (config.epochs, config.input_scaling, config.augment) == (5, "unit", False)
        assert config.data_variant == "jpeg" and config.shuffle
        assert len(by_key[key].logged) == 5
    for key in ("e7-fashion-dnn", "e8-fashion-cnn"):
        config = config_for(by_key[key], quick=False, data_dir=None, progress=False)
        assert (config.batch_size, config.epochs, config.shuffle, config.eval_every) == (
            100,
            5,
            False,
            50,
        )
        assert config.input_scaling == "unit" and config.schedule == "none"
    lenet = config_for(by_key["e1-lenet5-mnist"], quick=False, data_dir=None, progress=False)
    model = create_model(lenet.model, **lenet.model_options)
    assert not lenet.model_options.get("modern") and lenet.model_options["c3_table"]
    assert sum(p.numel() for p in model.parameters()) == 60_806  # the paper's C3 table


def test_the_table_shows_the_materials_log_beside_ours():
    e4 = next(e for e in EXPERIMENTS if e.key == "e4-cifar-plain7")
    row = {
        "key": e4.key,
        "what": e4.what,
        "reference": e4.reference,
        "reference_acc": 0.7165,
        "cnnlab_acc": 0.7,
        "difference": -0.0165,
        "seconds": 1.0,
        "data": "CIFAR-10",
        "epochs": [
            {"epoch": 1, "train_loss": 1.6, "train_acc": 0.41, "test_loss": 1.2, "test_acc": 0.55}
        ],
        "logged": e4.logged,
        "note": "",
    }
    table = markdown([row], quick=False)
    assert "71.65% test accuracy" in table and "-1.65 points" in table
    assert "| 1 | 1.5299 / 43.53% | 1.6000 / 41.00% |" in table


def test_e2_relu_vs_tanh_quick(tmp_path, data_dir):
    """E2 on real CIFAR-10 images: a rate sweep per unit, then epochs until 25% training
    error (not reached in --quick's 2 epochs on 1,000 images), a table and a figure."""
    out = tmp_path / "e2.md"
    args = ["reproduce", "--quick", "--only", "e2-relu-vs-tanh", "--runs-dir", str(tmp_path)]
    assert main([*args, "--data-dir", str(data_dir), "--out", str(out)]) == 0
    row = json.loads(out.with_suffix(".json").read_text())[0]
    for activation in ("relu", "tanh"):
        curve = row["curves"][activation]
        assert curve["lr"] in (0.01, 0.03) and set(curve["sweep"]) == {"0.01", "0.03"}
        assert len(curve["train_error"]) == 2  # --quick stops at 2 epochs
        assert all(0 < e < 0.9 for e in curve["train_error"])  # learned something (chance 90%)
    assert row["config"]["model"] == "cifar_four" and row["config"]["optimizer"] == "sgd"
    text = out.read_text()
    assert "| E2 ReLU vs tanh" in text and "| 2 |" in text
    assert (tmp_path / "e2-e2-relu-vs-tanh.png").stat().st_size > 10_000


def test_epochs_to_target_interpolates():
    from cnnlab.reproduce_e2 import epochs_to

    assert epochs_to([0.5, 0.3, 0.2]) == pytest.approx(2.5)  # 0.3 -> 0.2 crosses 0.25 halfway
    assert epochs_to([0.2]) == pytest.approx(0.65 / 0.7)  # from chance (0.9) at epoch 0
    assert epochs_to([0.5, 0.4]) is None


def test_cifar_four_is_the_figure_one_network():
    relu = create_model("cifar_four", activation="relu")
    tanh = create_model("cifar_four", activation="tanh")
    # conv 3->32 5x5, 32->32 5x5, 32->64 5x5 (+ biases), dense 64*4*4 -> 10
    expected = (75 * 32 + 32) + (800 * 32 + 32) + (800 * 64 + 64) + (1024 * 10 + 10)
    for model in (relu, tanh):
        assert sum(p.numel() for p in model.parameters()) == expected == 89_578
    kinds = {type(m).__name__ for m in tanh.modules()}
    assert "Tanh" in kinds and "ReLU" not in kinds
