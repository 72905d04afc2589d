"""From a config to a finished run folder, and from a run folder back to a working model.

This is what the CLI calls; the pieces (`load_dataset`, `create_model`, `fit`) stay usable alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from . import runs
from .data import ImageDataset, Preprocess, load_dataset
from .errors import CnnlabError, RunFolderError
from .images import fit_to_input, opened
from .models import create_model
from .train import FitResult, TrainConfig, current_distributed, fit, seed_everything


def load_data(config: TrainConfig, download: bool = False) -> tuple[ImageDataset, ImageDataset]:
    """The train and test splits the config names, cut to its subsets."""
    options: dict[str, Any] = {"root": config.data_dir, "download": download}
    if config.data_variant:
        options["variant"] = config.data_variant
    train = load_dataset(config.dataset, "train", **options)
    test = load_dataset(config.dataset, "test", **{**options, "download": False})
    splits = (
        train.subset(config.train_subset, seed=config.seed),
        test.subset(config.test_subset, seed=config.seed),
    )
    if config.image_channels or config.image_size:
        splits = tuple(s.converted(config.image_channels, config.image_size) for s in splits)
    return splits


def build_model(config: TrainConfig, train: ImageDataset) -> nn.Module:
    """The registered model, sized to the data's channels, image side and class count."""
    return create_model(
        config.model,
        num_classes=train.num_classes,
        in_channels=train.channels,
        input_size=train.image_size,
        **config.model_options,
    )


def train_run(
    config: TrainConfig,
    runs_root: Path = Path("runs"),
    name: str | None = None,
    overwrite: bool = False,
    download: bool = False,
) -> FitResult:
    """Train a registered model on a registered data set into a new run folder.

    Everything that can be checked is checked before the folder is created, so a bad name or
    a wrong shape leaves nothing behind.
    """
    seed_everything(config.seed)
    train, test = load_data(config, download)
    model = build_model(config, train)
    run_dir = _new_run_dir_on_rank0(runs_root, name, f"{config.model}-{config.dataset}", overwrite)
    return fit(model, (train, test), config, run_dir)


def resume_run(
    run: str | os.PathLike[str], epochs: int | None = None, runs_root: Path = Path("runs")
) -> FitResult:
    """Continue a run from its last checkpoint; ``epochs`` may raise its total epoch count."""
    run_dir = runs.resolve_run(run, runs_root)
    state = runs.load_checkpoint(run_dir / runs.CHECKPOINT)
    config = TrainConfig.from_dict(state["config"])
    if epochs is not None:
        if epochs < state["epoch"]:
            raise CnnlabError(
                f"--epochs {epochs}: the run already finished {state['epoch']} epochs; "
                "give a larger total"
            )
        config.epochs = epochs
    if state["epoch"] >= config.epochs:
        raise RunFolderError(
            f"{run_dir} already finished its {config.epochs} epochs; pass --epochs N (N > "
            f"{config.epochs}) to train longer"
        )
    train, test = load_data(config)
    model = _model_from_state(state, run_dir)
    return fit(model, (train, test), config, run_dir, resume_from=state)


def _new_run_dir_on_rank0(runs_root: Path, name: str | None, default: str, overwrite: bool) -> Path:
    ranks = current_distributed()
    chosen: list[Any] = [None]
    if ranks.is_main:
        chosen[0] = runs.new_run_dir(runs_root, name, default, overwrite)
    if ranks.world_size > 1:
        dist.broadcast_object_list(chosen, src=0)  # every rank learns the folder rank 0 made
    return Path(chosen[0])


# ---------------------------------------------------------------------- using a finished run


@dataclass
class TrainedRun:
    """A trained model with what it needs to read new images."""

    run_dir: Path
    model: nn.Module
    preprocess: Preprocess
    classes: list[str]
    config: TrainConfig
    spec: dict[str, Any]
    epoch: int

    @property
    def in_channels(self) -> int:
        return int(self.spec["in_channels"])

    @property
    def input_size(self) -> int:
        return int(self.spec["input_size"])


