"""What initialisation does to a plain 7-layer stack: the course's E4 (seven 3x3 convolutions of
128 channels, no skips) with PyTorch's default initialisation against Keras' (Glorot-uniform,
zero biases), and the course's own Keras code, over seeds, on the same 10,000 CIFAR-10
training images and the whole test set.

Everything else is the course's Keras recipe (Adam 0.001, eps 1e-7, batch 32, x / 255,
shuffled). Each run's per-epoch training accuracy (averaged over the epoch, as Keras logs it)
and test accuracy go to benchmarks/results/init_e4.json, with the seeds whose run stayed at
chance (a layer of dead ReLUs; ``cnnlab lessons init-and-depth``).

    python benchmarks/init_e4.py [--seeds 0 1 2] [--epochs 1] [--train-subset 10000]
        [--runs-dir DIR] [--kinds torch keras course-code]

With ``--runs-dir`` each finished run leaves ``DIR/<kind>-<seed>.json``; running the same
command again reads those and trains only the runs still missing (a killed sweep goes on).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir, write_results  # noqa: E402

from cnnlab.course.reproduce import EXPERIMENTS, config_for  # noqa: E402
from cnnlab.runs.start import train_run  # noqa: E402

KINDS = ("torch", "keras", "course-code")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-subset", type=int, default=10_000)
    parser.add_argument("--name", default="init_e4")
    parser.add_argument("--runs-dir", type=Path, default=None, help="keep runs here to resume")
    parser.add_argument(
        "--kinds", nargs="+", choices=KINDS, default=list(KINDS),
        help="course-code: the course's own Keras code (needs cnnlab[keras])",
    )  # fmt: skip
    args = parser.parse_args()
    e4 = next(e for e in EXPERIMENTS if e.key == "e4-cifar-plain7")
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        keep = args.runs_dir or Path(scratch)
        keep.mkdir(parents=True, exist_ok=True)
        for kind in args.kinds:
            for seed in args.seeds:
                config = config_for(e4, False, str(data_dir()), False, args.train_subset)
                config.seed, config.epochs = seed, args.epochs
                row = one_run(kind, config, keep, Path(scratch))
                runs.append(row)
                last = row["epochs"][-1]
                print(
                    f"E4 {kind} seed {seed}: train {last['train_acc']:.2%}, test "
                    f"{last['test_acc']:.2%} after {args.epochs} epoch(s), {row['seconds']:.0f} s"
                )
    summary = {}
    for kind in args.kinds:
        tests = [r["epochs"][-1]["test_acc"] for r in runs if r["init"] == kind]
        trains = [r["epochs"][-1]["train_acc"] for r in runs if r["init"] == kind]
        stuck = [r["seed"] for r in runs if r["init"] == kind and at_chance(r)]
        summary[kind] = {
            "test_acc_mean": statistics.mean(tests),
            "test_acc_min": min(tests),
            "test_acc_max": max(tests),
            "train_acc_mean": statistics.mean(trains),
            "seeds_stuck_at_chance": stuck,
        }
        print(
            f"{kind}: test {statistics.mean(tests):.2%} (min {min(tests):.2%}, max "
            f"{max(tests):.2%}), train {statistics.mean(trains):.2%} over seeds {args.seeds}; "
            f"stuck at chance (loss ln 10, test 10%): seeds {stuck or 'none'}"
        )
    write_results(
        args.name,
        {
            "command": "python benchmarks/init_e4.py " + " ".join(sys.argv[1:]),
            "recipe": "the course's E4 Keras recipe (Adam 0.001, eps 1e-7, batch 32, x/255, "
            "shuffled); only the starting weights (their scheme and seed) change. torch and "
            "keras: cnnlab's cifar_plain7 with --init torch / --init keras; course-code: the "
            "course's own Keras code (Keras 3, torch backend, every Keras default) with "
            "keras.utils.set_random_seed(seed)",
            "train_images": args.train_subset,
            "epochs": args.epochs,
            "runs": runs,
            "summary": summary,
        },
    )


def one_run(kind: str, config, keep: Path, scratch: Path) -> dict:
    """One seed of one kind, read from ``keep`` when it finished there before, else trained
    (and kept: a killed sweep goes on)."""
    done = keep / f"{kind}-{config.seed}.json"
    if done.exists():
        row = json.loads(done.read_text())
        if row.get("epochs_wanted") == config.epochs and (
            row.get("train_images") == config.train_subset
        ):
            print(f"E4 {kind} seed {config.seed}: read from {done}")
            return row
    started = time.perf_counter()
    if kind == "course-code":
        from cnnlab.course import keras_code

        code = keras_code.run_course_code("e4-cifar-plain7", config, keep, reuse=True)
        history, started = code["epochs"], time.perf_counter() - code["seconds"]
    else:
        config.init = kind
        history = train_run(config, scratch, f"{kind}-{config.seed}", overwrite=True).history
    row = {
        "init": kind,
        "seed": config.seed,
        "epochs_wanted": config.epochs,
        "train_images": config.train_subset,
        "seconds": time.perf_counter() - started,
        "epochs": [
            {k: h[k] for k in ("epoch", "train_loss", "train_acc", "test_acc")} for h in history
        ],
    }
    partial = done.with_suffix(".json.tmp")
    partial.write_text(json.dumps(row, indent=2))
    os.replace(partial, done)
    return row


def at_chance(run: dict) -> bool:
    """A run that learned nothing but the class frequencies: its last training loss is ln 10
    (CIFAR-10's balanced classes; to 0.005) and its test accuracy 10%. In E4 that is a network
    whose ReLUs of one layer all output 0 (``cnnlab show gradflow`` counts them)."""
    last = run["epochs"][-1]
    return abs(last["train_loss"] - math.log(10)) < 0.005 and last["test_acc"] <= 0.105


if __name__ == "__main__":
    main()
