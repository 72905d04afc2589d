"""Ways to spend a fixed CPU budget on CIFAR-10, each measured against ``--recipe cifar10-air``.

Every variant changes one thing of the recipe and gets the most whole epochs that fit the
budget (300 s of training by default) at the speed this CPU trains it, so the variants compare
at equal time, not at equal epochs:

1. ``probe`` (run it alone: the figures are wall-clock speeds): each shape (widths, batch,
   image side) trains three short epochs on 16,384 images; the best warm epoch's speed sizes
   the runs of every variant with that shape (so variants that differ in no shape get the
   same epochs).
2. ``train``: each variant trains once (seed 0) on 45,000 images for its epochs; the 5,000
   held out choose (validation accuracy), the 10,000 test images only report. Accuracy does
   not depend on what else runs on the machine, so this phase may share it; the row says
   whether the training time was measured alone.
3. The chosen variant goes into the recipe, and ``benchmarks/speed.py --tasks cifar10-cpu
   --cifar-seeds 0 1 2`` measures it over 3 seeds (``speed.json``).

    python benchmarks/cifar_methods.py probe
    python benchmarks/cifar_methods.py train [--variants a,b]

Writes benchmarks/results/cifar_methods.json (each phase keeps the others' rows).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, data_dir, write_json  # noqa: E402
from speed import train_recipe  # noqa: E402

from cnnlab.machine import provenance  # noqa: E402

RECIPE = "cifar10-air"
OUT = RESULTS / "cifar_methods.json"
TRAIN_IMAGES = 45_000  # CIFAR-10's 50,000 less the recipe's 10% validation split
PROBE_IMAGES = 16_384

# name -> (what it tries, the recipe settings it changes, share of epochs at the small size)
VARIANTS: dict[str, tuple[str, dict[str, Any], float]] = {
    "recipe": ("the recipe as it is (batch 1024, lr 1.5, widths 32/128/128)", {}, 0.0),
    "small24-half": (
        "progressive resizing: the first half of the epochs at 24 x 24",
        {"small_size": 24},
        0.5,
    ),
    "small16-third": (
        "progressive resizing: the first third of the epochs at 16 x 16",
        {"small_size": 16},
        1 / 3,
    ),
    "batch512": (
        "batch 512 at half the rate (lr 0.75): twice the steps",
        {"batch_size": 512, "lr": 0.75},
        0.0,
    ),
    "batch512-small24": (
        "the two that helped together: batch 512 at lr 0.75, the first half of the epochs at "
        "24 x 24",
        {"batch_size": 512, "lr": 0.75, "small_size": 24},
        0.5,
    ),
    "batch2048": (
        "batch 2048 at twice the rate (lr 3.0): half the steps, faster images",
        {"batch_size": 2048, "lr": 3.0},
        0.0,
    ),
    "narrow": (
        "widths 24/96/96: more epochs of a smaller network",
        {"model_options": {"widths": [24, 96, 96]}},
        0.0,
    ),
    "wide": (
        "widths 48/192/192: fewer epochs of a larger network",
        {"model_options": {"widths": [48, 192, 192]}},
        0.0,
    ),
    "no-lookahead": (
        "without lookahead (the recipe's weight averaging at the end of the run)",
        {"lookahead": False},
        0.0,
    ),
    "ema": (
        "an exponential moving average of the weights (decay 0.98 per step, about an epoch) "
        "in place of lookahead",
        {"lookahead": False, "ema": 0.98},
        0.0,
    ),
}


def common() -> dict[str, Any]:
    return {"data_dir": str(data_dir()), "data_variant": "jpeg"}


def shape_key(settings: dict[str, Any], side: int = 0) -> str:
    """What the speed depends on: the widths, the batch and the training images' side."""
    widths = settings.get("model_options", {}).get("widths", "recipe")
    return f"widths={widths} batch={settings.get('batch_size', 'recipe')} side={side or 32}"


def probe_speed(settings: dict[str, Any], side: int = 0) -> float:
    """Warm speed (images per second) of one shape: three epochs of 16,384 images (less the
    validation split), the best of the two after the first (which warms the kernels up)."""
    overrides = {**common(), **settings, "train_subset": PROBE_IMAGES, "seed": 0}
    # with a small side, a fourth epoch at full size (the last epoch must be): 2-3 are small
    overrides.update(
        warmup_epochs=0.0, epochs=4 if side else 3, small_size=side, small_epochs=3 if side else 0
    )
    result, _, _, _ = train_recipe(RECIPE, **overrides)
    rows = result.history[1:3]
    return max(row["images_per_second"] for row in rows)


