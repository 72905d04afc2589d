"""benchmarks/speed.py with tiny settings: every task writes its row in the agreed shape
(issue 15); the real figures come from the full run on a quiet machine."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
ROW_KEYS = {"task", "device", "data", "test_accuracy", "train_seconds", "command"}


def _speed_module():
    spec = importlib.util.spec_from_file_location("speed_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_benchmark_writes_one_row_per_task_run(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(data_dir))
    speed = _speed_module()
    out = tmp_path / "speed.json"
    speed.main(
        [
            "--tasks",
            "mnist-lenet5,cifar10-cpu,cifar10-gpu",
            "--device",
            "cpu",
            "--data-variant",
            "subset",
            "--train-subset",
            "1152",  # cifar10-air's batch of 1024, after its 10% validation split
            "--test-subset",
            "200",
            "--budgets",
            "1,2",
            "--cifar-seeds",
            "0",
            "1",
            "--calibration-images",
            "1152",
            "--mnist-epochs",
            "1",
            "--repeats",
            "2",
            "--gpu-epochs",
            "1",
            "--gpu-widths",
            "[8,8,8]",
            "--out",
            str(out),
        ]
    )
    results = json.loads(out.read_text())
    assert results["machine"]["torch"] and results["torch_threads"] == 2
    rows = results["rows"]
    assert [r["task"] for r in rows] == [
        "mnist-lenet5",
        "cifar10-cpu",
        "cifar10-cpu",
        "cifar10-gpu",
    ]
    for row in rows:
        assert set(row) >= ROW_KEYS, row.keys()
        assert row["device"] == "cpu" and 0 <= row["test_accuracy"] <= 1
        assert row["train_seconds"] > 0 and row["command"].startswith("cnnlab train --recipe ")
    mnist, cifar = rows[0], rows[1]
    assert mnist["chosen_on_validation_in"] == "benchmarks/results/lenet_steps.json"
    assert cifar["chosen_on_validation_in"] == "benchmarks/results/cifar_methods.json"
    held = "10% of them held out for validation"
    assert mnist["data"] == f"mnist (1,152 train, {held} / 200 test images)"
    assert mnist["val_split"] == 0.1 and 0 <= mnist["val_accuracy"] <= 1
    assert "--epochs 1" in mnist["command"]
    assert set(mnist["bare_loop"]) >= {"test_accuracy", "train_seconds", "seconds", "accuracy"}
    # both sides warmed up, then timed twice in alternating order: medians with min and max
    assert mnist["repeats"] == 2 and "alternating" in mnist["order"]
    for spread in (mnist["trainer_seconds"], mnist["bare_loop"]["seconds"]):
        assert 0 < spread["min"] <= spread["median"] <= spread["max"]
    ratio = mnist["bare_loop"]["train_seconds"] / mnist["train_seconds"]
    assert mnist["trainer_vs_bare"] == pytest.approx(ratio)
    assert cifar["data"].startswith("cifar10 subset") and cifar["budget_seconds"] == 1
    assert "--data-variant subset" in cifar["command"] and cifar["epochs"] >= 1
    # one run per seed: the row is their median, with each seed's figures
    assert cifar["seeds"] == [0, 1] and len(cifar["accuracies"]) == 2
    assert cifar["test_accuracy"] == pytest.approx(sum(cifar["accuracies"]) / 2)
    assert cifar["accuracy"]["min"] == min(cifar["accuracies"])
    assert cifar["command"].startswith("cnnlab train --recipe cifar10-air ")
    assert "-O widths=[8,8,8]" in rows[-1]["command"] and "--epochs 1" in rows[-1]["command"]


def test_speed_benchmark_refuses_unknown_tasks_and_recipes():
    with pytest.raises(SystemExit):
        _speed_module().parse_args(["--tasks", "imagenet"])
    with pytest.raises(SystemExit):
        _speed_module().parse_args(["--cifar-recipe", "mnist-fast"])


def test_speed_benchmark_gpu_defaults_follow_the_recipe():
    air = _speed_module().parse_args([])
    assert (air.gpu_widths, air.gpu_epochs) == ([64, 256, 256], 10)
    page = _speed_module().parse_args(["--cifar-recipe", "cifar10-fast", "--gpu-epochs", "3"])
    assert (page.gpu_widths, page.gpu_epochs) == ([64, 128, 256, 512], 3)


def test_cifar_methods_sizes_each_variant_to_the_budget_at_its_own_speed():
    """benchmarks/cifar_methods.py: the most whole epochs whose predicted time fits 95% of the
    budget, small epochs counted at their own speed; shapes name what the speed depends on."""
    spec = importlib.util.spec_from_file_location(
        "cifar_methods", SCRIPT.with_name("cifar_methods.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    images = module.TRAIN_IMAGES
    assert module.sized_epochs({"full": images / 30}, 0.0, 300) == (9, 0)  # 270 s <= 285
    # a third of the epochs at 4x the speed: 12 epochs = 4 x 7.5 + 8 x 30 = 270 s
    assert module.sized_epochs({"full": images / 30, "small": images / 7.5}, 1 / 3, 300) == (12, 4)
    recipe = module.shape_key({})
    assert module.shape_key({"lookahead": False, "ema": 0.98}) == recipe
    assert module.shape_key({"batch_size": 512}) != recipe
    assert module.shape_key({}, 24) != recipe
