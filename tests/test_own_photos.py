"""Your own photos: an image folder of mixed sizes is resized as it is read (shorter side, then
the centre), one too big for memory streams through ImageFolder + DataLoader, ImageDataset
feeds a DataLoader, and predict/show keep a photo's aspect ratio unless --squash."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cnnlab.cli import main
from cnnlab.data import ImageDataset, StreamedImages, load_dataset
from cnnlab.images import resize_and_crop
from cnnlab.runs.load import evaluate_run, load_run, read_image

SOURCES = {"cat": ("chelsea.png", "astronaut.png"), "mug": ("coffee.png", "rocket.jpg")}


def photo_folder(data_dir: Path, root: Path, train: int = 8, test: int = 3) -> Path:
    """``root/{train,test}/{cat,mug}/``: random crops of real photos ($CNNLAB_DATA/photos),
    each scaled to its own size and aspect ratio (PNG and JPEG)."""
    rng = random.Random(0)
    for split, count in (("train", train), ("test", test)):
        for name, sources in SOURCES.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                with Image.open(data_dir / "photos" / sources[i % 2]) as photo:
                    photo = photo.convert("RGB")
                    w, h = photo.size
                    cw, ch = rng.randint(w // 2, w), rng.randint(h // 2, h)
                    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
                    scale = rng.uniform(0.08, 0.25)
                    crop = photo.crop((x, y, x + cw, y + ch))
                    crop = crop.resize((max(12, int(cw * scale)), max(12, int(ch * scale))))
                    crop.save(folder / f"{i:02d}.{'jpg' if i % 3 == 0 else 'png'}")
    return root


def train(*args: str) -> int:
    return main(["train", "--no-progress", "--dataset", "imagefolder", *args])


def metrics(run: Path) -> list[dict[str, float]]:
    with (run / "metrics.csv").open() as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def test_a_folder_of_photos_of_mixed_sizes_trains_resized(data_dir, tmp_path, capsys):
    folder = photo_folder(data_dir, tmp_path / "photos")
    sizes = {Image.open(p).size for p in folder.rglob("*.*g")}
    assert len(sizes) > 10  # really mixed: sizes and aspect ratios

    args = ["--data-dir", str(folder), "--epochs", "1", "--batch-size", "4"]
    assert train(*args, "--image-size", "32", "--runs-dir", str(tmp_path / "runs")) == 0
    err = capsys.readouterr().err
    assert "resized: shorter side to 32 (bilinear, antialiased), centre-cropped to 32x32" in err
    (row,) = metrics(tmp_path / "runs" / "lenet5-imagefolder")
    assert math.isfinite(row["train_loss"]) and 0 <= row["test_acc"] <= 1

    # each image is its file's shorter side resized to 32 and its centre kept, not squashed
    data = load_dataset("imagefolder", "train", root=folder, image_size=32)
    assert data.images.shape == (16, 3, 32, 32) and data.classes == ["cat", "mug"]
    with Image.open(folder / "train" / "cat" / "01.png") as photo:
        expected, note = resize_and_crop(photo.convert("RGB"), 32)
    assert "centre-cropped to 32x32" in note
    pixels = torch.from_numpy(np.array(expected)).permute(2, 0, 1)
    assert torch.equal(data[1][0], pixels)
    # the decoded cache is per size: another size is decoded again, not the 32 px copy
    assert load_dataset("imagefolder", "train", root=folder, image_size=20).image_size == 20


def test_mixed_sizes_without_image_size_say_how_to_fix_it(data_dir, tmp_path, capsys):
    folder = photo_folder(data_dir, tmp_path / "photos", train=2, test=1)
    assert train("--data-dir", str(folder), "--runs-dir", str(tmp_path / "runs")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--image-size N" in err
    first, second = (
        Image.open(folder / "train" / "cat" / f"0{i}.{e}").size for i, e in ((0, "jpg"), (1, "png"))
    )
    assert f"{first[0]}x{first[1]}" in err and f"{second[0]}x{second[1]}" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_stream_is_refused_for_a_built_in_data_set(capsys, tmp_path):
    assert main(["train", "--dataset", "mnist", "--stream", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--stream" in err and "imagefolder" in err


def test_a_folder_larger_than_memory_streams_trains_and_resumes(
    data_dir, tmp_path, capsys, monkeypatch
):
    folder = photo_folder(data_dir, tmp_path / "photos")
    runs = str(tmp_path / "runs")
    args = ["--data-dir", str(folder), "--image-size", "24", "--batch-size", "4", "--augment"]
    args += ["--runs-dir", runs, "--seed", "3", "--schedule", "none"]  # same rate at any length
    # --stream: read from disk, never held in memory
    assert train(*args, "--stream", "--epochs", "2", "--name", "flag") == 0
    assert "note: streamed: 16 image files" in capsys.readouterr().err
    # the decoded images (22 files x 3 x 24 x 24 bytes) over the limit: streamed by itself;
    # killed after its first epoch and resumed, it trains as the straight run did
    monkeypatch.setenv("CNNLAB_STREAM_ABOVE_BYTES", str(22 * 3 * 24 * 24 - 1))
    assert train(*args, "--epochs", "1", "--name", "auto") == 0
    assert "note: streamed" in capsys.readouterr().err
    assert main(["train", "--resume", "auto", "--epochs", "2", "--runs-dir", runs]) == 0
    straight, resumed = metrics(Path(runs) / "flag"), metrics(Path(runs) / "auto")
    assert len(straight) == len(resumed) == 2
    for a, b in zip(straight, resumed):
        assert math.isfinite(a["train_loss"]) and 0 <= a["test_acc"] <= 1
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["test_acc"] == b["test_acc"] and a["test_loss"] == pytest.approx(b["test_loss"])
    # the run's own evaluation streams its test split and gets the trainer's figures
    trained = load_run("auto", Path(runs))
    assert isinstance(trained.test_split(), StreamedImages)
    result = evaluate_run(trained)
    assert result.images == 6 and result.accuracy == pytest.approx(resumed[-1]["test_acc"])
    # a limit above the folder: held in memory again
    monkeypatch.setenv("CNNLAB_STREAM_ABOVE_BYTES", str(22 * 3 * 24 * 24))
    assert isinstance(
        load_dataset("imagefolder", "test", root=folder, image_size=24, stream=None), ImageDataset
    )


def test_datasets_feed_a_dataloader(data_dir, tmp_path):
    digits = load_dataset("digits", "test")
    assert isinstance(digits, torch.utils.data.Dataset)
    image, label = digits[5]
    assert torch.equal(image, digits.images[5]) and label == int(digits.labels[5])
    batches = list(DataLoader(digits, batch_size=64))
    assert len(batches) == math.ceil(len(digits) / 64)
    images, labels = batches[1]
    assert images.dtype == torch.uint8 and images.shape == (64, 1, 8, 8)
    assert torch.equal(images, digits.images[64:128]) and torch.equal(labels, digits.labels[64:128])

    # a streamed folder reads the same pixels as the folder held in memory
    folder = photo_folder(data_dir, tmp_path / "photos", train=3, test=1)
    memory = load_dataset("imagefolder", "train", root=folder, image_size=16)
    streamed = load_dataset("imagefolder", "train", root=folder, image_size=16, stream=True)
    assert isinstance(streamed, StreamedImages) and len(streamed) == len(memory) == 6
    ((images, labels),) = DataLoader(streamed, batch_size=6, num_workers=1)
    assert torch.equal(images, memory.images) and torch.equal(labels, memory.labels)


def test_predict_and_show_keep_the_aspect_ratio_unless_squash(tmp_path, capsys):
    wide = np.zeros((30, 90, 3), np.uint8)  # red | green | blue thirds
    wide[:, :30, 0] = wide[:, 30:60, 1] = wide[:, 60:, 2] = 255
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)

    cropped, notes = read_image(path, 3, 12)
    assert notes == ["resized 90x30 to 36x12, centre-cropped to 12x12"]
    assert (cropped[0, 1] > 200).all() and (cropped[0, 0] < 50).all()  # the green centre only
    squashed, notes = read_image(path, 3, 12, squash=True)
    assert notes == ["resized 90x30 to 12x12 (squashed)"]
    assert (squashed[0, 0, :, 0] > 200).all() and (squashed[0, 2, :, -1] > 200).all()

    assert main(["predict", "lenet5", str(path), "--json"]) == 0
    assert "centre-cropped to 32x32" in capsys.readouterr().out
    assert main(["predict", "lenet5", str(path), "--squash"]) == 0
    assert "resized 90x30 to 32x32 (squashed)" in capsys.readouterr().out
    out = tmp_path / "maps.png"  # show's default (the crop) is in test_inspect's show cam
    assert main(["show", "featuremaps", "lenet5", str(path), "--out", str(out), "--squash"]) == 0
    assert "(squashed)" in capsys.readouterr().out and out.is_file()


def test_photos_of_one_size_are_cropped_like_mixed_ones_and_streamed_ones(data_dir, tmp_path):
    # one camera: every photo 60x40; --image-size crops them (never squashes), in memory and
    # streamed alike, as predict reads a photo
    root = tmp_path / "camera"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / "a" / "nested").mkdir()  # a sub-folder of a class folder is not read, either way
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(root / "a" / "nested" / "x.png")
    memory = load_dataset("imagefolder", "train", root=root, image_size=16)
    streamed = load_dataset("imagefolder", "train", root=root, image_size=16, stream=True)
    assert len(memory) == len(streamed)
    assert any("size 60x40 resized" in note for note in memory.notes)
    ((images, labels),) = DataLoader(streamed, batch_size=len(streamed))
    assert torch.equal(images, memory.images) and torch.equal(labels, memory.labels)
    first = sorted((root / memory.classes[int(memory.labels[0])]).glob("*.png"))
    with Image.open(first[0]) as photo:
        expected, _ = resize_and_crop(photo.convert("RGB"), 16)
    assert np.array_equal(memory.images[0].permute(1, 2, 0).numpy(), np.asarray(expected))


def test_views_that_need_every_image_say_so_for_a_streamed_run(data_dir, tmp_path, capsys):
    folder = photo_folder(data_dir, tmp_path / "photos", train=4, test=2)
    runs = tmp_path / "runs"
    args = ["--data-dir", str(folder), "--image-size", "16", "--stream", "--epochs", "1"]
    assert train(*args, "--batch-size", "4", "--runs-dir", str(runs), "--name", "s") == 0
    capsys.readouterr()
    for view in ("mistakes", "confusion"):
        assert main(["show", view, str(runs / "s"), "--out", str(tmp_path / f"{view}.png")]) == 2
        err = capsys.readouterr().err
        assert "is streamed from disk" in err and err.count("\n") == 1, err
