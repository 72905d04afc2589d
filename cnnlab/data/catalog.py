"""What each data set is and where its files lie: class names, split sizes, what a decoded split
must hold (:class:`Expected`), and one finder per data set that looks in one root folder and
returns what it found there (:class:`Found`: how to decode it, and what to check it against).

A new on-disk data set goes here (a :class:`DatasetSpec` in ``SPECS`` and a finder in
``finder_for``), with its file reader in ``_readers``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError, UnknownNameError
from . import _readers

SPLITS = ("train", "test")
MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_CLASSES = [
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

# ------------------------------------------------------------ what a decoded split must hold


@dataclass(frozen=True)
class Expected:
    """What one decoded split must look like; checked on what is decoded from the source and
    on every decoded cache read back.

    Attributes:
        num_classes: labels lie in ``0 .. num_classes - 1``.
        size: ``(H, W, C)`` of every image, or None for any size with 1 or 3 channels.
        count: the number of images, or None for any.
        per_class: the number of images of every class, or None for any.
        what: the split in words, for messages (``"CIFAR-10 test images"``).
        fix: how to repair a source that falls short.
        classes: class names, for messages.
    """

    num_classes: int
    size: tuple[int, int, int] | None = None
    count: int | None = None
    per_class: int | None = None
    what: str = "images"
    fix: str = "replace it with a complete copy"
    classes: tuple[str, ...] = ()

    def check(self, images: object, labels: object, where: str) -> None:
        """Raise :class:`DataError` naming ``where`` unless ``images`` (N x H x W x C uint8) and
        ``labels`` (N integers) are what this split must hold."""
        if not isinstance(labels, np.ndarray) or labels.ndim != 1 or labels.dtype.kind not in "iu":
            got = f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else "none"
            raise DataError(f"{where}: labels are {got}, expected one integer per image")
        if not isinstance(images, np.ndarray) or images.ndim != 4:
            got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else "none"
            raise DataError(f"{where}: images are {got}, expected an N x H x W x C array")
        if len(images) != len(labels):
            raise DataError(f"{where}: {len(images)} images but {len(labels)} labels")
        _readers.check_labels(labels, self.num_classes, where)
        found = np.bincount(labels, minlength=self.num_classes)
        short = [
            f"{self._name(c)} {n:,}/{self.per_class:,}"
            for c, n in enumerate(found.tolist())
            if self.per_class is not None and n != self.per_class
        ]
        if self.count is not None and len(labels) != self.count:
            listed = short and len(labels)  # with none found at all, the list says nothing
            per_class = f" (per class, found/expected: {', '.join(short)})" if listed else ""
            raise DataError(
                f"{where}: found {len(labels):,} of the {self.count:,} {self.what} expected"
                f"{per_class}; {self.fix}"
            )
        if short:
            raise DataError(
                f"{where}: {self.what} per class (found/expected) are {', '.join(short)}; "
                f"{self.fix}"
            )
        shape = images.shape[1:]
        if (
            images.dtype != np.uint8
            or (self.size is not None and shape != self.size)
            or (self.size is None and shape[-1:] not in ((1,), (3,)))
        ):
            want = "x".join(map(str, self.size)) if self.size else "H x W x (1 or 3)"
            raise DataError(
                f"{where}: images are {images.dtype} {tuple(images.shape)}, expected uint8 "
                f"N x {want}; {self.fix}"
            )

    def _name(self, label: int) -> str:
        return self.classes[label] if label < len(self.classes) else str(label)


def _full_split(
    dataset: str,
    classes: list[str],
    size: tuple[int, int, int],
    counts: dict[str, int],
    balanced: bool,
    fix: str,
) -> Callable[[str], Expected]:
    def expected(split: str) -> Expected:
        count = counts[split]
        return Expected(
            len(classes),
            size,
            count,
            count // len(classes) if balanced else None,
            f"{dataset} {split} images",
            fix,
            tuple(classes),
        )

    return expected


# ------------------------------------------------------------------- one finder per data set
# A finder checks one root and returns what it found there, or None.


class Found(NamedTuple):
    decode: Callable[[], tuple[np.ndarray, np.ndarray]]
    source: Path  # the file or folder read (and beside which the decoded cache goes)
    key: str  # what is decoded from it, for the cache's name
    expected: Expected
    inputs: tuple[Path, ...] = ()  # every file the decode reads (folders: all files in them)


def _idx_finder(
    title: str,
    folders: tuple[str, ...],
    side: int,
    counts: dict[str, int],
    classes: list[str],
    balanced: bool,
):
    def find(root: Path, split: str) -> Found | None:
        prefix = "train" if split == "train" else "t10k"
        for folder in folders:
            base = root / folder
            found = []
            for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
                candidates = [base / f"{prefix}-{kind}{ext}" for ext in ("", ".gz")]
                found.append(next((p for p in candidates if p.is_file()), None))
            if all(found):
                images_path, labels_path = found
                fix = "the files are damaged: delete them and download again (--download)"
                return Found(
                    partial(
                        _readers.read_idx_pair,
                        images_path,
                        labels_path,
                        counts[split],
                        side,
                        len(classes),
                    ),
                    images_path,
                    f"{images_path}|{labels_path}",
                    _full_split(title, classes, (side, side, 1), counts, balanced, fix)(split),
                    (images_path, labels_path),
                )
        return None

    return find


CIFAR_COUNTS = {"train": 50000, "test": 10000}
CIFAR_SUBSET_COUNTS = {"train": 4000, "test": 1000}  # first 4,000 of data_batch_1, 1,000 of test
_CIFAR_FULL = {
    "official": _full_split(
        "CIFAR-10",
        CIFAR10_CLASSES,
        (32, 32, 3),
        CIFAR_COUNTS,
        True,
        "the folder is incomplete or damaged: download cifar-10-batches-py again (--download)",
    ),
    "jpeg": _full_split(
        "CIFAR-10",
        CIFAR10_CLASSES,
        (32, 32, 3),
        CIFAR_COUNTS,
        True,
        "the JPEG set is incomplete or truncated: replace it with a complete copy of all 60,000 "
        "images (or use --data-variant subset)",
    ),
    "subset": _full_split(
        "CIFAR-10 lossless subset",
        CIFAR10_CLASSES,
        (32, 32, 3),
        CIFAR_SUBSET_COUNTS,
        False,
        "the npz is damaged: replace it with a good copy",
    ),
}


def _cifar_finder(variant: str | None):
    def find(root: Path, split: str) -> Found | None:
        order = {None: ("official", "jpeg", "subset")}.get(variant, (variant,))
        for kind in order:
            if kind == "official":
                for folder in (
                    root / "cifar10" / "cifar-10-batches-py",
                    root / "cifar-10-batches-py",
                ):
                    if (folder / "test_batch").is_file():
                        return Found(
                            partial(_readers.read_cifar_batches, folder, split),
                            folder,
                            str(folder),
                            _CIFAR_FULL["official"](split),
                            (folder,),
                        )
            if kind == "jpeg":
                tree = root / "cifar10" / "jpeg" / split
                if tree.is_dir():
                    return Found(
                        partial(_readers.read_image_folder, tree, CIFAR10_CLASSES, True),
                        tree,
                        str(tree),
                        _CIFAR_FULL["jpeg"](split),
                        (tree,),
                    )
                tar = root / "cifar10" / "cifar10-jpeg.tar"
                if tar.is_file():
                    return Found(
                        partial(_readers.read_image_tar, tar, f"jpeg/{split}", CIFAR10_CLASSES),
                        tar,
                        f"{tar}:{split}",
                        _CIFAR_FULL["jpeg"](split),
                        (tar,),
                    )
            if kind == "subset":
                npz = root / "cifar10" / "cifar10_lossless_subset.npz"
                if npz.is_file():
                    return Found(
                        partial(_readers.read_cifar_npz, npz, split),
                        npz,
                        f"{npz}:{split}",
                        _CIFAR_FULL["subset"](split),
                        (npz,),
                    )
        return None

    return find


@dataclass(frozen=True)
class DatasetSpec:
    """One data set: its class names (None: read from the image tree), whether a horizontal
    flip keeps the label, where its files are looked for (``<root>``: each root folder), how
    to get them, and torchvision's class that downloads it."""

    name: str
    classes: list[str] | None
    flip_ok: bool
    looked_for: str
    fix: str
    torchvision_class: str | None = None

    def where(self, root: Path) -> str:
        """Where its files are looked for below ``root``, in words."""
        return self.looked_for.replace("<root>", str(root))


