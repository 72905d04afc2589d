"""Damaged and hostile data: crafted CIFAR batches, truncated tars and npz files, damaged decoded
caches, short idx files. Every case is a one-line DataError naming the file (or, for a damaged
cache, a notice and a fresh decode), never a traceback and never code from a file running."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

try:  # numpy 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

from test_data import _copy_mnist_test

from cnnlab.data import load_dataset
from cnnlab.data._readers import IMAGE_SUFFIXES
from cnnlab.errors import CnnlabError, DataError
from cnnlab.images import opened

CIFAR_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


# --------------------------------------------------------------- CIFAR-10 python batches


class _Python2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes what Python 2's cPickle wrote into the official ``cifar-10-batches-py`` files:
    ``str`` (here: bytes) as BINSTRING, numpy's reconstructor as ``numpy.core.multiarray``."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):
        if obj is _reconstruct:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _write_batch(path: Path, images_nhwc: np.ndarray, labels: np.ndarray) -> None:
    """An official-format batch: ``data`` N x 3072 (channel planes), ``labels`` a list."""
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [int(label) for label in labels],
        b"data": np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)).reshape(-1, 3072),
        b"filenames": [f"{i:05d}.png".encode() for i in range(len(labels))],
    }
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(batch)
    path.write_bytes(buffer.getvalue())


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_official_batches_read_a_real_format_batch(data_dir: Path, tmp_path: Path):
    # 10,000 real CIFAR-10 test pictures (decoded from the JPEG set) in the official format
    jpeg = load_dataset("cifar10", "test", root=data_dir, variant="jpeg")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    _write_batch(folder / "test_batch", jpeg.images.permute(0, 2, 3, 1).numpy(), jpeg.labels)
    test = load_dataset("cifar10", "test", root=tmp_path, variant="official")
    assert torch.equal(test.images, jpeg.images) and torch.equal(test.labels, jpeg.labels)
    with pytest.raises(DataError, match="data_batch_1 is missing") as info:
        load_dataset("cifar10", "train", root=tmp_path, variant="official")
    _one_line(info)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_crafted_batch_is_refused_and_runs_nothing(tmp_path: Path, protocol: int):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "code-ran"
    crafted = {"data": _RunsCode(marker), "labels": [0]}
    for name in ("test_batch", *(f"data_batch_{i}" for i in range(1, 6))):
        (folder / name).write_bytes(pickle.dumps(crafted, protocol=protocol))
    for split in ("train", "test"):
        with pytest.raises(DataError, match=r"test_batch|data_batch_1") as info:
            load_dataset("cifar10", split, root=tmp_path, variant="official")
        assert not marker.exists()  # the command in the file never ran
        assert "refusing to load posix.system" in _one_line(info)


def test_batch_of_the_wrong_shape_or_labels_is_refused(data_dir: Path, tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with np.load(data_dir / "cifar10" / "cifar10_lossless_subset.npz") as npz:
        x, y = npz["x_test"], npz["y_test"]
    _write_batch(folder / "test_batch", x, np.where(np.arange(len(y)) == 5, 99, y))
    with pytest.raises(DataError, match=r"test_batch: labels range over 0\.\.99, expected 0\.\.9"):
        load_dataset("cifar10", "test", root=tmp_path, variant="official")
    _write_batch(folder / "test_batch", x, y)  # real pictures, but 1,000 instead of 10,000
    with pytest.raises(DataError, match=r"found 1,000 of the 10,000 CIFAR-10 test images"):
        load_dataset("cifar10", "test", root=tmp_path, variant="official")
    (folder / "test_batch").write_bytes(pickle.dumps({"data": [1, 2, 3], "labels": [0]}))
    with pytest.raises(DataError, match=r"'data' is .*expected a uint8 array of N x 3072"):
        load_dataset("cifar10", "test", root=tmp_path, variant="official")
    (folder / "test_batch").write_bytes(pickle.dumps(np.zeros(3), protocol=2)[:-20])
    with pytest.raises(DataError, match="test_batch: not a CIFAR-10 batch") as info:
        load_dataset("cifar10", "test", root=tmp_path, variant="official")
    _one_line(info)


# --------------------------------------------------------------------- the CIFAR JPEG tar


def _truncated_tar_copy(data_dir: Path, root: Path, test_files: int, cut_inside: bool) -> Path:
    """A copy of the real tar's first bytes: ``test_files`` whole test images (its test split
    comes first), cut at the next member header or in the middle of the next image."""
    source = data_dir / "cifar10" / "cifar10-jpeg.tar"
    with tarfile.open(source) as tar:
        files = []
        for member in tar:
            if member.isfile():
                files.append(member)
            if len(files) > test_files:
                break
    following = files[test_files]
    cut = following.offset_data + following.size // 2 if cut_inside else following.offset
    (root / "cifar10").mkdir(parents=True)
    target = root / "cifar10" / "cifar10-jpeg.tar"
    with source.open("rb") as handle:
        target.write_bytes(handle.read(cut))
    return target


def test_truncated_tar_says_what_is_missing(data_dir: Path, tmp_path: Path):
    tar = _truncated_tar_copy(data_dir, tmp_path, 40, cut_inside=False)
    with pytest.raises(DataError, match="found 40 of the 10,000 CIFAR-10 test images") as info:
        load_dataset("cifar10", "test", root=tmp_path, variant="jpeg")
    message = _one_line(info)
    assert str(tar) in message and "per class" in message and "airplane 0/1,000" in message
    with pytest.raises(DataError, match="found 0 of the 50,000 CIFAR-10 train images"):
        load_dataset("cifar10", "train", root=tmp_path, variant="jpeg")
    assert not (tmp_path / "cifar10" / ".cnnlab-cache").exists()  # nothing cached from it


def test_tar_cut_inside_an_image_is_one_line(data_dir: Path, tmp_path: Path):
    tar = _truncated_tar_copy(data_dir, tmp_path, 12, cut_inside=True)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", "test", root=tmp_path, variant="jpeg")
    message = _one_line(info)
    assert message.startswith(str(tar)) and "complete copy" in message


def test_garbage_tar_is_one_line(tmp_path: Path):
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "cifar10-jpeg.tar").write_bytes(bytes(range(256)) * 20)
    with pytest.raises(DataError, match=r"cifar10-jpeg\.tar: not a readable tar \(not a tar"):
        load_dataset("cifar10", "test", root=tmp_path, variant="jpeg")


def test_incomplete_jpeg_tree_says_which_classes_are_short(data_dir: Path, tmp_path: Path):
    with np.load(data_dir / "cifar10" / "cifar10_lossless_subset.npz") as npz:
        x, y = npz["x_test"], npz["y_test"]
    from PIL import Image

    tree = tmp_path / "cifar10" / "jpeg" / "test"
    for label in (0, 3):  # two classes of ten, the other class folders missing
        (tree / CIFAR_CLASSES[label]).mkdir(parents=True)
        for i in np.flatnonzero(y == label)[:6]:
            Image.fromarray(x[i]).save(tree / CIFAR_CLASSES[label] / f"{i:04d}.png")
    (tree / "cat" / "folder.png").mkdir()  # a folder named like an image is not read
    assert ".png" in IMAGE_SUFFIXES
    with pytest.raises(DataError, match="found 12 of the 10,000 CIFAR-10 test images") as info:
        load_dataset("cifar10", "test", root=tmp_path, variant="jpeg")
    assert "airplane 6/1,000, automobile 0/1,000, bird 0/1,000, cat 6/1,000" in _one_line(info)


# ------------------------------------------------------------- the lossless subset (a source)


def _subset_copy(data_dir: Path, root: Path, **changes: np.ndarray) -> Path:
    (root / "cifar10").mkdir(parents=True)
    target = root / "cifar10" / "cifar10_lossless_subset.npz"
    with np.load(data_dir / "cifar10" / "cifar10_lossless_subset.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    np.savez(target, **{**arrays, **changes})
    return target


def test_truncated_lossless_subset_names_the_file_and_the_fix(data_dir: Path, tmp_path: Path):
    (tmp_path / "cifar10").mkdir()
    target = tmp_path / "cifar10" / "cifar10_lossless_subset.npz"
    source = data_dir / "cifar10" / "cifar10_lossless_subset.npz"
    target.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", "test", root=tmp_path, variant="subset")
    message = _one_line(info)
    assert str(target) in message and "not a readable CIFAR-10 npz" in message
    assert "replace it with a good copy" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda x, y: {"y_test": np.where(np.arange(len(y)) == 7, 99, y)}, r"0\.\.99"),
        (lambda x, y: {"x_test": x[:, :, :, 0]}, r"x_test is uint8 \(1000, 32, 32\)"),
        (lambda x, y: {"x_test": x[:500], "y_test": y[:500]}, "found 500 of the 1,000"),
        (lambda x, y: {"y_test": y[:10]}, "expected 1000 integer labels"),
    ],
    ids=["label-99", "3-d-images", "short", "labels-short"],
)
def test_damaged_lossless_subset_is_refused(data_dir: Path, tmp_path: Path, change, expected):
    with np.load(data_dir / "cifar10" / "cifar10_lossless_subset.npz") as npz:
        changes = change(npz["x_test"], npz["y_test"])
    _subset_copy(data_dir, tmp_path, **changes)
    with pytest.raises(DataError, match=expected) as info:
        load_dataset("cifar10", "test", root=tmp_path, variant="subset")
    _one_line(info)


# ------------------------------------------------------------------ the decoded-array cache


def _rewrite(path: Path, **changes: np.ndarray) -> None:
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    with path.open("wb") as handle:
        np.savez(handle, **{**arrays, **changes})


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


DAMAGES = {
    "truncated": _truncate,
    "empty": lambda path: path.write_bytes(b""),
    "label-99": lambda path: _rewrite(path, labels=np.full(10000, 99, dtype=np.int64)),
    "3-d-images": lambda path: _rewrite(path, images=np.zeros((10000, 28, 28), np.uint8)),
    "0-d-images": lambda path: _rewrite(path, images=np.array(5, np.uint8)),
    "one-image-short": lambda path: _rewrite(
        path, images=np.zeros((9999, 28, 28, 1), np.uint8), labels=np.zeros(9999, np.int64)
    ),
    "another-source": lambda path: _rewrite(path, stamp=np.array("0" * 64)),
    "no-stamp": lambda path: _rewrite_without_stamp(path),
    "float-images": lambda path: _rewrite(path, images=np.zeros((10000, 28, 28, 1), np.float32)),
}


def _rewrite_without_stamp(path: Path) -> None:
    with np.load(path) as archive:
        images, labels = archive["images"], archive["labels"]
    with path.open("wb") as handle:
        np.savez(handle, images=images, labels=labels)


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_cache_beside_the_source_is_decoded_again(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
):
    folder = _copy_mnist_test(data_dir, tmp_path)
    first = load_dataset("mnist", "test", root=tmp_path)
    (cache,) = (folder / ".cnnlab-cache").glob("mnist-test-*.npz")
    DAMAGES[damage](cache)
    capsys.readouterr()
    again = load_dataset("mnist", "test", root=tmp_path)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    notice = capsys.readouterr().err
    assert "ignoring a damaged decoded cache" in notice and str(cache) in notice
    assert notice.count("\n") == 1
    # the cache was rewritten whole: the next load reads it quietly
    load_dataset("mnist", "test", root=tmp_path)
    assert capsys.readouterr().err == ""
    assert [p.name for p in (folder / ".cnnlab-cache").iterdir()] == [cache.name]


def test_damaged_cache_in_the_user_cache_is_decoded_again(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    # A read-only source of its own, whatever $CNNLAB_DATA's permissions are: the cache asks the
    # folder's mode bits (root included), so the decoded copy must go to the user cache.
    folder = tmp_path / "source" / "cifar10"
    folder.mkdir(parents=True)
    shutil.copy(data_dir / "cifar10" / "cifar10_lossless_subset.npz", folder)
    folder.chmod(0o555)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    try:
        first = load_dataset("cifar10", "test", root=tmp_path / "source", variant="subset")
        assert not (folder / ".cnnlab-cache").exists()
        (cache,) = (tmp_path / "xdg" / "cnnlab" / "decoded").glob("cifar10-test-*.npz")
        _rewrite(cache, labels=np.full(1000, 99, dtype=np.int64))
        again = load_dataset("cifar10", "test", root=tmp_path / "source", variant="subset")
    finally:
        folder.chmod(0o755)
    assert torch.equal(again.labels, first.labels)
    assert "labels range over 99..99" in capsys.readouterr().err


def test_cache_is_written_atomically(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    folder = _copy_mnist_test(data_dir, tmp_path)

    def disk_full(handle, **arrays):
        handle.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    test = load_dataset("mnist", "test", root=tmp_path)  # decoded, just not cached
    assert len(test) == 10000
    leftovers = [*(folder / ".cnnlab-cache").iterdir(), *(tmp_path / "xdg").rglob("*.*")]
    assert leftovers == []  # no partial cache, no temporary file


def test_cache_follows_a_changed_labels_file(data_dir: Path, tmp_path: Path):
    folder = _copy_mnist_test(data_dir, tmp_path)
    load_dataset("mnist", "test", root=tmp_path)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8] = 12  # only the labels file changes: the cache must not hide it
    labels.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=r"labels range over 0\.\.12"):
        load_dataset("mnist", "test", root=tmp_path)


# ----------------------------------------------------------------------------- idx files


def test_idx_cut_inside_its_header(data_dir: Path, tmp_path: Path):
    folder = _copy_mnist_test(data_dir, tmp_path)
    images = folder / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:10]))
    with pytest.raises(DataError, match="too short for an idx header of 3 dimensions") as info:
        load_dataset("mnist", "test", root=tmp_path)
    assert str(images) in _one_line(info)


def test_idx_larger_than_its_data_set_is_not_read_whole(data_dir: Path, tmp_path: Path):
    folder = _copy_mnist_test(data_dir, tmp_path)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(labels.read_bytes())
    labels.write_bytes(gzip.compress(raw + bytes(50_000_000)))  # a small gzip of 50 MB
    with pytest.raises(DataError, match=r"holds more than the 10008 bytes expected") as info:
        load_dataset("mnist", "test", root=tmp_path)
    _one_line(info)


def test_idx_labels_of_another_count(data_dir: Path, tmp_path: Path):
    folder = _copy_mnist_test(data_dir, tmp_path)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(labels.read_bytes())
    header = raw[:4] + (5000).to_bytes(4, "big")
    labels.write_bytes(gzip.compress(header + raw[8:5008]))
    with pytest.raises(DataError, match="holds 5000 labels, expected 10000"):
        load_dataset("mnist", "test", root=tmp_path)


# ------------------------------------------------------------------------ images.opened


def test_opened_passes_the_callers_own_errors_through(data_dir: Path):
    photo = data_dir / "photos" / "chelsea.png"
    with pytest.raises(OSError, match="the caller's own") as info, opened(photo) as image:
        assert image.size == (451, 300)
        raise OSError("the caller's own")
    assert not isinstance(info.value, CnnlabError)
    with pytest.raises(FileNotFoundError, match="elsewhere"), opened(photo):
        raise FileNotFoundError("elsewhere")


def test_opened_still_maps_unreadable_files(data_dir: Path, tmp_path: Path):
    cut = tmp_path / "cut.png"
    cut.write_bytes((data_dir / "photos" / "chelsea.png").read_bytes()[:5000])
    message = r"cut\.png: not an image cnnlab can read"
    with pytest.raises(CnnlabError, match=message), opened(cut):
        pass
    with pytest.raises(CnnlabError, match="no such file"), opened(tmp_path / "missing.png"):
        pass
    with pytest.raises(CnnlabError, match="is a folder"), opened(tmp_path):
        pass
