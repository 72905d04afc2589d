"""What the trainer does inside an epoch: one optimizer step, the loss of (possibly several)
outputs, autocast, one evaluation pass, the test every N steps (``--eval-every``), and the
stop when the loss stops being a number."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ..data import BatchLoader, Preprocess
from ..errors import CnnlabError
from ..model_interface import aux_loss_weight
from ..models.binary import classification_loss, predicted_classes
from ..outputs import progress_bars_shown
from .config import TrainConfig
from .distributed import current_distributed


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: BatchLoader,
    preprocess: Preprocess,
    num_classes: int,
    amp: str = "none",
    flip: bool = False,
    translate: int = 0,
) -> tuple[float, float, torch.Tensor]:
    """Mean loss, accuracy and confusion matrix over the loader (summed over DDP ranks), each
    image scored by :func:`test_time_logits` (``flip``, ``translate``: test-time augmentation,
    as airbench does)."""
    was_training = model.training
    model.eval()
    device = loader.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for images, labels in loader:
        with autocast(device, amp):
            logits = test_time_logits(model, preprocess(images), flip, translate)
        loss_sum += classification_loss(logits.float(), labels, reduction="sum")
        predictions = predicted_classes(logits)
        confusion += torch.bincount(labels * num_classes + predictions, minlength=num_classes**2)
    if current_distributed().world_size > 1:
        dist.all_reduce(loss_sum)
        dist.all_reduce(confusion)
    model.train(was_training)
    confusion = confusion.view(num_classes, num_classes).cpu()
    count = int(confusion.sum())
    return (float(loss_sum) / max(count, 1), float(confusion.trace()) / max(count, 1), confusion)


def test_time_logits(
    model: nn.Module, inputs: torch.Tensor, flip: bool = False, translate: int = 0
) -> torch.Tensor:
    """The logits a batch is scored by: the model's own; with ``flip`` the mean of them and
    the mirror images'; with ``translate`` N, half of that and half the mean over the images
    shifted N pixels up-left and N down-right (edges reflected), each mirrored too with
    ``flip`` (airbench's test-time augmentation: 2, 4 or 6 forward passes)."""

    def scored(x: torch.Tensor) -> torch.Tensor:
        logits = model(x).float()
        return (logits + model(x.flip(-1)).float()) / 2 if flip else logits

    logits = scored(inputs)
    if not translate:
        return logits
    height, width = inputs.shape[-2:]
    padded = torch.nn.functional.pad(inputs, (translate,) * 4, mode="reflect")
    moved_down_right = padded[..., :height, :width]
    moved_up_left = padded[..., 2 * translate :, 2 * translate :]
    return 0.5 * logits + 0.25 * (scored(moved_down_right) + scored(moved_up_left))


def scaled_down(images: torch.Tensor, side: int) -> torch.Tensor:
    """A batch scaled to ``side`` x ``side``: bilinear with antialiasing, the filter widened
    by the scale factor so that every input pixel counts (Pillow's ``resize(BILINEAR)``)."""
    return torch.nn.functional.interpolate(
        images, size=(side, side), mode="bilinear", antialias=True, align_corners=False
    )


def training_loss(
    outputs: torch.Tensor | tuple[torch.Tensor, ...],
    labels: torch.Tensor,
    label_smoothing: float,
    model: nn.Module,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the main output, plus ``model.aux_loss_weight`` times that of each
    auxiliary output when a model returns ``(main, aux1, ...)`` in training (GoogLeNet's
    auxiliary classifiers: weight 0.3). A one-logit output (``-O binary=true``) is scored with
    binary cross-entropy instead. Returns the loss and the main logits."""
    if isinstance(outputs, (tuple, list)):
        main, *aux = outputs
        weight = aux_loss_weight(model)
        loss = classification_loss(main, labels, label_smoothing)
        for extra in aux:
            loss = loss + weight * classification_loss(extra, labels, label_smoothing)
        return loss, main
    return classification_loss(outputs, labels, label_smoothing), outputs


def autocast(device: torch.device, amp: str):
    if amp == "none":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


@dataclass
class StepEvaluation:
    """The test set's loss and accuracy every ``every`` optimizer steps, beside the training
    loss and accuracy averaged over the steps since the previous test (the curves per
    iteration that the course plots). Testing consumes no random numbers, so the training
    itself is the same with or without it.

    ``rows`` holds ``{step, epoch, train_loss, train_acc, test_loss, test_acc}`` per test;
    ``step`` counts optimizer steps from the start of the run, ``epoch`` is the (fractional)
    number of epochs done at that step. ``window`` is the running sum (loss, correct, images)
    since the last test; ``last`` the last test's step and result, which the trainer reuses
    when an epoch ends on a test step.
    """

    every: int
    model: nn.Module  # the bare model (ranks may differ in steps under DDP)
    loader: BatchLoader
    preprocess: Preprocess
    num_classes: int
    amp: str = "none"
    after_train_mode: Callable[[nn.Module], None] | None = None
    test_flip: bool = False  # average each test image's logits with its mirror image's
    test_translate: int = 0  # and with its shifts by this many pixels (test_time_logits)
    rows: list[dict[str, float]] = field(default_factory=list)
    window: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    seconds: float = 0.0  # time spent testing, kept out of the training throughput
    last: tuple[int, tuple[float, float, torch.Tensor]] | None = None

    def __post_init__(self) -> None:
        self._sums: torch.Tensor | None = None  # this rank's (loss, correct, images) on device

    def record(
        self,
        step: int,
        steps_per_epoch: int,
        loss: torch.Tensor,
        logits: torch.Tensor,
        labels: torch.Tensor,
    ) -> None:
        """Add one step's batch (``step``: 1-based, counted over the run); test when due."""
        batch = torch.stack(
            [
                loss.detach().double() * len(labels),
                (predicted_classes(logits.detach()) == labels).sum().double(),
                torch.tensor(float(len(labels)), dtype=torch.float64, device=labels.device),
            ]
        )
        self._sums = batch if self._sums is None else self._sums + batch
        if step % self.every == 0:
            self.test(step, steps_per_epoch)

    def merged(self) -> list[float]:
        """The window summed over the ranks (every rank must call this together); the sum is
        kept on rank 0 alone, so it is the window a resumed run starts from."""
        sums = torch.tensor(self.window, dtype=torch.float64)
        if self._sums is not None:
            sums = sums + self._sums.cpu()
        ranks = current_distributed()
        if ranks.world_size > 1:
            sums = sums.to(self.loader.device)
            dist.all_reduce(sums)
            sums = sums.cpu()
        self._sums = None
        self.window = sums.tolist() if ranks.is_main else [0.0, 0.0, 0.0]
        return sums.tolist()

    def test(self, step: int, steps_per_epoch: int) -> None:
        started = time.perf_counter()
        loss_sum, correct, seen = self.merged()
        result = evaluate(
            self.model,
            self.loader,
            self.preprocess,
            self.num_classes,
            self.amp,
            self.test_flip,
            self.test_translate,
        )
        if self.after_train_mode is not None:  # evaluate put every module back in training mode
            self.after_train_mode(self.model)
        self.rows.append(
            {
                "step": step,
                "epoch": step / steps_per_epoch,
                "train_loss": loss_sum / max(seen, 1),
                "train_acc": correct / max(seen, 1),
                "test_loss": result[0],
                "test_acc": result[1],
            }
        )
        self.window, self.last = [0.0, 0.0, 0.0], (step, result)
        self.seconds += time.perf_counter() - started

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps, so a resumed run's rows continue the straight run's; call
        :meth:`merged` on every rank first."""
        return {"rows": list(self.rows), "window": list(self.window)}

    def load_state(self, state: Any) -> None:
        """Continue from :meth:`state` (None: a checkpoint written without ``--eval-every``)."""
        if state is None:
            return
        try:
            rows = [
                {k: int(v) if k == "step" else float(v) for k, v in row.items()}
                for row in state["rows"]
            ]
            window = [float(v) for v in state["window"]]
            if len(window) != 3:
                raise ValueError(window)
        except (TypeError, ValueError, KeyError, AttributeError):
            raise CnnlabError(
                "the checkpoint's 'steps' entry is not the --eval-every record cnnlab writes "
                "(rows and a 3-number window); the file is damaged: train the run anew"
            ) from None
        self.rows = rows
        self.window = window if current_distributed().is_main else [0.0, 0.0, 0.0]


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
    evaluation: StepEvaluation | None = None  # --eval-every: test every N steps
    # TrainingHooks.after_step(step, loss, lr, images), given on rank 0 only
    after_step: Callable[[int, torch.Tensor, float, int], None] | None = None
    averaging: Lookahead | WeightAverage | None = None  # --lookahead or --ema

    def run(
        self, loader: BatchLoader, preprocess: Preprocess, augment_rng: torch.Generator
    ) -> tuple[torch.Tensor, float]:
        """Loss sum, correct count and image count over all ranks, and the seconds taken."""
        config, ranks, device = self.config, current_distributed(), loader.device
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen, steps = 0, len(loader)
        small = config.small_size and self.epoch < config.small_epochs
        bar = self._bar(steps, ranks.is_main)
        started = time.perf_counter()
        testing_before = self.evaluation.seconds if self.evaluation else 0.0
        for step, (images, labels) in enumerate(loader):
            inputs = preprocess(images, augment=config.augment, generator=augment_rng)
            if small:  # --small-size: an early epoch of progressive resizing
                inputs = scaled_down(inputs, config.small_size)
            lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses
            loss, logits = self.step(inputs, labels)
            done = self.epoch * steps + step + 1  # optimizer steps of the run so far
            if self.averaging is not None:
                self.averaging.after_step(self.model, done, config.epochs * steps)
            if self.after_step is not None:
                self.after_step(done, loss.detach(), lr, len(labels) * ranks.world_size)
            if self.evaluation is not None:
                self.evaluation.record(done, steps, loss, logits, labels)
            loss_sum += loss.detach() * len(labels)
            correct += (predicted_classes(logits.detach()) == labels).sum()
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
        if self.evaluation is not None:  # the tests every N steps are not training time
            seconds -= self.evaluation.seconds - testing_before
        bar.close()
        totals = torch.stack(
            [loss_sum.double(), correct.double(), torch.tensor(seen, device=device).double()]
        )
        if ranks.world_size > 1:
            dist.all_reduce(totals)
        if not torch.isfinite(totals[0]):
            raise diverged(config, self.epoch, steps - 1, self.run_dir)
        return totals, seconds

    def _bar(self, steps: int, main: bool) -> tqdm:
        """The epoch's progress bar, drawn on rank 0 when ``--progress`` and a terminal say so."""
        return tqdm(
            total=steps,
            desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
            unit="batch",
            leave=False,
            disable=not (main and progress_bars_shown(self.config.progress)),
            file=sys.stderr,
        )

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


def float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's floating-point state (weights and batch-norm statistics, not counters)."""
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


def weight_copy(
    model: nn.Module, state: dict[str, torch.Tensor] | None, what: str, flag: str
) -> dict[str, torch.Tensor]:
    """A copy of the model's floating-point state, or of ``state`` (a resumed run's saved
    copy), which must hold the same tensors; a damaged one is named (``what``, ``flag``)."""
    copy = {k: v.detach().clone() for k, v in float_state(model).items()}
    if state is None:
        return copy
    try:
        if set(state) != set(copy):
            raise KeyError(sorted(set(state) ^ set(copy))[:3])
        for key, value in state.items():
            copy[key].copy_(value)
    except (TypeError, KeyError, RuntimeError, AttributeError):
        raise CnnlabError(
            f"the checkpoint's {what} of this model's weights that {flag} saves; the file is "
            "damaged: train the run anew"
        ) from None
    return copy


class Lookahead:
    """airbench's lookahead: a slow copy of the weights that the model is pulled back to.

    Every :attr:`EVERY` optimizer steps the slow copy moves a fraction ``1 - decay`` towards
    the model's weights and the model takes the slow copy's values. ``decay`` grows as
    ``0.95**5 * progress**3``: early in the run the model is left alone, near the end it moves
    only a quarter of the way each time, which averages away the noise of the last steps. At
    the run's last step the model becomes the slow copy. Every floating-point tensor of the
    state dict takes part (batch-norm statistics too)."""

    EVERY = 5
    KEY = "lookahead"  # the checkpoint entry of the slow copy (:attr:`slow`)

    def __init__(self, model: nn.Module, state: dict[str, torch.Tensor] | None = None) -> None:
        self.slow = weight_copy(
            model, state, "'lookahead' entry is not the slow copy", "--lookahead"
        )

    @property
    def saved(self) -> dict[str, torch.Tensor]:
        return self.slow

    @staticmethod
    def decay(step: int, total: int) -> float:
        return 0.95**5 * (step / total) ** 3

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int, total: int) -> None:
        """``step`` counts optimizer steps from 1 over the run of ``total`` steps."""
        if step >= total:
            decay = 1.0  # the last step: the model takes the slow weights
        elif step % self.EVERY == 0:
            decay = self.decay(step, total)
        else:
            return
        for key, value in float_state(model).items():
            slow = self.slow[key]
            slow.lerp_(value, 1 - decay)
            value.copy_(slow)


class WeightAverage:
    """An exponential moving average of the weights (``--ema DECAY``), taken after every
    optimizer step: ``average = d * average + (1 - d) * weights`` with ``d = min(DECAY, (1 + t)
    / (10 + t))`` at step t (TensorFlow's warm-up, so the first steps do not drag the starting
    weights along). The model trains undisturbed; the run's last step leaves it at the average.
    Every floating-point tensor of the state dict takes part (batch-norm statistics too)."""

    KEY = "ema"  # the checkpoint entry of the average (:attr:`average`)

    def __init__(
        self, model: nn.Module, decay: float, state: dict[str, torch.Tensor] | None = None
    ) -> None:
        self.decay = decay
        self.average = weight_copy(model, state, "'ema' entry is not the average", "--ema")

    @property
    def saved(self) -> dict[str, torch.Tensor]:
        return self.average

    def factor(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int, total: int) -> None:
        """``step`` counts optimizer steps from 1 over the run of ``total`` steps."""
        weight = 1 - self.factor(step)
        for key, value in float_state(model).items():
            self.average[key].lerp_(value, weight)
            if step >= total:
                value.copy_(self.average[key])


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
