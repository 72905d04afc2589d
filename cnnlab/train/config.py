"""What decides a training run, checked before anything is loaded or written: the settings
(:class:`TrainConfig`, saved as ``config.json`` and in each checkpoint), the checks that
depend on the machine and the data, and :class:`TrainingHooks`, the small interface through
which a feature (transfer learning, a run's figures) adds to the trainer's loop without the
loop knowing the feature."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import runs
from ..data import ImageDataset
from ..data.batches import INPUT_SCALINGS
from ..errors import CnnlabError, first_line
from ..model_interface import spec_of
from ..models.init import INIT_SCHEMES
from .distributed import parse_device, resolve_device

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "linear", "step")
AMP_MODES = ("none", "bf16", "fp16")
AUGMENT_STYLES = ("standard", "alexnet")
KEEP_CHOICES = ("last", "best")  # --keep: the last checkpoint, or also the best by validation
SEED_MAX = 2**32 - 1  # NumPy's seeds are 32-bit
LR_MAX = 100.0  # far above any working rate; 1e308 or inf only train to NaN
MAX_IMAGE_SIDE = 4096


def is_count(value: Any, low: int, high: int | None = None) -> bool:
    """An integer (not a bool) with ``low <= value`` and, when given, ``value <= high``."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )


def is_real_in(value: Any, low: float, high: float) -> bool:
    """A real number (not NaN, not inf) with ``low <= value <= high``."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved as ``config.json`` and in each checkpoint."""

    model: str = "lenet5"
    model_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"modern": True}
    dataset: str = "digits"
    data_dir: str | None = None  # else $CNNLAB_DATA, else ~/.cache/cnnlab/data
    data_variant: str | None = None  # cifar10 only: official | jpeg | subset
    train_subset: int | None = None  # train on a random subset of this many images
    test_subset: int | None = None
    # hold out this fraction of the training images (stratified, seeded by seed) for validation
    val_split: float = 0.0
    image_channels: int | None = None  # convert images to 1 (gray) or 3 (RGB) channels
    image_size: int | None = None  # resize images to this side (mixed sizes: shorter side + crop)
    stream: bool = False  # imagefolder: read images from disk per batch (also when too big)
    classes: list[str] | None = None  # keep only these classes, relabelled 0.. in this order
    transfer: dict[str, Any] | None = None  # {"strategy", "backbone_lr_factor", "source"}
    epochs: int = 30
    batch_size: int = 64  # images per optimizer step, summed over all DDP processes
    eval_batch_size: int = 500
    optimizer: str = "adam"
    lr: float = 1e-3  # peak learning rate, reached after the warm-up
    momentum: float = 0.9  # SGD only
    nesterov: bool = False
    weight_decay: float = 0.0
    adam_eps: float = 1e-8  # Adam/AdamW epsilon: PyTorch's default 1e-8; Keras' is 1e-7
    # weights of the new model's conv and linear layers: torch (PyTorch's layer defaults),
    # keras (glorot_uniform, zero biases) or normal-0.01 (AlexNet's paper): cnnlab.models.init
    init: str = "torch"
    schedule: str = "cosine"  # per step: none | cosine | linear (to 0) | step
    warmup_epochs: float = 0.0  # linear warm-up from 0, in (fractional) epochs
    step_epochs: int = 10  # schedule "step": multiply by step_gamma every this many epochs
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    test_flip: bool = False  # test-time augmentation: average the logits of image and mirror
    lookahead: bool = False  # airbench's lookahead: pull the weights to a slow copy every 5 steps
    augment: bool = False  # random crop (pad 2 for 28/32 px, 1 for 8 px) + flip where allowed
    # with augment: standard (the line above) | alexnet (scale up by 256/224, random crop back
    # to size, flip where allowed, fancy PCA colour on RGB data: cnnlab.data.augment)
    augment_style: str = "standard"
    input_scaling: str = "standard"  # none (0..255) | unit (x / 255) | standard (mean/std)
    shuffle: bool = True  # a new order of the training images every epoch, else stored order
    eval_every: int | None = None  # also test every N optimizer steps (FitResult.steps)
    seed: int = 0
    device: str = "auto"  # auto (CUDA if present) | cpu | cuda | cuda:N
    amp: str = "none"  # autocast: none | bf16 | fp16 (CUDA)
    channels_last: bool = False  # NHWC memory order; faster convolutions on GPUs and CPUs
    # time a second of steps with bf16 and fp32, channels_last and not; train with the fastest
    probe: bool = False
    progress: bool = True
    tensorboard: bool = False  # TensorBoard event files in RUN/tensorboard (rank 0)
    keep: str = "last"  # best: also best.pt, the epoch of the best validation accuracy

    def __post_init__(self) -> None:
        """Refuse every setting that cannot train, before anything is loaded or written."""
        positive_int = "a positive integer"
        checks = [
            (self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, ", ".join(OPTIMIZERS)),
            (self.schedule in SCHEDULES, "schedule", self.schedule, ", ".join(SCHEDULES)),
            (self.amp in AMP_MODES, "amp", self.amp, ", ".join(AMP_MODES)),
            (
                self.input_scaling in INPUT_SCALINGS,
                "input_scaling",
                self.input_scaling,
                f"{', '.join(INPUT_SCALINGS)} (unit: x / 255 in 0..1, as Keras and ToTensor())",
            ),
            (isinstance(self.shuffle, bool), "shuffle", self.shuffle, "true or false"),
            (
                self.augment_style in AUGMENT_STYLES,
                "augment_style",
                self.augment_style,
                f"{', '.join(AUGMENT_STYLES)} (alexnet: scale, random crop, flip, fancy PCA)",
            ),
            (isinstance(self.tensorboard, bool), "tensorboard", self.tensorboard, "true or false"),
            (isinstance(self.probe, bool), "probe", self.probe, "true or false"),
            (
                is_real_in(self.adam_eps, 0, 1) and self.adam_eps > 0,
                "adam_eps",
                self.adam_eps,
                "a small positive number (PyTorch 1e-8, Keras 1e-7)",
            ),
            (self.init in INIT_SCHEMES, "init", self.init, ", ".join(INIT_SCHEMES)),
            (
                is_real_in(self.val_split, 0, 1) and self.val_split < 1,
                "val_split",
                self.val_split,
                "a fraction 0 <= f < 1 of the training images, e.g. 0.1 (0: no validation)",
            ),
            (
                self.keep in KEEP_CHOICES
                and (self.keep != "best" or (is_real_in(self.val_split, 0, 1) and self.val_split)),
                "keep",
                self.keep,
                "last, or best with a validation split to pick the best by (add --val-split 0.1)",
            ),
            (isinstance(self.test_flip, bool), "test_flip", self.test_flip, "true or false"),
            (isinstance(self.lookahead, bool), "lookahead", self.lookahead, "true or false"),
            (
                self.eval_every is None or is_count(self.eval_every, 1),
                "eval_every",
                self.eval_every,
                "a positive number of optimizer steps, e.g. 50",
            ),
            (is_count(self.epochs, 1), "epochs", self.epochs, positive_int),
            (is_count(self.batch_size, 1), "batch_size", self.batch_size, positive_int),
            (
                is_count(self.eval_batch_size, 1),
                "eval_batch_size",
                self.eval_batch_size,
                positive_int,
            ),
            (is_count(self.seed, 0, SEED_MAX), "seed", self.seed, f"an integer 0..{SEED_MAX}"),
            (
                is_real_in(self.lr, 0, LR_MAX) and self.lr > 0,
                "lr",
                self.lr,
                f"a finite number in (0, {LR_MAX}]; typical: 1e-3 for Adam, 0.01-0.1 for SGD",
            ),
            (
                is_real_in(self.momentum, 0, 1) and self.momentum < 1,
                "momentum",
                self.momentum,
                "0 <= momentum < 1 (0.9 is usual)",
            ),
            (
                not self.nesterov or (self.optimizer == "sgd" and self.momentum > 0),
                "nesterov",
                self.nesterov,
                f"--optimizer sgd and --momentum > 0 for Nesterov momentum (here: "
                f"{self.optimizer}, momentum {self.momentum}); e.g. --momentum 0.9",
            ),
            (
                is_real_in(self.weight_decay, 0, 1),
                "weight_decay",
                self.weight_decay,
                "a number in [0, 1] (5e-4 is usual)",
            ),
            (
                is_real_in(self.warmup_epochs, 0, self.epochs if is_count(self.epochs, 1) else 0),
                "warmup_epochs",
                self.warmup_epochs,
                f"a number of epochs from 0 to the run's {self.epochs} epochs",
            ),
            (is_count(self.step_epochs, 1), "step_epochs", self.step_epochs, positive_int),
            (
                is_real_in(self.step_gamma, 0, 1) and self.step_gamma > 0,
                "step_gamma",
                self.step_gamma,
                "0 < step_gamma <= 1 (0.1 is usual)",
            ),
            (
                is_real_in(self.label_smoothing, 0, 1) and self.label_smoothing < 1,
                "label_smoothing",
                self.label_smoothing,
                "0 <= x < 1",
            ),
            (
                self.train_subset is None or is_count(self.train_subset, 1),
                "train_subset",
                self.train_subset,
                positive_int,
            ),
            (
                self.test_subset is None or is_count(self.test_subset, 1),
                "test_subset",
                self.test_subset,
                positive_int,
            ),
            (
                self.image_channels in (None, 1, 3),
                "image_channels",
                self.image_channels,
                "1 (gray) or 3 (RGB)",
            ),
            (
                isinstance(self.stream, bool)
                and (not self.stream or self.dataset == "imagefolder"),
                "stream",
                self.stream,
                f"false for --dataset {self.dataset}: only an image folder (--dataset imagefolder) "
                "streams from disk; the built-in data sets are held in memory, drop --stream",
            ),
            (
                self.image_size is None or is_count(self.image_size, 1, MAX_IMAGE_SIDE),
                "image_size",
                self.image_size,
                f"an integer 1..{MAX_IMAGE_SIDE}",
            ),
            (
                self.classes is None
                or (
                    isinstance(self.classes, (list, tuple))
                    and len(self.classes) >= 2
                    and all(isinstance(c, str) and c for c in self.classes)
                    and len(set(self.classes)) == len(self.classes)
                ),
                "classes",
                self.classes,
                "two or more distinct class names of the data set, e.g. --classes cat,dog",
            ),
            (
                isinstance(self.model_options, dict),
                "model_options",
                self.model_options,
                "a dict of builder options",
            ),
        ]
        for ok, name, value, expected in checks:
            if not ok:
                flag = "-O" if name == "model_options" else f"--{name.replace('_', '-')}"
                raise CnnlabError(f"{name}={value!r} ({flag}): expected {expected}")
        parse_device(self.device)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of a ``train --config FILE``: a JSON or YAML (``.yaml``/``.yml``) mapping
    of :class:`TrainConfig` fields, such as a run's ``config.json``, whose records (versions,
    command line: :data:`cnnlab.runs.RECORD_KEYS`) are skipped. Values are checked when the
    TrainConfig is built; an unknown key is refused by name."""
    path = Path(path)
    yaml_file = path.suffix.lower() in (".yaml", ".yml")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        reason = "no such file" if isinstance(err, FileNotFoundError) else str(err)
        raise CnnlabError(
            f"--config {path}: cannot read it ({reason}); give a JSON or YAML file of settings, "
            "e.g. runs/NAME/config.json"
        ) from None
    try:
        if yaml_file:
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as err:  # json.JSONDecodeError, yaml.YAMLError
        first = first_line(err, type(err).__name__)
        kind = "YAML" if yaml_file else "JSON (name a YAML file .yaml or .yml)"
        raise CnnlabError(f"--config {path}: not valid {kind}: {first}; fix the file") from None
    if not isinstance(values, dict):
        raise CnnlabError(
            f"--config {path}: holds a {type(values).__name__}, expected a mapping of settings "
            'such as {"epochs": 3, "lr": 0.01}'
        )
    known = [f.name for f in fields(TrainConfig)]
    for key in values:
        if key not in known and key not in runs.RECORD_KEYS:
            raise CnnlabError(
                f"--config {path}: unknown setting {key!r}; expected TrainConfig fields: "
                f"{', '.join(known)}"
            )
    if not isinstance(values.get("model_options", {}), dict):
        raise CnnlabError(
            f"--config {path}: model_options is {values['model_options']!r}, expected a mapping "
            'such as {modern: true} (YAML) or {"modern": true} (JSON)'
        )
    if values.get("transfer"):
        raise CnnlabError(
            f"--config {path}: it is a transfer run's (transfer: {values['transfer']}); "
            "rerun it with `cnnlab transfer`, or drop the transfer key"
        )
    return {k: v for k, v in values.items() if k in known}


@dataclass(frozen=True)
class TrainingHooks:
    """What a feature adds to :func:`cnnlab.train.fit`'s loop; every hook is optional.

    - ``param_groups(model)``: the optimizer's parameter groups (each a dict with ``params``
      and optionally ``lr``); by default every parameter that requires a gradient, at
      ``config.lr``. Called again when a run resumes, so it must be idempotent.
    - ``after_train_mode(model)``: called on the bare model each epoch right after it is put
      in training mode (transfer learning puts frozen batch norms back in evaluation mode).
    - ``after_fit(result)``: called with the :class:`~cnnlab.train.FitResult` on rank 0 after
      the last epoch (a run's figures are drawn here); not called when a run fails.
    - ``after_step(step, loss, lr, images)``: on rank 0 after every optimizer step; ``step``
      counts from 1 over the whole run, ``loss`` is the step's loss tensor (still on the device:
      reading it is a host sync, so batch the reads), ``lr`` the rate the step used and
      ``images`` the step's global batch.
    - ``after_epoch(row, step)``: on rank 0 after each epoch's checkpoint, with its
      ``metrics.csv`` row and the run's optimizer steps so far (TensorBoard logs here).
    """

    param_groups: Callable[[nn.Module], list[dict[str, Any]]] | None = None
    after_train_mode: Callable[[nn.Module], None] | None = None
    after_fit: Callable[[Any], None] | None = None
    after_step: Callable[[int, torch.Tensor, float, int], None] | None = None
    after_epoch: Callable[[dict[str, float], int], None] | None = None


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
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            images = dataset.images[:2] if isinstance(dataset, ImageDataset) else dataset.sample(2)
            probe = images.float().to(next(model.parameters()).device)
            out = model(probe)
    except RuntimeError as err:
        raise CnnlabError(
            f"the model cannot take {dataset.name} images of shape {got}: {first_line(err)}"
        ) from None
    finally:
        model.train(was_training)
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
