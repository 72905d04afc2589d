"""--val-split and --keep best: a stratified, seeded validation split taken from the training
images, its scores in metrics.csv, the epoch line and the curves, and best.pt."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from cnnlab import run_folder
from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.train import TrainConfig
from cnnlab.train.validation import best_epoch, keep_best, split_indices, validation_split

TIMING = ("train_seconds", "images_per_second")


def _metrics(run_dir: Path) -> list[dict[str, float]]:
    rows = run_folder.read_metrics(run_dir / run_folder.METRICS)
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


SMALL = ["--train-subset", "600", "--test-subset", "100", "--batch-size", "32"]


def _train(*args: str) -> int:
    return main(["train", "--no-progress", *SMALL, *args])


def test_split_is_stratified_seeded_disjoint_and_complete():
    train = load_dataset("digits", "train")  # 1,437 real 8x8 digits, about 144 per class
    kept, val = validation_split(train, 0.1, seed=3)
    assert val is not None and val.split == "val" and kept.split == "train"
    assert len(kept) + len(val) == len(train)
    for label in range(10):  # each class gives a tenth of its images, rounded
        in_class = int((train.labels == label).sum())
        assert int((val.labels == label).sum()) == int(0.1 * in_class + 0.5)
    keep_index, held_index = split_indices(train.labels, 0.1, seed=3)
    assert set(keep_index.tolist()).isdisjoint(held_index.tolist())
    assert sorted(keep_index.tolist() + held_index.tolist()) == list(range(len(train)))
    assert torch.equal(val.images, train.images[held_index])
    assert torch.equal(kept.labels, train.labels[keep_index])
    again = split_indices(train.labels, 0.1, seed=3)[1]
    other = split_indices(train.labels, 0.1, seed=4)[1]
    assert torch.equal(again, held_index) and not torch.equal(other, held_index)
    assert validation_split(train, 0.0, seed=3) == (train, None)


def test_a_split_keeps_one_image_per_class_to_train_on_and_refuses_an_empty_one():
    labels = torch.tensor([0, 0, 0, 0, 1])  # class 1 has a single image: it stays in training
    kept, held = split_indices(labels, 0.5, seed=0)
    assert 4 in kept.tolist() and len(held) == 2
    tiny = load_dataset("digits", "train").subset(20, seed=0)  # 1-4 per class: 1% rounds to 0
    with pytest.raises(CnnlabError, match="--val-split 0.01"):
        validation_split(tiny, 0.01, seed=0)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"val_split": 1.0}, "val_split=1.0"),
        ({"val_split": -0.1}, "val_split=-0.1"),
        ({"keep": "best"}, "--val-split"),  # best needs a split to pick by
        ({"keep": "first", "val_split": 0.1}, "keep='first'"),
    ],
)
def test_bad_validation_settings_are_named(values, message):
    with pytest.raises(CnnlabError, match=message) as error:
        TrainConfig(**values)
    assert "\n" not in str(error.value)


def test_cli_keep_best_without_val_split_is_one_line_and_writes_nothing(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert _train("--keep", "best", "--epochs", "1") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--keep" in err and "--val-split 0.1" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_keep_best_writes_best_pt_only_when_an_epoch_beats_the_earlier_ones(tmp_path):
    config = TrainConfig(val_split=0.1, keep="best")
    history: list[dict[str, float]] = []
    for epoch, accuracy in enumerate([0.5, 0.8, 0.8, 0.7], 1):
        history.append({"epoch": epoch, "val_acc": accuracy})
        state = {"epoch": epoch, "model": {}, "optimizer": {"big": 1}, "history": list(history)}
        wrote = keep_best(config, tmp_path, history, state)
        assert wrote == (epoch in (1, 2))  # a tie (epoch 3) keeps the earlier, shorter run
    best = torch.load(tmp_path / run_folder.BEST, weights_only=True)
    assert best["epoch"] == 2 == best_epoch(history) and "optimizer" not in best
    assert not keep_best(TrainConfig(val_split=0.1), tmp_path, history, state)  # keep last


def test_val_columns_only_with_a_split_and_in_the_epoch_line_and_curves(
    tmp_path, monkeypatch, capsys
):
    from cnnlab.inspect import plots
    from cnnlab.train.loop import _epoch_line

    monkeypatch.chdir(tmp_path)
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: figures.append(figure))
    assert _train("--epochs", "1", "--name", "plain") == 0
    assert _train("--epochs", "1", "--val-split", "0.2", "--name", "val") == 0
    plain, val = _metrics(tmp_path / "runs" / "plain"), _metrics(tmp_path / "runs" / "val")
    assert "val_acc" not in plain[0] and "val_loss" not in plain[0]
    assert list(val[0]) == [
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
    ]
    assert 0.1 < val[0]["val_acc"] <= 1 and val[0]["val_loss"] > 0
    line = _epoch_line({**val[0], "train_seconds": 1.0, "images_per_second": 2.0}, 1)
    assert f"val loss {val[0]['val_loss']:.4f} acc {val[0]['val_acc']:.2%}" in line
    assert "val" not in _epoch_line({**plain[0], "train_seconds": 1.0, "images_per_second": 1}, 1)
    curves = [f for f in figures if f.axes[0].get_title() == "loss"]  # plain's, then val's
    labels = [[line.get_label() for line in f.axes[1].lines] for f in curves]
    assert labels == [["train", "test"], ["train", "val", "test"]]
    # the held-out images are not trained on: the epoch trains on full batches of the rest
    raw = run_folder.read_metrics(tmp_path / "runs" / "val" / run_folder.METRICS)[0]
    subset = load_dataset("digits", "train").subset(600, seed=0)
    held = len(split_indices(subset.labels, 0.2, seed=0)[1])
    trained = raw["train_seconds"] * raw["images_per_second"]
    assert 110 <= held <= 130 and trained == pytest.approx((600 - held) // 32 * 32)


def test_keep_best_picks_the_best_epoch_survives_resume_and_eval_uses_it(
    tmp_path, monkeypatch, capsys
):
    """3 epochs straight against 2 resumed to 3 (schedule none: the total does not change the
    rates): the same metrics, validation included, so the split is the same after resume."""
    monkeypatch.chdir(tmp_path)
    common = ["--val-split", "0.2", "--keep", "best", "--schedule", "none", "--lr", "0.003"]
    assert _train(*common, "--epochs", "3", "--name", "straight") == 0
    started = ["cnnlab", "train", *common, "--epochs", "2", "--name", "resumed"]
    monkeypatch.setattr(sys, "argv", started)  # config.json records the command line
    assert _train(*common, "--epochs", "2", "--name", "resumed") == 0
    resumed = tmp_path / "runs" / "resumed"
    first = _metrics(resumed)
    assert run_folder.load_checkpoint(resumed / run_folder.BEST)["epoch"] == best_epoch(first)
    resuming = ["train", "--resume", "resumed", "--epochs", "3", "--no-progress"]
    monkeypatch.setattr(sys, "argv", ["cnnlab", *resuming])
    assert main(resuming) == 0
    history = _metrics(resumed)
    assert history == _metrics(tmp_path / "runs" / "straight")
    assert history[:2] == first
    accuracies = [row["val_acc"] for row in history]
    best = accuracies.index(max(accuracies)) + 1
    state = run_folder.load_checkpoint(resumed / run_folder.BEST)
    assert state["epoch"] == best
    last = run_folder.load_checkpoint(resumed / run_folder.CHECKPOINT)
    assert last["epoch"] == 3 and "optimizer" not in state
    record = json.loads((resumed / run_folder.CONFIG).read_text())
    assert record["command"] == started and record["resumed_with"] == [["cnnlab", *resuming]]

    from cnnlab.runs.load import load_run

    trained = load_run(resumed)  # the run's weights for use are best.pt's
    assert trained.epoch == best
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(tensor, state["model"][name])
    capsys.readouterr()
    assert main(["eval", "resumed"]) == 0
    out = capsys.readouterr().out
    assert f"after {best} epochs" in out and f"weights of best.pt: epoch {best}" in out
    assert main(["eval", "resumed", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoint"] == "best.pt"


def test_a_run_killed_before_best_pt_gets_it_on_resume(tmp_path, monkeypatch):
    """The checkpoint of the best epoch was written but best.pt not (killed in between):
    resuming writes best.pt from that checkpoint before training on."""
    monkeypatch.chdir(tmp_path)
    common = ["--val-split", "0.2", "--keep", "best", "--schedule", "none"]
    assert _train(*common, "--epochs", "1", "--name", "r") == 0
    run = tmp_path / "runs" / "r"
    (run / run_folder.BEST).unlink()  # epoch 1 is the best so far, its best.pt lost
    assert main(["train", "--resume", "r", "--epochs", "2", "--no-progress"]) == 0
    accuracies = [row["val_acc"] for row in _metrics(run)]
    assert run_folder.load_checkpoint(run / run_folder.BEST)["epoch"] == 1 + (
        accuracies[1] > accuracies[0]
    )


def test_recipes_hold_out_a_tenth_and_typed_flags_change_it():
    from cnnlab.train.recipes import RECIPES, recipe_config

    assert all(recipe.settings["val_split"] == 0.1 for recipe in RECIPES.values())
    assert TrainConfig().val_split == 0.0  # plain `cnnlab train` and the course keep none
    assert recipe_config("mnist-fast", val_split=0.0).val_split == 0.0


def test_a_streamed_image_folder_splits_the_same_way(tmp_path, data_dir):
    """A folder of real photos read from disk: the split takes file names, not images."""
    from cnnlab.data import StreamedImages

    photos = sorted(p for p in (data_dir / "photos").iterdir() if p.suffix in (".png", ".jpg"))
    for number, photo in enumerate(photos[:8]):
        folder = tmp_path / "train" / ("a" if number % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / photo.name).symlink_to(photo)
    (tmp_path / "test").symlink_to(tmp_path / "train")
    train = StreamedImages.open(tmp_path, "train", size=16)
    kept, val = validation_split(train, 0.25, seed=1)
    assert isinstance(val, StreamedImages) and val.split == "val" and len(val) == 2
    assert sorted(val.labels.tolist()) == [0, 1]  # one of each class's four
    assert sorted(kept.samples + val.samples) == sorted(train.samples)
    assert val.samples == validation_split(train, 0.25, seed=1)[1].samples
    assert tuple(val[0][0].shape) == (train.channels, 16, 16)  # it still reads its images
