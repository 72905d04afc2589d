"""How fast cnnlab's recipes reach their accuracy (issue 15, targets 1-3): one row per run in
``benchmarks/results/speed.json``, ``{"task", "device", "data", "test_accuracy",
"train_seconds", "command", ...}``, beside the machine, torch version and threads.

- ``mnist-lenet5``: ``--recipe mnist-5s`` (``--mnist-recipe``; target >= 99.0% in <= 5 s on 2
  CPU cores), and in the same run a bare PyTorch loop of the same recipe (same model, batch,
  Adam, one-cycle, channels_last, epochs) timed the same way, so the trainer's overhead is
  visible: both are warmed up first, then timed ``--repeats`` times in alternating order, round
  r with seed r; medians over the rounds (so over seeds) with min/max.
- ``cifar10-cpu``: ``--recipe cifar10-air`` (``--cifar-recipe``) sized to 1, 2 and 5 minutes
  of training. A one-cycle schedule must know its length up front (its learning rate falls to
  0 at the end; the middle of a 5-minute run is at a high rate and tests poorly), so
  "accuracy after 1 minute" is a run whose whole schedule fits 1 minute: the script first
  measures the throughput on a short calibration run, then gives each budget the most whole
  epochs that fit in it (95% of it) and trains three separate runs, each sized by the speed
  of the run before it. Training time excludes the tests after each epoch and data loading,
  as ``cnnlab train`` reports it.
- ``cifar10-gpu`` (``--device cuda``): the same recipe with airbench94's full widths
  64/256/256 (``--gpu-widths``) for ``--gpu-epochs`` epochs; bf16 autocast, channels_last, batches
  resident on the GPU and no per-step host syncs are the recipe's own path (tested on the CPU
  in tests/test_recipes.py).

    python benchmarks/speed.py                      # mnist + cifar10-cpu, about 12 minutes
    python benchmarks/speed.py --tasks mnist-lenet5 # about 30 s
    python benchmarks/speed.py --tasks cifar10-gpu --device cuda   # on a GPU machine

Run it alone on the machine: the figures are wall-clock times.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_json  # noqa: E402

from cnnlab.machine import provenance  # noqa: E402
from cnnlab.runs.start import build_model  # noqa: E402
from cnnlab.train import TrainConfig, fit  # noqa: E402
from cnnlab.train.distributed import resolve_device
from cnnlab.train.pipeline import load_data
from cnnlab.train.recipes import recipe_config
from cnnlab.train.validation import validation_split

TASKS = ("mnist-lenet5", "cifar10-cpu", "cifar10-gpu")
# where each recipe's settings were chosen on its validation split (test accuracy chose nothing)
CHOSEN_IN = {
    "mnist-5s": "benchmarks/results/lenet_steps.json",
    "mnist-fast": "benchmarks/results/recipes_validation_mnist_lr.json",
    "cifar10-air": "benchmarks/results/cifar_methods.json",
}
# the full widths and epochs per recipe: airbench94 reaches 94% in 9.9 epochs (3.09 s on an
# A100); ResNet-9 as published by Page reaches 94% in 24 epochs on a V100
GPU_DEFAULTS = {"cifar10-air": ([64, 256, 256], 10), "cifar10-fast": ([64, 128, 256, 512], 24)}


def describe_data(config: TrainConfig, train: Any, test: Any) -> str:
    variant = f" {config.data_variant}" if config.data_variant else ""
    held = f", {config.val_split:.0%} of them held out for validation" if config.val_split else ""
    return f"{config.dataset}{variant} ({len(train):,} train{held} / {len(test):,} test images)"


def command_for(recipe: str, overrides: dict[str, Any]) -> str:
    """The ``cnnlab train`` command line that trains the same run."""
    parts = ["cnnlab", "train", "--recipe", recipe]
    for key, value in overrides.items():
        if key in ("progress", "data_dir"):
            continue
        if key == "model_options":
            parts += [f"-O {k}={json.dumps(v, separators=(',', ':'))}" for k, v in value.items()]
        else:
            parts += [f"--{key.replace('_', '-')}", str(value)]
    return " ".join(parts)


def train_recipe(recipe: str, data: tuple[Any, Any] | None = None, **overrides: Any):
    """Train the recipe (with ``overrides``) once; returns the result, config, data and row."""
    config = recipe_config(recipe, progress=False, **overrides)
    data = data or load_data(config)
    torch.manual_seed(config.seed)
    model = build_model(config, data[0])
    result = fit(model, data, config)
    row = {
        "device": str(next(model.parameters()).device),
        "data": describe_data(config, *data),
        "test_accuracy": result.test_accuracy,
        "val_split": config.val_split,
        "val_accuracy": result.history[-1].get("val_acc"),
        "train_seconds": sum(r["train_seconds"] for r in result.history),
        "command": command_for(recipe, overrides),
        "epochs": config.epochs,
        "amp": config.amp,
        "images_per_second": max(r["images_per_second"] for r in result.history),
        "per_epoch": [
            {k: r[k] for k in ("epoch", "test_acc", "train_seconds")} for r in result.history
        ],
    }
    return result, config, data, row


# ------------------------------------------------------------------------------------- MNIST


def bare_loop(config: TrainConfig, train: Any, test: Any) -> dict[str, float]:
    """The recipe as a plain PyTorch loop: shuffle, slice, normalize, forward, backward, step,
    schedule; the same model, batch, Adam, one-cycle, channels_last and autocast."""
    if config.optimizer != "adam" or config.schedule != "linear" or config.amp == "fp16":
        raise ValueError(f"the bare loop is written for Adam, linear, bf16/none: {config}")
    device = resolve_device(config.device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp == "bf16")
    torch.manual_seed(config.seed)
    model = build_model(config, train).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps_per_epoch = len(train) // config.batch_size
    total, warmup = config.epochs * steps_per_epoch, int(config.warmup_epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / warmup if s < warmup else 1 - (s - warmup) / max(1, total - warmup),
    )
    mean, std = train.channel_stats()
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
    images, labels = train.images.to(device), train.labels.to(device)

    def normalized(batch: torch.Tensor) -> torch.Tensor:
        x = (batch.float() / 255 - mean_t) / std_t
        return x.contiguous(memory_format=torch.channels_last)

    started = time.perf_counter()
    for _ in range(config.epochs):
        order = torch.randperm(len(labels), device=device)
        for step in range(steps_per_epoch):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            with amp:
                loss = F.cross_entropy(model(normalized(images[index])), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        correct = sum(
            int((model(normalized(x.to(device))).argmax(1) == y.to(device)).sum())
            for x, y in zip(test.images.split(2000), test.labels.split(2000))
        )
    return {"test_accuracy": correct / len(test), "train_seconds": seconds}


def spread(values: list[float]) -> dict[str, float]:
    """The median of ``values`` with their min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def mnist_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The trainer and the bare loop, both warmed up first (one untimed run each: kernels,
    allocator, caches), then timed ``--repeats`` times in alternating order (trainer first on
    even rounds, bare first on odd ones), so neither side is the cold or the warm one. The row
    holds the medians with min and max; trainer/bare is the bare loop's median seconds over
    the trainer's (1.0: no overhead; the bar is >= 0.95)."""
    overrides = subset_overrides(args)
    if args.mnist_epochs:
        overrides["epochs"] = args.mnist_epochs
    overrides.update(dict(args.mnist_set))  # trying a variant of the recipe
    recipe = args.mnist_recipe
    _, config, data, row = train_recipe(recipe, device=args.device, **overrides)  # warm-up
    # the same training images as the trainer: its validation split held out
    train, _ = validation_split(data[0], config.val_split, config.seed)
    bare_loop(config, train, data[1])  # warm-up
    trainer_runs: list[dict[str, Any]] = []
    bare_runs: list[dict[str, float]] = []
    for round_ in range(args.repeats):  # round r trains with seed r: the medians are over seeds
        seeded = {**overrides, "seed": round_}
        for side in ("trainer", "bare") if round_ % 2 == 0 else ("bare", "trainer"):
            if side == "trainer":
                trainer_runs.append(train_recipe(recipe, data, device=args.device, **seeded)[3])
            else:
                bare_runs.append(bare_loop(replace(config, seed=round_), train, data[1]))
    row = trainer_runs[len(trainer_runs) // 2] | {
        "command": command_for(recipe, {**overrides, "device": args.device}) + " --seed S",
        "test_accuracy": statistics.median(r["test_accuracy"] for r in trainer_runs),
        "train_seconds": statistics.median(r["train_seconds"] for r in trainer_runs),
        "trainer_seconds": spread([r["train_seconds"] for r in trainer_runs]),
        "trainer_accuracy": spread([r["test_accuracy"] for r in trainer_runs]),
        "repeats": args.repeats,
        "seeds": list(range(args.repeats)),
        "trainer_accuracies": [r["test_accuracy"] for r in trainer_runs],
        "order": "warm-up of both, then alternating: trainer-bare, bare-trainer, ...",
    }
    bare_seconds = [r["train_seconds"] for r in bare_runs]
    row["bare_loop"] = {
        "test_accuracy": statistics.median(r["test_accuracy"] for r in bare_runs),
        "train_seconds": statistics.median(bare_seconds),
        "seconds": spread(bare_seconds),
        "accuracy": spread([r["test_accuracy"] for r in bare_runs]),
    }
    row["trainer_vs_bare"] = row["bare_loop"]["train_seconds"] / row["train_seconds"]
    met = row["test_accuracy"] >= 0.99 and row["train_seconds"] <= 5
    print(
        f"mnist-lenet5 (median of {args.repeats}): {row['test_accuracy']:.2%} in "
        f"{row['train_seconds']:.1f} s of training ({'met' if met else 'MISSED'}: >= 99.0% in "
        f"<= 5 s); bare PyTorch loop {row['bare_loop']['test_accuracy']:.2%} in "
        f"{row['bare_loop']['train_seconds']:.1f} s; trainer/bare {row['trainer_vs_bare']:.3f} "
        "(bar >= 0.95)",
        flush=True,
    )
    return [{"task": "mnist-lenet5", **row, "target": ">= 99.0% in <= 5 s"}]


