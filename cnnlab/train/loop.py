"""The trainer: ``fit(model, data, config)``, one explicit loop you can read top to bottom.

It runs on one CPU or GPU, or as one of N processes under ``torchrun`` (PyTorch DDP: gloo on
CPU, NCCL on GPU), where each rank trains on its own shard and only rank 0 writes files.
Features that change the loop (transfer learning's parameter groups and frozen batch norms,
a run's figures) come in through :class:`~cnnlab.train.config.TrainingHooks`; what the loop is
built from is in :mod:`cnnlab.train.setup`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .. import run_folder
from ..data import ImageDataset
from ..outputs import report
from .config import TrainConfig, TrainingHooks
from .distributed import current_distributed
from .setup import (
    FitResult,
    Loop,
    prepare,
    resume,
    save_epoch,
    standard_hooks,
    test_epoch,
    train_epoch,
)
from .validation import validation_scores

# ---------------------------------------------------------------------------------- training


def fit(
    model: nn.Module,
    data: tuple[ImageDataset, ImageDataset],
    config: TrainConfig,
    run_dir: Path | None = None,
    resume_from: dict[str, Any] | None = None,
    hooks: TrainingHooks | None = None,
    verbose: bool = True,
) -> FitResult:
    """Train ``model`` on ``data = (train, test)`` as ``config`` says; test after every epoch.

    Args:
        model: any ``nn.Module`` mapping ``N x C x H x W`` images to ``N x classes`` scores.
        data: the training and test splits.
        config: the hyperparameters.
        run_dir: where to write config.json, metrics.csv and checkpoint.pt (every epoch,
            atomically; with ``config.eval_every`` also steps.csv), and with the standard hooks
            curves.png and confusion.png after the last epoch; nothing is written when None.
            Only rank 0 writes.
        resume_from: a checkpoint dict from :func:`cnnlab.run_folder.load_checkpoint`; training
            goes on from its epoch with its weights, optimizer, schedule and RNG state.
        hooks: what features add to the loop; by default :func:`standard_hooks` ``(config)``.
        verbose: the epoch lines and ``--probe``'s choice go to the ``cnnlab`` logger at INFO
            (shown on stderr unless logging is set up otherwise), else at DEBUG only (a quiet
            notebook cell). The progress bar is ``config.progress``, drawn on a terminal only.

    Returns:
        The per-epoch history, the final confusion matrix and, with ``config.eval_every``, the
        rows of the tests every N optimizer steps.
    """
    hooks = standard_hooks(config, run_dir) if hooks is None else hooks
    ranks = current_distributed()
    loop = prepare(model, data, config, resume_from, hooks, verbose)
    history, start_epoch = resume(loop, config, run_dir, resume_from)
    if run_dir is not None and ranks.is_main:
        run_folder.write_config(run_dir, asdict(config), resumed=resume_from is not None)
    classes = loop.train_set.num_classes
    confusion = torch.zeros(classes, classes, dtype=torch.int64)
    for epoch in range(start_epoch, config.epochs):
        totals, train_seconds = train_epoch(loop, config, epoch, run_dir, hooks)
        test_loss, test_acc, confusion = test_epoch(loop, config, epoch)
        row = {
            "epoch": epoch + 1,
            "lr": loop.optimizer.param_groups[0]["lr"],
            **_scores(loop, config, totals, train_seconds, test_loss, test_acc),
        }
        history.append(row)
        if ranks.is_main:
            report(_epoch_line(row, config.epochs), verbose)
        if run_dir is not None and ranks.is_main:
            save_epoch(loop, config, run_dir, epoch, history)
        if ranks.is_main and hooks.after_epoch is not None:
            hooks.after_epoch(row, (epoch + 1) * len(loop.train_loader))
        if ranks.world_size > 1:
            dist.barrier()  # no rank races ahead of the checkpoint
    steps = list(loop.evaluation.rows) if loop.evaluation is not None else []
    result = FitResult(history, confusion, run_dir, list(loop.train_set.classes), steps)
    if ranks.is_main and hooks.after_fit is not None:
        hooks.after_fit(result)
    return result


def _scores(
    loop: Loop, config: TrainConfig, totals: Any, seconds: float, test_loss: float, test_acc: float
) -> dict[str, float]:
    """An epoch's metrics.csv numbers after its epoch and learning rate: training loss and
    accuracy, validation scores (with a split), test scores, time and speed."""
    classes = loop.train_set.num_classes
    return {
        "train_loss": float(totals[0] / totals[2]),
        "train_acc": float(totals[1] / totals[2]),
        **validation_scores(
            loop.model, loop.val_loader, loop.preprocess, classes, config, loop.test_flip
        ),
        "test_loss": test_loss,
        "test_acc": test_acc,
        "train_seconds": seconds,
        "images_per_second": float(totals[2]) / seconds,
    }


def _epoch_line(row: dict[str, float], epochs: int) -> str:
    val = f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}  " if "val_acc" in row else ""
    return (
        f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.2%}  {val}test loss {row['test_loss']:.4f} "
        f"acc {row['test_acc']:.2%}  {row['train_seconds']:.1f} s  "
        f"{row['images_per_second']:,.0f} img/s"
    )
