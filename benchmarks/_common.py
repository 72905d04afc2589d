"""Helpers shared by the benchmark scripts: where the data is, what machine this is, JSON out."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def data_dir() -> Path:
    return Path(os.environ.get("CNNLAB_DATA") or ROOT.parent / "shared" / "data")


def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_results(name: str, results: dict[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **results}, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return path
