"""Image folders too big for memory: read from disk image by image (torchvision's
``ImageFolder`` finds the files), each decoded, resized and augmented in
``torch.utils.data.DataLoader`` worker processes, and handed to the trainer as uint8 batches
on its device, like :class:`~cnnlab.data.batches.BatchLoader`'s.

:func:`too_big_for_memory` decides when a folder streams: when its decoded images (files x
channels x side x side bytes) would take more than :func:`stream_limit_bytes`, a fraction of
the machine's memory (``$CNNLAB_STREAM_ABOVE_BYTES`` sets the limit in bytes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import CnnlabError, DataError
from ..images import opened, resize_and_crop
from . import _readers
from .catalog import SPLITS

STREAM_ABOVE_ENV = "CNNLAB_STREAM_ABOVE_BYTES"
MEMORY_FRACTION = 0.25  # stream when the decoded images would take more of the machine's memory
STATS_IMAGES = 500  # the images a streamed set's normalisation statistics come from
FOLDER_TEST_FRACTION = 0.2  # a folder without train/ and test/ is split 80/20 ...
FOLDER_SPLIT_SEED = 0  # ... with this seed


def split_indices(count: int, split: str) -> np.ndarray:
    """The sorted positions of ``split`` in a folder of ``count`` images without split
    folders: a random 80/20 cut with seed 0 (the same for every reader)."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(FOLDER_SPLIT_SEED))
    cut = int(round(count * (1 - FOLDER_TEST_FRACTION)))
    return np.sort((order[:cut] if split == "train" else order[cut:]).numpy())


def chosen_classes(names: list[str] | tuple[str, ...], classes: list[str], what: str) -> list[int]:
    """The labels of class ``names`` (class names, or label numbers as text) of a data set
    ``what`` with ``classes``; a name it lacks or a name given twice is a clear error."""
    wanted = []
    for name in names:
        if name in classes:
            wanted.append(classes.index(name))
        elif name.isdigit() and int(name) < len(classes):
            wanted.append(int(name))
        else:
            raise CnnlabError(
                f"--classes {','.join(names)}: {what} has no class {name!r}; its classes are "
                f"{', '.join(classes)} (or their numbers 0..{len(classes) - 1})"
            )
    if len(set(wanted)) != len(wanted):
        raise CnnlabError(
            f"--classes {','.join(names)}: a class is named twice; name each class once"
        )
    return wanted


def stream_limit_bytes() -> int:
    """Decoded sizes above this stream: ``$CNNLAB_STREAM_ABOVE_BYTES``, else a quarter of the
    machine's physical memory."""
    text = os.environ.get(STREAM_ABOVE_ENV)
    if text:
        try:
            return max(0, int(text))
        except ValueError:
            raise CnnlabError(
                f"{STREAM_ABOVE_ENV}={text!r}: expected a number of bytes, e.g. 4000000000"
            ) from None
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf: assume 8 GB
        memory = 8 * 2**30
    return int(memory * MEMORY_FRACTION)


def decoded_bytes(root: Path, size: int | None) -> int:
    """What an image folder's images take decoded: files x channels x side x side bytes (the
    first image's channels, and its width x height when no ``size`` is given)."""
    trees = [root / s for s in SPLITS if (root / s).is_dir()] or [root]
    files = [p for tree in trees for p, _ in _readers.image_files(tree, _classes(tree))]
    if not files:
        return 0
    channels = 1 if _readers.image_mode(files[0]) == "L" else 3
    if size is None:
        width, height = _readers.image_sizes(files[:1])[0][1]
        return len(files) * channels * width * height
    return len(files) * channels * size * size


def _classes(tree: Path) -> list[str]:
    return _readers.folder_classes(tree)


def too_big_for_memory(root: Path, size: int | None) -> bool:
    """Whether the image folder at ``root`` should stream (:func:`decoded_bytes` over
    :func:`stream_limit_bytes`)."""
    return decoded_bytes(root, size) > stream_limit_bytes()