SPECS = {
    "mnist": DatasetSpec(
        "mnist",
        MNIST_CLASSES,
        False,
        "<root>/mnist/ or <root>/MNIST/raw/ with the four idx files (train-images-idx3-ubyte[.gz]"
        ", ...)",
        "Pass download=True (CLI: --download), or place the four idx files in <root>/mnist/.",
        "MNIST",
    ),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        FASHION_CLASSES,
        False,
        "<root>/fashion-mnist/ or <root>/FashionMNIST/raw/ with the four idx files",
        "Pass download=True (CLI: --download), or place the four idx files in "
        "<root>/fashion-mnist/.",
        "FashionMNIST",
    ),
    "cifar10": DatasetSpec(
        "cifar10",
        CIFAR10_CLASSES,
        True,
        "<root>/cifar-10-batches-py/, <root>/cifar10/jpeg/<split>/, "
        "<root>/cifar10/cifar10-jpeg.tar or <root>/cifar10/cifar10_lossless_subset.npz",
        "Pass download=True (CLI: --download), or place cifar-10-batches-py/ in <root>.",
        "CIFAR10",
    ),
    "digits": DatasetSpec("digits", MNIST_CLASSES, False, "scikit-learn", "Install scikit-learn."),
    "imagefolder": DatasetSpec(
        "imagefolder",
        None,
        True,
        "<root>/<class>/*.png|jpg or <root>/<split>/<class>/*",
        "Pass root= (CLI: --data-dir) pointing at the image tree.",
    ),
}
DATASET_NAMES = tuple(SPECS)
# DATASET:N names test image N: every named data set but an image folder (no name of its own)
TEST_IMAGE_SETS = tuple(name for name in DATASET_NAMES if name != "imagefolder")
CIFAR_VARIANTS = ("official", "jpeg", "subset")

