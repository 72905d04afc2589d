"""A finished run folder back to a working model: load it (checkpoint checked field by
field), read images for it, predict, evaluate it on its test split, and load the data a config
names. :mod:`cnnlab.runs.start` (training) builds on this; both are re-exported there."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import run_folder
from ..data import ImageDataset, Preprocess
from ..errors import CnnlabError, RunFolderError
from ..images import fit_resized_crop, opened
from ..models import create_model
from ..models.binary import class_probabilities
from ..train.config import MAX_IMAGE_SIDE, TrainConfig
from ..train.pipeline import load_data


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

    @property
    def resize(self) -> int | None:
        """The shorter side an image is resized to before its central ``input_size`` crop: set
        for a run transferred from an ImageNet model (256 for 224), else None."""
        return (self.config.transfer or {}).get("resize")

    def test_split(self, data_dir: str | None = None) -> ImageDataset:
        """The run's test split, from ``data_dir`` when given (else where the run's was)."""
        if data_dir:
            self.config.data_dir = data_dir
        return load_data(self.config)[1]


RESUME_KEYS = ("optimizer", "scheduler", "scaler", "history", "rng", "config", "epoch")
MAX_CLASSES = 100_000


def check_run_state(state: dict[str, Any], run_dir: Path, train: bool = False) -> dict[str, Any]:
    """Check a loaded checkpoint's fields (types and ranges), so that a damaged or forged file
    is refused by name instead of failing later or building a model of any size."""
    required = ("model", "model_spec", "normalization", "classes", "epoch", "config")
    required += RESUME_KEYS if train else ()
    missing = [key for key in required if key not in state]
    problem = f"it lacks {', '.join(missing)}" if missing else None
    for find in (_spec_problem, _weights_problem, _normalization_problem, _classes_problem):
        problem = problem or find(state)
    if problem:
        raise RunFolderError(
            f"{run_dir / run_folder.CHECKPOINT}: {problem}; the file is damaged or not from "
            "cnnlab train (retrain the run, or restore the file)"
        )
    return state


def _count(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _spec_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with the checkpoint's model_spec (a registered model's name and sizes)."""
    spec = state["model_spec"]
    if not isinstance(spec, dict):
        return f"model_spec is a {type(spec).__name__}, expected a dict"
    if spec.get("name") is None:  # a user's model: refused later, when it is rebuilt
        return None
    if not isinstance(spec["name"], str):
        return f"model_spec name {spec['name']!r} is not a model name"
    sizes = (("num_classes", MAX_CLASSES), ("in_channels", 64), ("input_size", MAX_IMAGE_SIDE))
    for key, high in sizes:
        if not _count(spec.get(key), 1, high):
            return f"model_spec {key}={spec.get(key)!r}, expected an integer 1..{high}"
    if not isinstance(spec.get("kwargs", {}), dict):
        return f"model_spec kwargs={spec['kwargs']!r}, expected a dict"
    return None


def _weights_problem(state: dict[str, Any]) -> str | None:
    """The weights, the epoch and the config: a state dict, a count, a dict."""
    if not isinstance(state["model"], dict):
        return f"model is a {type(state['model']).__name__}, expected a state dict"
    if not _count(state["epoch"], 0, 10**9):
        return f"epoch={state['epoch']!r}, expected a count of epochs"
    if not isinstance(state["config"], dict):
        return f"config is a {type(state['config']).__name__}, expected a dict"
    return None


def _normalization_problem(state: dict[str, Any]) -> str | None:
    normalization = state["normalization"]
    finite_lists = isinstance(normalization, dict) and all(
        isinstance(normalization.get(key), (list, tuple))
        and normalization[key]
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in normalization[key])
        for key in ("mean", "std")
    )
    if not (finite_lists and all(v > 0 for v in normalization["std"])):
        return "normalization must hold finite mean and positive std lists"
    return None


def _classes_problem(state: dict[str, Any]) -> str | None:
    classes, spec = state["classes"], state["model_spec"]
    if not (
        isinstance(classes, (list, tuple))
        and 1 <= len(classes) <= MAX_CLASSES
        and all(isinstance(c, str) for c in classes)
    ):
        return "classes must be a list of class names"
    if isinstance(spec.get("num_classes"), int) and len(classes) > spec["num_classes"]:
        return f"{len(classes)} class names for {spec['num_classes']} model outputs"
    return None


def config_from_state(state: dict[str, Any], run_dir: Path) -> TrainConfig:
    """The checkpoint's training config, checked as a new one would be."""
    try:
        return TrainConfig.from_dict(state["config"])
    except (CnnlabError, TypeError) as err:
        raise RunFolderError(
            f"{run_dir / run_folder.CHECKPOINT}: its config is not valid ({err}); the file is "
            "damaged"
        ) from None


