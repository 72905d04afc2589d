"""The fast recipes with their validation split: each holds out 10% of its training images
(stratified, seeded) and reports validation and test accuracy of the final epoch, so a recipe's
quoted figure can be checked against images it was never tuned or trained on.

    python benchmarks/recipes_validation.py       # mnist-fast seeds 0,1,2; cifar10-air seed 0
    python benchmarks/recipes_validation.py --runs mnist-fast:0 cifar10-air:0,1,2

Writes benchmarks/results/recipes_validation.json. Run it alone: two busy cores make training
several times slower (accuracy does not depend on load, the seconds do).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, data_dir, write_json  # noqa: E402

from cnnlab.runs.start import build_model  # noqa: E402
from cnnlab.train import fit  # noqa: E402
from cnnlab.train.pipeline import load_data
from cnnlab.train.recipes import recipe_config

VARIANTS = {"cifar10-air": {"data_variant": "jpeg"}}


def run(recipe: str, seed: int, threads: int, **overrides: object) -> dict[str, object]:
    torch.set_num_threads(threads)
    settings = {**VARIANTS.get(recipe, {}), **overrides}
    config = recipe_config(recipe, progress=False, seed=seed, data_dir=str(data_dir()), **settings)
    data = load_data(config)
    torch.manual_seed(seed)
    result = fit(build_model(config, data[0]), data, config)
    last = result.history[-1]
    return {
        "recipe": recipe,
        "overrides": overrides,
        "seed": seed,
        "val_split": config.val_split,
        "epochs": config.epochs,
        "val_accuracy": last["val_acc"],
        "test_accuracy": last["test_acc"],
        "train_seconds": sum(r["train_seconds"] for r in result.history),
        "per_epoch": [
            {k: r[k] for k in ("epoch", "val_acc", "test_acc", "train_seconds")}
            for r in result.history
        ],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--runs",
        nargs="+",
        default=["mnist-fast:0,1,2", "cifar10-air:0"],
        metavar="RECIPE:SEEDS",
        help="each recipe with its comma-separated seeds",
    )
    p.add_argument(
        "--sweep",
        default=None,
        metavar="KEY=V1,V2,...",
        help="train each run once per value of one setting (e.g. lr=0.002,0.004,0.008), to "
        "choose it on the validation accuracy",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS / "recipes_validation.json")
    args = p.parse_args()
    settings: list[dict[str, object]] = [{}]
    if args.sweep:
        key, _, values = args.sweep.partition("=")
        settings = [{key: json.loads(value)} for value in values.split(",")]
    rows = []
    for spec in args.runs:
        recipe, _, seeds = spec.partition(":")
        for seed in (int(s) for s in (seeds or "0").split(",")):
            for overrides in settings:
                row = run(recipe, seed, args.threads, **overrides)
                print(
                    f"{recipe} {overrides or ''} seed {seed}: val {row['val_accuracy']:.2%}  "
                    f"test {row['test_accuracy']:.2%}  {row['train_seconds']:.1f} s"
                )
                rows.append(row)
    write_json(args.out, {"rows": rows})


if __name__ == "__main__":
    main()