MNIST_COUNTS = {"train": 60000, "test": 10000}
_FINDERS = {
    # MNIST's classes are uneven (5,923 zeros, 6,742 ones, ...); Fashion-MNIST's are 6,000/1,000
    "mnist": _idx_finder("MNIST", ("mnist", "MNIST/raw"), 28, MNIST_COUNTS, MNIST_CLASSES, False),
    "fashion-mnist": _idx_finder(
        "Fashion-MNIST",
        ("fashion-mnist", "FashionMNIST/raw"),
        28,
        MNIST_COUNTS,
        FASHION_CLASSES,
        True,
    ),
}


def finder_for(name: str, variant: str | None = None) -> Callable[[Path, str], Found | None]:
    """The finder of an on-disk data set (not ``digits`` or ``imagefolder``): called with a
    root folder and a split, it returns what it found there or None. ``variant``: cifar10's."""
    return _FINDERS.get(name) or _cifar_finder(variant)


def spec_for(name: str, split: str) -> DatasetSpec:
    """The data set called ``name`` (any case; ``fashion`` and ``fashion_mnist`` too); an
    unknown name, or a ``split`` not in ``SPLITS``, is an error."""
    key = name.lower().replace("_", "-")
    if key in ("fashion", "fashionmnist"):
        key = "fashion-mnist"
    if key not in SPECS:
        raise UnknownNameError(f"unknown data set {name!r}; known: {', '.join(DATASET_NAMES)}")
    if split not in SPLITS:
        raise DataError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    return SPECS[key]
