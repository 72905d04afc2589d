"""What test-time augmentation adds to a CIFAR-10 recipe: one model, scored four ways.

Trains ``--recipe cifar10-air`` (by default for the 7 epochs that fit its 5-minute budget on a
2-core AMD EPYC) once, then tests the same weights on the 10,000 test images as they are, with
their mirror images (``--test-flip``), and with the mirrors and 1- or 2-pixel shifts
(``--test-translate 1`` / ``2``, airbench's 6 views), on the run's own validation split (which
chooses) and on the test images (which report). The views cost test time only (2 or 6
forward passes per image), not training time. Run it alone.

    python benchmarks/tta.py [--epochs 7] [--seed 0]

Writes benchmarks/results/tta.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir, write_results  # noqa: E402

from cnnlab.data import make_loader  # noqa: E402
from cnnlab.runs.load import load_run  # noqa: E402
from cnnlab.runs.start import train_run  # noqa: E402
from cnnlab.train.pipeline import load_data  # noqa: E402
from cnnlab.train.recipes import recipe_config  # noqa: E402
from cnnlab.train.steps import evaluate  # noqa: E402
from cnnlab.train.validation import validation_split  # noqa: E402

VIEWS = [
    ("the image", False, 0),
    ("image + mirror", True, 0),
    ("+ shifts of 1 pixel (6 views)", True, 1),
    ("+ shifts of 2 pixels (6 views)", True, 2),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="cifar10-air")
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-subset", type=int, default=None, help="a quick check")
    args = parser.parse_args()
    config = recipe_config(
        args.recipe,
        epochs=args.epochs,
        seed=args.seed,
        data_dir=str(data_dir()),
        data_variant="jpeg",
        progress=False,
        train_subset=args.train_subset,
    )
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        result = train_run(config, Path(scratch), "tta")
        train_seconds = sum(row["train_seconds"] for row in result.history)
        print(f"trained in {time.perf_counter() - started:.0f} s ({train_seconds:.0f} s training)")
        trained = load_run(Path(scratch) / "tta")
        train, test = load_data(config)
        _, val = validation_split(train, config.val_split, config.seed)  # the run's own split
        loaders = {
            "val": make_loader(val, 500, shuffle=False),
            "test": make_loader(test, 500, shuffle=False),
        }
        for name, flip, translate in VIEWS:
            row = {"views": name, "test_flip": flip, "test_translate": translate}
            for split, loader in loaders.items():
                started = time.perf_counter()
                loss, accuracy, _ = evaluate(
                    trained.model, loader, trained.preprocess, 10, config.amp, flip, translate
                )
                row[f"{split}_accuracy"], row[f"{split}_loss"] = accuracy, loss
                row[f"{split}_seconds"] = time.perf_counter() - started
            rows.append(row)
            print(
                f"{name}: validation {row['val_accuracy']:.2%}, test {row['test_accuracy']:.2%} "
                f"({row['test_seconds']:.1f} s for the test images)",
                flush=True,
            )
    write_results(
        "tta",
        {
            "command": "python benchmarks/tta.py " + " ".join(sys.argv[1:]),
            "recipe": args.recipe,
            "epochs": args.epochs,
            "seed": args.seed,
            "train_seconds": train_seconds,
            "val_accuracy": result.history[-1].get("val_acc"),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