def _model_from_state(state: dict[str, Any], run_dir: Path) -> nn.Module:
    spec = state["model_spec"]
    if not spec.get("name"):
        raise RunFolderError(
            f"{run_dir}: the checkpoint holds a user model ({spec.get('class')}); build it "
            "yourself and call model.load_state_dict(torch.load(...)['model'])"
        )
    model = create_model(
        spec["name"], num_classes=spec["num_classes"], in_channels=spec["in_channels"],
        input_size=spec["input_size"], **spec.get("kwargs", {}),
    )  # fmt: skip
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or [str(err)]
        raise RunFolderError(
            f"{run_dir / runs.CHECKPOINT}: its weights do not fit model {spec['name']} "
            f"({first[0].strip()[:160]}); the checkpoint comes from another model"
        ) from None
    return model


def load_run(run: str | os.PathLike[str], runs_root: Path = Path("runs")) -> TrainedRun:
    """Rebuild a run's model from its checkpoint, in eval mode on the CPU."""
    run_dir = runs.resolve_run(run, runs_root)
    state = runs.load_checkpoint(run_dir / runs.CHECKPOINT)
    if (run_dir / runs.CONFIG).is_file():
        config_model = runs.read_config(run_dir).get("model")
        if config_model and config_model != state["model_spec"].get("name"):
            raise RunFolderError(
                f"{run_dir}: config.json says model {config_model!r} but checkpoint.pt holds "
                f"{state['model_spec'].get('name')!r}; the checkpoint comes from another run"
            )
    model = _model_from_state(state, run_dir).eval()
    normalization = state["normalization"]
    return TrainedRun(
        run_dir, model, Preprocess(normalization["mean"], normalization["std"]),
        list(state["classes"]), TrainConfig.from_dict(state["config"]), state["model_spec"],
        int(state["epoch"]),
    )  # fmt: skip


def read_image(
    path: str | os.PathLike[str], channels: int, size: int
) -> tuple[torch.Tensor, list[str]]:
    """An image file as a ``1 x C x size x size`` uint8 tensor, and notes on what was changed."""
    with opened(path) as image:
        array, notes = fit_to_input(image, channels, size)
    return torch.from_numpy(array.copy()).unsqueeze(0), notes


@torch.no_grad()
def predict(trained: TrainedRun, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities (``N x classes``) for a uint8 ``N x C x H x W`` batch."""
    return torch.softmax(trained.model(trained.preprocess(images)), dim=1)


# ---------------------------------------------------------------------- transfer learning


def load_source(source: str, runs_root: Path = Path("runs")) -> tuple[nn.Module, dict[str, Any]]:
    """A pretrained network and its spec: a cnnlab run folder, or ``torchvision:NAME`` for a
    registered torchvision model with its ImageNet weights."""
    if source.startswith("torchvision:"):
        name = source.split(":", 1)[1]
        model = create_model(name, num_classes=1000, pretrained=True)
        return model, {**model.cnnlab_spec, "kwargs": {}}
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
    (:mod:`cnnlab.transfer`) into a new run folder. Images are converted to the source's
    channels and size. Returns the fit result and what was frozen and trained."""
    from .transfer import Strategy, replace_head, trainable_groups

    parsed = Strategy.parse(strategy)
    seed_everything(config.seed)
    model, spec = load_source(source, runs_root)
    config.model, config.model_options = spec["name"], dict(spec.get("kwargs", {}))
    config.image_channels, config.image_size = spec["in_channels"], spec["input_size"]
    config.transfer = {"strategy": str(parsed), "backbone_lr_factor": backbone_lr_factor,
                       "source": source}  # fmt: skip
    train, test = load_data(config)
    replace_head(model, train.num_classes)
    model.cnnlab_spec = {**spec, "num_classes": train.num_classes}
    _, report = trainable_groups(model, parsed, config.lr, backbone_lr_factor)
    run_dir = _new_run_dir_on_rank0(
        runs_root, name, f"{spec['name']}-to-{config.dataset}-{parsed}".replace(":", "-"),
        overwrite,
    )  # fmt: skip
    return fit(model, (train, test), config, run_dir), report
