"""The trainer: ``fit(model, data, config)``, one explicit loop you can read top to bottom.

It runs on one CPU or GPU, or as one of N processes under ``torchrun`` (PyTorch DDP: gloo on
CPU, NCCL on GPU), where each rank trains on its own shard and only rank 0 writes files.
Features that change the loop (transfer learning's parameter groups and frozen batch norms,
a run's figures) come in through :class:`~cnnlab.train_config.TrainingHooks`; the settings,
their checks and the device/rank helpers live in :mod:`cnnlab.train_config` and
:mod:`cnnlab.distributed` and are importable from here as well.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from . import runs
from .data import ImageDataset, make_loader
from .data.batches import INPUT_SCALINGS, scaling_stats
from .distributed import (
    Distributed,
    current_distributed,
    init_distributed,
    parse_device,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)
from .errors import CnnlabError
from .outputs import report
from .pipeline import alexnet_augmentation, crop_padding_for, training_batches
from .steps import (
    EpochSteps,
    Lookahead,
    StepEvaluation,
    TrainingDiverged,
    autocast,
    diverged,
    evaluate,
    training_loss,
)
from .train_config import (
    AMP_MODES,
    AUGMENT_STYLES,
    LR_MAX,
    MAX_IMAGE_SIDE,
    OPTIMIZERS,
    SCHEDULES,
    SEED_MAX,
    TrainConfig,
    TrainingHooks,
    check_batch_size,
    check_model_input,
    check_runtime,
    check_test_flip,
    is_count,
    is_real_in,
)
from .validation import keep_best, validation_loader, validation_scores, validation_split

__all__ = [  # the settings, checks and rank helpers are re-exported from their modules
    "AMP_MODES",
    "AUGMENT_STYLES",
    "INPUT_SCALINGS",
    "LR_MAX",
    "MAX_IMAGE_SIDE",
    "OPTIMIZERS",
    "SCHEDULES",
    "SEED_MAX",
    "STEPS_CSV",
    "Distributed",
    "FitResult",
    "StepEvaluation",
    "TrainConfig",
    "TrainingDiverged",
    "TrainingHooks",
    "alexnet_augmentation",
    "autocast",
    "check_batch_size",
    "check_model_input",
    "check_runtime",
    "check_test_flip",
    "crop_padding_for",
    "current_distributed",
    "diverged",
    "draw_run_figures",
    "evaluate",
    "fit",
    "init_distributed",
    "is_count",
    "is_real_in",
    "lr_factor",
    "make_optimizer",
    "model_spec",
    "parse_device",
    "resolve_device",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "standard_hooks",
    "training_loss",
]


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
    elif hasattr(model, "optimizer_groups"):
        params = model.optimizer_groups(config.lr, config.weight_decay)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
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
        resume_from: a checkpoint dict from :func:`cnnlab.runs.load_checkpoint`; training goes on
            from its epoch with its weights, optimizer, schedule and RNG state.
        hooks: what features add to the loop; by default :func:`standard_hooks` ``(config)``.
        verbose: report each epoch's line through the ``cnnlab`` logger at INFO, shown on
            stderr unless logging is set up otherwise; False logs it at DEBUG only (a quiet
            notebook cell). The progress bar is ``config.progress``, drawn on a terminal only.

    Returns:
        The per-epoch history, the final confusion matrix and, with ``config.eval_every``, the
        rows of the tests every N optimizer steps.
    """
    hooks = standard_hooks(config, run_dir) if hooks is None else hooks
    train_set, test_set = data
    train_set, val_set = validation_split(train_set, config.val_split, config.seed)
    ranks = current_distributed()
    device = check_runtime(config, ranks.local_rank)
    model.to(device)
    check_model_input(model, train_set)
    test_flip = check_test_flip(config, train_set)
    if train_set.num_classes != test_set.num_classes:
        raise CnnlabError(
            f"train split has {train_set.num_classes} classes, test split {test_set.num_classes}"
        )

    # ---- data: batches on the device, scaled as config.input_scaling says (by default
    # normalized with the training images' statistics); a resumed run keeps its saved scale
    if resume_from is not None:
        mean, std = resume_from["normalization"]["mean"], resume_from["normalization"]["std"]
    elif (config.transfer or {}).get("normalization"):  # from an ImageNet model: ImageNet's
        mean, std = (config.transfer["normalization"][key] for key in ("mean", "std"))
    else:
        mean, std = scaling_stats(train_set, config.input_scaling)
    check_batch_size(config, len(train_set), ranks.world_size)
    common = dict(device=device, seed=config.seed, rank=ranks.rank, world_size=ranks.world_size)
    # in memory: BatchLoader; an image folder too big for memory: DataLoader workers
    preprocess, train_loader = training_batches(train_set, config, (mean, std), **common)
    test_loader = make_loader(test_set, config.eval_batch_size, shuffle=False, **common)
    val_loader = validation_loader(val_set, config, **common)
    evaluation = None
    if config.eval_every is not None:
        evaluation = StepEvaluation(
            config.eval_every,
            model,
            test_loader,
            preprocess,
            train_set.num_classes,
            config.amp,
            hooks.after_train_mode,
            test_flip,
        )

    # ---- model, optimizer, schedule
    if resume_from is None and config.transfer is None and hasattr(model, "initialize_from_data"):
        # data-dependent initialization of a new model (cifar_air's whitening layer; a
        # transferred one keeps what it learned): the same random images on every rank
        # (image folders come sorted by class), scaled as training scales them
        sample = train_set.sample(DATA_INIT_IMAGES, config.seed).to(device)
        model.initialize_from_data(preprocess(sample, augment=False))
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config, hooks)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, len(train_loader), config)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
    history: list[dict[str, float]] = []
    start_epoch = 0
    if resume_from is not None:
        model.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
        scheduler.load_state_dict(resume_from["scheduler"])
        scaler.load_state_dict(resume_from["scaler"])
        history = list(resume_from["history"])
        start_epoch = int(resume_from["epoch"])
        set_rng_state(resume_from["rng"])
        if evaluation is not None:
            evaluation.load_state(resume_from.get("steps"))
        if ranks.is_main:  # a run killed between its checkpoint and best.pt
            keep_best(config, run_dir, history, resume_from)
    trained = _distributed_model(model, device) if ranks.world_size > 1 else model
    lookahead = None  # after DDP's wrapper has given every rank rank 0's weights
    if config.lookahead:
        lookahead = Lookahead(model, resume_from.get("lookahead") if resume_from else None)
    if run_dir is not None and ranks.is_main:
        runs.write_config(run_dir, asdict(config), resumed=resume_from is not None)

    confusion = torch.zeros(train_set.num_classes, train_set.num_classes, dtype=torch.int64)
    for epoch in range(start_epoch, config.epochs):
        # ---- one epoch of training
        train_loader.set_epoch(epoch)
        augment_rng = torch.Generator(device).manual_seed(
            (config.seed * 1000 + epoch) * 64 + ranks.rank
        )
        trained.train()
        if hooks.after_train_mode is not None:
            hooks.after_train_mode(model)
        epoch_steps = EpochSteps(
            model, trained, optimizer, scheduler, scaler, config, epoch, run_dir, evaluation
        )
        epoch_steps.after_step = hooks.after_step if ranks.is_main else None
        epoch_steps.lookahead = lookahead
        totals, train_seconds = epoch_steps.run(train_loader, preprocess, augment_rng)

        # ---- test (unless the epoch's last step was just tested), record, checkpoint
        if (
            evaluation is not None
            and evaluation.last
            and evaluation.last[0] == (epoch + 1) * len(train_loader)
        ):
            test_loss, test_acc, confusion = evaluation.last[1]
        else:  # the bare model: ranks may differ in steps
            test_loss, test_acc, confusion = evaluate(
                model, test_loader, preprocess, train_set.num_classes, config.amp, test_flip
            )
        if evaluation is not None:
            evaluation.merged()  # every rank's running sums, for the checkpoint
        row = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": float(totals[0] / totals[2]),
            "train_acc": float(totals[1] / totals[2]),
            **validation_scores(
                model, val_loader, preprocess, train_set.num_classes, config, test_flip
            ),
            "test_loss": test_loss,
            "test_acc": test_acc,
            "train_seconds": train_seconds,
            "images_per_second": float(totals[2]) / train_seconds,
        }
        history.append(row)
        if ranks.is_main:
            report(_epoch_line(row, config.epochs), verbose)
        if run_dir is not None and ranks.is_main:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch + 1,
                "history": history,
                "rng": rng_state(),
                "config": asdict(config),
                "model_spec": model_spec(model),
                "normalization": {"mean": list(mean), "std": list(std)},
                "classes": list(train_set.classes),
                **({"steps": evaluation.state()} if evaluation is not None else {}),
                **({"lookahead": lookahead.slow} if lookahead is not None else {}),
            }
            runs.save_checkpoint(run_dir / runs.CHECKPOINT, state)
            keep_best(config, run_dir, history, state)  # --keep best: best.pt
            runs.write_metrics(run_dir / runs.METRICS, history)
            if evaluation is not None:
                runs.write_metrics(run_dir / STEPS_CSV, evaluation.rows)
        if ranks.is_main and hooks.after_epoch is not None:
            hooks.after_epoch(row, (epoch + 1) * len(train_loader))
        if ranks.world_size > 1:
            dist.barrier()  # no rank races ahead of the checkpoint

    steps = list(evaluation.rows) if evaluation is not None else []
    result = FitResult(history, confusion, run_dir, list(train_set.classes), steps)
    if ranks.is_main and hooks.after_fit is not None:
        hooks.after_fit(result)
    return result


