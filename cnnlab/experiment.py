"""From a config to a finished run folder, and from a run folder back to a working model.

This is what the CLI calls; the pieces (`load_dataset`, `create_model`, `fit`) stay usable alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from . import runs
from .data import ImageDataset, Preprocess, load_dataset
from .errors import CnnlabError, RunFolderError
from .images import fit_to_input, opened
from .models import create_model
from .train import (
    MAX_IMAGE_SIDE,
    FitResult,
    TrainConfig,
    check_batch_size,
    check_model_input,
    check_runtime,
    current_distributed,
    fit,
    seed_everything,
)

T = TypeVar("T")


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
    with _new_run_on_rank0(run_dir):
        return fit(model, (train, test), config, run_dir)


def resume_run(
    run: str | os.PathLike[str], epochs: int | None = None, runs_root: Path = Path("runs")
) -> FitResult:
    """Continue a run from its last checkpoint; ``epochs`` may raise its total epoch count."""
    run_dir = runs.resolve_run(run, runs_root)
    state = check_run_state(runs.load_checkpoint(run_dir / runs.CHECKPOINT), run_dir, train=True)
    config = config_from_state(state, run_dir)
    if epochs is not None:
        if epochs < state["epoch"]:
            raise CnnlabError(
                f"--epochs {epochs}: the run already finished {state['epoch']} epochs; "
                "give a larger total"
            )
        config = TrainConfig.from_dict({**asdict(config), "epochs": epochs})
    if state["epoch"] >= config.epochs:
        raise RunFolderError(
            f"{run_dir} already finished its {config.epochs} epochs; pass --epochs N (N > "
            f"{config.epochs}) to train longer"
        )
    check_runtime(config, current_distributed().local_rank)
    train, test = load_data(config)
    model = _model_from_state(state, run_dir)
    if current_distributed().is_main:
        for stale in runs.remove_stale_temporaries(run_dir):
            print(f"note: removed {stale}, a file left by a run killed mid-write")
    return fit(model, (train, test), config, run_dir, resume_from=state)


def together(work: Callable[[], T]) -> T:
    """``work()`` on every DDP rank; when it fails with a user error on any rank, every rank
    raises that error (instead of the others waiting for, or dying in, a collective)."""
    ranks = current_distributed()
    error, result = None, None
    try:
        result = work()
    except CnnlabError as err:
        error = err
    if ranks.world_size > 1:
        messages: list[Any] = [None] * ranks.world_size
        dist.all_gather_object(messages, None if error is None else str(error))
        first = next((m for m in messages if m is not None), None)
        if first is not None and error is None:
            error = CnnlabError(first)
    if error is not None:
        raise error
    return result  # type: ignore[return-value]


def _plan_on_rank0(runs_root: Path, name: str | None, default: str, overwrite: bool) -> Path:
    ranks = current_distributed()
    chosen: list[Any] = [None]

    def plan() -> None:
        if ranks.is_main:
            chosen[0] = runs.plan_run_dir(runs_root, name, default, overwrite)

    together(plan)
    if ranks.world_size > 1:
        dist.broadcast_object_list(chosen, src=0)  # every rank learns rank 0's folder
    return Path(chosen[0])


def _new_run_on_rank0(run_dir: Path) -> AbstractContextManager[Path]:
    return runs.new_run(run_dir) if current_distributed().is_main else nullcontext(run_dir)


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


RESUME_KEYS = ("optimizer", "scheduler", "scaler", "history", "rng", "config", "epoch")
MAX_CLASSES = 100_000


def check_run_state(state: dict[str, Any], run_dir: Path, train: bool = False) -> dict[str, Any]:
    """Check a loaded checkpoint's fields (types and ranges), so that a damaged or forged file
    is refused by name instead of failing later or building a model of any size."""
    path = run_dir / runs.CHECKPOINT

    def refuse(what: str) -> RunFolderError:
        return RunFolderError(
            f"{path}: {what}; the file is damaged or not from cnnlab train (retrain the run, or "
            "restore the file)"
        )

    def count(value: Any, low: int, high: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    required = ("model", "model_spec", "normalization", "classes", "epoch", "config")
    required += RESUME_KEYS if train else ()
    missing = [key for key in required if key not in state]
    if missing:
        raise refuse(f"it lacks {', '.join(missing)}")
    spec = state["model_spec"]
    if not isinstance(spec, dict):
        raise refuse(f"model_spec is a {type(spec).__name__}, expected a dict")
    if spec.get("name") is not None:  # a registered model; user models are refused later
        if not isinstance(spec["name"], str):
            raise refuse(f"model_spec name {spec['name']!r} is not a model name")
        for key, high in (("num_classes", MAX_CLASSES), ("in_channels", 64),
                          ("input_size", MAX_IMAGE_SIDE)):  # fmt: skip
            if not count(spec.get(key), 1, high):
                raise refuse(f"model_spec {key}={spec.get(key)!r}, expected an integer 1..{high}")
        if not isinstance(spec.get("kwargs", {}), dict):
            raise refuse(f"model_spec kwargs={spec['kwargs']!r}, expected a dict")
    if not isinstance(state["model"], dict):
        raise refuse(f"model is a {type(state['model']).__name__}, expected a state dict")
    normalization = state["normalization"]
    if not (
        isinstance(normalization, dict)
        and all(
            isinstance(normalization.get(key), (list, tuple))
            and normalization[key]
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in normalization[key])
            for key in ("mean", "std")
        )
        and all(v > 0 for v in normalization["std"])
    ):
        raise refuse("normalization must hold finite mean and positive std lists")
    classes = state["classes"]
    if not (
        isinstance(classes, (list, tuple))
        and 1 <= len(classes) <= MAX_CLASSES
        and all(isinstance(c, str) for c in classes)
    ):
        raise refuse("classes must be a list of class names")
    if isinstance(spec.get("num_classes"), int) and len(classes) > spec["num_classes"]:
        raise refuse(f"{len(classes)} class names for {spec['num_classes']} model outputs")
    if not count(state["epoch"], 0, 10**9):
        raise refuse(f"epoch={state['epoch']!r}, expected a count of epochs")
    if not isinstance(state["config"], dict):
        raise refuse(f"config is a {type(state['config']).__name__}, expected a dict")
    return state


def config_from_state(state: dict[str, Any], run_dir: Path) -> TrainConfig:
    """The checkpoint's training config, checked as a new one would be."""
    try:
        return TrainConfig.from_dict(state["config"])
    except (CnnlabError, TypeError) as err:
        raise RunFolderError(
            f"{run_dir / runs.CHECKPOINT}: its config is not valid ({err}); the file is damaged"
        ) from None


