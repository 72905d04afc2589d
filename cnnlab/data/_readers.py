"""Readers for the on-disk formats: idx (MNIST family), CIFAR-10 python batches, npz, JPEG/PNG
trees (plain folders or a tar). Each returns ``(images uint8 N x H x W x C, labels int64 N)``
and raises :class:`DataError` naming the file when the bytes are not what they claim."""

from __future__ import annotations

import gzip
import math
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from .._unpickle import restricted_loads
from ..errors import DataError, reason
from ..images import decoded, resize_and_crop, upright, upright_size

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# What the official CIFAR-10 python batches hold: a dict of str (or bytes) keys, lists of
# labels and file names (all built by plain pickle opcodes), and the pixels as one numpy uint8
# array, the only thing that names globals: numpy's reconstructor (always allowed),
# numpy.ndarray and numpy.dtype. Nothing else is resolved, so no code in a batch can run.
CIFAR_BATCH_PICKLE_GLOBALS = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
CIFAR_BATCH_SIZE = 10000  # images in each of data_batch_1..5 and test_batch


def _read_maybe_gzip(path: Path, max_bytes: int | None = None) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic. More than ``max_bytes``
    (after decompression) is refused without reading the rest: a gzip bomb stops there."""
    limit = -1 if max_bytes is None else max_bytes + 1
    try:
        with path.open("rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
            handle.seek(0)
            if gzipped:
                with gzip.GzipFile(fileobj=handle) as stream:
                    data = stream.read(limit)
            else:
                data = handle.read(limit)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(
            f"{path}: cannot read ({reason(err)}); the file is damaged or truncated, delete it "
            "and download it again (download=True / --download)"
        ) from None
    if max_bytes is not None and len(data) > max_bytes:
        raise DataError(
            f"{path}: holds more than the {max_bytes} bytes expected; it is not the file its "
            "name says, delete it and download it again (download=True / --download)"
        )
    return data


def read_idx(
    path: Path, expect_magic: int, expect_count: int | None, max_bytes: int | None = None
) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format), gzipped or not, and check its header.

    Header: 4-byte big-endian magic (2051 images, 2049 labels), then one 4-byte big-endian size
    per dimension, then the unsigned bytes. A file over ``max_bytes`` is refused unread.
    """
    data = _read_maybe_gzip(path, max_bytes)
    what = "images" if expect_magic == IDX_IMAGES_MAGIC else "labels"
    if len(data) < 8:
        raise DataError(
            f"{path}: {len(data)} bytes is too short for an idx {what} file; it is truncated, "
            "download it again (download=True / --download)"
        )
    magic = int.from_bytes(data[0:4], "big")
    if magic != expect_magic:
        raise DataError(
            f"{path}: idx magic number {magic}, expected {expect_magic} for an {what} file; "
            "is this the right file (train-images / train-labels / t10k-...)?"
        )
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DataError(
            f"{path}: {len(data)} bytes is too short for an idx header of {ndim} dimensions; "
            "it is truncated, download it again (download=True / --download)"
        )
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected_bytes = offset + math.prod(dims)
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
    images = read_idx(images_path, IDX_IMAGES_MAGIC, count, 16 + count * side * side)
    if images.shape[1:] != (side, side):
        raise DataError(
            f"{images_path}: images are {'x'.join(map(str, images.shape[1:]))}, expected "
            f"{side}x{side}; is this the right file?"
        )
    labels = read_idx(labels_path, IDX_LABELS_MAGIC, count, 8 + count)
    check_labels(labels, num_classes, labels_path)
    return images[..., None], labels.astype(np.int64)


def check_labels(labels: np.ndarray, num_classes: int, source: Path | str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{source}: labels range over {labels.min()}..{labels.max()}, expected "
            f"0..{num_classes - 1}; the file is corrupt or belongs to another data set"
        )


