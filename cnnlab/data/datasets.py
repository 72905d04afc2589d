"""`load_dataset`: every data set as one uint8 tensor of images and one int64 tensor of labels.

Where data is looked for, in order: the ``root`` argument, the ``CNNLAB_DATA`` environment
variable, then the user cache folder (``~/.cache/cnnlab/data``, or ``$XDG_CACHE_HOME``).
Decoded arrays are cached on disk beside the source (or in the user cache when the source folder
is read-only), so each data set is decoded once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..errors import DataError, UnknownNameError
from . import _readers

SPLITS = ("train", "test")
MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
DIGITS_TEST_FRACTION = 0.2  # scikit-learn's digits have no official split; 1,437 / 360
SPLIT_SEED = 0


@dataclass
class ImageDataset:
    """Images and labels of one split, held in memory.

    Attributes:
        images: ``N x C x H x W`` uint8 tensor (0-255).
        labels: ``N`` int64 tensor of class indices.
        classes: class names, indexed by label.
        name: the data set's name (``"mnist"``, ...), and ``split``: ``"train"`` or ``"test"``.
        source: the file or folder it was read from.
        flip_ok: whether a horizontal flip keeps the label (photos yes, digits no).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    split: str
    source: str
    flip_ok: bool = False
    notes: list[str] = field(default_factory=list)

    def converted(self, channels: int | None = None, size: int | None = None) -> ImageDataset:
        """The same images with ``channels`` (gray -> RGB repeats the channel; RGB -> gray is
        ITU-R 601 luma) and resized to ``size`` x ``size`` (bilinear), noted in ``notes``."""
        images, notes = self.images, list(self.notes)
        if channels is not None and channels != images.shape[1]:
            if channels == 3 and images.shape[1] == 1:
                images = images.repeat(1, 3, 1, 1)
            elif channels == 1 and images.shape[1] == 3:
                weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
                images = (images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
            else:
                raise DataError(f"cannot convert {images.shape[1]} channels to {channels}")
            notes.append(f"converted to {channels} channel(s)")
        if size is not None and size != images.shape[-1]:
            resized = torch.nn.functional.interpolate(
                images.float(), size=(size, size), mode="bilinear", align_corners=False
            )
            images = resized.round().clamp(0, 255).to(torch.uint8)
            notes.append(f"resized to {size}x{size}")
        return dataclasses.replace(self, images=images, notes=notes)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(
                f"{self.source}: images must be an N x C x H x W uint8 tensor, "
                f"got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise DataError(
                f"{self.source}: {len(self.images)} images but {len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, count: int | None, seed: int = SPLIT_SEED) -> ImageDataset:
        """A random subset of ``count`` examples (fixed by ``seed``); all when None or larger."""
        if count is None or count >= len(self):
            return self
        if count < 1:
            raise DataError(f"subset size {count}: expected a positive number of examples")
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(self), generator=generator)[:count].sort().values
        return ImageDataset(
            self.images[keep], self.labels[keep], self.classes, self.name, self.split,
            self.source, self.flip_ok, [*self.notes, f"random subset of {count} of {len(self)}"],
        )  # fmt: skip

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation of the pixels, scaled to 0..1."""
        pixels = self.images.transpose(0, 1).reshape(self.channels, -1).double() / 255.0
        return pixels.mean(dim=1).tolist(), pixels.std(dim=1).tolist()


# --------------------------------------------------------------------------- where data lives


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnnlab"


def data_roots(root: str | os.PathLike[str] | None = None) -> list[tuple[Path, str]]:
    """The folders searched for data, in order, each with where it came from."""
    if root is not None:
        return [(Path(root).expanduser(), "root argument")]
    roots = []
    if os.environ.get("CNNLAB_DATA"):
        roots.append((Path(os.environ["CNNLAB_DATA"]).expanduser(), "CNNLAB_DATA"))
    roots.append((user_cache_dir() / "data", "user cache"))
    return roots


def _missing(name: str, looked: list[str], fix: str) -> DataError:
    return DataError(f"data set {name!r} not found; looked for {'; '.join(looked)}. {fix}")


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
    dataset: str, classes: list[str], size: tuple[int, int, int], counts: dict[str, int],
    balanced: bool, fix: str,
) -> Callable[[str], Expected]:  # fmt: skip
    def expected(split: str) -> Expected:
        count = counts[split]
        return Expected(
            len(classes), size, count, count // len(classes) if balanced else None,
            f"{dataset} {split} images", fix, tuple(classes),
        )  # fmt: skip

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
    title: str, folders: tuple[str, ...], side: int, counts: dict[str, int], classes: list[str],
    balanced: bool,
):  # fmt: skip
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
                        _readers.read_idx_pair, images_path, labels_path, counts[split], side,
                        len(classes),
                    ),
                    images_path,
                    f"{images_path}|{labels_path}",
                    _full_split(title, classes, (side, side, 1), counts, balanced, fix)(split),
                    (images_path, labels_path),
                )  # fmt: skip
        return None

    return find


CIFAR_COUNTS = {"train": 50000, "test": 10000}
CIFAR_SUBSET_COUNTS = {"train": 4000, "test": 1000}  # first 4,000 of data_batch_1, 1,000 of test
_CIFAR_FULL = {
    "official": _full_split(
        "CIFAR-10", CIFAR10_CLASSES, (32, 32, 3), CIFAR_COUNTS, True,
        "the folder is incomplete or damaged: download cifar-10-batches-py again (--download)",
    ),
    "jpeg": _full_split(
        "CIFAR-10", CIFAR10_CLASSES, (32, 32, 3), CIFAR_COUNTS, True,
        "the JPEG set is incomplete or truncated: replace it with a complete copy of all 60,000 "
        "images (or use --data-variant subset)",
    ),
    "subset": _full_split(
        "CIFAR-10 lossless subset", CIFAR10_CLASSES, (32, 32, 3), CIFAR_SUBSET_COUNTS, False,
        "the npz is damaged: replace it with a good copy",
    ),
}  # fmt: skip


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
    name: str
    classes: list[str] | None
    flip_ok: bool
    looked_for: str
    fix: str
    torchvision_class: str | None = None


SPECS = {
    "mnist": DatasetSpec(
        "mnist", MNIST_CLASSES, False,
        "<root>/mnist/ or <root>/MNIST/raw/ with the four idx files (train-images-idx3-ubyte[.gz]"
        ", ...)",
        "Pass download=True (CLI: --download), or place the four idx files in <root>/mnist/.",
        "MNIST",
    ),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist", FASHION_CLASSES, False,
        "<root>/fashion-mnist/ or <root>/FashionMNIST/raw/ with the four idx files",
        "Pass download=True (CLI: --download), or place the four idx files in "
        "<root>/fashion-mnist/.",
        "FashionMNIST",
    ),
    "cifar10": DatasetSpec(
        "cifar10", CIFAR10_CLASSES, True,
        "<root>/cifar-10-batches-py/, <root>/cifar10/jpeg/<split>/, "
        "<root>/cifar10/cifar10-jpeg.tar or <root>/cifar10/cifar10_lossless_subset.npz",
        "Pass download=True (CLI: --download), or place cifar-10-batches-py/ in <root>.",
        "CIFAR10",
    ),
    "digits": DatasetSpec("digits", MNIST_CLASSES, False, "scikit-learn", "Install scikit-learn."),
    "imagefolder": DatasetSpec(
        "imagefolder", None, True, "<root>/<class>/*.png|jpg or <root>/<split>/<class>/*",
        "Pass root= (CLI: --data-dir) pointing at the image tree.",
    ),
}  # fmt: skip
DATASET_NAMES = tuple(SPECS)
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


def _check_name_split(name: str, split: str) -> DatasetSpec:
    key = name.lower().replace("_", "-")
    if key in ("fashion", "fashionmnist"):
        key = "fashion-mnist"
    if key not in SPECS:
        raise UnknownNameError(f"unknown data set {name!r}; known: {', '.join(DATASET_NAMES)}")
    if split not in SPLITS:
        raise DataError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    return SPECS[key]


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    variant: str | None = None,
) -> ImageDataset:
    """Load one split of a data set into memory.

    Args:
        name: ``mnist``, ``fashion-mnist``, ``cifar10``, ``digits`` or ``imagefolder``.
        split: ``"train"`` or ``"test"``.
        root: the data folder; else ``$CNNLAB_DATA``, else the user cache folder.
        download: fetch the files with torchvision's downloaders when they are not found.
        variant: for ``cifar10`` only: ``"official"`` (python batches), ``"jpeg"`` (the JPEG
            tree or its tar) or ``"subset"`` (the lossless 4,000/1,000 npz); the first found
            in that order when None.

    Raises:
        DataError: the data is missing or corrupt; the message names the file and the fix.
    """
    spec = _check_name_split(name, split)
    if variant is not None and (spec.name != "cifar10" or variant not in CIFAR_VARIANTS):
        raise DataError(
            f"variant {variant!r}: only cifar10 has variants ({', '.join(CIFAR_VARIANTS)})"
        )
    if spec.name == "digits":
        return _load_digits(split)
    if spec.name == "imagefolder":
        if root is None:
            raise DataError("imagefolder needs root= (CLI: --data-dir) pointing at the image tree")
        return _load_image_folder(Path(root).expanduser(), split)

    roots = data_roots(root)
    finder = _FINDERS.get(spec.name) or _cifar_finder(variant)
    found = next((f for r, _ in roots if (f := finder(r, split)) is not None), None)
    if found is None and download:
        found = finder(_download(spec, roots[0][0]), split)
    if found is None:
        looked = [f"{spec.looked_for.replace('<root>', str(r))} ({why})" for r, why in roots]
        raise _missing(spec.name, looked, spec.fix)
    source = found.source
    images, labels = _cached(spec.name, split, found)
    notes = []
    if source.suffix == ".npz":
        notes.append(f"CIFAR-10 lossless subset: {len(labels)} {split} images, not the full set")
    assert spec.classes is not None
    return ImageDataset(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(labels),
        list(spec.classes),
        spec.name,
        split,
        str(source),
        spec.flip_ok,
        notes,
    )


def _download(spec: DatasetSpec, root: Path) -> Path:
    """Fetch with torchvision into ``root`` (its own layout, which the finders accept)."""
    import torchvision.datasets

    root.mkdir(parents=True, exist_ok=True)
    dataset_class = getattr(torchvision.datasets, spec.torchvision_class or "")
    print(f"downloading {spec.name} into {root} with torchvision ...", file=sys.stderr)
    try:
        for train in (True, False):
            dataset_class(root=str(root), train=train, download=True)
    except Exception as err:  # network errors come in many types
        raise DataError(
            f"downloading {spec.name} into {root} failed ({err}); check the network, or place "
            f"the files yourself: {spec.looked_for.replace('<root>', str(root))}"
        ) from None
    return root


def _load_digits(split: str) -> ImageDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # 8x8 images with values 0..16 -> 0..255
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_FRACTION, random_state=SPLIT_SEED,
        stratify=labels,
    )  # fmt: skip
    keep = np.sort(train_idx if split == "train" else test_idx)
    return ImageDataset(
        torch.from_numpy(images[keep]), torch.from_numpy(labels[keep]), list(MNIST_CLASSES),
        "digits", split, "sklearn.datasets.load_digits", False,
        ["8x8 scikit-learn digits, stratified 80/20 split with seed 0"],
    )  # fmt: skip


def _load_image_folder(root: Path, split: str) -> ImageDataset:
    """``root/<split>/<class>/*`` when split folders exist, else ``root/<class>/*`` split 80/20."""
    split_folder = root / split
    tree = split_folder if split_folder.is_dir() else root
    classes = _readers.folder_classes(tree)
    if tree == root and set(classes) & set(SPLITS):
        raise DataError(
            f"{root}: has a {'/'.join(set(classes) & set(SPLITS))} folder but no {split}/"
        )
    images, labels = _cached(
        "imagefolder",
        "all",
        Found(
            partial(_readers.read_image_folder, tree, classes),
            tree,
            f"{tree}|{'|'.join(classes)}",
            Expected(
                len(classes), what="images", fix="check the image tree", classes=tuple(classes)
            ),
            (tree,),
        ),
    )
    notes = []
    if tree == root:
        generator = torch.Generator().manual_seed(SPLIT_SEED)
        order = torch.randperm(len(labels), generator=generator).numpy()
        cut = int(round(len(order) * (1 - DIGITS_TEST_FRACTION)))
        keep = np.sort(order[:cut] if split == "train" else order[cut:])
        images, labels = images[keep], labels[keep]
        notes.append(f"no {split}/ folder: random 80/20 split of {tree} with seed 0")
    return ImageDataset(
        torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(labels), classes, "imagefolder", split, str(tree), True, notes,
    )  # fmt: skip


# ---------------------------------------------------------------------- the decoded-array cache


CACHE_FORMAT = "v2"  # v2: the npz holds a stamp of its source; v1 files are never read


def _stamp(name: str, split: str, found: Found) -> str:
    """A digest of what a decoded cache is made from: the data set, split and key, and the path,
    size and modification time of every input file (all the files in an input folder)."""
    digest = hashlib.sha256(f"{name}|{split}|{found.key}|{CACHE_FORMAT}".encode())
    for item in found.inputs or (found.source,):
        for path in _files_in(item) if item.is_dir() else [item]:
            try:
                info = path.stat()
            except OSError:
                continue  # the decode names a file that is missing or unreadable
            digest.update(f"|{path}|{info.st_size}|{info.st_mtime_ns}".encode())
    return digest.hexdigest()


def _files_in(folder: Path) -> list[Path]:
    """Every file under ``folder`` (not in the cache folders), sorted."""
    files = []
    for top, folders, names in os.walk(folder):
        folders[:] = [f for f in folders if f != ".cnnlab-cache"]
        files.extend(Path(top) / name for name in names)
    return sorted(files)


def _cache_files(name: str, split: str, source: Path, stamp: str) -> list[Path]:
    filename = f"{name}-{split}-{stamp[:16]}.npz"
    folder = source if source.is_dir() else source.parent
    in_user_cache = [user_cache_dir() / "decoded" / filename]
    # Beside the source only where its folder is meant to be written: the mode bits are asked,
    # not os.access, which says yes to root even for a folder marked read-only.
    if folder.stat().st_mode & stat.S_IWUSR and os.access(folder, os.W_OK):
        return [folder / ".cnnlab-cache" / filename, *in_user_cache]
    return in_user_cache


def _read_cache(path: Path, stamp: str, expected: Expected) -> tuple[np.ndarray, np.ndarray]:
    """A decoded cache file, checked like its source; DataError says what is wrong with it."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "stamp" not in archive.files or str(archive["stamp"]) != stamp:
                raise DataError(f"{path}: made from another source (its stamp differs)")
            images, labels = archive["images"], archive["labels"]
    except DataError:
        raise
    except Exception as err:  # truncated (BadZipFile), a forged header (ValueError, MemoryError)
        raise DataError(f"{path}: unreadable ({_readers.reason(err)})") from None
    expected.check(images, labels, str(path))
    return images, labels.astype(np.int64, copy=False)


def _cached(name: str, split: str, found: Found) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``found`` once: read the decoded arrays back from the cache when a valid copy is
    there, else decode the source, check it, and write the cache (atomically, temp + rename).
    A damaged cache file is reported on stderr, removed and decoded again; it never fails."""
    stamp = _stamp(name, split, found)
    candidates = _cache_files(name, split, found.source, stamp)
    for path in candidates:
        if not path.is_file():
            continue
        try:
            return _read_cache(path, stamp, found.expected)
        except DataError as err:
            print(
                f"cnnlab: ignoring a damaged decoded cache ({err}); decoding {found.source} again",
                file=sys.stderr,
            )
            with contextlib.suppress(OSError):
                path.unlink()
    images, labels = found.decode()
    found.expected.check(images, labels, str(found.source))
    for path in candidates:
        temporary = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "wb", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
            ) as handle:
                temporary = Path(handle.name)
                np.savez(handle, images=images, labels=labels, stamp=np.array(stamp))
            os.replace(temporary, path)
            break
        except OSError:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    temporary.unlink()
            continue  # read-only source folder, full disk: try the user cache
    return images, labels


def find_datasets(root: str | os.PathLike[str] | None = None) -> list[dict[str, str]]:
    """Which data sets are found where (for ``cnnlab data``), without decoding them."""
    roots = data_roots(root)
    rows = []
    for name, spec in SPECS.items():
        row = {"dataset": name, "status": "-", "where": spec.looked_for, "root": "-"}
        if name == "digits":
            row["status"] = "found"
        elif name != "imagefolder":
            finder = _FINDERS.get(name) or _cifar_finder(None)
            hit = next(((why, f) for r, why in roots if (f := finder(r, "train"))), None)
            if hit:
                row.update(status="found", where=str(hit[1][1]), root=hit[0])
            else:
                row.update(
                    status="missing",
                    where=" | ".join(spec.looked_for.replace("<root>", str(r)) for r, _ in roots),
                )
        rows.append(row)
    return rows
