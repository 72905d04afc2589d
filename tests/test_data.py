"""Loading the real data sets, checking what is read, and the decoded-array cache."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.data.datasets import find_datasets
from cnnlab.errors import DataError, UnknownNameError


def test_mnist_matches_the_official_bytes(data_dir: Path):
    train = load_dataset("mnist", "train", root=data_dir)
    test = load_dataset("mnist", "test", root=data_dir)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    # the decoded pixels are the official t10k-images bytes after the 16-byte header
    raw = gzip.decompress((data_dir / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
    assert hashlib.md5(raw).hexdigest() == "2646ac647ad5339dbf082846283269ea"
    assert test.images.numpy().tobytes() == raw[16:]
    assert torch.bincount(train.labels).tolist()[:2] == [5923, 6742]  # published class counts
    mean, std = train.channel_stats()
    assert mean[0] == pytest.approx(0.1307, abs=1e-4) and std[0] == pytest.approx(0.3081, abs=1e-4)


def test_fashion_mnist_and_its_class_names(data_dir: Path):
    test = load_dataset("fashion-mnist", "test", root=data_dir)
    assert len(test) == 10000 and test.classes[9] == "Ankle boot"
    assert torch.bincount(test.labels).tolist() == [1000] * 10


def test_cifar10_lossless_subset(data_dir: Path):
    train = load_dataset("cifar10", "train", root=data_dir, variant="subset")
    assert train.images.shape == (4000, 3, 32, 32)
    with np.load(data_dir / "cifar10" / "cifar10_lossless_subset.npz") as npz:
        assert np.array_equal(train.images.permute(0, 2, 3, 1).numpy(), npz["x_train"])
    assert train.flip_ok and "subset" in train.notes[0]


def test_cifar10_jpeg_tar_read_without_extracting(data_dir: Path):
    test = load_dataset("cifar10", "test", root=data_dir, variant="jpeg")
    assert test.images.shape == (10000, 3, 32, 32)
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    # lossy JPEG of the same pictures: close to the exact subset's first test images on average
    exact = load_dataset("cifar10", "test", root=data_dir, variant="subset")
    assert test.classes == exact.classes


def test_root_resolution_prefers_argument_then_environment(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA", str(data_dir))
    assert len(load_dataset("mnist", "test")) == 10000  # found through $CNNLAB_DATA
    with pytest.raises(DataError, match="root argument"):
        load_dataset("mnist", "test", root=tmp_path)  # an explicit root is the only place looked
    rows = {row["dataset"]: row for row in find_datasets()}
    assert rows["mnist"]["status"] == "found" and rows["mnist"]["root"] == "CNNLAB_DATA"


def test_torchvision_layout_is_accepted(data_dir: Path, tmp_path: Path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        # torchvision keeps the decompressed files next to the archives
        (raw / name).write_bytes(gzip.decompress((data_dir / "mnist" / f"{name}.gz").read_bytes()))
    assert len(load_dataset("mnist", "test", root=tmp_path)) == 10000


def test_digits_split_is_stratified_and_fixed():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.images.shape[1:] == (1, 8, 8) and int(train.images.max()) == 255
    assert torch.equal(test.labels, load_dataset("digits", "test").labels)


def _copy_mnist_test(data_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(data_dir / "mnist" / name, folder / name)
    return folder


def test_truncated_file_is_named_with_the_fix(data_dir: Path, tmp_path: Path):
    folder = _copy_mnist_test(data_dir, tmp_path)
    images = folder / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(raw[:-1000]))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz.*truncated"):
        load_dataset("mnist", "test", root=tmp_path)


def test_damaged_gzip_is_named(data_dir: Path, tmp_path: Path):
    folder = _copy_mnist_test(data_dir, tmp_path)
    images = folder / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"t10k-images.*download it again"):
        load_dataset("mnist", "test", root=tmp_path)


def test_swapped_files_fail_on_the_magic_number(data_dir: Path, tmp_path: Path):
    folder = _copy_mnist_test(data_dir, tmp_path)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    images = folder / "t10k-images-idx3-ubyte.gz"
    labels_bytes = labels.read_bytes()
    labels.write_bytes(images.read_bytes())
    images.write_bytes(labels_bytes)
    with pytest.raises(DataError, match="magic number 2049, expected 2051"):
        load_dataset("mnist", "test", root=tmp_path)


def test_out_of_range_labels_are_rejected(data_dir: Path, tmp_path: Path):
    folder = _copy_mnist_test(data_dir, tmp_path)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8] = 12
    labels.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=r"labels range over 0\.\.12, expected 0\.\.9"):
        load_dataset("mnist", "test", root=tmp_path)


def test_missing_data_says_where_it_looked_and_how_to_get_it(tmp_path: Path):
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", "train", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "download=True" in message


def test_unknown_names_and_splits():
    with pytest.raises(UnknownNameError, match="known: mnist"):
        load_dataset("imagenet", "train")
    with pytest.raises(DataError, match="split 'val'"):
        load_dataset("mnist", "val")


def test_decoded_arrays_are_cached_beside_a_writable_source(data_dir: Path, tmp_path: Path):
    folder = _copy_mnist_test(data_dir, tmp_path)
    first = load_dataset("mnist", "test", root=tmp_path)
    cached = list((folder / ".cnnlab-cache").glob("mnist-test-*.npz"))
    assert len(cached) == 1
    (folder / "t10k-images-idx3-ubyte.gz").touch()  # a changed source invalidates the cache
    second = load_dataset("mnist", "test", root=tmp_path)
    assert torch.equal(first.images, second.images)
    assert len(list((folder / ".cnnlab-cache").glob("mnist-test-*.npz"))) == 2


def test_read_only_source_is_never_written(data_dir: Path, tmp_path: Path):
    folder = _copy_mnist_test(data_dir, tmp_path)
    folder.chmod(0o555)
    try:
        load_dataset("mnist", "test", root=tmp_path)
        assert not (folder / ".cnnlab-cache").exists()
    finally:
        folder.chmod(0o755)


def _image_tree(data_dir: Path, root: Path, per_class: int = 6) -> None:
    with np.load(data_dir / "cifar10" / "cifar10_lossless_subset.npz") as npz:
        x, y, names = npz["x_test"], npz["y_test"], npz["label_names"]
    for label in (0, 3):
        folder = root / str(names[label])
        folder.mkdir(parents=True)
        for i, index in enumerate(np.flatnonzero(y == label)[:per_class]):
            Image.fromarray(x[index]).save(folder / f"{i:03d}.png")


def test_imagefolder_reads_a_users_tree_exactly(data_dir: Path, tmp_path: Path):
    _image_tree(data_dir, tmp_path / "pets")
    train = load_dataset("imagefolder", "train", root=tmp_path / "pets")
    test = load_dataset("imagefolder", "test", root=tmp_path / "pets")
    assert train.classes == ["airplane", "cat"]
    assert len(train) + len(test) == 12 and train.images.shape[1:] == (3, 32, 32)
    with np.load(data_dir / "cifar10" / "cifar10_lossless_subset.npz") as npz:
        first_airplane = npz["x_test"][np.flatnonzero(npz["y_test"] == 0)[0]]
    everything = torch.cat([train.images, test.images]).permute(0, 2, 3, 1).numpy()
    assert any(np.array_equal(image, first_airplane) for image in everything)  # PNG is lossless


def test_a_phone_photo_saved_sideways_with_an_exif_tag_is_read_upright(
    data_dir: Path, tmp_path: Path
):
    """A phone stores a portrait photo as landscape pixels plus an EXIF orientation tag (6:
    turn 90 degrees clockwise to view). Each reader sees it as a viewer shows it: a single
    file, and an image folder (whose one-size check reads the headers)."""
    from cnnlab.images import opened

    cat = Image.open(data_dir / "photos" / "chelsea.png").convert("RGB")  # 451 x 300
    portrait = cat.crop((0, 0, 300, 400))  # what the camera saw: 300 wide, 400 high
    stored = portrait.transpose(Image.Transpose.ROTATE_90)  # 400 x 300 pixels on disk ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... and the tag that turns them back
    tree = tmp_path / "pets" / "train"
    for folder in ("a", "b"):
        (tree / folder).mkdir(parents=True)
    stored.save(tree / "a" / "tagged.png", exif=exif.tobytes())
    portrait.save(tree / "b" / "upright.png")
    with opened(tree / "a" / "tagged.png") as image:
        assert image.size == (300, 400)
        assert np.array_equal(np.asarray(image), np.asarray(portrait))
    both = load_dataset("imagefolder", "train", root=tmp_path / "pets")
    assert both.images.shape[1:] == (3, 400, 300)  # one size: the tag was read
    assert torch.equal(both.images[0], both.images[1])


def test_imagefolder_rejects_a_non_image_and_mixed_sizes(data_dir: Path, tmp_path: Path):
    _image_tree(data_dir, tmp_path / "a")
    (tmp_path / "a" / "cat" / "notes.png").write_text("not a picture")
    with pytest.raises(DataError, match=r"notes\.png: not a readable image"):
        load_dataset("imagefolder", "train", root=tmp_path / "a")
    _image_tree(data_dir, tmp_path / "b")
    Image.new("RGB", (40, 40)).save(tmp_path / "b" / "cat" / "big.png")
    with pytest.raises(DataError, match="must share one size"):
        load_dataset("imagefolder", "train", root=tmp_path / "b")


def test_shipped_digits_are_scikit_learns_with_its_split():
    # cnnlab ships the 8x8 digits so the default job needs no scikit-learn; they must be
    # exactly what scikit-learn's load_digits and its stratified 80/20 split give.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    train_idx, test_idx = train_test_split(
        np.arange(len(bunch.target)), test_size=0.2, random_state=0, stratify=bunch.target
    )
    expected = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    for split, index in (("train", np.sort(train_idx)), ("test", np.sort(test_idx))):
        data = load_dataset("digits", split)
        assert data.images.numpy().tobytes() == expected[index].tobytes()
        assert data.labels.tolist() == bunch.target[index].tolist()
    assert len(load_dataset("digits", "train")) == 1437


def test_default_job_imports_no_scikit_learn_or_scipy(tmp_path):
    # `pip install -e . && cnnlab train` must not need the dev extras
    code = (
        "import sys; from cnnlab.cli import main; "
        f"rc = main(['train', '--epochs', '1', '--no-progress', '--runs-dir', r'{tmp_path}']); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')); "
        "print(bad); sys.exit(rc or bool(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
