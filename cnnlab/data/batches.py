"""Batches sliced from in-memory tensors, augmented and normalized as whole batches on the
training device. There is no per-image PIL pipeline and no worker process: a batch is an index
into a uint8 tensor that already sits on the device."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from .datasets import ImageDataset
from .stream import StreamedImages, StreamLoader, epoch_order

INPUT_SCALINGS = ("none", "unit", "standard")
RAW_STD = 1 / 255  # with mean 0: the normalization that gives back the raw 0..255 values


def scaling_stats(dataset: ImageDataset, scaling: str) -> tuple[list[float], list[float]]:
    """The per-channel ``(mean, std)`` on the 0..1 scale that :class:`Preprocess` applies for
    an input scaling; saved in checkpoints, so a trained run is read back with the same scale.

    - ``standard``: the training images' own mean and standard deviation (zero mean, unit
      variance per channel);
    - ``unit``: mean 0, std 1, i.e. ``x / 255`` in 0..1 (Keras' and ``ToTensor()``'s scale);
    - ``none``: mean 0, std 1/255, i.e. the raw pixel values 0..255 as floats.
    """
    if scaling == "standard":
        return dataset.channel_stats()
    if scaling not in INPUT_SCALINGS:
        raise ValueError(f"input scaling {scaling!r}: expected one of {', '.join(INPUT_SCALINGS)}")
    std = 1.0 if scaling == "unit" else RAW_STD
    return [0.0] * dataset.channels, [std] * dataset.channels


class BatchLoader:
    """Iterate ``(uint8 images, labels)`` batches of one data set on ``device``.

    With ``world_size > 1`` (DDP), every rank draws the same permutation (seeded by ``seed`` and
    the epoch) and takes every ``world_size``-th example of it, so the ranks' batches of step
    ``i`` together are exactly the single-process batch of step ``i``. ``batch_size`` is that
    global batch; each rank holds ``batch_size // world_size`` of it.

    Args:
        dataset: the split to iterate.
        batch_size: examples per step over all ranks.
        shuffle: a new permutation every epoch, or the stored order every epoch (evaluation,
            and training with ``--no-shuffle``; DDP ranks then take turns along it).
        seed: base seed of the permutations; epoch ``e`` uses ``seed * 1000 + e``.
        drop_last: skip the last incomplete batch (training), so every step has equal weight.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        shuffle: bool,
        device: torch.device | str = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1 or (drop_last and batch_size % world_size):
            raise ValueError(
                f"batch size {batch_size} does not split evenly over {world_size} processes; "
                f"use a multiple of {world_size}"
            )
        self.images = dataset.images.to(device)
        self.labels = dataset.labels.to(device)
        self.batch_size = batch_size
        # training splits each global batch exactly; evaluation may round a share up
        self.local_batch = -(-batch_size // world_size)
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    @property
    def device(self) -> torch.device:
        return self.images.device

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        return epoch_order(self).to(self.images.device)

    def __len__(self) -> int:
        count = len(self.labels)
        if self.drop_last:
            return count // self.batch_size
        mine = len(range(self.rank, count, self.world_size))
        return -(-mine // self.local_batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = self._indices()
        for start in range(0, len(indices), self.local_batch):
            batch = indices[start : start + self.local_batch]
            yield self.images[batch], self.labels[batch]


def make_loader(
    dataset: ImageDataset | StreamedImages,
    batch_size: int,
    shuffle: bool,
    augment: tuple[int, bool] | None = None,
    **options: object,
) -> BatchLoader | StreamLoader:
    """The loader of a split: a :class:`BatchLoader` over the tensors of an in-memory data
    set, a :class:`~cnnlab.data.stream.StreamLoader` (DataLoader workers that decode, resize
    and, with ``augment=(padding, flip)``, augment each image) for a streamed folder.
    ``options``: ``device``, ``seed``, ``rank``, ``world_size``, ``drop_last``."""
    if isinstance(dataset, StreamedImages):
        return StreamLoader(dataset, batch_size, shuffle, augment=augment, **options)  # type: ignore[arg-type]
    return BatchLoader(dataset, batch_size, shuffle, **options)  # type: ignore[arg-type]


class Preprocess:
    """uint8 batch -> normalized float batch, with optional random crop and horizontal flip.

    Args:
        mean, std: per-channel statistics on a 0..1 scale (:func:`scaling_stats`): the output
            is ``(x / 255 - mean) / std``; mean 0 and std 1/255 give the raw values exactly.
        crop_padding: pad by this many zero pixels and crop back at a random offset (0: off).
        flip: flip each image left-right with probability 1/2.
        channels_last: return the batch in NHWC memory order (faster convolutions on GPUs).
        augmentation: a step on the uint8 batch before the others, called as
            ``augmentation(images, augment, generator)`` for training and evaluation alike
            (e.g. :class:`cnnlab.data.augment.AlexNetAugment`: random 224 crops, flips and
            fancy PCA for training, the central crop for evaluation).
    """

    def __init__(
        self,
        mean: list[float],
        std: list[float],
        crop_padding: int = 0,
        flip: bool = False,
        channels_last: bool = False,
        augmentation: Callable[[torch.Tensor, bool, torch.Generator | None], torch.Tensor]
        | None = None,
    ) -> None:
        self.augmentation = augmentation
        self.mean, self.std = list(mean), list(std)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std {self.std}: every channel's std must be positive")
        self.crop_padding, self.flip, self.channels_last = (crop_padding, flip, channels_last)
        self.raw = all(m == 0 for m in self.mean) and all(s == RAW_STD for s in self.std)
        self._device_stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._device_stats:
            shape = (1, len(self.mean), 1, 1)
            self._device_stats[device] = (
                torch.tensor(self.mean, device=device).view(shape),
                torch.tensor(self.std, device=device).view(shape),
            )
        return self._device_stats[device]

    def __call__(
        self, images: torch.Tensor, augment: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if self.augmentation is not None:
            images = self.augmentation(images, augment, generator)
        if augment and self.crop_padding:
            images = random_crop(images, self.crop_padding, generator)
        if augment and self.flip:
            images = random_flip(images, generator)
        if self.raw:  # input scaling "none": 0..255 as floats, without rounding error
            out = images.float()
        else:
            mean, std = self._stats(images.device)
            out = (images.float() / 255.0 - mean) / std
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out


def random_crop(
    images: torch.Tensor, padding: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad every image by ``padding`` and cut it back to its size at a random offset.

    One gather for the whole batch: row ``r`` of image ``n`` comes from padded row
    ``r + dy[n]``, column ``c`` from padded column ``c + dx[n]``, with ``dy, dx`` in
    ``0..2*padding``.
    """
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    shifts = torch.randint(
        0,
        2 * padding + 1,
        (2, n),
        generator=generator,
        device=generator.device if generator else "cpu",
    )
    shifts = shifts.to(images.device)
    rows = (shifts[0, :, None] + torch.arange(height, device=images.device))[:, None, :, None]
    cols = (shifts[1, :, None] + torch.arange(width, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channels, rows, cols]


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror a random half of the batch left-right."""
    device = generator.device if generator else "cpu"
    flip = (torch.rand(len(images), generator=generator, device=device) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)
