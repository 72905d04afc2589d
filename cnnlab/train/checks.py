"""The checks of a run that depend on the machine (device, precision, packages) or on the
data and the model (input shape, class count, batch size, test-time flips): run before
anything is written."""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from ..data import ImageDataset
from ..errors import CnnlabError, first_line
from ..model_interface import spec_of
from .config import TrainConfig
from .distributed import resolve_device
from .steps import scaled_down


def check_runtime(config: TrainConfig, local_rank: int = 0) -> torch.device:
    """The checks that depend on this machine (device, precision); returns the device."""
    device = resolve_device(config.device, local_rank)
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise CnnlabError(
            "--tensorboard: the tensorboard package is not installed; pip install "
            "'cnnlab[tensorboard]' (or train without --tensorboard)"
        )
    if config.amp == "fp16" and device.type != "cuda":
        raise CnnlabError(
            f"--amp fp16 on device {device.type!r}: fp16 autocast needs a CUDA GPU; use --amp "
            "bf16 on the CPU, or --amp none"
        )
    return device


# ------------------------------------------------------------------------------ input checks


def check_model_input(model: nn.Module, dataset: ImageDataset) -> None:
    """Fail early, with shapes, when the data does not fit the model."""
    spec = spec_of(model)
    got = f"{dataset.channels}x{dataset.image_size}x{dataset.image_size}"
    if spec is not None:
        want = f"{spec['in_channels']}x{spec['input_size']}x{spec['input_size']}"
        if (spec["in_channels"], spec["input_size"]) != (dataset.channels, dataset.image_size):
            raise CnnlabError(
                f"model {spec['name']} was built for {want} input (channels x height x width) but "
                f"{dataset.name} images are {got}; build it with in_channels={dataset.channels}, "
                f"input_size={dataset.image_size} (the CLI does this unless told otherwise)"
            )
        if spec["num_classes"] < dataset.num_classes:
            raise CnnlabError(
                f"model {spec['name']} has {spec['num_classes']} outputs but {dataset.name} has "
                f"{dataset.num_classes} classes; build it with num_classes={dataset.num_classes}"
            )
    try:
        out = two_images_through(model, dataset)
    except RuntimeError as err:
        raise CnnlabError(
            f"the model cannot take {dataset.name} images of shape {got}: {first_line(err)}"
        ) from None
    binary = out.dim() == 2 and out.shape[1] == 1 and dataset.num_classes == 2
    if out.dim() != 2 or (out.shape[1] < dataset.num_classes and not binary):
        raise CnnlabError(
            f"the model returns shape {tuple(out.shape)} for a batch of 2; expected "
            f"(2, {dataset.num_classes}) class scores for {dataset.name}"
        )


def check_test_flip(config: TrainConfig, dataset: ImageDataset) -> bool:
    """``config.test_flip``, refused where a mirror image is another thing (digits)."""
    if config.test_flip and not dataset.flip_ok:
        raise CnnlabError(
            f"--test-flip on {dataset.name}: a mirrored image of this data set is not the same "
            "class (digits, letters), so averaging over mirrors would hurt; drop --test-flip"
        )
    return config.test_flip


def check_batch_size(config: TrainConfig, train_images: int, world_size: int = 1) -> None:
    """The global batch must split evenly over the DDP processes and fit in the training set."""
    batch = config.batch_size
    if batch % world_size:
        fits = max(world_size, batch // world_size * world_size)
        raise CnnlabError(
            f"--batch-size {batch} does not split evenly over {world_size} processes (it is the "
            f"global batch); use a multiple of {world_size}, e.g. {fits}"
        )
    if batch > train_images:
        raise CnnlabError(
            f"--batch-size {batch} is larger than the {train_images} training images, so an "
            f"epoch would have no full batch; use --batch-size {train_images} or less"
        )


def check_small_size(config: TrainConfig, model: nn.Module, dataset: ImageDataset) -> None:
    """``--small-size`` must be smaller than the images, and the model must take it (a model
    with a fixed-size flatten does not: global pooling does)."""
    side = config.small_size
    if not side:
        return
    if side >= dataset.image_size:
        raise CnnlabError(
            f"--small-size {side}: {dataset.name} images are {dataset.image_size} x "
            f"{dataset.image_size} already; give a smaller side, e.g. --small-size "
            f"{max(4, dataset.image_size * 3 // 4)}"
        )
    try:
        two_images_through(model, dataset, side)
    except RuntimeError as err:
        raise CnnlabError(
            f"--small-size {side}: the model cannot take {side} x {side} images "
            f"({first_line(err)}); progressive resizing needs a model that pools globally "
            "before its classifier (cifar_air, resnet18, ...), or drop --small-size"
        ) from None


def two_images_through(model: nn.Module, dataset: ImageDataset, side: int = 0) -> torch.Tensor:
    """The model's output for two of the data set's images (scaled to ``side`` x ``side``
    when given), in eval mode without gradients; the model's mode is restored. A shape the
    model cannot take raises torch's RuntimeError, which the caller explains."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            images = dataset.images[:2] if isinstance(dataset, ImageDataset) else dataset.sample(2)
            probe = images.float().to(next(model.parameters()).device)
            return model(scaled_down(probe, side) if side else probe)
    finally:
        model.train(was_training)
