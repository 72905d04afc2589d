"""From a config to a finished run folder: a new run, a resumed one, a transferred one.

This is what the CLI calls; the pieces (`load_dataset`, `create_model`, `fit`) stay usable alone,
and a finished run folder is read back by :mod:`cnnlab.runs.load`.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch import nn

from .. import run_folder
from ..data import ImageDataset, StreamedImages
from ..errors import CnnlabError, RunFolderError
from ..model_interface import spec_of
from ..models import create_model
from ..models.init import initialize
from ..outputs import report
from ..train.checks import check_batch_size, check_model_input, check_runtime
from ..train.config import TrainConfig
from ..train.distributed import current_distributed, seed_everything, together
from ..train.loop import fit
from ..train.pipeline import load_data
from ..train.setup import FitResult
from .load import check_run_state, config_from_state, load_run, model_from_state

__all__ = ["build_model", "load_pretrained", "resume_run", "train_run", "transfer_run"]


def build_model(config: TrainConfig, train: ImageDataset) -> nn.Module:
    """The registered model, sized to the data's channels, image side and class count, its
    conv and linear layers initialised as ``config.init`` says (:mod:`cnnlab.models.init`)."""
    model = create_model(
        config.model,
        num_classes=train.num_classes,
        in_channels=train.channels,
        input_size=train.image_size,
        **config.model_options,
    )
    initialize(model, config.init)  # from the run's seeded RNG; "torch" changes nothing
    return model


def train_run(
    config: TrainConfig,
    runs_root: Path = Path("runs"),
    name: str | None = None,
    overwrite: bool = False,
    download: bool = False,
) -> FitResult:
    """Train a registered model on a registered data set into a new run folder.

    Everything that can be checked is checked before the folder is created (on every DDP rank,
    which all stop with the same message), so a bad name, setting or shape leaves nothing
    behind; with ``overwrite`` the old folder comes back if the new run fails before its first
    checkpoint.
    """
    ranks = current_distributed()
    run_dir = _plan_on_rank0(runs_root, name, f"{config.model}-{config.dataset}", overwrite)

    def prepare() -> tuple[ImageDataset, ImageDataset, nn.Module]:
        check_runtime(config, ranks.local_rank)
        seed_everything(config.seed)
        train, test = load_data(config, download)
        model = build_model(config, train)
        check_batch_size(config, len(train), ranks.world_size)
        check_model_input(model, train)
        return train, test, model

    train, test, model = together(prepare)
    _report_notes(train)
    with _new_run_on_rank0(run_dir):
        return fit(model, (train, test), config, run_dir)


def resume_run(
    run: str | os.PathLike[str],
    epochs: int | None = None,
    runs_root: Path = Path("runs"),
    tensorboard: bool = False,
) -> FitResult:
    """Continue a run from its last checkpoint; ``epochs`` may raise its total epoch count and
    ``tensorboard`` switch TensorBoard logging on from here (a run trained with it keeps it)."""
    run_dir = run_folder.resolve_run(run, runs_root)
    state = check_run_state(
        run_folder.load_checkpoint(run_dir / run_folder.CHECKPOINT), run_dir, train=True
    )
    config = config_from_state(state, run_dir)
    if epochs is not None:
        if epochs < state["epoch"]:
            raise CnnlabError(
                f"--epochs {epochs}: the run already finished {state['epoch']} epochs; "
                "give a larger total"
            )
        config = TrainConfig.from_dict({**asdict(config), "epochs": epochs})
    if tensorboard:
        config = TrainConfig.from_dict({**asdict(config), "tensorboard": True})
    if state["epoch"] >= config.epochs:
        raise RunFolderError(
            f"{run_dir} already finished its {config.epochs} epochs; pass --epochs N (N > "
            f"{config.epochs}) to train longer"
        )
    check_runtime(config, current_distributed().local_rank)
    train, test = load_data(config)
    _report_notes(train)
    model = model_from_state(state, run_dir)
    if current_distributed().is_main:
        for stale in run_folder.remove_stale_temporaries(run_dir):
            print(f"note: removed {stale}, a file left by a run killed mid-write")
    return fit(model, (train, test), config, run_dir, resume_from=state)


def _report_notes(train: ImageDataset | StreamedImages) -> None:
    """What was done to an image folder's images (resized, streamed, split ...), on rank 0;
    the built-in data sets train as they always have, without notes."""
    if current_distributed().is_main and train.name == "imagefolder":
        for note in train.notes:
            report(f"note: {note}")


def _plan_on_rank0(runs_root: Path, name: str | None, default: str, overwrite: bool) -> Path:
    ranks = current_distributed()
    chosen: list[Any] = [None]

    def plan() -> None:
        if ranks.is_main:
            chosen[0] = run_folder.plan_run_dir(runs_root, name, default, overwrite)

    together(plan)
    if ranks.world_size > 1:
        dist.broadcast_object_list(chosen, src=0)  # every rank learns rank 0's folder
    return Path(chosen[0])


def _new_run_on_rank0(run_dir: Path) -> AbstractContextManager[Path]:
    return run_folder.new_run(run_dir) if current_distributed().is_main else nullcontext(run_dir)


# ---------------------------------------------------------------------- transfer learning


def load_pretrained(
    source: str, runs_root: Path = Path("runs")
) -> tuple[nn.Module, dict[str, Any]]:
    """A pretrained network and its spec: a cnnlab run folder, or ``torchvision:NAME`` for a
    registered torchvision model with its ImageNet weights."""
    if source.startswith("torchvision:"):
        from ..models import resolve_model

        model = resolve_model(source, pretrained=True).model
        return model, {**spec_of(model), "kwargs": {}}
    trained = load_run(source, runs_root)
    return trained.model.train(), dict(trained.spec)


def transfer_run(
    source: str,
    config: TrainConfig,
    strategy: str,
    backbone_lr_factor: float = 0.1,
    runs_root: Path = Path("runs"),
    name: str | None = None,
    overwrite: bool = False,
) -> tuple[FitResult, dict[str, Any]]:
    """Train ``source``'s network on ``config.dataset`` with a transfer strategy
    (:mod:`cnnlab.train.transfer`) into a new run folder. Images are converted to the source's
    channels and size. Returns the fit result and what was frozen and trained."""
    from ..train.transfer import Strategy, imagenet_view, replace_head, trainable_groups

    parsed = Strategy.parse(strategy)
    check_runtime(config, current_distributed().local_rank)
    seed_everything(config.seed)
    model, spec = load_pretrained(source, runs_root)
    config.model, config.model_options = spec["name"], dict(spec.get("kwargs", {}))
    config.image_channels, config.image_size = spec["in_channels"], spec["input_size"]
    config.transfer = {
        "strategy": str(parsed),
        "backbone_lr_factor": backbone_lr_factor,
        "source": source,
        **imagenet_view(source, config.image_size),  # ImageNet's resize, crop, mean and std
    }
    run_dir = _plan_on_rank0(
        runs_root, name, f"{spec['name']}-to-{config.dataset}-{parsed}".replace(":", "-"), overwrite
    )
    train, test = load_data(config)
    check_batch_size(config, len(train), current_distributed().world_size)
    replace_head(model, train.num_classes)
    model.cnnlab_spec = {**spec, "num_classes": train.num_classes}
    _, report = trainable_groups(model, parsed, config.lr, backbone_lr_factor)
    with _new_run_on_rank0(run_dir):
        return fit(model, (train, test), config, run_dir), report
