"""What machine a figure was measured on, and from which commit: the CPU model and its bf16
fast paths, the cores, torch and its threads, the GPU, and the git commit of cnnlab's source
tree. Benchmarks and the course's reports record it beside every result."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

SOURCE_TREE = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The first "model name" of /proc/cpuinfo, else what platform knows, else "not recorded"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "not recorded"


def _cpuinfo_words() -> set[str]:
    """The words of /proc/cpuinfo (its flags among them); none when it is missing (not Linux)."""
    try:
        return set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return set()


def cpu_flags() -> dict[str, bool]:
    """Whether this CPU has AVX-512 BF16 and AMX (bf16 tiles): /proc/cpuinfo's flags."""
    flags = _cpuinfo_words()
    return {"avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags}


def cpu_vector_width() -> str:
    """The widest vector instructions this CPU has ("avx512f", "avx2", or "neither"): fp32
    convolutions run about twice as fast per core with AVX-512, so two machines with the same
    model name can differ by that much."""
    flags = _cpuinfo_words()
    return next((f for f in ("avx512f", "avx2") if f in flags), "neither")


def git_commit() -> str:
    """The short commit of cnnlab's source tree ("+dirty" with uncommitted changes), or
    "not recorded" outside a git checkout."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(SOURCE_TREE), *args], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "not recorded"
    return f"{commit}+dirty" if git("status", "--porcelain", "--untracked-files=no") else commit


def provenance() -> dict[str, Any]:
    """When, from which commit and on what a result was measured."""
    import torch

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),  # bf16 fast paths: AVX-512 BF16, AMX
        "cpu_vector": cpu_vector_width(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


__all__ = ["cpu_flags", "cpu_model", "cpu_vector_width", "git_commit", "provenance"]
