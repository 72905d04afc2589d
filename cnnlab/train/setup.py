"""What :func:`cnnlab.train.fit`'s loop is built from: the optimizer and its schedule, the
loaders, the step tests and the scaler (:func:`prepare`), a checkpoint restored (:func:`resume`),
one epoch of steps (:func:`train_epoch`), its test (:func:`test_epoch`) and its checkpoint
(:func:`save_epoch`); and the hooks ``fit`` uses when given none (:func:`standard_hooks`)."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import run_folder
from ..data import ImageDataset, make_loader
from ..data.batches import scaling_stats
from ..errors import CnnlabError
from ..model_interface import initializes_from_data, own_optimizer_groups, spec_of
from ..outputs import report
from .checks import (
    check_batch_size,
    check_model_input,
    check_runtime,
    check_small_size,
    check_test_flip,
)
from .config import TrainConfig, TrainingHooks
from .distributed import current_distributed, rng_state, set_rng_state
from .pipeline import training_batches
from .probe import probe_settings
from .steps import EpochSteps, Lookahead, StepEvaluation, WeightAverage, evaluate
from .validation import keep_best, validation_loader, validation_split

STEPS_CSV = "steps.csv"  # the tests every --eval-every steps, beside metrics.csv per epoch
DATA_INIT_IMAGES = 5000  # the images a model's initialize_from_data sees (airbench's 5,000)


@dataclass
class FitResult:
    history: list[dict[str, float]]
    confusion: torch.Tensor  # rows: true class, columns: predicted class
    run_dir: Path | None
    classes: list[str] = field(default_factory=list)  # the confusion matrix's row names
    # with config.eval_every: {step, epoch, train_loss, train_acc, test_loss, test_acc} rows
    steps: list[dict[str, float]] = field(default_factory=list)

    @property
    def test_accuracy(self) -> float:
        return self.history[-1]["test_acc"]


# ------------------------------------------------------------------------- optimizer, schedule


def make_optimizer(
    model: nn.Module, config: TrainConfig, hooks: TrainingHooks | None = None
) -> torch.optim.Optimizer:
    """The configured optimizer over ``hooks.param_groups(model)`` (by default
    :func:`standard_hooks`), else over the model's own ``optimizer_groups(lr, weight_decay)``
    where it has one (``cifar_air``'s batch-norm shifts learn faster), else over every
    parameter that requires a gradient."""
    hooks = standard_hooks(config) if hooks is None else hooks
    params: list[Any]
    if hooks.param_groups is not None:
        params = hooks.param_groups(model)
    else:
        own = own_optimizer_groups(model, config.lr, config.weight_decay)
        params = own if own is not None else [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer_class(
        params, lr=config.lr, eps=config.adam_eps, weight_decay=config.weight_decay
    )


def lr_factor(step: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    total = config.epochs * steps_per_epoch
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if config.schedule == "linear":
        return 1 - progress
    if config.schedule == "step":
        return config.step_gamma ** (step // (config.step_epochs * steps_per_epoch))
    return 1.0


@dataclass
class Loop:
    """What every epoch of :func:`fit` shares: the model (and its DDP wrapper), the data and
    its scale, the optimizer with its schedule and scaler, the step tests."""

    model: nn.Module
    trained: nn.Module  # the model, or its DistributedDataParallel wrapper
    device: torch.device
    train_set: ImageDataset
    normalization: tuple[Any, Any]  # the mean and std the inputs are scaled by
    preprocess: Any
    train_loader: Any
    test_loader: Any
    val_loader: Any
    test_flip: bool
    evaluation: StepEvaluation | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    hooks: TrainingHooks
    averaging: Lookahead | WeightAverage | None = None  # --lookahead or --ema


def input_scale(
    config: TrainConfig, train_set: ImageDataset, resume_from: dict[str, Any] | None
) -> tuple[Any, Any]:
    """The mean and std inputs are scaled by: a resumed run's saved ones, an ImageNet model's
    (transfer learning), else the training images' as ``config.input_scaling`` says."""
    if resume_from is not None:
        return resume_from["normalization"]["mean"], resume_from["normalization"]["std"]
    if (config.transfer or {}).get("normalization"):
        return tuple(config.transfer["normalization"][key] for key in ("mean", "std"))
    return scaling_stats(train_set, config.input_scaling)


def checked(model: nn.Module, data: tuple[ImageDataset, ImageDataset], config: TrainConfig):
    """The training split less its validation split, the validation and test splits, the
    device (``model`` moved there) and test-time flipping, once the model, data, device and
    batch size are checked against each other."""
    train_set, test_set = data
    train_set, val_set = validation_split(train_set, config.val_split, config.seed)
    ranks = current_distributed()
    device = check_runtime(config, ranks.local_rank)
    model.to(device)
    check_model_input(model, train_set)
    test_flip = check_test_flip(config, train_set)
    check_small_size(config, model, train_set)
    if train_set.num_classes != test_set.num_classes:
        raise CnnlabError(
            f"train split has {train_set.num_classes} classes, test split {test_set.num_classes}"
        )
    check_batch_size(config, len(train_set), ranks.world_size)
    return train_set, val_set, test_set, device, test_flip


def prepare(
    model: nn.Module,
    data: tuple[ImageDataset, ImageDataset],
    config: TrainConfig,
    resume_from: dict[str, Any] | None,
    hooks: TrainingHooks,
    verbose: bool = True,
) -> Loop:
    """Check the model and data, build the loaders (batches on the device, scaled as
    ``config.input_scaling`` says; a resumed run keeps its saved scale), the step tests, the
    data-dependent initialisation of a new model, the optimizer, schedule and scaler."""
    ranks = current_distributed()
    train_set, val_set, test_set, device, test_flip = checked(model, data, config)
    mean, std = input_scale(config, train_set, resume_from)
    common = dict(device=device, seed=config.seed, rank=ranks.rank, world_size=ranks.world_size)
    # in memory: BatchLoader; an image folder too big for memory: DataLoader workers
    preprocess, train_loader = training_batches(train_set, config, (mean, std), **common)
    if config.probe and resume_from is None and ranks.world_size == 1:
        found = probe_settings(config, model, preprocess, train_set, device)
        # config.json records the choice, not the probe: a rerun from it trains the same way
        config.amp, config.channels_last, config.probe = found.amp, found.channels_last, False
        report(found.line, verbose)
    test_loader = make_loader(test_set, config.eval_batch_size, shuffle=False, **common)
    evaluation = None
    if config.eval_every is not None:  # the step tests (after the probe: its precision)
        args = (preprocess, train_set.num_classes, config.amp, hooks.after_train_mode, test_flip)
        evaluation = StepEvaluation(
            config.eval_every, model, test_loader, *args, test_translate=config.test_translate
        )
    if resume_from is None and config.transfer is None and initializes_from_data(model):
        # data-dependent initialization of a new model (cifar_air's whitening layer; a
        # transferred one keeps what it learned): the same random images on every rank
        # (image folders come sorted by class), scaled as training scales them
        sample = train_set.sample(DATA_INIT_IMAGES, config.seed).to(device)
        model.initialize_from_data(preprocess(sample, augment=False))
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config, hooks)
    steps_per_epoch = len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, config)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
    return Loop(
        model,
        model,
        device,
        train_set,
        (mean, std),
        preprocess,
        train_loader,
        test_loader,
        validation_loader(val_set, config, **common),
        test_flip,
        evaluation,
        optimizer,
        scheduler,
        scaler,
        hooks,
    )


