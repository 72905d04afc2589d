"""Helpers shared by the benchmark scripts: where the data is, what machine this is, JSON out."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

from cnnlab.runs import atomic_write
from cnnlab.train.probe import cpu_flags

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def data_dir() -> Path:
    return Path(os.environ.get("CNNLAB_DATA") or ROOT.parent / "shared" / "data")


def cpu_model() -> str:
    """The first "model name" of /proc/cpuinfo, else what platform knows, else "not recorded"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "not recorded"


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


def git_commit() -> str:
    """The short commit of the working tree ("+dirty" when it has uncommitted changes)."""
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "not recorded"
    return f"{commit}+dirty" if dirty else commit


def provenance() -> dict[str, object]:
    """When, from which commit and on what a result was measured."""
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),  # bf16 fast paths: AVX-512 BF16, AMX
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


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
