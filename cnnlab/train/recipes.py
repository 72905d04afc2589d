"""Recipes: named presets of :class:`~cnnlab.train.config.TrainConfig` settings that reach a
known accuracy fast (``cnnlab train --recipe NAME``; flags given beside it win).

A recipe is data: the settings it changes from TrainConfig's defaults, and a line saying what
it reaches, where. ``benchmarks/speed.py`` measures them (``benchmarks/results/speed.json``).

The CIFAR-10 recipes learn from airbench (https://github.com/KellerJordan/cifar10-airbench) and
hlb-CIFAR10 (https://github.com/tysam-code/hlb-CIFAR10): a large batch on a short one-cycle
schedule (linear warm-up, then linear decay to 0), images kept as one uint8 tensor and
augmented as whole batches, batch norm, label smoothing, SGD with Nesterov momentum, bf16
autocast and channels_last where the hardware has them, and test-time flip averaging.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CnnlabError, UnknownNameError
from .config import TrainConfig
from .config_file import read_config_file


@dataclass(frozen=True)
class Recipe:
    """A named preset: ``settings`` are TrainConfig fields (``model_options`` merge with
    the user's ``-O`` options); ``amp="bf16"`` is kept only where bf16 is fast
    (:func:`bf16_is_fast`)."""

    name: str
    summary: str  # one line: what it trains and what it reaches
    settings: dict[str, Any] = field(default_factory=dict)


MNIST_FAST: dict[str, Any] = {
    "model": "lenet5",
    "model_options": {"modern": True},
    "dataset": "mnist",
    "epochs": 2,
    "val_split": 0.1,  # 10% of the training images held out to validate on
    # batch 128: batches of 256 or 512 train 20-30% more images per second but
    # reach only 98.7% / 98.5% in 2 epochs (measured); the steps count here
    "batch_size": 128,
    "eval_batch_size": 2000,
    "optimizer": "adam",
    # peak, reached after the warm-up; of 2e-3, 4e-3, 8e-3 and 1.6e-2, the best mean
    # validation accuracy over 3 seeds (99.01%; recipes_validation_mnist_lr.json)
    "lr": 8e-3,
    # label smoothing 0.1: 99.06% mean over 3 seeds in 2 epochs, 98.9% without
    "schedule": "linear",  # to 0: with the warm-up, a one-cycle (triangle)
    "warmup_epochs": 0.2,
    "label_smoothing": 0.1,
    "amp": "bf16",  # LeNet's small convolutions: about 20% faster with AMX
    "channels_last": True,
    "probe": True,  # bf16 or fp32, channels_last or not: measured here
}


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            "mnist-fast",
            "LeNet-5 (modern) on MNIST, 2 epochs of batch 128, Adam one-cycle to 8e-3 (chosen on "
            "the validation split), label smoothing 0.1, bf16: 99.11% test accuracy, mean of 3 "
            "seeds, in 7-10 s on 2 CPU cores (benchmarks/results/recipes_validation.json)",
            MNIST_FAST,
        ),
        Recipe(
            "mnist-5s",
            "mnist-fast on 40,000 of the 60,000 images (2 epochs, 72,000 images seen), scored "
            "with 1-pixel shifts too: 99.07% test accuracy, median of 3 seeds, in 3.8 s on 2 "
            "CPU cores; chosen on the validation split among ways to spend 5 s "
            "(benchmarks/results/lenet_steps.json, speed.json)",
            # two passes over fewer images beat 1.3 passes over all of them: the one-cycle
            # schedule ends, and the second pass sees each image again (validation 98.79%
            # against 98.58-98.74% for one epoch of 54,000 at peak rates 8e-3 to 1.6e-2)
            # scored with 1-pixel shifts of each test image too (3 views: test time only,
            # 0.08 points; chosen on validation, benchmarks/results/lenet_steps.json)
            {**MNIST_FAST, "train_subset": 40_000, "test_translate": 1},
        ),
        Recipe(
            "cifar10-fast",
            "cifar_fast (ResNet-9 narrowed) on CIFAR-10, airbench-style: SGD Nesterov "
            "one-cycle, label smoothing 0.2, flip + 2-px translate, bf16, test-time flip; "
            "slower than cifar10-air on 2 CPU cores (no results file)",
            {
                "model": "cifar_fast",
                "dataset": "cifar10",
                "val_split": 0.1,  # 10% of the training images held out to validate on
                "epochs": 10,  # 5-10 minutes on 2 cores with bf16; --epochs fits a budget
                "batch_size": 512,
                "eval_batch_size": 1000,
                "optimizer": "sgd",
                "lr": 0.2,  # peak, per batch of 512 (mean loss)
                "momentum": 0.9,
                "nesterov": True,
                "weight_decay": 5e-4,
                "schedule": "linear",
                "warmup_epochs": 2.0,  # clipped to the run's length in recipe_config
                "label_smoothing": 0.2,
                "augment": True,  # random 2-pixel translation (pad + crop) and flip
                "test_flip": True,
                "amp": "bf16",
                "channels_last": True,
                "probe": True,  # bf16 or fp32, channels_last or not: measured here
            },
        ),
        Recipe(
            "cifar10-air",
            "cifar_air (airbench94 narrowed to 32/128/128) on CIFAR-10: whitened first layer, "
            "SGD Nesterov one-cycle at batch 512, lookahead, label smoothing 0.2, flip + 2-px "
            "translate, bf16, test-time flip; --epochs 8 fits 5 minutes on 2 AMD EPYC cores: "
            "86.55% test, median of 3 seeds, in 271 s (benchmarks/results/speed.json)",
            {
                "model": "cifar_air",
                "dataset": "cifar10",
                "val_split": 0.1,  # 10% of the training images held out to validate on
                "epochs": 10,
                # batch 512 (airbench: 1024): on 2 CPU cores it trains as many images a second
                # and takes twice the steps, +0.7 points of validation accuracy in 5 minutes
                # (benchmarks/results/cifar_methods.json)
                "batch_size": 512,
                "eval_batch_size": 1000,
                "optimizer": "sgd",
                # airbench's rates, for a mean loss: lr 11.5 / (1024 (1 + 1 / (1 - 0.85)))
                # per image, times the batch; weight decay 0.0153 / 11.5 per unit of lr
                "lr": 0.75,
                "momentum": 0.85,
                "nesterov": True,
                "weight_decay": 0.0153 / 11.5,
                "schedule": "linear",
                # airbench warms up over 23% of its 10 epochs; recipe_config clips a warm-up to
                # a fifth of the run: 2 epochs at 10, the whole 2.3 from 12 epochs on
                "warmup_epochs": 2.3,
                "label_smoothing": 0.2,
                "augment": True,
                "test_flip": True,
                "lookahead": True,
                "amp": "bf16",
                "channels_last": True,
                "probe": True,  # bf16 or fp32, channels_last or not: measured here
            },
        ),
    )
}


def recipe_names() -> list[str]:
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name is an error that lists the known ones."""
    if name not in RECIPES:
        raise UnknownNameError(
            f"recipe {name!r}: expected one of {', '.join(RECIPES)}; `cnnlab train --recipe "
            "list` describes them"
        )
    return RECIPES[name]


def recipe_lines() -> list[str]:
    """One line per recipe: its name and summary."""
    width = max(len(name) for name in RECIPES)
    return [f"{r.name:<{width}}  {r.summary}" for r in RECIPES.values()]


def bf16_is_fast(device: str | torch.device = "cpu") -> bool:
    """Whether bf16 autocast speeds up training here: a CUDA GPU that supports bf16, or a CPU
    with AVX-512 BF16 or AMX instructions (elsewhere bf16 is emulated and slower than fp32)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no way to ask cheaply; fp32 is the safe choice
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def layered_settings(
    typed: dict[str, Any], config_file: str | None = None, recipe: str | None = None
) -> dict[str, Any]:
    """TrainConfig settings in layers, each over the one before: TrainConfig's defaults, the
    ``recipe``'s, the ``config_file``'s (:func:`~cnnlab.train.config_file.read_config_file`),
    then ``typed`` (what the command line said); ``model_options`` merge key by key."""
    settings = read_config_file(config_file) if config_file else {}
    options = {**settings.get("model_options", {}), **typed.get("model_options", {})}
    settings = {**settings, **typed}
    if "model_options" in settings:
        settings["model_options"] = options
    return asdict(recipe_config(recipe, **settings)) if recipe else settings


def recipe_config(name: str, **overrides: Any) -> TrainConfig:
    """The recipe's TrainConfig with ``overrides`` (explicit settings) on top.

    ``model_options`` of the overrides update the recipe's; the recipe's bf16 becomes ``none``
    where bf16 is slow (:func:`bf16_is_fast`) unless ``amp`` is given; its warm-up is cut to
    a fifth of the run when ``epochs`` is set below it."""
    recipe = get_recipe(name)
    unknown = set(overrides) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise CnnlabError(
            f"settings {sorted(unknown)}: not TrainConfig fields; expected names such as lr, "
            "epochs, batch_size"
        )
    values = {**recipe.settings, **overrides}
    values["model_options"] = {
        **recipe.settings.get("model_options", {}),
        **overrides.get("model_options", {}),
    }
    device = values.get("device", TrainConfig.device)
    if values.get("amp") == "bf16" and "amp" not in overrides and not bf16_is_fast(device):
        values["amp"] = "none"
    if ("amp" in overrides or "channels_last" in overrides) and "probe" not in overrides:
        values["probe"] = False  # what the user chose is not measured away
    epochs = values.get("epochs", TrainConfig.epochs)
    if "warmup_epochs" not in overrides and isinstance(epochs, int):
        values["warmup_epochs"] = min(values.get("warmup_epochs", 0.0), epochs / 5)
    return TrainConfig(**values)