def _image_folder(tree: Path, classes: list[str]) -> list[tuple[str, int]]:
    """``(file, label)`` of ``tree/<class>/*`` as torchvision's ``ImageFolder`` finds them,
    with cnnlab's class folders (hidden ones skipped) and image suffixes, and only the files
    directly inside a class folder (not its sub-folders): the files the in-memory reader takes."""
    from torchvision.datasets import ImageFolder

    class Folder(ImageFolder):
        def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
            return classes, {name: i for i, name in enumerate(classes)}

    def is_image(path: str) -> bool:  # directly in a class folder, as the in-memory reader
        found = Path(path)
        return found.suffix.lower() in _readers.IMAGE_SUFFIXES and found.parent.parent == tree

    try:
        return list(Folder(str(tree), is_valid_file=is_image, allow_empty=True).samples)
    except OSError as err:
        raise DataError(f"{tree}: cannot list the image folders ({err})") from None


def epoch_order(loader: Any) -> torch.Tensor:
    """This rank's example indices for ``loader``'s epoch: the same on every rank before the
    split (shuffled by ``seed * 1000 + epoch`` when ``shuffle``), cut to whole batches when
    ``drop_last``, then every ``world_size``-th from ``rank``. One rule for the in-memory and
    the streamed loader, so both see one order."""
    count = len(loader.labels)
    if loader.shuffle:
        generator = torch.Generator().manual_seed(loader.seed * 1000 + loader.epoch)
        order = torch.randperm(count, generator=generator)
    else:
        order = torch.arange(count)
    if loader.drop_last:
        order = order[: count // loader.batch_size * loader.batch_size]
    return order[loader.rank :: loader.world_size]


class StreamedImages(Dataset):
    """One split of an image folder, read from disk one image at a time: ``ds[i]`` is
    ``(uint8 C x H x W image, int label)``, decoded and (with ``size``) resized, shorter side
    to ``size`` and then the centre square. Has :class:`~cnnlab.data.ImageDataset`'s
    attributes and methods except ``images`` (:meth:`sample` gives a batch of them)."""

    name = "imagefolder"
    flip_ok = True

    def __init__(
        self,
        samples: list[tuple[str, int]],
        classes: list[str],
        split: str,
        source: str,
        mode: str,
        shape: tuple[int, int],
        size: int | None,
        notes: list[str],
    ) -> None:
        self.samples = list(samples)
        self.labels = torch.tensor([label for _, label in self.samples], dtype=torch.int64)
        self.classes, self.split, self.source = list(classes), split, source
        self.mode, self.shape, self.size, self.notes = mode, shape, size, list(notes)

    @classmethod
    def open(cls, root: Path, split: str, size: int | None = None) -> StreamedImages:
        """``root/<split>/<class>/*``, or ``root/<class>/*`` split 80/20 as in memory."""
        tree, classes = _readers.folder_tree(root, split, SPLITS)
        samples = _image_folder(tree, classes)
        if not samples:
            raise DataError(
                f"{tree}: no images found (looked for {', '.join(_readers.IMAGE_SUFFIXES)})"
            )
        mode = _readers.image_mode(Path(samples[0][0]))
        notes = [
            f"streamed: {len(samples)} image files of {tree} read from disk batch by batch "
            "(torchvision ImageFolder + DataLoader), not held in memory"
        ]
        if size is None:
            sizes = _readers.image_sizes(Path(path) for path, _ in samples)
            if len(sizes) > 1:
                raise _readers.mixed_sizes_error(str(tree), sizes[0], sizes[1])
            shape = sizes[0][1]
        else:
            shape = (size, size)
            notes.append(
                f"each image resized: shorter side to {size} (bilinear, antialiased), "
                f"centre-cropped to {size}x{size}"
            )
        if tree == root:
            samples = [samples[i] for i in split_indices(len(samples), split)]
            notes.append(f"no {split}/ folder: random 80/20 split of {tree} with seed 0")
        return cls(samples, classes, split, str(tree), mode, shape, size, notes)

    def _with(self, samples: list[tuple[str, int]], note: str, **changes: object) -> StreamedImages:
        values = {
            "classes": self.classes,
            "mode": self.mode,
            "shape": self.shape,
            "size": self.size,
            **changes,
        }
        return StreamedImages(
            samples,
            values["classes"],  # type: ignore[arg-type]
            self.split,
            self.source,
            values["mode"],  # type: ignore[arg-type]
            values["shape"],  # type: ignore[arg-type]
            values["size"],  # type: ignore[arg-type]
            [*self.notes, note] if note else self.notes,
        )

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    @property
    def image_size(self) -> int:
        return self.shape[0]

    @property
    def images(self) -> torch.Tensor:
        """Refused: a streamed folder is never all in memory; the views that need every image
        at once say so in one line instead of failing inside."""
        raise DataError(
            f"{self.source}: this image folder ({len(self)} images) is streamed from disk and "
            "this view needs all its images in memory; use a view that reads single images "
            "(predict, show cam or featuremaps with an image file)"
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load(
        self, index: int, generator: torch.Generator | None = None, padding: int = 0
    ) -> torch.Tensor:
        """Image ``index`` as a uint8 ``C x H x W`` tensor; with a ``generator``, randomly
        cropped after ``padding`` zero pixels (when > 0) and flipped left-right half the time."""
        path = self.samples[index][0]
        with opened(path) as image:
            picture = image.convert(self.mode)
            if self.size is not None:
                picture, _ = resize_and_crop(picture, self.size)
            if picture.size != self.shape:
                raise DataError(
                    f"{path} is {picture.size[0]}x{picture.size[1]} but the images of "
                    f"{self.source} are {self.shape[0]}x{self.shape[1]}; pass --image-size N"
                )
            array = np.asarray(picture, dtype=np.uint8).reshape(picture.height, picture.width, -1)
        tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
        if generator is not None:
            from .batches import random_crop, random_flip

            if padding:
                tensor = random_crop(tensor[None], padding, generator)[0]
            tensor = random_flip(tensor[None], generator)[0]
        return tensor

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.load(index), int(self.labels[index])

    def sample(self, count: int, seed: int = 0) -> torch.Tensor:
        """``count`` random images (fixed by ``seed``; all when fewer), as one uint8 batch."""
        picked = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return torch.stack([self.load(int(i)) for i in picked[:count]])

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation (0..1) of up to :data:`STATS_IMAGES`
        random images."""
        images = self.sample(STATS_IMAGES)
        pixels = images.transpose(0, 1).reshape(self.channels, -1).double() / 255.0
        return pixels.mean(dim=1).tolist(), pixels.std(dim=1).tolist()

    def subset(self, count: int | None, seed: int = 0) -> StreamedImages:
        """A random subset of ``count`` images, chosen as :meth:`ImageDataset.subset` does."""
        if count is None or count >= len(self):
            return self
        if count < 1:
            raise DataError(f"subset size {count}: expected a positive number of examples")
        keep = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:count]
        samples = [self.samples[int(i)] for i in keep.sort().values]
        return self._with(samples, f"random subset of {count} of {len(self)}")

    def select_classes(self, names: list[str] | tuple[str, ...]) -> StreamedImages:
        """Only the images of classes ``names``, relabelled ``0, 1, ...`` in that order."""
        wanted = chosen_classes(names, self.classes, self.name)
        relabel = {old: new for new, old in enumerate(wanted)}
        samples = [(path, relabel[label]) for path, label in self.samples if label in relabel]
        classes = [self.classes[i] for i in wanted]
        return self._with(samples, f"classes {', '.join(classes)} only", classes=classes)

    def converted(self, channels: int | None = None, size: int | None = None) -> StreamedImages:
        """Read with ``channels`` (1: gray, ITU-R 601 luma; 3: RGB) and at ``size x size``
        (shorter side, then the centre square), noted in ``notes``."""
        result = self
        if channels is not None and channels != self.channels:
            mode = "L" if channels == 1 else "RGB"
            result = result._with(result.samples, f"converted to {channels} channel(s)", mode=mode)
        if size is not None and (size, size) != result.shape:
            note = f"resized to {size}x{size} (shorter side, then the centre)"
            result = result._with(result.samples, note, size=size, shape=(size, size))
        return result


class _Augmented(Dataset):
    """``view[(index, seed)]``: image ``index`` randomly cropped and flipped by ``seed``, so the
    augmentation depends on the seed alone, never on the worker that reads it."""

    def __init__(self, images: StreamedImages, padding: int) -> None:
        self.images, self.padding = images, padding

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = key
        generator = torch.Generator().manual_seed(seed)
        image = self.images.load(index, generator, self.padding)
        return image, int(self.images.labels[index])


def default_workers() -> int:
    """DataLoader worker processes: one core is left to the training loop, at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


class StreamLoader:
    """:class:`~cnnlab.data.batches.BatchLoader` for a :class:`StreamedImages`: the same
    order of examples per epoch and DDP rank (seeded by ``seed`` and the epoch), read by a
    ``DataLoader`` with ``workers`` processes and moved to ``device`` batch by batch.

    ``augment=(padding, flip)`` crops each training image at a random offset after zero
    padding (when padding > 0) and, with ``flip``, mirrors half of them; every image's random
    draw is seeded from the epoch and its position, so a resumed run sees the same batches."""

    def __init__(
        self,
        dataset: StreamedImages,
        batch_size: int,
        shuffle: bool,
        device: torch.device | str = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        augment: tuple[int, bool] | None = None,
        workers: int | None = None,
    ) -> None:
        if batch_size < 1 or (drop_last and batch_size % world_size):
            raise ValueError(
                f"batch size {batch_size} does not split evenly over {world_size} processes; "
                f"use a multiple of {world_size}"
            )
        self.dataset, self.device = dataset, torch.device(device)
        self.labels = dataset.labels
        self.batch_size, self.local_batch = batch_size, -(-batch_size // world_size)
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.augment = augment if augment and (augment[0] or augment[1]) else None
        view: Dataset = dataset if self.augment is None else _Augmented(dataset, self.augment[0])
        workers = default_workers() if workers is None else workers
        self._loader = DataLoader(
            view,
            batch_sampler=_Batches(self),
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),  # the global RNG is left alone
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        return epoch_order(self)

    def batches(self) -> list[list]:
        """This epoch's batches of keys: indices, or ``(index, seed)`` when augmenting."""
        keys: list = self._indices().tolist()
        if self.augment is not None:
            generator = torch.Generator().manual_seed((self.seed * 1000 + self.epoch) * 64 + 1)
            seeds = torch.randint(0, 2**62, (len(self.labels),), generator=generator)
            keys = [(i, int(seeds[i])) for i in keys]
        return [keys[s : s + self.local_batch] for s in range(0, len(keys), self.local_batch)]

    def __len__(self) -> int:
        count = len(self.labels)
        if self.drop_last:
            return count // self.batch_size
        mine = len(range(self.rank, count, self.world_size))
        return -(-mine // self.local_batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        try:
            for images, labels in self._loader:
                yield (
                    images.to(self.device, non_blocking=True),
                    labels.to(self.device, non_blocking=True),
                )
        except CnnlabError as err:  # from a worker: keep the original's one line
            lines = str(err).strip().splitlines()
            raise type(err)(lines[-1].split(": ", 1)[-1] if len(lines) > 1 else lines[0]) from None


class _Batches:
    """The batch sampler of a :class:`StreamLoader`: its current epoch's batches."""

    def __init__(self, loader: StreamLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[list]:
        return iter(self.loader.batches())

    def __len__(self) -> int:
        return len(self.loader)
