"""The fast recipes with their validation split: each holds out 10% of its training images
(stratified, seeded) and reports validation and test accuracy of the final epoch, so a recipe's
quoted figure can be checked against images it was never tuned or trained on.

    python benchmarks/recipes_validation.py                  # mnist-fast and cifar10-air
    python benchmarks/recipes_validation.py --recipes mnist-fast --seeds 0,1,2

Writes benchmarks/results/recipes_validation.json. Run it alone: two busy cores make training
several times slower (accuracy does not depend on load, the seconds do).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, data_dir, write_json  # noqa: E402

from cnnlab.experiment import build_model  # noqa: E402
from cnnlab.pipeline import load_data  # noqa: E402
from cnnlab.recipes import recipe_config  # noqa: E402
from cnnlab.train import fit  # noqa: E402

VARIANTS = {"cifar10-air": {"data_variant": "jpeg"}}


def run(recipe: str, seed: int, threads: int) -> dict[str, object]:
    torch.set_num_threads(threads)
    config = recipe_config(
        recipe, progress=False, seed=seed, data_dir=str(data_dir()), **VARIANTS.get(recipe, {})
    )
    data = load_data(config)
    torch.manual_seed(seed)
    result = fit(build_model(config, data[0]), data, config)
    last = result.history[-1]
    return {
        "recipe": recipe,
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
    p.add_argument("--recipes", default="mnist-fast,cifar10-air")
    p.add_argument("--seeds", default="0", help="comma-separated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS / "recipes_validation.json")
    args = p.parse_args()
    rows = []
    for recipe in args.recipes.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            row = run(recipe, seed, args.threads)
            print(
                f"{recipe} seed {seed}: val {row['val_accuracy']:.2%}  test "
                f"{row['test_accuracy']:.2%}  {row['train_seconds']:.1f} s"
            )
            rows.append(row)
    write_json(args.out, {"rows": rows})


if __name__ == "__main__":
    main()
