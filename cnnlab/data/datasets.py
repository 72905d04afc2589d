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

from ..errors import CnnlabError, DataError
from . import _readers
from ._cache import cached, user_cache_dir
from .sources import (
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
        wanted = []
        for name in names:
            if name in self.classes:
                wanted.append(self.classes.index(name))
            elif name.isdigit() and int(name) < len(self.classes):
                wanted.append(int(name))
            else:
                raise CnnlabError(
                    f"--classes {','.join(names)}: {self.name} has no class {name!r}; its "
                    f"classes are {', '.join(self.classes)} (or their numbers 0.."
                    f"{len(self.classes) - 1})"
                )
        if len(set(wanted)) != len(wanted):
            raise CnnlabError(
                f"--classes {','.join(names)}: a class is named twice; name each class once"
            )
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
    spec = spec_for(name, split)
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


def _load_digits(split: str) -> ImageDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # 8x8 images with values 0..16 -> 0..255
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=DIGITS_TEST_FRACTION,
        random_state=SPLIT_SEED,
        stratify=labels,
    )
    keep = np.sort(train_idx if split == "train" else test_idx)
    return ImageDataset(
        torch.from_numpy(images[keep]),
        torch.from_numpy(labels[keep]),
        list(MNIST_CLASSES),
        "digits",
        split,
        "sklearn.datasets.load_digits",
        False,
        ["8x8 scikit-learn digits, stratified 80/20 split with seed 0"],
    )


def _load_image_folder(root: Path, split: str) -> ImageDataset:
    """``root/<split>/<class>/*`` when split folders exist, else ``root/<class>/*`` split 80/20."""
    split_folder = root / split
    tree = split_folder if split_folder.is_dir() else root
    classes = _readers.folder_classes(tree)
    if tree == root and set(classes) & set(SPLITS):
        raise DataError(
            f"{root}: has a {'/'.join(set(classes) & set(SPLITS))} folder but no {split}/"
        )
    images, labels = cached(
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
