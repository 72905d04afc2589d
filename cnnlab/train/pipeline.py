"""The data a config names (:func:`load_data`) and the batches :func:`cnnlab.train.fit` trains
on: the loader of the training split and the :class:`~cnnlab.data.Preprocess` that scales
(and, for data in memory, augments) each batch.

Data in memory goes through :class:`~cnnlab.data.BatchLoader`, augmented a whole batch at a
time on the device; an image folder too big for memory streams through
:class:`~cnnlab.data.StreamLoader`, whose DataLoader workers crop and flip each image
(``--augment``'s standard style) as they decode it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..data import (
    BatchLoader,
    ImageDataset,
    Preprocess,
    StreamedImages,
    StreamLoader,
    load_dataset,
    make_loader,
)
from .config import TrainConfig

PCA_IMAGES = 5000  # the images of a streamed folder its fancy-PCA colour basis comes from


def load_data(config: TrainConfig, download: bool = False) -> tuple[ImageDataset, ImageDataset]:
    """The train and test splits the config names, cut to its subsets (an image folder too big
    for memory, or with ``config.stream``, as :class:`~cnnlab.data.StreamedImages`)."""
    options: dict[str, Any] = {"root": config.data_dir, "download": download}
    if config.data_variant:
        options["variant"] = config.data_variant
    options.update(image_size=config.image_size, stream=config.stream or None)  # imagefolder
    train = load_dataset(config.dataset, "train", **options)
    test = load_dataset(config.dataset, "test", **{**options, "download": False})
    if isinstance(train, StreamedImages) and not config.stream:
        config.stream = True  # chosen by size: recorded, so a resume or rerun streams too
    if config.classes:  # --classes cat,dog: those classes only, relabelled 0, 1, ...
        train, test = train.select_classes(config.classes), test.select_classes(config.classes)
    splits = (
        train.subset(config.train_subset, seed=config.seed),
        test.subset(config.test_subset, seed=config.seed),
    )
    if config.image_channels or config.image_size:  # from ImageNet: resize 256, crop 224
        from .transfer import source_view

        splits = tuple(source_view(s, config) for s in splits)
    return splits


def crop_padding_for(image_size: int) -> int:
    return 1 if image_size <= 16 else 2 if image_size <= 32 else 4


def alexnet_augmentation(train_set: ImageDataset | StreamedImages) -> Callable:
    """``--augment-style alexnet``: AlexNet's scale, crop, flip and (on RGB data) fancy PCA with
    the principal components of this training set's pixels (:mod:`cnnlab.data.augment`; a
    streamed folder's from :data:`PCA_IMAGES` random images)."""
    from ..data.augment import AlexNetTraining, pca_basis

    if isinstance(train_set, ImageDataset):
        images = train_set.images
    else:
        images = train_set.sample(PCA_IMAGES)
    basis = pca_basis(images) if images.shape[1] == 3 else None
    return AlexNetTraining(train_set.image_size, train_set.flip_ok, basis)


def training_batches(
    train_set: ImageDataset | StreamedImages,
    config: TrainConfig,
    normalization: tuple[list[float], list[float]],
    **common: Any,
) -> tuple[Preprocess, BatchLoader | StreamLoader]:
    """The training split's preprocessing and loader (``common``: device, seed, rank and world
    size). ``--augment``'s standard style (pad-and-crop, flip where a mirror keeps the class)
    runs on the device for data in memory, in the loader's workers for a streamed folder."""
    standard = config.augment and config.augment_style == "standard"
    padding = crop_padding_for(train_set.image_size) if standard else 0
    flip = standard and train_set.flip_ok
    streamed = isinstance(train_set, StreamedImages)
    preprocess = Preprocess(
        *normalization,
        crop_padding=0 if streamed else padding,
        flip=flip and not streamed,
        channels_last=config.channels_last,
        augmentation=alexnet_augmentation(train_set) if config.augment and not standard else None,
    )
    loader = make_loader(
        train_set,
        config.batch_size,
        shuffle=config.shuffle,
        drop_last=True,
        augment=(padding, flip) if streamed and standard else None,
        **common,
    )
    return preprocess, loader