def _model_from_state(state: dict[str, Any], run_dir: Path) -> nn.Module:
    spec = state["model_spec"]
    if not spec.get("name"):
        raise RunFolderError(
            f"{run_dir}: the checkpoint holds a user model ({spec.get('class')}); build it "
            "yourself and call model.load_state_dict(torch.load(...)['model'])"
        )

    def build() -> nn.Module:
        return create_model(
            spec["name"], num_classes=spec["num_classes"], in_channels=spec["in_channels"],
            input_size=spec["input_size"], **spec.get("kwargs", {}),
        )  # fmt: skip

    def mismatch(err: Exception) -> RunFolderError:
        first = str(err).splitlines()[1:2] or str(err).splitlines()[:1] or [type(err).__name__]
        return RunFolderError(
            f"{run_dir / runs.CHECKPOINT}: its weights do not fit model {spec['name']} "
            f"({first[0].strip()[:160]}); the checkpoint comes from another model"
        )

    with torch.device("meta"):  # shapes first: a forged spec must not allocate a huge model
        try:
            skeleton = build()
        except (TypeError, ValueError, RuntimeError) as err:
            raise RunFolderError(
                f"{run_dir / runs.CHECKPOINT}: model_spec {spec} does not build "
                f"({type(err).__name__}: {str(err)[:120]}); the file is damaged"
            ) from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    weights = state["model"]
    given = {k: tuple(v.shape) for k, v in weights.items() if isinstance(v, torch.Tensor)}
    missing = sorted(set(expected) - set(given))
    wrong = [k for k in expected if k in given and given[k] != expected[k]]
    if missing or wrong or len(given) != len(weights):
        problem = (
            f"Missing key(s) in state_dict: {', '.join(missing[:3])}"
            if missing
            else f"{wrong[0]} has shape {given[wrong[0]]}, the model needs {expected[wrong[0]]}"
            if wrong
            else "it holds values that are not tensors"
        )
        raise mismatch(RuntimeError(f"\n{problem}"))
    model = build()
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise mismatch(err) from None
    return model


def load_run(run: str | os.PathLike[str], runs_root: Path = Path("runs")) -> TrainedRun:
    """Rebuild a run's model from its checkpoint, in eval mode on the CPU."""
    run_dir = runs.resolve_run(run, runs_root)
    state = check_run_state(runs.load_checkpoint(run_dir / runs.CHECKPOINT), run_dir)
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
        list(state["classes"]), config_from_state(state, run_dir), state["model_spec"],
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
    check_runtime(config, current_distributed().local_rank)
    seed_everything(config.seed)
    model, spec = load_source(source, runs_root)
    config.model, config.model_options = spec["name"], dict(spec.get("kwargs", {}))
    config.image_channels, config.image_size = spec["in_channels"], spec["input_size"]
    config.transfer = {"strategy": str(parsed), "backbone_lr_factor": backbone_lr_factor,
                       "source": source}  # fmt: skip
    run_dir = _plan_on_rank0(
        runs_root, name, f"{spec['name']}-to-{config.dataset}-{parsed}".replace(":", "-"),
        overwrite,
    )  # fmt: skip
    train, test = load_data(config)
    check_batch_size(config, len(train), current_distributed().world_size)
    replace_head(model, train.num_classes)
    model.cnnlab_spec = {**spec, "num_classes": train.num_classes}
    _, report = trainable_groups(model, parsed, config.lr, backbone_lr_factor)
    with _new_run_on_rank0(run_dir):
        return fit(model, (train, test), config, run_dir), report