def read_cifar_batches(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's / the official ``cifar-10-batches-py`` folder (pickled dicts), read with an
    allow-list unpickler: a batch file that names anything else is refused, never run."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = folder / name
        data, batch_labels = _read_cifar_batch(path)
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    fix = "download the official cifar-10-batches-py again (download=True / --download)"
    # a real batch is about 31 MB; anything much larger is not one (and is not read into memory)
    limit = 2 * CIFAR_BATCH_SIZE * 3072
    try:
        if path.stat().st_size > limit:
            raise DataError(
                f"{path}: {path.stat().st_size} bytes is far larger than a CIFAR-10 batch "
                f"(about 31 MB); {fix}"
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} is missing from the CIFAR-10 folder; {fix}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({reason(err)}); {fix}") from None
    try:
        batch = restricted_loads(raw, CIFAR_BATCH_PICKLE_GLOBALS)
    except (
        Exception
    ) as err:  # refused globals (UnpicklingError), or damage: EOFError, ValueError...
        raise DataError(f"{path}: not a CIFAR-10 batch ({reason(err)}); {fix}") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: holds a {type(batch).__name__}, expected a dict; {fix}")
    data = batch.get("data", batch.get(b"data"))
    batch_labels = batch.get("labels", batch.get(b"labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (3072,):
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else repr(type(data))
        raise DataError(
            f"{path}: 'data' is {what}, expected a uint8 array of N x 3072 (3 x 32 x 32); {fix}"
        )
    try:
        labels = np.asarray(batch_labels)
    except Exception as err:  # labels built from arbitrary (allowed) objects
        raise DataError(
            f"{path}: 'labels' is not a list of numbers ({reason(err)}); {fix}"
        ) from None
    return data, _label_vector(labels, len(data), "'labels'", path, fix)


def read_cifar_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The lossless subset: ``x_train (N,32,32,3) uint8``, ``y_train``, ``x_test``, ``y_test``."""
    key = "train" if split == "train" else "test"
    fix = "the file is damaged or truncated: replace it with a good copy"
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, labels = archive[f"x_{key}"], archive[f"y_{key}"]
    except KeyError as err:
        raise DataError(
            f"{path}: has no array {reason(err).split(': ', 1)[-1]}; expected arrays x_{key} "
            f"and y_{key}; {fix}"
        ) from None
    except Exception as err:  # truncated: BadZipFile, EOFError; forged header: MemoryError, ...
        raise DataError(f"{path}: not a readable CIFAR-10 npz ({reason(err)}); {fix}") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(
            f"{path}: x_{key} is {images.dtype} {images.shape}, expected uint8 (N, 32, 32, 3); "
            f"{fix}"
        )
    return images, _label_vector(labels, len(images), f"y_{key}", path, fix)


def _label_vector(labels: np.ndarray, count: int, what: str, path: Path, fix: str) -> np.ndarray:
    """``labels`` as int64 if it is one integer CIFAR-10 class (0..9) per image."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != count:
        raise DataError(
            f"{path}: {what} is {labels.dtype} {labels.shape}, expected {count} integer labels "
            f"(one per image); {fix}"
        )
    check_labels(labels, 10, path)
    return labels.astype(np.int64)


def decode_image(data: bytes, name: str, mode: str, size: int | None = None) -> np.ndarray:
    """Decode one image file's bytes to an H x W x C uint8 array in ``mode`` ("L" or "RGB");
    with ``size``, resized to ``size x size`` keeping its aspect ratio (shorter side to
    ``size``, then the centre: :func:`cnnlab.images.resize_and_crop`); a camera's EXIF
    orientation applied first (:func:`cnnlab.images.upright`)."""
    with decoded(data, name) as image:
        converted = upright(image).convert(mode)
        if size is not None:
            converted, _ = resize_and_crop(converted, size)
        array = np.asarray(converted, dtype=np.uint8)
        return array.reshape(converted.height, converted.width, -1)


def mixed_sizes_error(source: str, first: tuple[str, tuple[int, int]], other: tuple) -> DataError:
    """Two images of one folder differ in size and no common size was asked for."""
    (name_a, (w_a, h_a)), (name_b, (w_b, h_b)) = other, first
    return DataError(
        f"{name_a} is {w_a}x{h_a} but {name_b} is {w_b}x{h_b}; all images of {source} must "
        "share one size: pass --image-size N (image_size=N) to resize each (shorter side to N, "
        "then the centre N x N), or resize them first"
    )


def stack_images(
    items: Iterable[tuple[str, bytes, int]],
    mode: str,
    source: str,
    allow_empty: bool = False,
    size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``(name, bytes, label)`` items into one array; every image must share one size,
    or with ``size`` each is resized to ``size x size`` (shorter side, then centre crop).
    No items is an error, or with ``allow_empty`` an empty ``0 x 0 x 0 x C`` array (for callers
    that check the count they expect and say what is missing)."""
    images, labels, first = [], [], None
    for name, data, label in items:
        image = decode_image(data, name, mode, size)
        if first is None:
            first = (name, image.shape)
        elif image.shape != first[1]:
            raise mixed_sizes_error(source, (first[0], first[1][1::-1]), (name, image.shape[1::-1]))
        images.append(image)
        labels.append(label)
    if not images:
        if allow_empty:
            channels = 1 if mode == "L" else 3
            return np.zeros((0, 0, 0, channels), np.uint8), np.zeros(0, np.int64)
        raise DataError(f"{source}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def image_sizes(files: Iterable[Path]) -> list[tuple[str, tuple[int, int]]]:
    """``(file, (width, height))`` of the first image and of the first one whose size differs
    from it, read from the file headers only (no decoding); a file that does not open is left
    to the decoder, which names it."""
    found: list[tuple[str, tuple[int, int]]] = []
    for path in files:
        try:
            with Image.open(path) as image:
                size = upright_size(image)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        if not found or (size != found[0][1]):
            found.append((str(path), size))
            if len(found) == 2:
                break
    return found


def image_mode(path: Path) -> str:
    """``"L"`` for a gray image file, else ``"RGB"``: the mode a folder is read in, after its
    first image."""
    return _mode_of(_read_file(path), str(path))


def folder_tree(root: Path, split: str, splits: tuple[str, ...]) -> tuple[Path, list[str]]:
    """The tree of one split of an image folder: ``root/<split>`` when it exists, else
    ``root`` itself (then split by the caller), and its class names."""
    split_folder = root / split
    tree = split_folder if split_folder.is_dir() else root
    classes = folder_classes(tree)
    if tree == root and set(classes) & set(splits):
        raise DataError(
            f"{root}: has a {'/'.join(set(classes) & set(splits))} folder but no {split}/"
        )
    return tree, classes


def folder_classes(folder: Path) -> list[str]:
    """Class names of an image-folder tree: its sub-folders, sorted (torchvision's rule)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; expected <folder>/<class>/*.png|jpg")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{folder}: has no class sub-folders; expected <folder>/<class>/*.png|jpg")
    return classes


def image_files(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """``(file, label)`` for the image files of ``folder/<class>/``, sorted; a missing class
    folder holds none."""
    try:
        return [
            (path, label)
            for label, name in enumerate(classes)
            if (folder / name).is_dir()
            for path in sorted((folder / name).iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
        ]
    except OSError as err:
        raise DataError(f"{folder}: cannot list the image folders ({reason(err)})") from None


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({reason(err)})") from None


def read_image_folder(
    folder: Path, classes: list[str], allow_empty: bool = False, size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``folder/<class>/*`` (gray when the first is), each resized to ``size x
    size`` (shorter side, then centre crop) when ``size`` is given."""
    files = image_files(folder, classes)
    mode = image_mode(files[0][0]) if files else "RGB"
    items = ((str(p), _read_file(p), label) for p, label in files)
    return stack_images(items, mode, str(folder), allow_empty, size)


def read_image_tar(
    tar_path: Path, prefix: str, classes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Images stored in a tar as ``<prefix>/<class>/<name>.jpg``, read without extracting.
    None there gives an empty array: the caller compares the count with what it expects."""
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
    except tarfile.ReadError as err:
        # tarfile lists every compression it tried, one line each: name the cause in one line
        why = "not a tar archive" if "could not be opened" in str(err) else reason(err)
        raise DataError(
            f"{tar_path}: not a readable tar ({why}); the file is damaged or truncated, "
            "replace it with a complete copy"
        ) from None
    except (OSError, EOFError, zlib.error, tarfile.TarError) as err:
        raise DataError(
            f"{tar_path}: not a readable tar ({reason(err)}); the file is damaged or truncated, "
            "replace it with a complete copy"
        ) from None
    return stack_images(items, "RGB", f"{tar_path}:{prefix}", allow_empty=True)


def _mode_of(data: bytes, name: str) -> str:
    with decoded(data, name) as image:
        return "L" if image.mode in ("1", "L", "I;16", "I") else "RGB"
