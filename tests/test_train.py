"""The trainer and its run folders: learning, checkpoints, resume after a kill, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab import run_folder
from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.models import create_model
from cnnlab.train import TrainConfig, fit, lr_factor

TIMING = ("train_seconds", "images_per_second")


def metrics(run_dir: Path) -> list[dict[str, float]]:
    return [
        {k: v for k, v in row.items() if k not in TIMING}
        for row in run_folder.read_metrics(run_dir / "metrics.csv")
    ]


def test_fit_learns_digits_and_writes_a_complete_run(tmp_path: Path):
    torch.manual_seed(0)
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    model = create_model("lenet5", input_size=8)
    config = TrainConfig(epochs=12, progress=False)
    result = fit(model, (train, test), config, run_dir=tmp_path)
    # 360 test digits, 10 balanced classes: chance is 10%; a working LeNet-5 gets above 95%
    # within a dozen epochs, a broken backward pass or label mix-up stays far below 90%.
    assert result.test_accuracy > 0.90
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] / 3
    for name in ("config.json", "metrics.csv", "checkpoint.pt", "curves.png", "confusion.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert len(metrics(tmp_path)) == 12
    state = run_folder.load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 12 and state["config"]["epochs"] == 12
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    assert int(result.confusion.sum()) == 360


def test_learning_rate_schedules():
    config = TrainConfig(epochs=2, warmup_epochs=0.5, schedule="cosine")
    factors = [lr_factor(step, 10, config) for step in range(20)]
    assert factors[0] == pytest.approx(0.2) and factors[4] == pytest.approx(1.0)
    assert factors[5] == pytest.approx(1.0) and factors[-1] < 0.02  # cosine: near 0 at the end
    step = TrainConfig(epochs=30, schedule="step", step_epochs=10, step_gamma=0.5)
    assert [lr_factor(s, 1, step) for s in (9, 10, 25)] == [1.0, 0.5, 0.25]


def test_bad_config_values_are_named():
    expected = r"optimizer='adagrad' \(--optimizer\): expected sgd, adam, adamw"
    with pytest.raises(Exception, match=expected):
        TrainConfig(optimizer="adagrad")


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "checkpoint.pt"
    run_folder.save_checkpoint(path, {"model": {}, "model_spec": {"name": "x"}, "epoch": 1})

    def crash(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        run_folder.save_checkpoint(path, {"epoch": 2})
    assert run_folder.load_checkpoint(path)["epoch"] == 1  # the old file is whole
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left


# ------------------------------------------------------------------------- the command line


def cli(*args: str) -> int:
    return main(["train", "--no-progress", *args] if args[0].startswith("-") else list(args))


def test_cli_train_names_runs_without_overwriting(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli("--epochs", "2") == 0
    assert "test accuracy" in capsys.readouterr().out
    assert cli("--epochs", "1") == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "lenet5-digits",
        "lenet5-digits-2",
    ]
    first = (tmp_path / "runs" / "lenet5-digits" / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert cli("--epochs", "1", "--name", "lenet5-digits") == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "runs" / "lenet5-digits" / "checkpoint.pt").read_bytes() == first
    assert cli("--epochs", "1", "--name", "lenet5-digits", "--overwrite") == 0
    assert len(metrics(tmp_path / "runs" / "lenet5-digits")) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "lenet6"], "did you mean lenet5"),
        (["--model", "cifar_plain7"], "at least 16x16"),  # 8x8 digits are too small for it
        (["-O", "modern=yes please", "--epochs", "0"], "epochs=0"),
        (["--model", "mnist_cnn", "-O", "depth=3"], "has no option 'depth'"),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert cli(*args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_cli_unknown_dataset_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli("--dataset", "imagenet")
    assert info.value.code == 2 and "invalid choice: 'imagenet'" in capsys.readouterr().err


def test_eval_predict_and_foreign_checkpoints(tmp_path, monkeypatch, capsys, data_dir):
    monkeypatch.chdir(tmp_path)
    assert cli("--epochs", "8", "--name", "digits") == 0
    capsys.readouterr()
    assert main(["eval", "digits", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 360 and result["test_acc"] > 0.85

    # predict a real digit image: the first test digit, saved as PNG
    test = load_dataset("digits", "test")
    from PIL import Image

    Image.fromarray(test.images[0, 0].numpy()).save(tmp_path / "digit.png")
    assert main(["predict", "digits", str(tmp_path / "digit.png"), "-k", "2", "--json"]) == 0
    guesses = json.loads(capsys.readouterr().out)[0]
    assert (
        len(guesses["top"]) == 2
        and guesses["top"][0]["probability"] >= guesses["top"][1]["probability"]
    )
    # a colour photo is converted and resized, with a notice
    assert main(["predict", "digits", str(data_dir / "photos" / "chelsea.png")]) == 0
    out = capsys.readouterr().out
    assert "converted RGB to L" in out and "to 8x8" in out

    (tmp_path / "notes.png").write_text("hello")
    assert main(["predict", "digits", str(tmp_path / "notes.png")]) == 2
    assert "not an image" in capsys.readouterr().err

    # a checkpoint from another model, dropped into this run folder
    assert cli("--epochs", "1", "--name", "other", "--model", "mnist_cnn") == 0
    capsys.readouterr()
    original = (tmp_path / "runs" / "digits" / "checkpoint.pt").read_bytes()
    foreign = (tmp_path / "runs" / "other" / "checkpoint.pt").read_bytes()
    (tmp_path / "runs" / "digits" / "checkpoint.pt").write_bytes(foreign)
    assert main(["eval", "digits"]) == 2
    assert "checkpoint comes from another run" in capsys.readouterr().err
    # the same with the spec edited to claim it is a lenet5: the weights give it away
    state = torch.load(tmp_path / "runs" / "other" / "checkpoint.pt", weights_only=True)
    state["model_spec"] = torch.load(
        tmp_path / "runs" / "other" / "checkpoint.pt", weights_only=True
    )["model_spec"] | {"name": "lenet5", "kwargs": {}}
    torch.save(state, tmp_path / "runs" / "digits" / "checkpoint.pt")
    assert main(["eval", "digits"]) == 2
    assert "comes from another model" in capsys.readouterr().err
    (tmp_path / "runs" / "digits" / "checkpoint.pt").write_bytes(original)
    assert main(["eval", "missing-run"]) == 2
    assert "runs in runs/: digits, other" in capsys.readouterr().err


def test_models_and_data_commands(capsys, data_dir, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(data_dir))
    assert main(["models", "lenet*"]) == 0
    assert "61,706" in capsys.readouterr().out
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    assert "mnist          found" in out and "CNNLAB_DATA" in out


# --------------------------------------------------------- resume after a kill, and DDP on CPU


def _env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "CNNLAB_DATA": str(data_dir), "PYTHONUNBUFFERED": "1"}


RESUME_ARGS = [
    "--model",
    "fashion_mlp",
    "--dataset",
    "fashion-mnist",
    "--train-subset",
    "30000",
    "--test-subset",
    "2000",
    "--epochs",
    "5",
    "--batch-size",
    "100",
    "--augment",
    "--seed",
    "7",
]  # dropout and random crops: the RNG state must come back exactly


def test_killed_run_resumes_to_the_same_metrics(tmp_path, monkeypatch, data_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNLAB_DATA", str(data_dir))
    assert cli(*RESUME_ARGS, "--name", "straight") == 0

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cnnlab",
            "train",
            "--no-progress",
            *RESUME_ARGS,
            "--name",
            "killed",
        ],
        # as many threads as this process trains with: the sums come out bit for bit alike
        env={**_env(data_dir), "OMP_NUM_THREADS": str(torch.get_num_threads())},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed = tmp_path / "runs" / "killed"
    deadline = time.monotonic() + 120
    while not (killed / "metrics.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = run_folder.load_checkpoint(killed / "checkpoint.pt")["epoch"]
    assert 1 <= done < 5, "the kill must land mid-run"
    assert not (killed / "curves.png").exists()

    assert main(["train", "--resume", "killed", "--no-progress"]) == 0
    assert metrics(killed) == metrics(tmp_path / "runs" / "straight")
    assert main(["train", "--resume", "killed", "--no-progress"]) == 2  # nothing left to do


def test_ddp_two_cpu_processes_match_one(tmp_path, monkeypatch, data_dir):
    args = [
        "--model",
        "lenet5",
        "-O",
        "modern=true",
        "--dataset",
        "mnist",
        "--train-subset",
        "8000",
        "--test-subset",
        "2000",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--device",
        "cpu",
    ]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNLAB_DATA", str(data_dir))
    assert cli(*args, "--name", "single") == 0
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            "-m",
            "cnnlab",
            "train",
            "--no-progress",
            *args,
            "--name",
            "ddp",
        ],
        env={**_env(data_dir), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("test accuracy") == 1  # only rank 0 reports
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp", "single"]
    single, ddp = metrics(tmp_path / "runs" / "single"), metrics(tmp_path / "runs" / "ddp")
    # each step sees the same 64 images split 32 + 32, and DDP averages the two gradients:
    # the runs differ only by floating-point summation order
    for a, b in zip(single, ddp):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-2)
        assert b["test_acc"] == pytest.approx(a["test_acc"], abs=0.01)
    assert ddp[-1]["test_acc"] > 0.9


@pytest.mark.parametrize("options", [{"channels_last": True}, {"amp": "bf16"}])
def test_cpu_runs_of_the_gpu_options_still_learn(options):
    torch.manual_seed(0)
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    model = create_model("lenet5", input_size=8, modern=True)
    result = fit(model, (train, test), TrainConfig(epochs=6, progress=False, **options))
    assert result.test_accuracy > 0.85


def test_fp16_on_the_cpu_is_explained():
    model = create_model("lenet5", input_size=8)
    data = (load_dataset("digits", "train"), load_dataset("digits", "test"))
    with pytest.raises(Exception, match="--amp fp16 on device 'cpu': fp16 autocast needs a CUDA"):
        fit(model, data, TrainConfig(amp="fp16", progress=False))


def test_resume_can_extend_a_finished_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli("--epochs", "2", "--name", "short") == 0
    assert main(["train", "--resume", "short", "--epochs", "1", "--no-progress"]) == 2
    assert "already finished 2 epochs" in capsys.readouterr().err
    assert main(["train", "--resume", "runs/short", "--epochs", "3", "--no-progress"]) == 0
    assert [row["epoch"] for row in metrics(tmp_path / "runs" / "short")] == [1, 2, 3]


# ------------------------------------------------------- failures keep what was there before


class _Poisoned(torch.nn.Module):
    """A registered model whose output turns to NaN from optimizer step ``after`` on."""

    def __init__(self, inner: torch.nn.Module, after: int) -> None:
        super().__init__()
        self.inner, self.after, self.calls = inner, after, 0
        self.cnnlab_spec = inner.cnnlab_spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                out = out * float("nan")
        return out


def _poison(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    from cnnlab.runs import start as experiment

    build = experiment.build_model
    monkeypatch.setattr(experiment, "build_model", lambda *a: _Poisoned(build(*a), after))


def test_overwrite_that_fails_before_its_first_checkpoint_restores_the_old_run(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert cli("--epochs", "1", "--name", "digits") == 0
    old = {p.name: p.read_bytes() for p in (tmp_path / "runs" / "digits").iterdir()}
    _poison(monkeypatch, after=0)  # NaN from the first step: epoch 1 never completes
    capsys.readouterr()
    assert cli("--epochs", "2", "--name", "digits", "--overwrite") == 2
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and "nothing was saved" in err, err
    assert len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "runs" / "digits").iterdir()} == old
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["digits"]  # no leftovers


def test_a_run_that_diverges_later_keeps_its_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    steps_per_epoch = 1437 // 64  # the digits training split, batch 64, last batch dropped
    _poison(monkeypatch, after=steps_per_epoch + 3)  # NaN inside epoch 2
    assert cli("--epochs", "3", "--name", "nan") == 2
    err = capsys.readouterr().err
    assert "epoch 2, step" in err and "epoch 1" in err and "Lower --lr" in err, err
    state = run_folder.load_checkpoint(tmp_path / "runs" / "nan" / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert [row["epoch"] for row in metrics(tmp_path / "runs" / "nan")] == [1]


def test_a_new_run_that_fails_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _poison(monkeypatch, after=0)
    assert cli("--epochs", "1") == 2
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_resume_removes_temporaries_of_a_run_killed_mid_write(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli("--epochs", "1", "--name", "short") == 0
    run = tmp_path / "runs" / "short"
    stale = run / ".checkpoint.pt.999999.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert main(["train", "--resume", "short", "--epochs", "2", "--no-progress"]) == 0
    assert not stale.exists()
    assert f"removed {stale.relative_to(tmp_path)}" in capsys.readouterr().out
    assert [row["epoch"] for row in metrics(run)] == [1, 2]


def test_help_shows_each_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    assert "total epochs (with --resume: raise the run's total) (default: 30)" in text


def _torchrun(ranks: int, port: int, args: list[str], data_dir: Path):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={ranks}",
            f"--master_port={port}",
            "-m",
            "cnnlab",
            "train",
            "--no-progress",
            "--device",
            "cpu",
            "--epochs",
            "1",
            *args,
        ],
        env={**_env(data_dir), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ddp_user_errors_stop_every_rank_in_one_line(tmp_path, monkeypatch, data_dir):
    monkeypatch.chdir(tmp_path)
    uneven = _torchrun(2, 29541, ["--batch-size", "63"], data_dir)
    assert uneven.returncode != 0
    errors = [line for line in uneven.stderr.splitlines() if "cnnlab train: error:" in line]
    assert len(errors) == 1 and "--batch-size 63" in errors[0] and "multiple of 2" in errors[0]
    assert "/cnnlab/" not in uneven.stderr  # no traceback through cnnlab on any rank
    assert "exitcode  : 2" in uneven.stderr  # the failing rank exits with the user-error code
    assert not (tmp_path / "runs").exists()

    assert cli("--epochs", "1", "--name", "taken") == 0  # rank 0 alone finds the name taken
    taken = _torchrun(2, 29542, ["--batch-size", "64", "--name", "taken"], data_dir)
    assert taken.returncode != 0
    assert "already exists" in taken.stderr
    assert "gloo" not in taken.stderr.lower() and "/cnnlab/" not in taken.stderr


def test_ddp_on_three_ranks_evaluates_any_batch(tmp_path, monkeypatch, data_dir):
    monkeypatch.chdir(tmp_path)
    done = _torchrun(3, 29543, ["--batch-size", "63", "--name", "three"], data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Grad strides" not in done.stderr
    # the 360 test digits were each evaluated once, split 120 x 3 in batches of 167 per rank
    state = run_folder.load_checkpoint(tmp_path / "runs" / "three" / "checkpoint.pt")
    history = state["history"][0]
    assert 0.3 < history["test_acc"] <= 1.0
    assert done.stdout.count("test accuracy") == 1
