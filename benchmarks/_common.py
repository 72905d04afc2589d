"""Helpers shared by the benchmark scripts: where the data is, what machine this is, JSON out."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

from cnnlab.machine import cpu_model, provenance
from cnnlab.run_folder import atomic_write

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def data_dir() -> Path:
    return Path(os.environ.get("CNNLAB_DATA") or ROOT.parent / "shared" / "data")


def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_json(path: Path, results: dict[str, object]) -> Path:
    """Write ``results`` to ``path`` with a "provenance" block and, unless given, "machine"."""
    record = {"provenance": provenance(), "machine": machine(), **results}
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (json.dumps(record, indent=2) + "\n").encode()
    atomic_write(path, lambda handle: handle.write(text))
    resolved = path.resolve()
    shown = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else path
    print(f"wrote {shown}")
    return path


def write_results(name: str, results: dict[str, object]) -> Path:
    return write_json(RESULTS / f"{name}.json", results)