def model_from_state(state: dict[str, Any], run_dir: Path) -> nn.Module:
    spec = state["model_spec"]
    if not spec.get("name"):
        raise RunFolderError(
            f"{run_dir}: the checkpoint holds a user model ({spec.get('class')}); build it "
            "yourself and call model.load_state_dict(torch.load(...)['model'])"
        )

    def build() -> nn.Module:
        return create_model(
            spec["name"],
            num_classes=spec["num_classes"],
            in_channels=spec["in_channels"],
            input_size=spec["input_size"],
            **spec.get("kwargs", {}),
        )

    def mismatch(err: Exception) -> RunFolderError:
        first = str(err).splitlines()[1:2] or str(err).splitlines()[:1] or [type(err).__name__]
        return RunFolderError(
            f"{run_dir / run_folder.CHECKPOINT}: its weights do not fit model {spec['name']} "
            f"({first[0].strip()[:160]}); the checkpoint comes from another model"
        )

    with torch.device("meta"):  # shapes first: a forged spec must not allocate a huge model
        try:
            skeleton = build()
        except (TypeError, ValueError, RuntimeError) as err:
            raise RunFolderError(
                f"{run_dir / run_folder.CHECKPOINT}: model_spec {spec} does not build "
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
    """Rebuild a run's model, eval mode on the CPU, from best.pt (--keep best) or checkpoint.pt."""
    run_dir = run_folder.resolve_run(run, runs_root)
    state = check_run_state(
        run_folder.load_checkpoint(run_folder.kept_checkpoint(run_dir)), run_dir
    )
    if (run_dir / run_folder.CONFIG).is_file():
        config_model = run_folder.read_config(run_dir).get("model")
        if config_model and config_model != state["model_spec"].get("name"):
            raise RunFolderError(
                f"{run_dir}: config.json says model {config_model!r} but checkpoint.pt holds "
                f"{state['model_spec'].get('name')!r}; the checkpoint comes from another run"
            )
    model = model_from_state(state, run_dir).eval()
    normalization = state["normalization"]
    return TrainedRun(
        run_dir,
        model,
        Preprocess(normalization["mean"], normalization["std"]),
        list(state["classes"]),
        config_from_state(state, run_dir),
        state["model_spec"],
        int(state["epoch"]),
    )


def read_image(
    path: str | os.PathLike[str],
    channels: int,
    size: int,
    resize: int | None = None,
    squash: bool = False,
) -> tuple[torch.Tensor, list[str]]:
    """An image file as a ``1 x C x size x size`` uint8 tensor and notes on what was changed:
    the shorter side resized to ``resize`` (ImageNet models: 256 for 224), else to ``size``, and
    the central ``size x size`` kept; ``squash`` resizes the whole image to it instead."""
    with opened(path) as image:
        array, notes = fit_resized_crop(image, channels, size, resize, squash)
    return torch.from_numpy(array.copy()).unsqueeze(0), notes


@torch.no_grad()
def predict(trained: Any, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities (``N x classes``) for a uint8 ``N x C x H x W`` batch of a
    :class:`TrainedRun` or a :class:`cnnlab.runs.sources.ModelSource` (its model and preprocess)."""
    logits = trained.model(trained.preprocess(images))
    return class_probabilities(logits)  # one binary logit z: [1 - s(z), s(z)]


@dataclass
class RunEvaluation:
    """A run's test-set figures: loss, accuracy, right answers and accuracy per class."""

    run: TrainedRun
    images: int
    loss: float
    accuracy: float
    right: int
    per_class: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": str(self.run.run_dir),
            "dataset": self.run.config.dataset,
            "images": self.images,
            "epoch": self.run.epoch,
            "test_loss": self.loss,
            "test_acc": self.accuracy,
            "per_class_acc": self.per_class,
        }


def evaluate_run(trained: TrainedRun, data_dir: str | None = None) -> RunEvaluation:
    """Test a run's model on its test split (from ``data_dir`` when given)."""
    from ..data import make_loader
    from ..train.checks import check_model_input
    from ..train.steps import evaluate

    test = trained.test_split(data_dir)
    check_model_input(trained.model, test)
    loader = make_loader(test, trained.config.eval_batch_size, shuffle=False)
    loss, accuracy, confusion = evaluate(  # a run trained with test-time views is tested so
        trained.model,
        loader,
        trained.preprocess,
        len(test.classes),
        flip=trained.config.test_flip,
        translate=trained.config.test_translate,
    )
    per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
    return RunEvaluation(
        trained,
        len(test),
        loss,
        accuracy,
        int(confusion.trace()),
        dict(zip(trained.classes, per_class)),
    )
