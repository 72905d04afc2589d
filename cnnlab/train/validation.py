"""Validation: part of the training set held out to choose settings and epochs by
(``train --val-split FRACTION``), so the test set is not what a recipe is tuned on.

The split is stratified (each class gives the same fraction) and seeded by the run's seed, so
a resumed run holds out exactly the same images. Its loss and accuracy join each epoch's row
(``val_loss``, ``val_acc``); with ``--keep best`` the checkpoint of the best validation accuracy
is also kept, as ``best.pt`` beside ``checkpoint.pt`` (:data:`cnnlab.run_folder.BEST`), and loading
the run for eval, predict or show uses it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import run_folder
from ..data import BatchLoader, ImageDataset, Preprocess, StreamedImages, StreamLoader, make_loader
from ..errors import CnnlabError
from .config import KEEP_CHOICES, TrainConfig
from .steps import evaluate

__all__ = [
    "BEST_KEYS",
    "KEEP_CHOICES",
    "best_epoch",
    "keep_best",
    "split_indices",
    "validation_loader",
    "validation_scores",
    "validation_split",
]

# what best.pt holds: enough to load and use the model, not to resume (checkpoint.pt does that)
BEST_KEYS = ("model", "model_spec", "normalization", "classes", "epoch", "config", "history")


def split_indices(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kept, held_out)`` sorted indices: from each class, ``fraction`` of its examples
    (rounded, at least one left to train on) drawn at random with ``seed``, held out."""
    generator = torch.Generator().manual_seed(seed)
    held = [torch.zeros(0, dtype=torch.int64)]
    for label in torch.unique(labels, sorted=True):
        members = torch.nonzero(labels == label).flatten()
        count = min(int(fraction * len(members) + 0.5), len(members) - 1)
        held.append(members[torch.randperm(len(members), generator=generator)[:count]])
    held_out = torch.cat(held).sort().values
    kept = torch.ones(len(labels), dtype=torch.bool)
    kept[held_out] = False
    return torch.nonzero(kept).flatten(), held_out


Images = ImageDataset | StreamedImages


def validation_split(train: Images, fraction: float, seed: int) -> tuple[Images, Images | None]:
    """``(train, validation)``: the validation images held out of ``train`` (in memory or a
    streamed image folder) as :func:`split_indices` picks them; ``(train, None)`` when
    ``fraction`` is 0."""
    if not fraction:
        return train, None
    if not isinstance(train, (ImageDataset, StreamedImages)):
        raise CnnlabError(
            f"--val-split {fraction}: cannot split a {type(train).__name__}; give an "
            "ImageDataset or a streamed image folder, or train without --val-split"
        )
    kept, held_out = split_indices(train.labels, fraction, seed)
    if len(held_out) == 0:
        raise CnnlabError(
            f"--val-split {fraction}: {fraction:.0%} of the {len(train)} training images rounds to "
            "no validation image in any class; give a larger fraction or more images"
        )
    note = (
        f"validation: {len(held_out)} of the {len(train)} training images held out "
        f"(stratified, seed {seed})"
    )

    def part(index: torch.Tensor, split: str) -> Images:
        if isinstance(train, StreamedImages):  # the same files, fewer of them
            samples = [train.samples[i] for i in index.tolist()]
            values = (train.classes, split, train.source, train.mode, train.shape, train.size)
            return StreamedImages(samples, *values, [*train.notes, note])
        return dataclasses.replace(
            train,
            images=train.images[index],
            labels=train.labels[index],
            split=split,
            notes=[*train.notes, note],
        )

    return part(kept, train.split), part(held_out, "val")


def validation_loader(
    val: Images | None, config: TrainConfig, **common: Any
) -> BatchLoader | StreamLoader | None:
    """The validation images in evaluation batches (``common``: device, seed, rank and world
    size, as the test loader has them), or None without a split."""
    if val is None:
        return None
    return make_loader(val, config.eval_batch_size, shuffle=False, **common)


def validation_scores(
    model: nn.Module,
    loader: BatchLoader | StreamLoader | None,
    preprocess: Preprocess,
    num_classes: int,
    config: TrainConfig,
    flip: bool = False,
) -> dict[str, float]:
    """``{"val_loss", "val_acc"}`` of the model on the validation images (scored as the test
    images are, flip included), or ``{}`` without a split."""
    if loader is None:
        return {}
    loss, accuracy, _ = evaluate(
        model, loader, preprocess, num_classes, config.amp, flip, config.test_translate
    )
    return {"val_loss": loss, "val_acc": accuracy}


def best_epoch(history: list[dict[str, float]]) -> int | None:
    """The epoch (from 1) of the best validation accuracy, the first of equals (fewer epochs,
    less time to overfit); None when the rows have no ``val_acc``."""
    scored = [(row["val_acc"], -int(row["epoch"])) for row in history if "val_acc" in row]
    return -max(scored)[1] if scored else None


def keep_best(
    config: TrainConfig,
    run_dir: Path | None,
    history: list[dict[str, float]],
    state: dict[str, Any] | None,
) -> bool:
    """With ``config.keep == "best"``: write ``run_dir/best.pt`` from the checkpoint ``state``
    when its epoch is the best so far by validation accuracy. Called after every epoch's
    checkpoint, and on resume with the checkpoint resumed from (a run killed between its
    checkpoint and best.pt gets the file then). Returns whether it wrote."""
    if config.keep != "best" or run_dir is None or state is None:
        return False
    if best_epoch(history) != state["epoch"]:
        return False
    run_folder.save_checkpoint(
        run_dir / run_folder.BEST, {k: state[k] for k in BEST_KEYS if k in state}
    )
    return True
