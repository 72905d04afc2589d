"""What decides a training run: the settings (:class:`TrainConfig`, saved as ``config.json``
and in each checkpoint), each declared once with its default, check, flag and help; and
:class:`TrainingHooks`, the small interface through which a feature (transfer learning, a
run's figures) adds to the trainer's loop without the loop knowing the feature. The checks
that need the machine or the data are in :mod:`.checks`; ``--config FILE`` is read by
:mod:`.config_file`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from ..data.batches import INPUT_SCALINGS
from ..data.datasets import CIFAR_VARIANTS, DATASET_NAMES
from ..errors import CnnlabError
from ..models.init import INIT_SCHEMES
from .distributed import parse_device
from .options import (
    BOOLEAN,
    POSITIVE,
    boolean,
    class_list,
    comma_list,
    count,
    is_count,
    is_real_in,
    option,
    real,
)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "linear", "step")
AMP_MODES = ("none", "bf16", "fp16")
AUGMENT_STYLES = ("standard", "alexnet")
KEEP_CHOICES = ("last", "best")  # --keep: the last checkpoint, or also the best by validation
SEED_MAX = 2**32 - 1  # NumPy's seeds are 32-bit
LR_MAX = 100.0  # far above any working rate; 1e308 or inf only train to NaN
MAX_IMAGE_SIDE = 4096


def _known_device(value: Any, config: Any) -> bool:
    parse_device(value)  # refuses an unknown device in its own words
    return True


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved as ``config.json`` and in each checkpoint.

    Each field is declared once, by :func:`option`: its default, its check, its ``cnnlab
    train`` flag and help (the parser is generated from these fields, in this order)."""

    model: str = option("lenet5", group="model", help="a name from `cnnlab models`")
    model_options: dict[str, Any] = option(
        factory=dict,
        group="model",
        flag="-O",
        help="a builder option, e.g. -O modern=true for lenet5 (`cnnlab models --options` lists "
        "them), or -O binary=true with two --classes",
        check=lambda value, config: isinstance(value, dict),
        expected="a dict of builder options",
    )
    init: str = option(
        "torch",
        group="model",
        choices=INIT_SCHEMES,
        help="conv/linear weights: torch, keras (glorot-uniform, zero bias), normal-0.01",
    )
    dataset: str = option(
        "digits",
        group="data",
        choices=DATASET_NAMES,
        check_choices=False,  # load_data names the data sets and how to add one
        help="what to train on (`cnnlab data` shows where each is found)",
    )
    data_dir: str | None = option(
        group="data", help="data folder (default: $CNNLAB_DATA, else the cache)"
    )
    data_variant: str | None = option(
        group="data",
        choices=CIFAR_VARIANTS,
        check_choices=False,  # load_data says which variants are found
        help="cifar10 source (default: the first found of official, jpeg, subset)",
    )
    image_channels: int | None = option(
        group="data",
        choices=(1, 3),
        expected="1 (gray) or 3 (RGB)",
        help="convert the images to 1 (gray) or 3 (RGB) channels; the multiply-adds this saves "
        "or costs are printed before training (default: the data set's)",
    )
    image_size: int | None = option(
        group="data",
        metavar="N",
        check=count(1, MAX_IMAGE_SIDE),
        expected=f"an integer 1..{MAX_IMAGE_SIDE}",
        help="resize the images to N x N (bilinear; an image folder of mixed sizes: each "
        "image's shorter side to N, then the centre N x N); the model is built for that size "
        "(default: the data set's)",
    )
    stream: bool = option(
        False,
        group="data",
        switch="on",
        check=lambda value, config: (
            isinstance(value, bool) and (not value or config.dataset == "imagefolder")
        ),
        expected=lambda config: (
            f"false for --dataset {config.dataset}: only an image folder "
            "(--dataset imagefolder) streams from disk; the built-in data sets are held in memory, "
            "drop --stream"
        ),
        help="imagefolder: read the images from disk batch by batch (DataLoader workers) instead "
        "of holding them in memory; chosen by itself when they would not fit",
    )
    train_subset: int | None = option(
        group="data",
        metavar="N",
        check=count(1),
        expected=POSITIVE,
        help="train on N random images (default: all)",
    )
    test_subset: int | None = option(
        group="data",
        metavar="N",
        check=count(1),
        expected=POSITIVE,
        help="test on N random images (default: all)",
    )
    val_split: float = option(
        0.0,
        group="data",
        metavar="FRACTION",
        check=real(0, 1, open_high=True),
        expected="a fraction 0 <= f < 1 of the training images, e.g. 0.1 (0: no validation)",
        help="hold out this fraction of the training images for validation (stratified, "
        "seeded by --seed): val_loss and val_acc each epoch; 0: none",
    )
    classes: list[str] | None = option(
        group="data",
        metavar="A,B,...",
        parse=comma_list,
        check=class_list,
        expected="two or more distinct class names of the data set, e.g. --classes cat,dog",
        help="keep only these classes (names or numbers), relabelled 0, 1, ... in this order, "
        "e.g. --classes cat,dog; with two, -O binary=true trains a one-logit sigmoid head "
        "(default: all)",
    )
    augment: bool = option(
        False, group="data", switch="both", help="random crops and flips of the training images"
    )
    augment_style: str = option(
        "standard",
        group="data",
        choices=AUGMENT_STYLES,
        expected=f"{', '.join(AUGMENT_STYLES)} (alexnet: scale, random crop, flip, fancy PCA)",
        help="with --augment: standard (pad-and-crop + flip) or alexnet (scale up by 256/224, "
        "random crop back, flip, fancy PCA colour on RGB data, as AlexNet did)",
    )
    input_scaling: str = option(
        "standard",
        group="data",
        choices=INPUT_SCALINGS,
        expected=f"{', '.join(INPUT_SCALINGS)} (unit: x / 255 in 0..1, as Keras and ToTensor())",
        help="pixels as none: 0..255, unit: x/255 (Keras, ToTensor()), standard: per-channel "
        "mean/std of the training images",
    )
    shuffle: bool = option(
        True,
        group="data",
        switch="both",
        check=boolean,
        expected=BOOLEAN,
        help="a new training order every epoch (--no-shuffle: the stored order, as a DataLoader "
        "without shuffle=True)",
    )
    test_flip: bool = option(
        False,
        group="data",
        switch="both",
        check=boolean,
        expected=BOOLEAN,
        help="test-time augmentation: score each test image by the mean logits of it and its "
        "mirror image (photos; refused for digits)",
    )
    test_translate: int = option(
        0,
        group="data",
        metavar="N",
        check=count(0, 4),
        expected="0 (off) to 4 pixels, e.g. 1 (airbench's)",
        help="test-time augmentation: also score each test image shifted N pixels up-left and "
        "N down-right (edges reflected), half the weight to the shifts, each mirrored too with "
        "--test-flip; 0: off",
    )
    small_size: int = option(
        0,
        group="data",
        metavar="N",
        check=lambda value, config: (
            value == 0 or (is_count(value, 4, MAX_IMAGE_SIDE) and config.small_epochs != 0)
        ),
        expected=f"0 (off), or a side of 4 to {MAX_IMAGE_SIDE} pixels with --small-epochs E, "
        "e.g. --small-size 24 --small-epochs 3",
        help="progressive resizing: the first --small-epochs epochs train on the images "
        "scaled down to N x N (antialiased bilinear; cheaper steps), the rest at full size; "
        "tests are always at full size; 0: off",
    )
    small_epochs: int = option(
        0,
        group="data",
        metavar="E",
        check=lambda value, config: (
            value == 0
            or (is_count(value, 1) and (not is_count(config.epochs, 1) or value < config.epochs))
        ),
        expected=lambda config: (
            "0 (off), or 1 to "
            + (f"{config.epochs - 1}" if is_count(config.epochs, 1) else "the epochs less 1")
            + " (the last epoch trains at full size), e.g. --small-size 24 --small-epochs 3"
        ),
        help="how many epochs, from the first, train at --small-size (without it: none)",
    )
    epochs: int = option(
        30,
        group="optimisation",
        check=count(1),
        expected=POSITIVE,
        help="total epochs (with --resume: raise the run's total)",
    )
    batch_size: int = option(
        64, group="optimisation", check=count(1), expected=POSITIVE, help="global, over all ranks"
    )
    optimizer: str = option(
        "adam", group="optimisation", choices=OPTIMIZERS, help="the update rule"
    )
    lr: float = option(
        1e-3,
        group="optimisation",
        check=real(0, LR_MAX, open_low=True),
        expected=f"a finite number in (0, {LR_MAX}]; typical: 1e-3 for Adam, 0.01-0.1 for SGD",
        help="peak learning rate",
    )
    momentum: float = option(
        0.9,
        group="optimisation",
        check=real(0, 1, open_high=True),
        expected="0 <= momentum < 1 (0.9 is usual)",
        help="SGD momentum",
    )
    nesterov: bool = option(
        False,
        group="optimisation",
        switch="on",
        check=lambda value, config: (
            not value or (config.optimizer == "sgd" and config.momentum > 0)
        ),
        expected=lambda config: (
            "--optimizer sgd and --momentum > 0 for Nesterov momentum "
            f"(here: {config.optimizer}, momentum {config.momentum}); e.g. --momentum 0.9"
        ),
        help="Nesterov momentum (SGD)",
    )
    weight_decay: float = option(
        0.0,
        group="optimisation",
        check=real(0, 1),
        expected="a number in [0, 1] (5e-4 is usual)",
        help="L2 penalty",
    )
    adam_eps: float = option(
        1e-8,
        group="optimisation",
        check=real(0, 1, open_low=True),
        expected="a small positive number (PyTorch 1e-8, Keras 1e-7)",
        help="Adam's epsilon (PyTorch: 1e-8; Keras: 1e-7)",
    )
    label_smoothing: float = option(
        0.0,
        group="optimisation",
        check=real(0, 1, open_high=True),
        expected="0 <= x < 1",
        help="share of the target spread over all classes",
    )
    lookahead: bool = option(
        False,
        group="optimisation",
        switch="both",
        check=boolean,
        expected=BOOLEAN,
        help="airbench's lookahead: every 5 steps pull the weights towards a slow copy, more "
        "so as the run ends (calmer final weights)",
    )
    ema: float = option(
        0.0,
        group="optimisation",
        metavar="DECAY",
        check=lambda value, config: (
            value == 0 or (is_real_in(value, 0, 1) and 0 < value < 1 and not config.lookahead)
        ),
        expected="0 (off) or a decay between 0 and 1, e.g. 0.99, and not with --lookahead "
        "(both set the final weights)",
        help="keep an exponential moving average of the weights (this decay per step, warmed "
        "up as TensorFlow does); the run ends with the model at the average; 0: off",
    )
    seed: int = option(
        0,
        group="optimisation",
        check=count(0, SEED_MAX),
        expected=f"an integer 0..{SEED_MAX}",
        help="weights, order, augmentation, split",
    )
    schedule: str = option("cosine", group="schedule", choices=SCHEDULES, help="per-step LR shape")
    warmup_epochs: float = option(
        0.0,
        group="schedule",
        check=lambda value, config: is_real_in(
            value, 0, config.epochs if is_count(config.epochs, 1) else 0
        ),
        expected=lambda config: f"a number of epochs from 0 to the run's {config.epochs} epochs",
        help="linear warm-up from 0, in epochs",
    )
    step_epochs: int = option(
        10,
        group="schedule",
        check=count(1),
        expected=POSITIVE,
        help="--schedule step: epochs between steps",
    )
    step_gamma: float = option(
        0.1,
        group="schedule",
        check=real(0, 1, open_low=True),
        expected="0 < step_gamma <= 1 (0.1 is usual)",
        help="--schedule step: LR factor at each step",
    )
    keep: str = option(
        "last",
        group="output",
        choices=KEEP_CHOICES,
        check=lambda value, config: (
            value in KEEP_CHOICES
            and (value != "best" or bool(is_real_in(config.val_split, 0, 1) and config.val_split))
        ),
        expected="last, or best with a validation split to pick the best by (add --val-split 0.1)",
        help="best: also keep best.pt, the epoch of the best validation accuracy (needs "
        "--val-split), which eval, predict and show then use",
    )
    eval_every: int | None = option(
        group="output",
        metavar="N",
        check=count(1),
        expected="a positive number of optimizer steps, e.g. 50",
        help="also test every N optimizer steps (steps.csv in the run folder)",
    )
    tensorboard: bool = option(
        False,
        group="output",
        switch="on",
        check=boolean,
        expected=BOOLEAN,
        help="write TensorBoard event files into RUN/tensorboard (view: tensorboard --logdir runs)",
    )
    progress: bool = option(
        True, group="output", switch="off", flag="--no-progress", help="hide the progress bar"
    )
    device: str = option(
        "auto", group="hardware", check=_known_device, help="auto, cpu, cuda or cuda:N"
    )
    amp: str = option("none", group="hardware", choices=AMP_MODES, help="autocast precision")
    channels_last: bool = option(False, group="hardware", switch="on", help="NHWC memory order")
    probe: bool = option(
        False,
        group="hardware",
        switch="on",
        check=boolean,
        expected=BOOLEAN,
        help="time bf16/fp32 and channels_last or not for a second; train the fastest",
    )
    # no flag: set by `cnnlab transfer` ({"strategy", "backbone_lr_factor", "source"}) and by
    # the API (images per evaluation batch)
    transfer: dict[str, Any] | None = option()
    eval_batch_size: int = option(500, check=count(1), expected=POSITIVE)

    def __post_init__(self) -> None:
        """Refuse every setting that cannot train, before anything is loaded or written: each
        field's check, in the order declared."""
        for spec in fields(self):
            value, meta = getattr(self, spec.name), spec.metadata
            check = meta.get("check")
            if check is None or (value is None and spec.default is None) or check(value, self):
                continue
            expected = meta["expected"]
            expected = expected(self) if callable(expected) else expected
            flag = meta["flag"] or f"--{spec.name.replace('_', '-')}"
            if not meta.get("group"):  # no flag: a --config file's or the Python API's key
                flag = "a --config file or TrainConfig key; no flag"
            raise CnnlabError(f"{spec.name}={value!r} ({flag}): expected {expected}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


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