def resume(
    loop: Loop, config: TrainConfig, run_dir: Path | None, resume_from: dict[str, Any] | None
) -> tuple[list[dict[str, float]], int]:
    """The history so far and the first epoch to train: a checkpoint's weights, optimizer,
    schedule, scaler, RNG and step tests restored; then DDP's wrapper (which gives every rank
    rank 0's weights), Lookahead's slow weights and the weight average."""
    ranks = current_distributed()
    history: list[dict[str, float]] = []
    start_epoch = 0
    if resume_from is not None:
        loop.model.load_state_dict(resume_from["model"])
        loop.optimizer.load_state_dict(resume_from["optimizer"])
        loop.scheduler.load_state_dict(resume_from["scheduler"])
        loop.scaler.load_state_dict(resume_from["scaler"])
        history = list(resume_from["history"])
        start_epoch = int(resume_from["epoch"])
        set_rng_state(resume_from["rng"])
        if loop.evaluation is not None:
            loop.evaluation.load_state(resume_from.get("steps"))
        if ranks.is_main:  # a run killed between its checkpoint and best.pt
            keep_best(config, run_dir, history, resume_from)
    if ranks.world_size > 1:
        loop.trained = distributed_model(loop.model, loop.device)
    saved = resume_from or {}
    if config.lookahead:
        loop.averaging = Lookahead(loop.model, saved.get(Lookahead.KEY))
    elif config.ema:  # refused beside --lookahead
        loop.averaging = WeightAverage(loop.model, config.ema, saved.get(WeightAverage.KEY))
    return history, start_epoch