def _distributed_model(model: nn.Module, device: torch.device) -> nn.Module:
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
    spec = getattr(model, "cnnlab_spec", None)
    return dict(spec) if spec else {"name": None, "class": type(model).__qualname__}


def _epoch_line(row: dict[str, float], epochs: int) -> str:
    val = f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}  " if "val_acc" in row else ""
    return (
        f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.2%}  {val}test loss {row['test_loss']:.4f} "
        f"acc {row['test_acc']:.2%}  {row['train_seconds']:.1f} s  "
        f"{row['images_per_second']:,.0f} img/s"
    )


# ------------------------------------------------------------------------------ standard hooks


def standard_hooks(config: TrainConfig, run_dir: Path | None = None) -> TrainingHooks:
    """The hooks :func:`fit` uses when given none: the transfer strategy's parameter groups and
    frozen batch norms when ``config.transfer`` is set (:func:`cnnlab.transfer.training_hooks`),
    :func:`draw_run_figures` after the last epoch, and with ``config.tensorboard`` TensorBoard
    event files in ``run_dir/tensorboard`` (:func:`cnnlab.tensorboard_log.with_tensorboard`)."""
    hooks = TrainingHooks()
    if config.transfer:
        from .transfer import training_hooks

        hooks = training_hooks(config.transfer, config.lr)
    title = f"{config.model} on {config.dataset}"
    hooks = replace(hooks, after_fit=lambda result: draw_run_figures(result, title))
    if config.tensorboard and run_dir is not None:
        from .tensorboard_log import with_tensorboard

        hooks = with_tensorboard(hooks, run_dir, config)
    return hooks


def draw_run_figures(result: FitResult, title: str) -> None:
    """curves.png (loss and accuracy per epoch) and confusion.png in the run folder, if any."""
    if result.run_dir is None:
        return
    from .inspect.plots import plot_confusion, plot_curves

    plot_curves(result.history, result.run_dir / "curves.png", title=title)
    plot_confusion(result.confusion, result.classes, result.run_dir / "confusion.png")
