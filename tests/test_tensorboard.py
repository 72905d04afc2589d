"""`cnnlab train --tensorboard`: event files that TensorBoard reads back as the run's own
figures (metrics.csv), per step and per epoch, with the filters and the confusion matrix as
images, appended to by a resumed run without duplicates."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab import run_folder
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.train import TrainConfig, check_runtime
from cnnlab.train import tensorboard as tensorboard_log

STEPS_PER_EPOCH = 24  # 192 training images, batch 8
FLUSH_EVERY = 10  # steps between the step scalars' writes, here (50 by default)
TRAIN = [
    "train",
    "--model",
    "lenet5",
    "-O",
    "modern=true",
    "--dataset",
    "mnist",
    "--train-subset",
    "192",
    "--test-subset",
    "200",
    "--batch-size",
    "8",
    "--no-progress",
    "--tensorboard",
]


def read_events(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def scalars(events: EventAccumulator, tag: str) -> dict[int, float]:
    found = events.Scalars(tag)
    steps = [event.step for event in found]
    assert len(steps) == len(set(steps)), f"{tag}: steps logged twice {steps}"
    return {event.step: event.value for event in found}


def test_tensorboard_events_match_the_run_and_resume_appends(tmp_path, monkeypatch, data_dir):
    monkeypatch.setattr(tensorboard_log, "FLUSH_EVERY", FLUSH_EVERY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNLAB_DATA", str(data_dir))
    assert main([*TRAIN, "--epochs", "2", "--name", "tb"]) == 0
    run = tmp_path / "runs" / "tb"
    assert (run / "curves.png").is_file()  # the standard hooks still ran
    after_two = tmp_path / "checkpoint-epoch-2.pt"
    shutil.copy(run / run_folder.CHECKPOINT, after_two)
    assert main(["train", "--resume", "tb", "--epochs", "3", "--no-progress"]) == 0
    # a run killed after TensorBoard had logged epoch 3: back to the epoch-2 checkpoint, resume
    shutil.copy(after_two, run / run_folder.CHECKPOINT)
    assert main(["train", "--resume", "tb", "--epochs", "3", "--no-progress"]) == 0

    events = read_events(run / "tensorboard")
    rows = run_folder.read_metrics(run / run_folder.METRICS)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    total = 3 * STEPS_PER_EPOCH
    ends = [STEPS_PER_EPOCH * e for e in (1, 2, 3)]

    # per epoch: the values of metrics.csv at each epoch's last step
    for name in ("train_loss", "train_acc", "test_loss", "test_acc", "images_per_second"):
        logged = scalars(events, f"epoch/{name}")
        assert sorted(logged) == ends, name
        for end, row in zip(ends, rows):
            assert logged[end] == pytest.approx(row[name], rel=1e-6), (name, end)
    assert list(scalars(events, "epoch/epoch").values()) == [1, 2, 3]

    # per step: every step once; an epoch's step losses average to its training loss
    losses = scalars(events, "train/loss")
    assert sorted(losses) == list(range(1, total + 1))
    for epoch, row in enumerate(rows):
        first = epoch * STEPS_PER_EPOCH + 1
        epoch_losses = [losses[s] for s in range(first, first + STEPS_PER_EPOCH)]
        assert sum(epoch_losses) / STEPS_PER_EPOCH == pytest.approx(row["train_loss"], rel=1e-5)
    rates = scalars(events, "train/lr")
    assert sorted(rates) == list(range(1, total + 1))
    assert rates[1] == pytest.approx(1e-3 * 0.5 * (1 + 1))  # cosine from the peak lr 1e-3
    # metrics.csv's lr is the rate after the epoch: the one the next step uses
    assert rates[STEPS_PER_EPOCH + 1] == pytest.approx(rows[0]["lr"], rel=1e-6)
    assert rates[2] < rates[1] and rates[STEPS_PER_EPOCH] < rates[2]
    speed = scalars(events, "train/images_per_second")
    assert FLUSH_EVERY in speed and set(ends) <= set(speed)
    assert all(value > 0 for value in speed.values())

    # the images, once the run is done: the first convolution's filters, the confusion matrix
    images = events.Tags()["images"]
    assert "confusion_matrix" in images and "filters/features.0" in images, images
    for tag in ("confusion_matrix", "filters/features.0"):
        (last, *_) = events.Images(tag)[-1:]
        assert last.step == total
        with Image.open(io.BytesIO(last.encoded_image_string)) as picture:
            assert min(picture.size) > 100 and picture.getextrema() != ((255, 255),) * 3
    assert "config/text_summary" in events.Tags()["tensors"]  # the run's settings


def test_only_rank_0_writes_under_ddp(tmp_path, data_dir):
    args = [a for a in TRAIN if a not in ("--no-progress",)]
    args += ["--train-subset", "256", "--batch-size", "32", "--epochs", "1", "--device", "cpu"]
    # every torchrun of the suite has a port of its own: xdist runs them side by side
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
        + ["--master_port=29571", "-m", "cnnlab", *args, "--no-progress", "--name", "ddp"],
        cwd=tmp_path,
        env={**os.environ, "CNNLAB_DATA": str(data_dir), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    files = list((run / "tensorboard").iterdir())
    assert len(files) == 1 and files[0].name.startswith("events.out.tfevents"), files
    events = read_events(run / "tensorboard")
    assert sorted(scalars(events, "train/loss")) == list(range(1, 256 // 32 + 1))
    (row,) = run_folder.read_metrics(run / run_folder.METRICS)
    assert scalars(events, "epoch/test_acc") == {8: pytest.approx(row["test_acc"], rel=1e-6)}
    assert "confusion_matrix" in events.Tags()["images"]


def test_no_tensorboard_without_the_flag_and_on_from_a_resume(tmp_path, monkeypatch, data_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNLAB_DATA", str(data_dir))
    args = [a for a in TRAIN if a != "--tensorboard"]
    assert main([*args, "--train-subset", "64", "--epochs", "1", "--name", "plain"]) == 0
    run = tmp_path / "runs" / "plain"
    assert not (run / "tensorboard").exists()
    # switched on when the run is resumed: logged from there on (8 steps of 8 images an epoch)
    assert main(["train", "--resume", "plain", "--epochs", "2", "--tensorboard"]) == 0
    events = read_events(run / "tensorboard")
    assert sorted(scalars(events, "train/loss")) == list(range(9, 17))
    rows = run_folder.read_metrics(run / run_folder.METRICS)
    assert scalars(events, "epoch/test_acc") == {16: pytest.approx(rows[1]["test_acc"], rel=1e-6)}
    assert run_folder.load_checkpoint(run / run_folder.CHECKPOINT)["config"]["tensorboard"] is True


def test_tensorboard_setting_is_checked(monkeypatch):
    with pytest.raises(CnnlabError, match="tensorboard='yes'"):
        TrainConfig(tensorboard="yes")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name)
    )
    with pytest.raises(CnnlabError, match=r"pip install 'cnnlab\[tensorboard\]'"):
        check_runtime(TrainConfig(tensorboard=True, device="cpu"))
    check_runtime(TrainConfig(device="cpu"))  # without the flag the package is not needed
