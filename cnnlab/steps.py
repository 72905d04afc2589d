"""What the trainer does inside an epoch: one optimizer step, the loss of (possibly several)
outputs, autocast, one evaluation pass, and the stop when the loss stops being a number."""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .data import BatchLoader, Preprocess
from .distributed import current_distributed
from .errors import CnnlabError
from .train_config import TrainConfig


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
    return (float(loss_sum) / max(count, 1), float(confusion.trace()) / max(count, 1), confusion)


def training_loss(
    outputs: torch.Tensor | tuple[torch.Tensor, ...],
    labels: torch.Tensor,
    label_smoothing: float,
    model: nn.Module,
) -> tuple[torch.Tensor, torch.Tensor]:
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


@dataclass
class EpochSteps:
    """One epoch's optimizer steps, with the running loss and accuracy on the progress bar."""

    model: nn.Module
    trained: nn.Module  # the model as trained: DDP's wrapper under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    config: TrainConfig
    epoch: int
    run_dir: Path | None

    def run(
        self, loader: BatchLoader, preprocess: Preprocess, augment_rng: torch.Generator
    ) -> tuple[torch.Tensor, float]:
        """Loss sum, correct count and image count over all ranks, and the seconds taken."""
        config, ranks, device = self.config, current_distributed(), loader.images.device
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen, steps = 0, len(loader)
        bar = tqdm(
            total=steps,
            desc=f"epoch {self.epoch + 1}/{config.epochs}",
            unit="batch",
            leave=False,
            disable=not (config.progress and ranks.is_main),
            file=sys.stderr,
        )
        started = time.perf_counter()
        for step, (images, labels) in enumerate(loader):
            inputs = preprocess(images, augment=config.augment, generator=augment_rng)
            loss, logits = self.step(inputs, labels)
            loss_sum += loss.detach() * len(labels)
            correct += (logits.detach().argmax(dim=1) == labels).sum()
            seen += len(labels)
            if bar.disable is False and (step % 20 == 0 or step == steps - 1):
                elapsed = time.perf_counter() - started
                bar.set_postfix(
                    loss=f"{loss_sum.item() / seen:.4f}",
                    acc=f"{correct.item() / seen:.2%}",
                    img_s=f"{seen * ranks.world_size / elapsed:,.0f}",
                    refresh=False,
                )
            bar.update()
            if step % 50 == 49 and not torch.isfinite(loss_sum):  # one host sync per 50 steps
                raise diverged(config, self.epoch, step, self.run_dir)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        bar.close()
        totals = torch.stack(
            [loss_sum.double(), correct.double(), torch.tensor(seen, device=device).double()]
        )
        if ranks.world_size > 1:
            dist.all_reduce(totals)
        if not torch.isfinite(totals[0]):
            raise diverged(config, self.epoch, steps - 1, self.run_dir)
        return totals, seconds

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step (and schedule step); returns the loss and the main logits."""
        with autocast(inputs.device, self.config.amp):
            outputs = self.trained(inputs)
            loss, logits = training_loss(outputs, labels, self.config.label_smoothing, self.model)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss, logits


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
