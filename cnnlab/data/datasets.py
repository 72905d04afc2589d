"""`load_dataset`: every data set as one uint8 tensor of images and one int64 tensor of labels.

Where data is looked for, in order: the ``root`` argument, the ``CNNLAB_DATA`` environment
variable, then the user cache folder (``~/.cache/cnnlab/data``, or ``$XDG_CACHE_HOME``).
Decoded arrays are cached on disk beside the source (or in the user cache when the source folder
is read-only), so each data set is decoded once (``_cache``). What each data set is and where
its files lie is in ``sources``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import _readers
from ._cache import cached, user_cache_dir
from .catalog import (
    CIFAR_VARIANTS,
    DATASET_NAMES,
    MNIST_CLASSES,
    SPECS,
    SPLITS,
    DatasetSpec,
    Expected,
    Found,
    finder_for,
    spec_for,
)
from .stream import StreamedImages, chosen_classes, split_indices, too_big_for_memory

__all__ = [
    "CIFAR_VARIANTS",
    "DATASET_NAMES",
    "ImageDataset",
    "data_roots",
    "find_datasets",
    "load_dataset",
]

DIGITS_TEST_FRACTION = 0.2  # scikit-learn's digits have no official split; 1,437 / 360
SPLIT_SEED = 0


@dataclass
class ImageDataset(torch.utils.data.Dataset):
    """Images and labels of one split, held in memory; a :class:`torch.utils.data.Dataset`
    whose ``ds[i]`` is ``(uint8 C x H x W image, int label)``, as torchvision's data sets give.

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

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def sample(self, count: int, seed: int = SPLIT_SEED) -> torch.Tensor:
        """``count`` random images (fixed by ``seed``; all when fewer), as one uint8 batch."""
        picked = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return self.images[picked[:count]]

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
            self.images[keep],
            self.labels[keep],
            self.classes,
            self.name,
            self.split,
            self.source,
            self.flip_ok,
            [*self.notes, f"random subset of {count} of {len(self)}"],
        )

    def select_classes(self, names: list[str] | tuple[str, ...]) -> ImageDataset:
        """Only the images of classes ``names`` (class names, or label numbers as text),
        relabelled ``0, 1, ...`` in the order given: ``["cat", "dog"]`` makes a two-class
        data set of CIFAR-10's cats (0) and dogs (1)."""
        wanted = chosen_classes(names, self.classes, self.name)
        relabel = torch.full((len(self.classes),), -1, dtype=torch.int64)
        relabel[torch.tensor(wanted)] = torch.arange(len(wanted))
        new_labels = relabel[self.labels]
        keep = new_labels >= 0
        return ImageDataset(
            self.images[keep],
            new_labels[keep],
            [self.classes[i] for i in wanted],
            self.name,
            self.split,
            self.source,
            self.flip_ok,
            [*self.notes, f"classes {', '.join(self.classes[i] for i in wanted)} only"],
        )

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation of the pixels, scaled to 0..1."""
        pixels = self.images.transpose(0, 1).reshape(self.channels, -1).double() / 255.0
        return pixels.mean(dim=1).tolist(), pixels.std(dim=1).tolist()


# --------------------------------------------------------------------------- where data lives


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


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    variant: str | None = None,
    image_size: int | None = None,
    stream: bool | None = False,
) -> ImageDataset | StreamedImages:
    """Load one split of a data set into memory.

    Args:
        name: ``mnist``, ``fashion-mnist``, ``cifar10``, ``digits`` or ``imagefolder``.
        split: ``"train"`` or ``"test"``.
        root: the data folder; else ``$CNNLAB_DATA``, else the user cache folder.
        download: fetch the files with torchvision's downloaders when they are not found.
        variant: for ``cifar10`` only: ``"official"`` (python batches), ``"jpeg"`` (the JPEG
            tree or its tar) or ``"subset"`` (the lossless 4,000/1,000 npz); the first found
            in that order when None.
        image_size: for ``imagefolder`` only: images of mixed sizes are each resized to this
            side (shorter side, then the centre square); same-size folders are read as they
            are (:meth:`ImageDataset.converted` resizes them).
        stream: for ``imagefolder`` only: True reads the images from disk batch by batch
            (:class:`~cnnlab.data.stream.StreamedImages`), None does so when the decoded
            images would not fit in memory (:func:`~cnnlab.data.stream.too_big_for_memory`).

    Raises:
        DataError: the data is missing or corrupt; the message names the file and the fix.
    """
    spec = spec_for(name, split)
    if variant is not None and (spec.name != "cifar10" or variant not in CIFAR_VARIANTS):
        raise DataError(
            f"variant {variant!r}: only cifar10 has variants ({', '.join(CIFAR_VARIANTS)})"
        )
    if spec.name == "digits":
        return _load_digits(split)
    if spec.name == "imagefolder":
        return _load_image_tree(root, split, image_size, stream)
    if stream:
        raise DataError(f"stream: {spec.name} is held in memory; only imagefolder streams")
    return _load_catalogued(spec, split, root, download, variant)


def _load_image_tree(
    root: str | os.PathLike[str] | None, split: str, image_size: int | None, stream: bool | None
) -> ImageDataset | StreamedImages:
    """An image folder, in memory or streamed from disk when asked (or when it would not fit)."""
    if root is None:
        raise DataError("imagefolder needs root= (CLI: --data-dir) pointing at the image tree")
    if stream or (stream is None and too_big_for_memory(Path(root).expanduser(), image_size)):
        return StreamedImages.open(Path(root).expanduser(), split, image_size)
    return _load_image_folder(Path(root).expanduser(), split, image_size)


def _load_catalogued(
    spec: DatasetSpec,
    split: str,
    root: str | os.PathLike[str] | None,
    download: bool,
    variant: str | None,
) -> ImageDataset:
    """A data set of the catalog: its files found in the data roots (or downloaded), decoded
    through the cache."""
    roots = data_roots(root)
    finder = finder_for(spec.name, variant)
    found = next((f for r, _ in roots if (f := finder(r, split)) is not None), None)
    if found is None and download:
        found = finder(_download(spec, roots[0][0]), split)
    if found is None:
        looked = [f"{spec.where(r)} ({why})" for r, why in roots]
        raise _missing(spec.name, looked, spec.fix)
    source = found.source
    images, labels = cached(spec.name, split, found)
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
            f"the files yourself: {spec.where(root)}"
        ) from None
    return root


DIGITS_FILE = Path(__file__).with_name("digits.npz")


def _load_digits(split: str) -> ImageDataset:
    """The 8x8 digits shipped inside cnnlab (``digits.npz``, 45 KB): the 1,797 images of the UCI
    "Optical Recognition of Handwritten Digits" test set as scikit-learn's ``load_digits`` gives
    them (values 0..16, CC BY 4.0, Alpaydin and Kaynak 1998), with the test mask of
    ``train_test_split(test_size=0.2, random_state=0, stratify=labels)``, so the split is
    scikit-learn's without scikit-learn installed."""
    with np.load(DIGITS_FILE, allow_pickle=False) as archive:
        raw, labels, test = archive["images"], archive["labels"], archive["test"]
    # 8x8 images with values 0..16 -> 0..255
    images = np.rint(raw * (255.0 / 16.0)).astype(np.uint8)[:, None]
    keep = np.flatnonzero(test if split == "test" else ~test)
    return ImageDataset(
        torch.from_numpy(images[keep]),
        torch.from_numpy(labels[keep].astype(np.int64)),
        list(MNIST_CLASSES),
        "digits",
        split,
        "cnnlab/data/digits.npz (scikit-learn's load_digits)",
        False,
        ["8x8 digits (UCI, as scikit-learn's load_digits), stratified 80/20 split with seed 0"],
    )


