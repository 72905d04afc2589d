"""The trainer: ``fit(model, data, config)``, one explicit loop you can read top to bottom.

It runs on one CPU or GPU, or as one of N processes under ``torchrun`` (PyTorch DDP: gloo on
CPU, NCCL on GPU), where each rank trains on its own shard and only rank 0 writes files.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from . import runs
from .data import BatchLoader, ImageDataset, Preprocess
from .errors import CnnlabError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "linear", "step")
AMP_MODES = ("none", "bf16", "fp16")
SEED_MAX = 2**32 - 1  # NumPy's seeds are 32-bit
LR_MAX = 100.0  # far above any working rate; 1e308 or inf only train to NaN
MAX_IMAGE_SIDE = 4096


def _is_int(value: Any, low: int, high: int | None = None) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )


def _in_range(value: Any, low: float, high: float) -> bool:
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
    image_channels: int | None = None  # convert images to 1 (gray) or 3 (RGB) channels
    image_size: int | None = None  # resize images to this side (bilinear)
    transfer: dict[str, Any] | None = None  # {"strategy", "backbone_lr_factor", "source"}
    epochs: int = 30
    batch_size: int = 64  # images per optimizer step, summed over all DDP processes
    eval_batch_size: int = 500
    optimizer: str = "adam"
    lr: float = 1e-3  # peak learning rate, reached after the warm-up
    momentum: float = 0.9  # SGD only
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "cosine"  # per step: none | cosine | linear (to 0) | step
    warmup_epochs: float = 0.0  # linear warm-up from 0, in (fractional) epochs
    step_epochs: int = 10  # schedule "step": multiply by step_gamma every this many epochs
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    augment: bool = False  # random crop (pad 2 for 28/32 px, 1 for 8 px) + flip where allowed
    seed: int = 0
    device: str = "auto"  # auto (CUDA if present) | cpu | cuda | cuda:N
    amp: str = "none"  # autocast: none | bf16 | fp16 (CUDA)
    channels_last: bool = False  # NHWC memory order; faster convolutions on GPUs and CPUs
    progress: bool = True

    def __post_init__(self) -> None:
        """Refuse every setting that cannot train, before anything is loaded or written."""
        positive_int = "a positive integer"
        checks = [
            (self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, ", ".join(OPTIMIZERS)),
            (self.schedule in SCHEDULES, "schedule", self.schedule, ", ".join(SCHEDULES)),
            (self.amp in AMP_MODES, "amp", self.amp, ", ".join(AMP_MODES)),
            (_is_int(self.epochs, 1), "epochs", self.epochs, positive_int),
            (_is_int(self.batch_size, 1), "batch_size", self.batch_size, positive_int),
            (_is_int(self.eval_batch_size, 1), "eval_batch_size", self.eval_batch_size,
             positive_int),
            (_is_int(self.seed, 0, SEED_MAX), "seed", self.seed, f"an integer 0..{SEED_MAX}"),
            (_in_range(self.lr, 0, LR_MAX) and self.lr > 0, "lr", self.lr,
             f"a finite number in (0, {LR_MAX}]; typical: 1e-3 for Adam, 0.01-0.1 for SGD"),
            (_in_range(self.momentum, 0, 1) and self.momentum < 1, "momentum", self.momentum,
             "0 <= momentum < 1 (0.9 is usual)"),
            (not self.nesterov or (self.optimizer == "sgd" and self.momentum > 0), "nesterov",
             self.nesterov, f"--optimizer sgd and --momentum > 0 for Nesterov momentum (here: "
             f"{self.optimizer}, momentum {self.momentum}); e.g. --momentum 0.9"),
            (_in_range(self.weight_decay, 0, 1), "weight_decay", self.weight_decay,
             "a number in [0, 1] (5e-4 is usual)"),
            (_in_range(self.warmup_epochs, 0, self.epochs if _is_int(self.epochs, 1) else 0),
             "warmup_epochs", self.warmup_epochs,
             f"a number of epochs from 0 to the run's {self.epochs} epochs"),
            (_is_int(self.step_epochs, 1), "step_epochs", self.step_epochs, positive_int),
            (_in_range(self.step_gamma, 0, 1) and self.step_gamma > 0, "step_gamma",
             self.step_gamma, "0 < step_gamma <= 1 (0.1 is usual)"),
            (_in_range(self.label_smoothing, 0, 1) and self.label_smoothing < 1,
             "label_smoothing", self.label_smoothing, "0 <= x < 1"),
            (self.train_subset is None or _is_int(self.train_subset, 1), "train_subset",
             self.train_subset, positive_int),
            (self.test_subset is None or _is_int(self.test_subset, 1), "test_subset",
             self.test_subset, positive_int),
            (self.image_channels in (None, 1, 3), "image_channels", self.image_channels,
             "1 (gray) or 3 (RGB)"),
            (self.image_size is None or _is_int(self.image_size, 1, MAX_IMAGE_SIDE),
             "image_size", self.image_size, f"an integer 1..{MAX_IMAGE_SIDE}"),
            (isinstance(self.model_options, dict), "model_options", self.model_options,
             "a dict of builder options"),
        ]  # fmt: skip
        for ok, name, value, expected in checks:
            if not ok:
                flag = "-O" if name == "model_options" else f"--{name.replace('_', '-')}"
                raise CnnlabError(f"{name}={value!r} ({flag}): expected {expected}")
        parse_device(self.device)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class FitResult:
    history: list[dict[str, float]]
    confusion: torch.Tensor  # rows: true class, columns: predicted class
    run_dir: Path | None

    @property
    def test_accuracy(self) -> float:
        return self.history[-1]["test_acc"]


# ----------------------------------------------------------------------------- devices, ranks


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> Distributed:
    """Join the process group ``torchrun`` describes in the environment (no-op for 1 process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed()
    info = Distributed(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return info


def current_distributed() -> Distributed:
    if dist.is_available() and dist.is_initialized():
        return Distributed(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        )
    return Distributed()


def parse_device(name: str) -> torch.device | None:
    """``auto`` (None), ``cpu``, ``cuda`` or ``cuda:N`` as a device; anything else is refused."""
    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise CnnlabError(f"device {name!r}: expected auto, cpu, cuda or cuda:N (e.g. cuda:0)")
    return device


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device a run trains on; a GPU that is not there is refused with the fix."""
    device = parse_device(name)
    if device is None:
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CnnlabError(f"device {name!r}: no CUDA GPU is visible here; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise CnnlabError(
                f"device {name!r}: this machine has {count} GPU(s), cuda:0..cuda:{count - 1}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CnnlabError(f"device {name!r}: no Apple GPU (MPS) here; use --device cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def check_runtime(config: TrainConfig, local_rank: int = 0) -> torch.device:
    """The checks that depend on this machine (device, precision); returns the device."""
    device = resolve_device(config.device, local_rank)
    if config.amp == "fp16" and device.type != "cuda":
        raise CnnlabError(
            f"--amp fp16 on device {device.type!r}: fp16 autocast needs a CUDA GPU; use --amp "
            "bf16 on the CPU, or --amp none"
        )
    return device


# ------------------------------------------------------------------------------ input checks


def check_model_input(model: nn.Module, dataset: ImageDataset) -> None:
    """Fail early, with shapes, when the data does not fit the model."""
    spec = getattr(model, "cnnlab_spec", None)
    got = f"{dataset.channels}x{dataset.image_size}x{dataset.image_size}"
    if spec is not None:
        want = f"{spec['in_channels']}x{spec['input_size']}x{spec['input_size']}"
        if (spec["in_channels"], spec["input_size"]) != (
            dataset.channels,
            dataset.image_size,
        ):
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
            probe = dataset.images[:2].float().to(next(model.parameters()).device)
            out = model(probe)
    except RuntimeError as err:
        raise CnnlabError(
            f"the model cannot take {dataset.name} images of shape {got}: "
            f"{str(err).splitlines()[0]}"
        ) from None
    finally:
        model.train(was_training)
    if out.dim() != 2 or out.shape[1] < dataset.num_classes:
        raise CnnlabError(
            f"the model returns shape {tuple(out.shape)} for a batch of 2; expected "
            f"(2, {dataset.num_classes}) class scores for {dataset.name}"
        )


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


def crop_padding_for(image_size: int) -> int:
    return 1 if image_size <= 16 else 2 if image_size <= 32 else 4


# ------------------------------------------------------------------------- optimizer, schedule


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params: list[Any] = [p for p in model.parameters() if p.requires_grad]
    if config.transfer:  # frozen layers and a smaller learning rate for the pretrained ones
        from .transfer import Strategy, trainable_groups

        params, _ = trainable_groups(
            model, Strategy.parse(config.transfer["strategy"]), config.lr,
            config.transfer.get("backbone_lr_factor", 0.1),
        )  # fmt: skip
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )  # fmt: skip
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer_class(params, lr=config.lr, weight_decay=config.weight_decay)


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


# -------------------------------------------------------------------------------- RNG state


def rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [x.tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: BatchLoader,
    preprocess: Preprocess,
    num_classes: int,
    amp: str = "none",
) -> tuple[float, float, torch.Tensor]:
    """Mean loss, accuracy and confusion matrix over the loader (summed over DDP ranks)."""
    was_training = model.training
    model.eval()
    device = loader.images.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for images, labels in loader:
        with autocast(device, amp):
            logits = model(preprocess(images))
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
        predictions = logits.argmax(dim=1)
        confusion += torch.bincount(labels * num_classes + predictions, minlength=num_classes**2)
    if current_distributed().world_size > 1:
        dist.all_reduce(loss_sum)
        dist.all_reduce(confusion)
    model.train(was_training)
    confusion = confusion.view(num_classes, num_classes).cpu()
    count = int(confusion.sum())
    return (
        float(loss_sum) / max(count, 1),
        float(confusion.trace()) / max(count, 1),
        confusion,
    )


def training_loss(
    outputs: torch.Tensor | tuple[torch.Tensor, ...], labels: torch.Tensor,
    label_smoothing: float, model: nn.Module,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Cross-entropy of the main output, plus ``model.aux_loss_weight`` times that of each
    auxiliary output when a model returns ``(main, aux1, ...)`` in training (GoogLeNet's
    auxiliary classifiers: weight 0.3). Returns the loss and the main logits."""
    if isinstance(outputs, (tuple, list)):
        main, *aux = outputs
        weight = float(getattr(model, "aux_loss_weight", 0.3))
        loss = F.cross_entropy(main, labels, label_smoothing=label_smoothing)
        for extra in aux:
            loss = loss + weight * F.cross_entropy(extra, labels, label_smoothing=label_smoothing)
        return loss, main
    return F.cross_entropy(outputs, labels, label_smoothing=label_smoothing), outputs


def autocast(device: torch.device, amp: str):
    if amp == "none":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


# ---------------------------------------------------------------------------------- training


def fit(
    model: nn.Module,
    data: tuple[ImageDataset, ImageDataset],
    config: TrainConfig,
    run_dir: Path | None = None,
    resume_from: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` on ``data = (train, test)`` as ``config`` says; test after every epoch.

    Args:
        model: any ``nn.Module`` mapping ``N x C x H x W`` images to ``N x classes`` scores.
        data: the training and test splits.
        config: the hyperparameters.
        run_dir: where to write config.json, metrics.csv, checkpoint.pt (every epoch, atomically),
            curves.png and confusion.png; nothing is written when None. Only rank 0 writes.
        resume_from: a checkpoint dict from :func:`cnnlab.runs.load_checkpoint`; training goes on
            from its epoch with its weights, optimizer, schedule and RNG state.

    Returns:
        The per-epoch history and the final confusion matrix.
    """
    train_set, test_set = data
    ranks = current_distributed()
    device = check_runtime(config, ranks.local_rank)
    model.to(device)
    check_model_input(model, train_set)
    if train_set.num_classes != test_set.num_classes:
        raise CnnlabError(
            f"train split has {train_set.num_classes} classes, test split {test_set.num_classes}"
        )

    # ---- data: batches on the device, normalized with the training images' statistics
    if resume_from is not None:
        mean, std = (
            resume_from["normalization"]["mean"],
            resume_from["normalization"]["std"],
        )
    else:
        mean, std = train_set.channel_stats()
    preprocess = Preprocess(
        mean, std,
        crop_padding=crop_padding_for(train_set.image_size) if config.augment else 0,
        flip=config.augment and train_set.flip_ok,
        channels_last=config.channels_last,
    )  # fmt: skip
    check_batch_size(config, len(train_set), ranks.world_size)
    common = dict(device=device, seed=config.seed, rank=ranks.rank, world_size=ranks.world_size)
    train_loader = BatchLoader(train_set, config.batch_size, shuffle=True, drop_last=True, **common)
    test_loader = BatchLoader(test_set, config.eval_batch_size, shuffle=False, **common)
    steps_per_epoch = len(train_loader)

    # ---- model, optimizer, schedule
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, config)
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
    trained = model
    if ranks.world_size > 1:
        # A weight with a size-1 dimension (LeNet's conv1: 6 x 1 x 5 x 5) gets its gradient with
        # a different stride for that dimension than DDP's bucket; the memory layout is the same,
        # so DDP's "Grad strides do not match bucket view strides" is a false alarm there. With
        # --channels-last the weights are converted before DDP is built and nothing differs.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if run_dir is not None and ranks.is_main:
        runs.write_text(run_dir / runs.CONFIG, _config_json(config))

    confusion = torch.zeros(train_set.num_classes, train_set.num_classes, dtype=torch.int64)
    for epoch in range(start_epoch, config.epochs):
        # ---- one epoch of training
        train_loader.set_epoch(epoch)
        augment_rng = torch.Generator(device).manual_seed(
            (config.seed * 1000 + epoch) * 64 + ranks.rank
        )
        trained.train()
        if config.transfer:  # frozen batch norms keep their pretrained statistics
            from .transfer import freeze_batchnorm

            freeze_batchnorm(model)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        bar = tqdm(
            total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
            leave=False, disable=not (config.progress and ranks.is_main), file=sys.stderr,
        )  # fmt: skip
        started = time.perf_counter()
        for step, (images, labels) in enumerate(train_loader):
            inputs = preprocess(images, augment=config.augment, generator=augment_rng)
            with autocast(device, config.amp):
                logits = trained(inputs)
                loss, logits = training_loss(logits, labels, config.label_smoothing, model)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach() * len(labels)
            correct += (logits.detach().argmax(dim=1) == labels).sum()
            seen += len(labels)
            if bar.disable is False and (step % 20 == 0 or step == steps_per_epoch - 1):
                elapsed = time.perf_counter() - started
                bar.set_postfix(
                    loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.2%}",
                    img_s=f"{seen * ranks.world_size / elapsed:,.0f}", refresh=False,
                )  # fmt: skip
            bar.update()
            if step % 50 == 49 and not torch.isfinite(loss_sum):  # one host sync per 50 steps
                raise diverged(config, epoch, step, run_dir)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - started
        bar.close()
        totals = torch.stack(
            [
                loss_sum.double(),
                correct.double(),
                torch.tensor(seen, device=device).double(),
            ]
        )
        if ranks.world_size > 1:
            dist.all_reduce(totals)
        if not torch.isfinite(totals[0]):
            raise diverged(config, epoch, steps_per_epoch - 1, run_dir)

        # ---- test, record, checkpoint
        test_loss, test_acc, confusion = evaluate(  # the bare model: ranks may differ in steps
            model, test_loader, preprocess, train_set.num_classes, config.amp
        )
        row = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": float(totals[0] / totals[2]),
            "train_acc": float(totals[1] / totals[2]),
            "test_loss": test_loss,
            "test_acc": test_acc,
            "train_seconds": train_seconds,
            "images_per_second": float(totals[2]) / train_seconds,
        }
        history.append(row)
        if ranks.is_main:
            print(_epoch_line(row, config.epochs), file=sys.stderr, flush=True)
        if run_dir is not None and ranks.is_main:
            runs.save_checkpoint(run_dir / runs.CHECKPOINT, {
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
            })  # fmt: skip
            runs.write_metrics(run_dir / runs.METRICS, history)
        if ranks.world_size > 1:
            dist.barrier()  # no rank races ahead of the checkpoint

    if run_dir is not None and ranks.is_main:
        from .inspect.plots import plot_confusion, plot_curves

        plot_curves(history, run_dir / "curves.png", title=f"{config.model} on {config.dataset}")
        plot_confusion(confusion, train_set.classes, run_dir / "confusion.png")
    return FitResult(history, confusion, run_dir)


class TrainingDiverged(CnnlabError):
    """The training loss became NaN or infinite; the epoch is not saved."""


def diverged(config: TrainConfig, epoch: int, step: int, run_dir: Path | None) -> TrainingDiverged:
    kept = (
        f"the last good checkpoint (epoch {epoch}) stays in {run_dir}"
        if run_dir is not None and epoch > 0
        else "nothing was saved"
    )
    return TrainingDiverged(
        f"epoch {epoch + 1}, step {step + 1}: the training loss became NaN or infinite with "
        f"lr {config.lr:g} ({config.optimizer}); {kept}. Lower --lr (e.g. by 10x) or add "
        "--warmup-epochs"
    )


def model_spec(model: nn.Module) -> dict[str, Any]:
    """How to rebuild the model: the registry spec, or just its class for user models."""
    spec = getattr(model, "cnnlab_spec", None)
    return dict(spec) if spec else {"name": None, "class": type(model).__qualname__}


def _config_json(config: TrainConfig) -> str:
    import json

    return json.dumps(asdict(config), indent=2) + "\n"


def _epoch_line(row: dict[str, float], epochs: int) -> str:
    return (
        f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.2%}  test loss {row['test_loss']:.4f} acc {row['test_acc']:.2%}  "
        f"{row['train_seconds']:.1f} s  {row['images_per_second']:,.0f} img/s"
    )