# ------------------------------------------------------------------------------------ CIFAR-10


def cifar_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One run per budget, each with as many whole epochs as fit in it."""
    base = {"device": args.device, **subset_overrides(args)}
    if args.data_variant:
        base["data_variant"] = args.data_variant
    base.update(dict(args.cifar_set))  # trying a variant of the recipe
    # ---- calibration: the throughput of a short run (its first steps warm up the kernels,
    # so the estimate errs low and the sized runs fit their budgets)
    calibration = {**base, "epochs": 1, "train_subset": args.calibration_images}
    _, config, _, row = train_recipe(args.cifar_recipe, **calibration)
    speed = row["images_per_second"]
    sized = recipe_config(args.cifar_recipe, **base)
    data = load_data(sized)
    # an epoch trains the images left after the recipe's validation split
    trained = len(validation_split(data[0], sized.val_split, sized.seed)[0])
    print(f"cifar10-cpu: calibration {speed:,.0f} img/s ({config.amp}, {trained:,} train)")
    rows = []
    for budget in args.budgets:
        epochs = max(1, math.floor(0.95 * budget * speed / trained))
        runs = []
        for seed in args.cifar_seeds:
            _, _, _, run = train_recipe(args.cifar_recipe, data, **base, epochs=epochs, seed=seed)
            runs.append(run)
            print(
                f"cifar10-cpu, {budget:g} s budget, seed {seed}: {epochs} epochs, "
                f"{run['test_accuracy']:.2%} in {run['train_seconds']:.1f} s "
                f"({run['images_per_second']:,.0f} img/s)",
                flush=True,
            )
        row = runs[len(runs) // 2] | {
            "command": command_for(args.cifar_recipe, {**base, "epochs": epochs}) + " --seed S",
            "test_accuracy": statistics.median(r["test_accuracy"] for r in runs),
            "train_seconds": statistics.median(r["train_seconds"] for r in runs),
            "seeds": args.cifar_seeds,
            "accuracies": [r["test_accuracy"] for r in runs],
            "val_accuracies": [r["val_accuracy"] for r in runs],
            "seconds": spread([r["train_seconds"] for r in runs]),
            "accuracy": spread([r["test_accuracy"] for r in runs]),
        }
        rows.append({"task": "cifar10-cpu", **row, "budget_seconds": budget})
        # the next (longer) budget is sized by this run's steady speed: the calibration's
        # warm-up steps make it err low by 10-15%, which would leave a minute unused
        speed = statistics.median(r["images_per_second"] for r in runs)
    return rows


def gpu_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    overrides: dict[str, Any] = {"device": args.device, **subset_overrides(args)}
    overrides["epochs"] = args.gpu_epochs
    overrides["model_options"] = {"widths": args.gpu_widths}
    if args.data_variant:
        overrides["data_variant"] = args.data_variant
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    _, _, _, row = train_recipe(args.cifar_recipe, **overrides)
    print(f"cifar10-gpu: {row['test_accuracy']:.2%} in {row['train_seconds']:.1f} s", flush=True)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else None
    return [{"task": "cifar10-gpu", **row, "gpu": name, "target": ">= 94% in as few seconds"}]


# ---------------------------------------------------------------------------------------- main


def subset_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {"train_subset": args.train_subset, "test_subset": args.test_subset}
    return {k: v for k, v in out.items() if v}


def setting(text: str) -> tuple[str, Any]:
    """``"batch_size=256"`` -> ``("batch_size", 256)`` (the value read as JSON where it is)."""
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="mnist-lenet5,cifar10-cpu", help=", ".join(TASKS))
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the 2-core target)")
    p.add_argument("--budgets", default="60,120,300", help="CIFAR-10 CPU budgets, seconds")
    p.add_argument("--data-variant", default="jpeg", help="cifar10: official, jpeg or subset")
    p.add_argument("--calibration-images", type=int, default=5120)
    p.add_argument("--cifar-recipe", default="cifar10-air", help="or cifar10-fast")
    p.add_argument(
        "--cifar-seeds",
        type=int,
        nargs="+",
        default=[0],
        help="cifar10-cpu: one run per seed and budget; the row holds the median, min, max",
    )
    p.add_argument("--mnist-recipe", default="mnist-5s", help="or mnist-fast")
    p.add_argument("--mnist-epochs", type=int, default=None, help="else the recipe's")
    p.add_argument(
        "--repeats", type=int, default=3, help="mnist: timed runs of each side (median, min, max)"
    )
    p.add_argument(
        "--mnist-set",
        action="append",
        type=setting,
        default=[],
        metavar="KEY=VALUE",
        help="change a setting of the mnist recipe for this run, e.g. batch_size=256",
    )
    p.add_argument(
        "--cifar-set",
        action="append",
        type=setting,
        default=[],
        metavar="KEY=VALUE",
        help='change a setting of the CIFAR-10 recipe, e.g. model_options={"widths":[...]}',
    )
    p.add_argument("--gpu-epochs", type=int, default=None, help="else the recipe's full run")
    p.add_argument("--gpu-widths", type=json.loads, default=None, help="else the full widths")
    p.add_argument("--train-subset", type=int, default=None, help="tests only: fewer images")
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    args = p.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = set(args.tasks) - set(TASKS)
    if unknown:
        p.error(f"unknown tasks {sorted(unknown)}; expected some of {', '.join(TASKS)}")
    args.budgets = [float(b) for b in args.budgets.split(",")]
    if args.cifar_recipe not in GPU_DEFAULTS:
        p.error(f"--cifar-recipe {args.cifar_recipe!r}: expected one of {', '.join(GPU_DEFAULTS)}")
    widths, epochs = GPU_DEFAULTS[args.cifar_recipe]
    args.gpu_widths = widths if args.gpu_widths is None else args.gpu_widths
    args.gpu_epochs = epochs if args.gpu_epochs is None else args.gpu_epochs
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    if "mnist-lenet5" in args.tasks:
        rows += mnist_rows(args)
    if "cifar10-cpu" in args.tasks:
        rows += cifar_rows(args)
    if "cifar10-gpu" in args.tasks:
        rows += gpu_rows(args)
    measured = provenance()
    rows = [{**row, "provenance": measured} for row in rows]
    for row in rows:
        recipe = row["command"].split()[3]  # cnnlab train --recipe NAME ...
        row["chosen_on_validation_in"] = CHOSEN_IN.get(recipe)
    return write_json(
        args.out, {"torch_threads": torch.get_num_threads(), "rows": kept(args, rows)}
    )


def kept(args: argparse.Namespace, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` after the rows of ``args.out`` for the tasks not run now (each row names the
    machine and commit it was measured on), so one task can be re-measured alone."""
    try:
        earlier = json.loads(Path(args.out).read_text())
    except (OSError, ValueError):
        return rows
    run_now = {row["task"] for row in rows} | set(args.tasks)
    return [
        {**row, "provenance": row.get("provenance", earlier.get("provenance"))}
        for row in earlier.get("rows", [])
        if row.get("task") not in run_now
    ] + rows


if __name__ == "__main__":
    main()