def _load_image_folder(root: Path, split: str, size: int | None = None) -> ImageDataset:
    """``root/<split>/<class>/*`` when split folders exist, else ``root/<class>/*`` split 80/20;
    images of mixed sizes are resized to ``size`` (shorter side, then the centre square)."""
    tree, classes = _readers.folder_tree(root, split, SPLITS)
    sizes = _readers.image_sizes(p for p, _ in _readers.image_files(tree, classes))
    if len(sizes) > 1 and size is None:
        raise _readers.mixed_sizes_error(str(tree), sizes[0], sizes[1])
    # with --image-size, every image not already size x size is resized the one way training,
    # streaming and predict share: shorter side to size (antialiased), then the centre square
    resize = (
        size
        if size is not None and sizes and (len(sizes) > 1 or sizes[0][1] != (size, size))
        else None
    )
    images, labels = cached(
        "imagefolder",
        "all",
        Found(
            partial(_readers.read_image_folder, tree, classes, size=resize),
            tree,
            f"{tree}|{'|'.join(classes)}" + (f"|size={resize}" if resize else ""),
            Expected(
                len(classes), what="images", fix="check the image tree", classes=tuple(classes)
            ),
            (tree,),
        ),
    )
    notes = []
    if resize:
        shown = ", ".join(f"{w}x{h}" for _, (w, h) in sizes)
        kind = f"mixed sizes ({shown}, ...)" if len(sizes) > 1 else f"size {shown}"
        notes.append(
            f"images of {kind} resized: shorter side to {size} (bilinear, antialiased), "
            f"centre-cropped to {size}x{size}"
        )
    if tree == root:
        keep = split_indices(len(labels), split)
        images, labels = images[keep], labels[keep]
        notes.append(f"no {split}/ folder: random 80/20 split of {tree} with seed 0")
    return ImageDataset(
        torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(labels),
        classes,
        "imagefolder",
        split,
        str(tree),
        True,
        notes,
    )


def find_datasets(root: str | os.PathLike[str] | None = None) -> list[dict[str, str]]:
    """Which data sets are found where (for ``cnnlab data``), without decoding them."""
    roots = data_roots(root)
    rows = []
    for name, spec in SPECS.items():
        row = {"dataset": name, "status": "-", "where": spec.looked_for, "root": "-"}
        if name == "digits":
            row["status"] = "found"
        elif name != "imagefolder":
            finder = finder_for(name)
            hit = next(((why, f) for r, why in roots if (f := finder(r, "train"))), None)
            if hit:
                row.update(status="found", where=str(hit[1][1]), root=hit[0])
            else:
                row.update(status="missing", where=" | ".join(spec.where(r) for r, _ in roots))
        rows.append(row)
    return rows


def named_test_image(
    text: str, root: str | os.PathLike[str] | None = None
) -> tuple[ImageDataset, int] | None:
    """``DATASET:N`` (``mnist:1``: test image 1 of MNIST) as the test split and N, checked
    (None for any other text, such as a file name)."""
    from .catalog import TEST_IMAGE_SETS

    name, sep, index_text = text.partition(":")
    if not sep or name not in TEST_IMAGE_SETS or Path(text).exists():
        return None
    try:
        index = int(index_text)
    except ValueError:
        raise DataError(f"{text!r}: expected {name}:N with a number N, e.g. {name}:1") from None
    data = load_dataset(name, "test", root=root)
    if not 0 <= index < len(data):
        raise DataError(f"{text}: the {name} test split has images 0..{len(data) - 1}")
    return data, index