def probe(name: str, cache: dict[str, float]) -> dict[str, float]:
    """Warm speeds of the variant's full-size and small epochs (shapes probed once)."""
    _, settings, _ = VARIANTS[name]
    sides = {"full": 0, **({"small": settings["small_size"]} if "small_size" in settings else {})}
    speeds = {}
    for part, side in sides.items():
        key = shape_key(settings, side)
        if key not in cache:
            cache[key] = probe_speed({k: v for k, v in settings.items() if k != "small_size"}, side)
            print(f"{key}: {cache[key]:,.0f} img/s", flush=True)
        speeds[part] = cache[key]
    return speeds


def predicted_seconds(speeds: dict[str, float], epochs: int, small: int) -> float:
    """Training time of ``epochs`` epochs, the first ``small`` at the small side's speed."""
    full = speeds["full"]
    return TRAIN_IMAGES * (small / speeds.get("small", full) + (epochs - small) / full)


def sized_epochs(speeds: dict[str, float], share: float, budget: float) -> tuple[int, int]:
    """The most epochs (and how many small) whose predicted time fits 95% of ``budget``."""
    best = (1, 0)
    for epochs in range(1, 200):
        small = round(share * epochs) if "small" in speeds else 0
        small = min(small, epochs - 1)
        if predicted_seconds(speeds, epochs, small) > 0.95 * budget:
            break
        best = (epochs, small)
    return best


def load() -> dict[str, Any]:
    try:
        return json.loads(OUT.read_text())
    except (OSError, ValueError):
        return {}


def save(record: dict[str, Any]) -> None:
    record = {k: v for k, v in record.items() if k not in ("provenance", "machine")}
    write_json(OUT, record)


def phase_probe(args: argparse.Namespace, record: dict[str, Any]) -> None:
    speeds = record.setdefault("speeds", {})
    cache = record.setdefault("shapes", {})
    for name in args.variants:
        speeds[name] = {**probe(name, cache), "provenance": provenance(), "alone": not args.shared}
        print(f"{name}: {speeds[name]['full']:,.0f} img/s full size", flush=True)
        save(record)


def run_row(name: str, seed: int, budget: float, record: dict[str, Any], alone: bool) -> dict:
    what, settings, share = VARIANTS[name]
    speed = probe(name, record.setdefault("shapes", {}))  # probed before, or now
    epochs, small = sized_epochs(speed, share, budget)
    overrides = {**common(), **settings, "epochs": epochs, "seed": seed}
    if small:
        overrides["small_epochs"] = small
    _, config, _, row = train_recipe(RECIPE, **overrides)
    predicted = predicted_seconds(speed, epochs, small)
    print(
        f"{name} seed {seed}: {epochs} epochs ({small} small), validation "
        f"{row['val_accuracy']:.2%}, test {row['test_accuracy']:.2%}, "
        f"{row['train_seconds']:.0f} s here, {predicted:.0f} s predicted alone",
        flush=True,
    )
    return {
        "variant": name,
        "what": what,
        "settings": settings,
        "seed": seed,
        "epochs": epochs,
        "small_epochs": small,
        "budget_seconds": budget,
        "predicted_seconds_alone": predicted,
        "train_seconds": row["train_seconds"],
        "timed_alone": alone,
        "val_accuracy": row["val_accuracy"],
        "test_accuracy": row["test_accuracy"],
        "command": row["command"],
        "provenance": provenance(),
    }


def phase_train(args: argparse.Namespace, record: dict[str, Any]) -> None:
    rows = record.setdefault("screen", [])
    for name in args.variants:
        for seed in args.seeds:
            rows[:] = [r for r in rows if (r["variant"], r["seed"]) != (name, seed)]
            rows.append(run_row(name, seed, args.budget, record, alone=not args.shared))
            save(record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=("probe", "train"))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of training")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--shared", action="store_true", help="other work runs beside it: times are not alone"
    )
    args = parser.parse_args()
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; expected some of {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    record = load()
    record.update(
        recipe=RECIPE,
        rule="equal training time: each variant gets the most whole epochs that fit 95% of the "
        "budget at its probed speed; validation accuracy chooses, test accuracy only reports",
        commands={**record.get("commands", {}), args.phase: " ".join(["python", *sys.argv])},
    )
    {"probe": phase_probe, "train": phase_train}[args.phase](args, record)


if __name__ == "__main__":
    main()