def train_epoch(
    loop: Loop, config: TrainConfig, epoch: int, run_dir: Path | None, hooks: TrainingHooks
) -> tuple[torch.Tensor, float]:
    """One epoch of optimizer steps: (loss sum, right answers, images) and its seconds."""
    ranks = current_distributed()
    loop.train_loader.set_epoch(epoch)
    augment_rng = torch.Generator(loop.device).manual_seed(
        (config.seed * 1000 + epoch) * 64 + ranks.rank
    )
    loop.trained.train()
    if hooks.after_train_mode is not None:
        hooks.after_train_mode(loop.model)
    epoch_steps = EpochSteps(
        loop.model,
        loop.trained,
        loop.optimizer,
        loop.scheduler,
        loop.scaler,
        config,
        epoch,
        run_dir,
        loop.evaluation,
    )
    epoch_steps.after_step = hooks.after_step if ranks.is_main else None
    epoch_steps.averaging = loop.averaging
    return epoch_steps.run(loop.train_loader, loop.preprocess, augment_rng)


def test_epoch(loop: Loop, config: TrainConfig, epoch: int) -> tuple[float, float, torch.Tensor]:
    """The epoch's test loss, accuracy and confusion matrix (the step tests' last one when
    the epoch's last step was just tested); every rank's step-test sums merged."""
    evaluation, classes = loop.evaluation, loop.train_set.num_classes
    tested = evaluation is not None and evaluation.last
    if tested and evaluation.last[0] == (epoch + 1) * len(loop.train_loader):
        result = evaluation.last[1]
        evaluation.merged()
        return result
    result = evaluate(  # the bare model: ranks may differ in steps
        loop.model,
        loop.test_loader,
        loop.preprocess,
        classes,
        config.amp,
        loop.test_flip,
        config.test_translate,
    )
    if evaluation is not None:
        evaluation.merged()  # every rank's running sums, for the checkpoint
    return result


def save_epoch(
    loop: Loop, config: TrainConfig, run_dir: Path, epoch: int, history: list[dict[str, float]]
) -> None:
    """The checkpoint (atomically), best.pt (--keep best), metrics.csv and steps.csv."""
    mean, std = loop.normalization
    state = {
        "model": loop.model.state_dict(),
        "optimizer": loop.optimizer.state_dict(),
        "scheduler": loop.scheduler.state_dict(),
        "scaler": loop.scaler.state_dict(),
        "epoch": epoch + 1,
        "history": history,
        "rng": rng_state(),
        "config": asdict(config),
        "model_spec": model_spec(loop.model),
        "normalization": {"mean": list(mean), "std": list(std)},
        "classes": list(loop.train_set.classes),
        **({"steps": loop.evaluation.state()} if loop.evaluation is not None else {}),
        **({loop.averaging.KEY: loop.averaging.saved} if loop.averaging is not None else {}),
    }
    run_folder.save_checkpoint(run_dir / run_folder.CHECKPOINT, state)
    keep_best(config, run_dir, history, state)  # --keep best: best.pt
    run_folder.write_metrics(run_dir / run_folder.METRICS, history)
    if loop.evaluation is not None:
        run_folder.write_metrics(run_dir / STEPS_CSV, loop.evaluation.rows)


def distributed_model(model: nn.Module, device: torch.device) -> nn.Module:
    # A weight with a size-1 dimension (LeNet's conv1: 6 x 1 x 5 x 5) gets its gradient with a
    # different stride for that dimension than DDP's bucket; the memory layout is the same, so
    # DDP's "Grad strides do not match bucket view strides" is a false alarm there. With
    # --channels-last the weights are converted before DDP is built and nothing differs.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def model_spec(model: nn.Module) -> dict[str, Any]:
    """How to rebuild the model: the registry spec, or just its class for user models."""
    spec = spec_of(model)
    return dict(spec) if spec else {"name": None, "class": type(model).__qualname__}


# ------------------------------------------------------------------------------ standard hooks


def standard_hooks(config: TrainConfig, run_dir: Path | None = None) -> TrainingHooks:
    """The hooks :func:`fit` uses when given none: the transfer strategy's parameter groups and
    frozen batch norms when ``config.transfer`` is set
    (:func:`cnnlab.train.transfer.training_hooks`), :func:`draw_run_figures` after the last
    epoch, and with ``config.tensorboard`` TensorBoard event files in ``run_dir/tensorboard``
    (:func:`cnnlab.train.tensorboard.with_tensorboard`)."""
    hooks = TrainingHooks()
    if config.transfer:
        from .transfer import training_hooks

        hooks = training_hooks(config.transfer, config.lr)
    title = f"{config.model} on {config.dataset}"
    hooks = replace(hooks, after_fit=lambda result: draw_run_figures(result, title))
    if config.tensorboard and run_dir is not None:
        from .tensorboard import with_tensorboard

        hooks = with_tensorboard(hooks, run_dir, config)
    return hooks


def draw_run_figures(result: FitResult, title: str) -> None:
    """curves.png (loss and accuracy per epoch) and confusion.png in the run folder, if any."""
    if result.run_dir is None:
        return
    from ..inspect.plots import plot_confusion, plot_curves

    plot_curves(result.history, result.run_dir / "curves.png", title=title)
    plot_confusion(result.confusion, result.classes, result.run_dir / "confusion.png")
