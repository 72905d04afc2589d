"""Precision and memory layout chosen by measurement: ``--probe`` (the fast recipes set it) times
a few training steps of the real model on real batches with each of bf16 autocast or fp32 and
channels_last or not, and trains with the fastest.

Instruction-set flags say whether bf16 *can* be fast (AVX-512 BF16, AMX); they do not say
whether it *is* for this model at this batch: LeNet's tiny convolutions and a ResNet's wide
ones differ, and so do CPUs with the same flags. The probe costs about a second and says what
it chose and why, with the images per second of each candidate.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..machine import cpu_flags
from ..models.binary import classification_loss

PROBE_SECONDS = 0.25  # timed steps per candidate, after one untimed warm-up step
PROBE_BATCH = 64  # images per probe step


@dataclass
class Probe:
    """The candidates' speeds (images per second) and the one chosen."""

    amp: str
    channels_last: bool
    speeds: dict[str, float] = field(default_factory=dict)
    flags: dict[str, bool] = field(default_factory=dict)

    @property
    def line(self) -> str:
        chosen = f"{'bf16' if self.amp == 'bf16' else 'fp32'}" + (
            ", channels_last" if self.channels_last else ""
        )
        measured = ", ".join(f"{k} {v:,.0f}" for k, v in self.speeds.items())
        has = ", ".join(k for k, v in self.flags.items() if v) or "neither AVX-512 BF16 nor AMX"
        return f"probe: {chosen} is fastest here (img/s: {measured}; this CPU has {has})"


def _images_per_second(model: nn.Module, images, labels, amp: str, seconds: float) -> float:
    device = images.device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16")

    def step() -> None:
        with autocast:
            loss = classification_loss(model(images), labels)
        loss.backward()
        model.zero_grad(set_to_none=True)

    step()  # warm-up: kernels chosen, memory allocated
    done, started = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - started < seconds:
        step()
        done += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return done * len(images) / (time.perf_counter() - started)


def probe(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    bf16_ok: bool = True,
    seconds: float = PROBE_SECONDS,
) -> Probe:
    """Time forward + backward of copies of ``model`` on one preprocessed batch (``images`` on
    the training device) in fp32 and (where ``bf16_ok``) bf16 autocast, each in the standard
    and the channels_last layout; the fastest wins. ``model`` itself is left as it was."""
    speeds: dict[str, float] = {}
    best: tuple[float, str, bool] = (-1.0, "none", False)
    for amp in ("none", "bf16") if bf16_ok else ("none",):
        for channels_last in (False, True):
            trial = copy.deepcopy(model).train()
            batch = images
            if channels_last:
                trial = trial.to(memory_format=torch.channels_last)
                batch = images.contiguous(memory_format=torch.channels_last)
            name = (
                f"{'bf16' if amp == 'bf16' else 'fp32'}{' channels_last' if channels_last else ''}"
            )
            speeds[name] = _images_per_second(trial, batch, labels, amp, seconds)
            best = max(best, (speeds[name], amp, channels_last))
    return Probe(best[1], best[2], speeds, cpu_flags())


def probe_settings(config: Any, model: nn.Module, preprocess, train_set, device) -> Probe:
    """The probe for a run: one batch of training images (the run's batch, at most
    :data:`PROBE_BATCH`, so the probe stays about a second on a CPU), scaled as training
    scales them; bf16 is a candidate on a CPU or a bf16-capable GPU."""
    count = min(config.batch_size, PROBE_BATCH, len(train_set))
    images = train_set.sample(count, config.seed).to(device)
    labels = torch.zeros(count, dtype=torch.int64, device=device)
    batch = preprocess(images, augment=False)
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return probe(model, batch, labels, bf16_ok=device.type == "cpu" or cuda_bf16)


__all__ = ["Probe", "probe", "probe_settings"]
