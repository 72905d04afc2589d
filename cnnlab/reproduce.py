"""``cnnlab reproduce``: the classic teaching experiments, run again, next to the figures they
are known for, as a Markdown table.

``--quick`` uses subsets and fewer epochs so the whole table takes a few minutes on 2 CPU
cores; its figures show the trend, not the final numbers. The full run follows the reference
settings and is meant for a GPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import runs
from .experiment import train_run
from .train import TrainConfig


@dataclass
class Experiment:
    key: str
    what: str
    reference: str
    reference_value: float  # test accuracy the reference reports
    quick: dict[str, Any]
    full: dict[str, Any]
    why_different: str = ""
    common: dict[str, Any] = field(default_factory=dict)


EXPERIMENTS = [
    Experiment(
        "lenet5-mnist",
        "LeNet-5 on MNIST",
        "LeCun et al. 1998: 0.95% test error (99.05% accuracy), 20 epochs",
        0.9905,
        quick={"model_options": {"modern": True}, "epochs": 2, "lr": 3e-3, "batch_size": 128},
        full={"epochs": 20, "lr": 1e-3, "batch_size": 64},
        common={"model": "lenet5", "dataset": "mnist"},
        why_different="the paper used RBF outputs, a trained subsampling and the C3 table, and "
        "a hand-tuned learning-rate schedule; ours is the common simplification (see `cnnlab "
        "models`); --quick uses the ReLU/max-pool variant for 2 epochs",
    ),
    Experiment(
        "fashion-mlp",
        "fully connected network on Fashion-MNIST, 5 epochs",
        "usual tutorials: about 86% after 5 epochs",
        0.86,
        quick={"epochs": 1, "train_subset": 20000},
        full={"epochs": 5},
        common={"model": "fashion_mlp", "dataset": "fashion-mnist", "batch_size": 64, "lr": 1e-3},
        why_different="tutorial figures vary by a point or two with the optimizer and batch "
        "size; --quick trains 1 epoch on 20,000 images",
    ),
    Experiment(
        "fashion-cnn",
        "the tutorial CNN on Fashion-MNIST, 5 epochs",
        "usual tutorials: about 90% after 5 epochs",
        0.90,
        quick={"epochs": 1, "train_subset": 20000},
        full={"epochs": 5},
        common={"model": "fashion_cnn", "dataset": "fashion-mnist", "batch_size": 64, "lr": 1e-3},
        why_different="--quick trains 1 epoch on 20,000 images",
    ),
    *[
        Experiment(
            f"cifar-{name}",
            f"`{name}` on CIFAR-10, 5 epochs",
            f"usual tutorial result: {ref:.1%}",
            ref,
            quick={
                "epochs": 1,
                "train_subset": 1000,
                "test_subset": 1000,
                "data_variant": "subset",
            },
            full={"epochs": 5},
            common={"model": name, "dataset": "cifar10", "batch_size": 64, "lr": 1e-3},
            why_different="--quick trains 1 epoch on 1,000 images of the lossless subset, far "
            "too little for these 1-5M-parameter stacks: it checks the pipeline, not the figure",
        )
        for name, ref in (
            ("cifar_plain7", 0.717),
            ("cifar_residual", 0.663),
            ("cifar_residual_pool", 0.760),
        )
    ],
]


def run(
    quick: bool,
    runs_root: Path,
    data_dir: str | None = None,
    only: list[str] | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train every experiment (or those in ``only``) into ``runs_root`` and collect rows."""
    rows = []
    for exp in EXPERIMENTS:
        if only and exp.key not in only:
            continue
        settings = {**exp.common, **(exp.quick if quick else exp.full)}
        config = TrainConfig(**settings, data_dir=data_dir, progress=progress)
        started = time.perf_counter()
        result = train_run(config, runs_root / "reproduce")  # a fresh folder every time
        accuracy = result.history[-1]["test_acc"]
        rows.append(
            {
                "key": exp.key,
                "what": exp.what,
                "reference": exp.reference,
                "reference_acc": exp.reference_value,
                "cnnlab_acc": accuracy,
                "difference": accuracy - exp.reference_value,
                "seconds": time.perf_counter() - started,
                "settings": settings,
                "run": str(result.run_dir),
                "note": exp.why_different,
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], quick: bool) -> str:
    lines = [
        f"# cnnlab reproduce{' --quick' if quick else ''}",
        "",
        "| experiment | reference | cnnlab | difference | time | settings |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["settings"]
        epochs = s.get("epochs")
        settings = f"{epochs} epoch{'s' if epochs != 1 else ''}" + (
            f", {s['train_subset']:,} train images" if s.get("train_subset") else ""
        )
        lines.append(
            f"| {r['what']} | {r['reference']} | {r['cnnlab_acc']:.2%} | "
            f"{100 * r['difference']:+.2f} points | {r['seconds']:.0f} s | {settings} |"
        )
    lines += ["", "Why the figures differ:", ""]
    lines += [f"- {r['what']}: {r['note']}" for r in rows if r["note"]]
    return "\n".join(lines) + "\n"


def write_report(rows: list[dict[str, Any]], quick: bool, path: Path) -> str:
    text = markdown(rows, quick)
    runs.write_text(path, text)
    return text
