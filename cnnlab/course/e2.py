"""E2 of ``cnnlab reproduce``: ReLU against tanh, as in Figure 1 of the AlexNet paper.

The paper: "A four-layer convolutional neural network with ReLUs reaches a 25% training error
rate on CIFAR-10 six times faster than an equivalent network with tanh neurons. The learning
rates for each network were chosen independently to make training as fast as possible. No
regularization of any kind was employed."

cnnlab trains ``cifar_four`` twice, identical but for the units, with SGD (momentum 0.9, batch
128, constant rate, no weight decay, no augmentation, no dropout). Each unit's learning rate is
chosen as the paper did, independently and for speed: one epoch on the first 10,000 training
images for each rate of a small grid, keeping the rate with the lowest training error. Then each
network trains one epoch at a time (``resume_run``: a constant rate makes this the same as one
long run) until its training error (the running error over the epoch, as the paper plots it)
is at most 25%, or the epoch limit is reached. The ratio of the epochs needed is the figure.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..runs.start import resume_run, train_run
from ..train.config import TrainConfig
from ..train.steps import TrainingDiverged

KEY = "e2-relu-vs-tanh"
# the same experiment from the AlexNet paper's own starting point: weights N(0, 0.01^2), zero
# biases (section 5), where the default is PyTorch's fan-in-scaled uniform
KEY_PAPER_INIT = "e2-relu-vs-tanh-paper-init"
KEYS = (KEY, KEY_PAPER_INIT)
INITS = {KEY: "torch", KEY_PAPER_INIT: "normal-0.01"}
WHAT = "E2 ReLU vs tanh: epochs to 25% training error (AlexNet Figure 1)"
WHATS = {KEY: WHAT, KEY_PAPER_INIT: WHAT + ", weights N(0, 0.01) as in the paper"}
REFERENCE = "Krizhevsky et al. 2012: ReLU reaches 25% training error about 6x faster than tanh"
TARGET_ERROR = 0.25
PAPER_RATIO = 6.0

RECIPE: dict[str, Any] = {
    "model": "cifar_four",
    "dataset": "cifar10",
    "data_variant": "jpeg",
    "optimizer": "sgd",
    "momentum": 0.9,
    "schedule": "none",
    "batch_size": 128,
    "weight_decay": 0.0,
    "augment": False,
    "input_scaling": "standard",
    "channels_last": True,  # the same arithmetic, about 20% faster on a CPU
}
FULL = {"rates": (0.003, 0.01, 0.03, 0.1), "sweep_subset": 10_000, "max_epochs": 30}
QUICK = {
    "rates": (0.01, 0.03),
    "sweep_subset": 500,
    "max_epochs": 2,
    "settings": {"data_variant": "subset", "train_subset": 1000, "test_subset": 500},
}


def _config(activation: str, lr: float, epochs: int, data_dir: str | None, **more: Any):
    return TrainConfig(
        **{**RECIPE, **more},
        model_options={"activation": activation},
        lr=lr,
        epochs=epochs,
        data_dir=data_dir,
        progress=False,
    )


def epochs_to(errors: list[float], target: float = TARGET_ERROR) -> float | None:
    """The (fractional) epoch at which the per-epoch training errors first reach ``target``,
    interpolating linearly between epochs (epoch 0 counts as error 0.9, chance on 10 classes);
    None when they never do."""
    previous_epoch, previous = 0, 0.9
    for epoch, error in enumerate(errors, start=1):
        if error <= target:
            if previous <= error:  # flat or rising: no interpolation possible
                return float(epoch)
            return previous_epoch + (previous - target) / (previous - error)
        previous_epoch, previous = epoch, error
    return None


def pick_rate(
    activation: str,
    plan: dict[str, Any],
    root: Path,
    data_dir: str | None,
    say,
    init: str = "torch",
):
    """One epoch per rate on the first images; the rate with the lowest training error."""
    errors = {}
    settings = {**plan.get("settings", {}), "train_subset": plan["sweep_subset"], "init": init}
    for lr in plan["rates"]:
        try:
            result = train_run(_config(activation, lr, 1, data_dir, **settings), root)
            errors[lr] = 1 - result.history[-1]["train_acc"]
        except TrainingDiverged:  # a rate that diverges loses the sweep
            errors[lr] = 1.0
        say(f"E2 {activation} lr {lr:g}: training error {errors[lr]:.2%} after one epoch")
    return min(errors, key=errors.get), errors


def run_e2(
    quick: bool,
    runs_root: Path,
    data_dir: str | None = None,
    say=print,
    train_subset: int | None = None,
    key: str = KEY,
) -> dict[str, Any]:
    """Both networks, each at its own best rate, until 25% training error; one report row.
    ``key`` picks the starting weights (:data:`INITS`): PyTorch's default or the paper's."""
    plan = QUICK if quick else FULL
    settings = {**plan.get("settings", {}), "init": INITS[key]}
    if train_subset:
        settings["train_subset"] = train_subset
    root = runs_root / "reproduce"
    started = time.perf_counter()
    curves: dict[str, Any] = {}
    for activation in ("relu", "tanh"):
        lr, sweep = pick_rate(activation, plan, root / "sweep", data_dir, say, INITS[key])
        result = train_run(_config(activation, lr, 1, data_dir, **settings), root)
        history = list(result.history)
        while 1 - history[-1]["train_acc"] > TARGET_ERROR and len(history) < plan["max_epochs"]:
            history = list(resume_run(result.run_dir, epochs=len(history) + 1).history)
            error = 1 - history[-1]["train_acc"]
            say(f"{key}: {activation} epoch {len(history)}: training error {error:.2%}")
        errors = [1 - row["train_acc"] for row in history]
        curves[activation] = {
            "lr": lr,
            "sweep": {f"{k:g}": v for k, v in sweep.items()},
            "train_error": errors,
            "test_acc": [row["test_acc"] for row in history],
            "epochs_to_target": epochs_to(errors),
            "run": str(result.run_dir),
        }
    relu, tanh = curves["relu"]["epochs_to_target"], curves["tanh"]["epochs_to_target"]
    ratio = tanh / relu if relu and tanh else None
    return {
        "key": key,
        "what": WHATS[key],
        "reference": REFERENCE,
        "reference_ratio": PAPER_RATIO,
        "ratio": ratio,
        "curves": curves,
        "seconds": time.perf_counter() - started,
        "settings": {**RECIPE, **settings, **{k: v for k, v in plan.items() if k != "settings"}},
        "config": asdict(_config("relu", 0.01, 1, data_dir, **settings)),
        "max_epochs": plan["max_epochs"],
        "quick": quick,
        "train_subset": train_subset,
    }


def ratio_text(row: dict[str, Any]) -> str:
    """The ratio in words, or what kept it from being measured."""
    relu, tanh = (row["curves"][a]["epochs_to_target"] for a in ("relu", "tanh"))
    if relu is None:
        return f"ReLU did not reach 25% training error in {row['max_epochs']} epochs"
    if tanh is None:
        return (
            f"ReLU reached 25% training error at epoch {relu:.1f}; tanh not within "
            f"{row['max_epochs']} epochs: ratio > {row['max_epochs'] / relu:.1f}x"
        )
    return f"{tanh / relu:.1f}x (ReLU at epoch {relu:.1f}, tanh at epoch {tanh:.1f})"


def markdown_lines(row: dict[str, Any]) -> list[str]:
    """E2's section of the report: the ratio, the chosen rates and the error per epoch."""
    relu, tanh = row["curves"]["relu"], row["curves"]["tanh"]
    lines = ["", f"{row['what']}: {ratio_text(row)}; the paper: about 6x.", ""]
    lines += [
        f"Learning rates chosen by a one-epoch sweep ({', '.join(relu['sweep'])}): ReLU "
        f"{relu['lr']:g}, tanh {tanh['lr']:g}.",
        "",
        "| epoch | ReLU training error | tanh training error |",
        "|---|---|---|",
    ]
    for i in range(max(len(relu["train_error"]), len(tanh["train_error"]))):
        cells = [
            f"{c['train_error'][i]:.2%}" if i < len(c["train_error"]) else "-" for c in (relu, tanh)
        ]
        lines.append(f"| {i + 1} | {cells[0]} | {cells[1]} |")
    return lines


def plot_e2(row: dict[str, Any], path: Path) -> None:
    """Training error against epochs for both units, with the 25% line (the paper's Figure 1)."""
    from ..inspect.plots import save_figure, subplots

    figure, axes = subplots(1, 1, figsize=(6, 4))
    for activation, style in (("relu", "-o"), ("tanh", "--s")):
        errors = row["curves"][activation]["train_error"]
        lr = row["curves"][activation]["lr"]
        axes.plot(
            range(1, len(errors) + 1),
            [100 * e for e in errors],
            style,
            label=f"{activation} (lr {lr:g})",
        )
    axes.axhline(100 * TARGET_ERROR, color="gray", linestyle=":", label="25% training error")
    axes.set(xlabel="epoch", ylabel="training error (%)", title=f"{row['key']}: {ratio_text(row)}")
    axes.title.set_fontsize(9)
    axes.legend()
    save_figure(figure, path)
