"""Readers for the on-disk formats: idx (MNIST family), CIFAR-10 python batches, npz, JPEG/PNG
trees (plain folders or a tar). Each returns ``(images uint8 N x H x W x C, labels int64 N)``
and raises :class:`DataError` naming the file when the bytes are not what they claim."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(
            f"{path}: cannot read ({err}); the file is damaged or truncated, delete it and "
            "download it again (download=True / --download)"
        ) from None


def read_idx(path: Path, expect_magic: int, expect_count: int | None) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format), gzipped or not, and check its header.

    Header: 4-byte big-endian magic (2051 images, 2049 labels), then one 4-byte big-endian size
    per dimension, then the unsigned bytes.
    """
    data = _read_maybe_gzip(path)
    what = "images" if expect_magic == IDX_IMAGES_MAGIC else "labels"
    if len(data) < 8:
        raise DataError(f"{path}: {len(data)} bytes is too short for an idx {what} file")
    magic = int.from_bytes(data[0:4], "big")
    if magic != expect_magic:
        raise DataError(
            f"{path}: idx magic number {magic}, expected {expect_magic} for an {what} file; "
            "is this the right file (train-images / train-labels / t10k-...)?"
        )
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected_bytes = offset + int(np.prod(dims))
    if len(data) != expected_bytes:
        raise DataError(
            f"{path}: header says {'x'.join(map(str, dims))} {what} ({expected_bytes} bytes) but "
            f"the file holds {len(data)} bytes; it is truncated or corrupt, download it again"
        )
    if expect_count is not None and dims[0] != expect_count:
        raise DataError(f"{path}: holds {dims[0]} {what}, expected {expect_count}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims).copy()


def read_idx_pair(
    images_path: Path, labels_path: Path, count: int, side: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, IDX_IMAGES_MAGIC, count)
    if images.shape[1:] != (side, side):
        raise DataError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected {side}x{side}"
        )
    labels = read_idx(labels_path, IDX_LABELS_MAGIC, count)
    check_labels(labels, num_classes, labels_path)
    return images[..., None], labels.astype(np.int64)


def check_labels(labels: np.ndarray, num_classes: int, source: Path | str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{source}: labels range over {labels.min()}..{labels.max()}, expected "
            f"0..{num_classes - 1}; the file is corrupt or belongs to another data set"
        )


def read_cifar_batches(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's / the official ``cifar-10-batches-py`` folder (pickled dicts)."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = folder / name
        try:
            with path.open("rb") as handle:
                batch = pickle.load(handle, encoding="latin1")
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            batch_labels = np.asarray(batch["labels"], dtype=np.int64)
        except FileNotFoundError:
            raise DataError(
                f"{path} is missing from the CIFAR-10 folder; download it again "
                "(download=True / --download)"
            ) from None
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as err:
            raise DataError(f"{path}: not a CIFAR-10 batch ({err}); download it again") from None
        images.append(data.transpose(0, 2, 3, 1))
        labels.append(batch_labels)
    out_labels = np.concatenate(labels)
    check_labels(out_labels, 10, folder)
    return np.concatenate(images), out_labels


def read_cifar_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The lossless subset: ``x_train (N,32,32,3) uint8``, ``y_train``, ``x_test``, ``y_test``."""
    key = "train" if split == "train" else "test"
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, labels = archive[f"x_{key}"], archive[f"y_{key}"].astype(np.int64)
    except (OSError, KeyError, ValueError, zlib.error) as err:
        raise DataError(
            f"{path}: not a readable CIFAR-10 npz ({err}); expected arrays x_{key} and y_{key}"
        ) from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(
            f"{path}: x_{key} is {images.dtype} {images.shape}, expected uint8 (N, 32, 32, 3)"
        )
    if len(labels) != len(images):
        raise DataError(f"{path}: {len(images)} images but {len(labels)} labels")
    check_labels(labels, 10, path)
    return images, labels


def decode_image(data: bytes, name: str, mode: str) -> np.ndarray:
    """Decode one image file's bytes to an H x W x C uint8 array in ``mode`` ("L" or "RGB")."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert(mode), dtype=np.uint8).reshape(
                image.height, image.width, -1
            )
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        Image.DecompressionBombError,
    ) as err:
        raise DataError(f"{name}: not a readable image ({err})") from None


def stack_images(
    items: Iterable[tuple[str, bytes, int]], mode: str, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``(name, bytes, label)`` items into one array; every image must share one size."""
    images, labels, first = [], [], None
    for name, data, label in items:
        image = decode_image(data, name, mode)
        if first is None:
            first = (name, image.shape)
        elif image.shape != first[1]:
            raise DataError(
                f"{name} is {image.shape[1]}x{image.shape[0]} but {first[0]} is "
                f"{first[1][1]}x{first[1][0]}; all images of {source} must share one size "
                "(resize them first)"
            )
        images.append(image)
        labels.append(label)
    if not images:
        raise DataError(f"{source}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def folder_classes(folder: Path) -> list[str]:
    """Class names of an image-folder tree: its sub-folders, sorted (torchvision's rule)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; expected <folder>/<class>/*.png|jpg")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{folder}: has no class sub-folders; expected <folder>/<class>/*.png|jpg")
    return classes


def read_image_folder(folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    files = [
        (path, label)
        for label, name in enumerate(classes)
        for path in sorted((folder / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    mode = _mode_of(files[0][0].read_bytes(), str(files[0][0])) if files else "RGB"
    return stack_images(((str(p), p.read_bytes(), label) for p, label in files), mode, str(folder))


def read_image_tar(
    tar_path: Path, prefix: str, classes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Images stored in a tar as ``<prefix>/<class>/<name>.jpg``, read without extracting."""
    index = {name: i for i, name in enumerate(classes)}
    try:
        with tarfile.open(tar_path) as tar:
            members = sorted(
                (m for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix + "/")),
                key=lambda m: m.name,
            )
            items = []
            for member in members:
                parts = member.name[len(prefix) + 1 :].split("/")
                if len(parts) != 2 or parts[0] not in index:
                    continue
                handle = tar.extractfile(member)
                assert handle is not None
                items.append((f"{tar_path}:{member.name}", handle.read(), index[parts[0]]))
    except (OSError, tarfile.TarError) as err:
        raise DataError(f"{tar_path}: not a readable tar ({err}); download it again") from None
    return stack_images(items, "RGB", f"{tar_path}:{prefix}")


def _mode_of(data: bytes, name: str) -> str:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return "L" if image.mode in ("1", "L", "I;16", "I") else "RGB"
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{name}: not a readable image ({err})") from None
