"""The recipe options the course's experiments need: input scaling, no shuffling, a test every
N optimizer steps (issue 14), through fit, the CLI, checkpoints and resume."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from cnnlab import run_folder
from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.train import STEPS_CSV, TrainConfig, fit

TIMING = ("train_seconds", "images_per_second")
STEPS_PER_EPOCH = 1437 // 64  # the digits' training split at the default batch size


def _digits() -> tuple:
    return load_dataset("digits", "train"), load_dataset("digits", "test")


def _fit(run_dir: Path | None = None, **options) -> tuple:
    """LeNet-5 on the digits; returns the result and the first batch the model saw each epoch."""
    torch.manual_seed(0)
    model = create_model("lenet5", input_size=8)
    firsts: list[torch.Tensor] = []
    seen = {"calls": 0}

    def first_batch(module, inputs):
        if module.training and seen["calls"] % STEPS_PER_EPOCH == 0:
            firsts.append(inputs[0].detach().clone())
        seen["calls"] += module.training

    model.register_forward_pre_hook(first_batch)
    config = TrainConfig(progress=False, **{"epochs": 2, **options})
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    return fit(model, _digits(), config, run_dir=run_dir), firsts


def _epochs(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def test_input_scaling_sets_what_the_model_sees_and_what_the_run_saves(tmp_path: Path):
    train, _ = _digits()
    for scaling, expected in (("none", train.images.float()), ("unit", train.images.float() / 255)):
        result, firsts = _fit(tmp_path / scaling, input_scaling=scaling, shuffle=False, epochs=1)
        assert torch.equal(firsts[0], expected[:64])  # the stored order, scaled as asked
        state = run_folder.load_checkpoint(tmp_path / scaling / "checkpoint.pt")
        assert state["config"]["input_scaling"] == scaling
        from cnnlab.runs.load import evaluate_run, load_run

        trained = load_run(tmp_path / scaling)  # read back with the same scale, unchanged
        assert torch.equal(trained.preprocess(train.images[:64]), expected[:64])
        assert evaluate_run(trained).accuracy == pytest.approx(result.test_accuracy)


def test_default_scaling_is_the_training_images_statistics():
    train, _ = _digits()
    _, firsts = _fit(shuffle=False, epochs=1)
    mean, std = train.channel_stats()
    expected = (train.images[:64].double() / 255 - mean[0]) / std[0]
    assert torch.allclose(firsts[0].double(), expected, atol=1e-5)


def test_no_shuffle_repeats_the_stored_order_and_shuffle_does_not():
    train, _ = _digits()
    _, kept = _fit(shuffle=False, input_scaling="none")
    assert len(kept) == 2 and all(torch.equal(f, train.images[:64].float()) for f in kept)
    _, shuffled = _fit(input_scaling="none")
    assert not torch.equal(shuffled[0], shuffled[1])
    assert not torch.equal(shuffled[0], train.images[:64].float())


def test_eval_every_records_steps_without_changing_the_training(tmp_path: Path):
    plain, _ = _fit(epochs=3)
    every_epoch, _ = _fit(epochs=3, eval_every=STEPS_PER_EPOCH)
    # testing draws no random numbers: the epochs are the same, and a test at each epoch's end
    # sees exactly the epoch's training steps and the epoch's test
    assert _epochs(every_epoch.history) == _epochs(plain.history)
    assert plain.steps == []
    assert [row["step"] for row in every_epoch.steps] == [22, 44, 66]
    for row, epoch in zip(every_epoch.steps, plain.history):
        assert row["epoch"] == epoch["epoch"]
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert row[key] == pytest.approx(epoch[key], rel=1e-6), key

    often, _ = _fit(tmp_path, epochs=3, eval_every=10)
    assert _epochs(often.history) == _epochs(plain.history)
    assert [row["step"] for row in often.steps] == [10, 20, 30, 40, 50, 60]
    assert [row["epoch"] for row in often.steps] == [s / 22 for s in (10, 20, 30, 40, 50, 60)]
    assert often.steps[-1]["test_acc"] > often.steps[0]["test_acc"]
    with (tmp_path / STEPS_CSV).open() as handle:
        written = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    assert len(written) == len(often.steps)
    for row, kept in zip(written, often.steps):
        assert row == pytest.approx(kept)
    assert len(run_folder.read_metrics(tmp_path / "metrics.csv")) == 3  # per epoch, as before


def cli(*args: str) -> int:
    return main(["train", "--no-progress", *args])


def test_cli_options_reach_the_run_and_resume_continues_its_steps(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = ["--schedule", "none", "--input-scaling", "unit", "--no-shuffle", "--eval-every"]
    assert cli(*recipe, "15", "--epochs", "4", "--name", "straight") == 0
    assert cli(*recipe, "15", "--epochs", "2", "--name", "resumed") == 0
    config = run_folder.load_checkpoint(tmp_path / "runs" / "resumed" / "checkpoint.pt")["config"]
    assert (config["input_scaling"], config["shuffle"], config["eval_every"]) == ("unit", False, 15)
    # step 30 of 44 is tested in epoch 2, step 45 needs 7 steps of epoch 2 and 8 of epoch 3
    assert main(["train", "--resume", "resumed", "--epochs", "4", "--no-progress"]) == 0
    straight, resumed = (tmp_path / "runs" / name for name in ("straight", "resumed"))
    assert (resumed / STEPS_CSV).read_text() == (straight / STEPS_CSV).read_text()
    assert _epochs(run_folder.read_metrics(resumed / "metrics.csv")) == _epochs(
        run_folder.read_metrics(straight / "metrics.csv")
    )


def test_checkpoints_from_before_the_options_resume_with_their_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("--epochs", "1", "--name", "old") == 0
    path = tmp_path / "runs" / "old" / "checkpoint.pt"
    state = run_folder.load_checkpoint(path)
    for key in ("input_scaling", "shuffle", "eval_every"):
        del state["config"][key]
    run_folder.save_checkpoint(path, state)
    assert main(["train", "--resume", "old", "--epochs", "2", "--no-progress"]) == 0
    config = run_folder.load_checkpoint(path)["config"]
    assert (config["input_scaling"], config["shuffle"], config["eval_every"]) == (
        "standard",
        True,
        None,
    )
    assert not (tmp_path / "runs" / "old" / STEPS_CSV).exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eval-every", "0"], "eval_every=0 (--eval-every): expected a positive number"),
        (["--eval-every", "-5"], "eval_every=-5"),
    ],
)
def test_cli_bad_recipe_values_exit_2_and_write_nothing(
    tmp_path, monkeypatch, capsys, args, message
):
    monkeypatch.chdir(tmp_path)
    assert cli(*args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_bad_recipe_values_are_named():
    with pytest.raises(
        CnnlabError, match=r"input_scaling='zscore' \(--input-scaling\): expected none, unit"
    ):
        TrainConfig(input_scaling="zscore")
    with pytest.raises(CnnlabError, match=r"shuffle='no' \(--shuffle\)"):
        TrainConfig(shuffle="no")
    with pytest.raises(CnnlabError, match=r"eval_every=True"):
        TrainConfig(eval_every=True)
    with pytest.raises(SystemExit):
        cli("--input-scaling", "zscore")


def test_a_damaged_steps_record_is_refused_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli("--epochs", "1", "--eval-every", "10", "--name", "run") == 0
    path = tmp_path / "runs" / "run" / "checkpoint.pt"
    state = run_folder.load_checkpoint(path)
    state["steps"] = {"rows": "garbage"}
    run_folder.save_checkpoint(path, state)
    capsys.readouterr()
    assert main(["train", "--resume", "run", "--epochs", "2", "--no-progress"]) == 2
    assert "'steps' entry" in capsys.readouterr().err


def test_ddp_without_shuffle_tests_every_n_steps_as_one_process(tmp_path, monkeypatch, data_dir):
    import os
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    recipe = ["--device", "cpu", "--epochs", "2", "--schedule", "none", "--no-shuffle"]
    recipe += ["--input-scaling", "unit", "--eval-every", "15"]
    assert cli(*recipe, "--name", "single") == 0
    env = {**os.environ, "CNNLAB_DATA": str(data_dir), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
        + ["--master_port=29563", "-m", "cnnlab", "train", "--no-progress", *recipe]
        + ["--name", "ddp"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    single, ddp = (
        list(csv.DictReader((tmp_path / "runs" / name / STEPS_CSV).open()))
        for name in ("single", "ddp")
    )
    # the two ranks take turns along the stored order, so each step sees the same 64 images
    assert [row["step"] for row in ddp] == [row["step"] for row in single] == ["15", "30"]
    for a, b in zip(single, ddp):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-4), key
