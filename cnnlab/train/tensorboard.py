"""TensorBoard event files of a training run (``cnnlab train --tensorboard``), written into
``RUN/tensorboard`` by :class:`torch.utils.tensorboard.SummaryWriter` on rank 0 alone.

What is logged, every scalar against the optimizer step of the run (``tensorboard --logdir
runs`` shows one curve per run):

- per step: ``train/loss`` and ``train/lr`` (the rate the step used); ``train/images_per_second``
  every :data:`FLUSH_EVERY` steps and at each epoch's end. The step losses stay on the device
  and are read in one go every :data:`FLUSH_EVERY` steps, so logging adds no host sync per step.
  Under DDP a step's loss is rank 0's share of the batch; images/s counts the global batch and
  is wall time (tests made by ``--eval-every`` inside the window included);
- per epoch, at the epoch's last step: ``epoch/train_loss``, ``epoch/train_acc``,
  ``epoch/test_loss``, ``epoch/test_acc``, ``epoch/images_per_second`` and ``epoch/epoch``,
  the values of ``metrics.csv``;
- at the end: the first convolution's filters and the confusion matrix as images (the figures
  of :mod:`cnnlab.inspect.plots`), and the run's settings as text.

A resumed run appends: its writer starts with ``purge_step`` at its first step, so TensorBoard
drops what a killed run had logged past its last checkpoint. The hooks compose with the others
of :class:`~cnnlab.train.config.TrainingHooks` (:func:`with_tensorboard`).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import TrainConfig, TrainingHooks

TENSORBOARD_DIR = "tensorboard"  # in the run folder
FLUSH_EVERY = 50  # optimizer steps between reads of the buffered losses (one host sync each)
EPOCH_SCALARS = ("train_loss", "train_acc", "test_loss", "test_acc", "images_per_second")


class TensorBoardLog:
    """The writer and the scalars waiting for it; one per :func:`cnnlab.train.fit` call."""

    def __init__(self, run_dir: Path, config: TrainConfig) -> None:
        self.folder = Path(run_dir) / TENSORBOARD_DIR
        self.config = config
        self.writer: Any = None  # a SummaryWriter, opened at the first step
        self.model: nn.Module | None = None  # seen through after_train_mode, for its filters
        self.pending: list[tuple[int, torch.Tensor, float]] = []  # (step, loss, lr)
        self.window_images = 0
        self.window_started: float | None = None
        self.step = 0  # the last optimizer step seen

    def open(self, first_step: int) -> Any:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: events at this step or later in older files (a killed run's steps
            # past its checkpoint) are dropped by TensorBoard when it reads the folder
            self.writer = SummaryWriter(str(self.folder), purge_step=first_step)
            settings = json.dumps(asdict(self.config), indent=2)
            self.writer.add_text("config", f"```json\n{settings}\n```", first_step)
        return self.writer

    def after_step(self, step: int, loss: torch.Tensor, lr: float, images: int) -> None:
        self.open(step)
        self.step = step
        self.pending.append((step, loss, lr))
        if self.window_started is None:  # the window's time runs from the end of this step
            self.window_started = time.perf_counter()
        else:
            self.window_images += images
        if len(self.pending) >= FLUSH_EVERY:
            self.flush_steps()

    def flush_steps(self) -> None:
        """Write the buffered step scalars (one host sync) and the window's images/s."""
        if not self.pending:
            return
        losses = torch.stack([loss.float() for _, loss, _ in self.pending]).cpu().tolist()
        for (step, _, lr), loss in zip(self.pending, losses):
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)
        now = time.perf_counter()
        if self.window_images and self.window_started is not None:
            rate = self.window_images / max(now - self.window_started, 1e-9)
            self.writer.add_scalar("train/images_per_second", rate, self.pending[-1][0])
        self.pending, self.window_images, self.window_started = [], 0, now

    def after_epoch(self, row: dict[str, float], step: int) -> None:
        writer = self.open(step)
        self.step = step
        self.flush_steps()
        for name in EPOCH_SCALARS:
            if name in row:
                writer.add_scalar(f"epoch/{name}", row[name], step)
        writer.add_scalar("epoch/epoch", row["epoch"], step)
        writer.flush()
        self.window_started = None  # the test pass is not training time

    def after_train_mode(self, model: nn.Module) -> None:
        self.model = model

    def after_fit(self, result: Any) -> None:
        """The first convolution's filters and the confusion matrix as images; close."""
        from ..inspect.hooks import conv_layers
        from ..inspect.plots import plot_confusion, plot_filters
        from ..inspect.views import filters

        steps = self.step
        writer = self.open(steps)
        self.flush_steps()
        with tempfile.TemporaryDirectory() as folder:
            confusion = Path(folder) / "confusion.png"
            plot_confusion(result.confusion, result.classes, confusion)
            writer.add_image("confusion_matrix", png_array(confusion), steps, dataformats="HWC")
            if self.model is not None and conv_layers(self.model):
                name, weight = filters(self.model)
                picture = Path(folder) / "filters.png"
                plot_filters(weight, picture, name)
                writer.add_image(f"filters/{name}", png_array(picture), steps, dataformats="HWC")
        writer.close()


def png_array(path: Path) -> np.ndarray:
    """A PNG file as an ``H x W x 3`` uint8 array."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _chain(first: Callable[..., None] | None, second: Callable[..., None]) -> Callable[..., None]:
    if first is None:
        return second

    def both(*args: Any) -> None:
        first(*args)
        second(*args)

    return both


def with_tensorboard(hooks: TrainingHooks, run_dir: Path, config: TrainConfig) -> TrainingHooks:
    """``hooks`` with TensorBoard logging into ``run_dir/tensorboard`` added after each hook."""
    log = TensorBoardLog(run_dir, config)
    return replace(
        hooks,
        after_train_mode=_chain(hooks.after_train_mode, log.after_train_mode),
        after_step=_chain(hooks.after_step, log.after_step),
        after_epoch=_chain(hooks.after_epoch, log.after_epoch),
        after_fit=_chain(hooks.after_fit, log.after_fit),
    )


__all__ = ["EPOCH_SCALARS", "FLUSH_EVERY", "TENSORBOARD_DIR", "TensorBoardLog", "with_tensorboard"]
