"""Run folders: ``runs/<name>/`` with config.json, metrics.csv, checkpoint.pt and the figures.

Nothing here overwrites silently: a new run never reuses an existing folder unless told to, and
every file is written to a temporary name in the same folder and renamed into place, so a run
killed mid-write leaves the previous complete file behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .errors import RunFolderError

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.csv"


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(handle)`` into a temporary file, fsync, then rename."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda handle: torch.save(state, handle))


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text(path, buffer.getvalue())


def read_metrics(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def new_run_dir(runs_root: Path, name: str | None, default_name: str, overwrite: bool) -> Path:
    """Create the folder of a new run.

    Args:
        runs_root: the folder that holds runs (``runs/`` by default).
        name: the name asked for; when None, ``default_name`` with ``-2``, ``-3``, ... appended
            as needed so an earlier run is never touched.
        overwrite: delete an existing folder of that name first (only with an explicit name).
    """
    if name is None:
        candidate, number = runs_root / default_name, 2
        while candidate.exists():
            candidate, number = runs_root / f"{default_name}-{number}", number + 1
    else:
        if not name or any(part in ("", ".", "..") for part in Path(name).parts) or "/" in name:
            raise RunFolderError(
                f"run name {name!r}: use a plain folder name such as 'lenet-mnist'"
            )
        candidate = runs_root / name
        if candidate.exists():
            if not overwrite:
                raise RunFolderError(
                    f"run folder {candidate} already exists; pass --overwrite to replace it, "
                    f"--resume {candidate} to continue it, or another --name"
                )
            if not (candidate / CONFIG).is_file() and any(candidate.iterdir()):
                raise RunFolderError(
                    f"{candidate} exists and is not a cnnlab run folder (no {CONFIG}); "
                    "refusing to delete it, pick another --name"
                )
            shutil.rmtree(candidate)
    candidate.mkdir(parents=True)
    return candidate


def resolve_run(run: str | os.PathLike[str], runs_root: Path = Path("runs")) -> Path:
    """A run folder from a path or a name under ``runs_root``; it must hold a checkpoint."""
    path = Path(run)
    if not path.is_dir() and (runs_root / path).is_dir():
        path = runs_root / path
    if not (path / CHECKPOINT).is_file():
        known = sorted(p.name for p in runs_root.glob("*") if (p / CHECKPOINT).is_file())
        where = f"runs in {runs_root}/: {', '.join(known)}" if known else f"no runs in {runs_root}/"
        what = "no such folder" if not path.is_dir() else f"no {CHECKPOINT} in it"
        raise RunFolderError(f"run {str(run)!r}: {what}; {where}")
    return path


def load_checkpoint(
    path: Path, required: tuple[str, ...] = ("model", "model_spec")
) -> dict[str, Any]:
    """Load a checkpoint without executing code from it (``weights_only=True``); it must be a
    dict holding the ``required`` keys (an image run's by default)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise RunFolderError(
            f"{path}: not a readable cnnlab checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]})"
        ) from None
    if not isinstance(state, dict) or any(key not in state for key in required):
        raise RunFolderError(f"{path}: not a cnnlab checkpoint (it lacks {', '.join(required)})")
    return state


def read_config(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RunFolderError(f"{run_dir / CONFIG}: cannot read ({err})") from None
