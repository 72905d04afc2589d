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
import platform
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .errors import CnnlabError, RunFolderError, first_line
from .outputs import check_writable_folder, name_fits

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"  # with --keep best: the checkpoint of the best validation accuracy
CONFIG = "config.json"
METRICS = "metrics.csv"
# what config.json records beside the settings: not settings, so `train --config` skips them
RECORD_KEYS = ("versions", "command", "resumed_with")


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


METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The per-epoch rows of a run's metrics.csv, as numbers; a missing or damaged file is
    refused by name."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in METRIC_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise RunFolderError(
                    f"{path}: no column {', '.join(missing)}; expected a cnnlab metrics.csv "
                    f"with {', '.join(METRIC_COLUMNS)} (the run rewrites it every epoch)"
                )
            rows = []
            for number, row in enumerate(reader, 2):
                try:
                    rows.append({k: float(v) for k, v in row.items() if k is not None})
                except (TypeError, ValueError):
                    raise RunFolderError(
                        f"{path}: line {number} is not a row of numbers ({row}); the file is "
                        "damaged (it is rewritten after every epoch of the run)"
                    ) from None
            return rows
    except FileNotFoundError:
        raise RunFolderError(
            f"{path}: missing; it is written after every epoch, so the run has not finished one"
        ) from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise RunFolderError(f"{path}: cannot read ({err})") from None


def plan_run_dir(runs_root: Path, name: str | None, default_name: str, overwrite: bool) -> Path:
    """Choose and check the folder of a new run without creating anything.

    Args:
        runs_root: the folder that holds runs (``runs/`` by default); it may not exist yet.
        name: the name asked for; when None, ``default_name`` with ``-2``, ``-3``, ... appended
            as needed so an earlier run is never touched.
        overwrite: an existing folder of that name may be replaced (only with an explicit name;
            see :func:`new_run` for how it is replaced).
    """
    check_writable_folder(runs_root, "--runs-dir", create=True)
    if name is None:
        name_fits(default_name, "run name")
        candidate, number = runs_root / default_name, 2
        while candidate.exists():
            candidate, number = runs_root / f"{default_name}-{number}", number + 1
        return candidate
    if not name or any(part in ("", ".", "..") for part in Path(name).parts) or "/" in name:
        raise RunFolderError(f"run name {name!r}: use a plain folder name such as 'lenet-mnist'")
    name_fits(name, "--name")
    candidate = runs_root / name
    if candidate.exists():
        if not overwrite:
            raise RunFolderError(
                f"run folder {candidate} already exists; pass --overwrite to replace it, "
                f"--resume {candidate} to continue it, or another --name"
            )
        if not candidate.is_dir() or (
            not (candidate / CONFIG).is_file() and any(candidate.iterdir())
        ):
            raise RunFolderError(
                f"{candidate} exists and is not a cnnlab run folder (no {CONFIG}); "
                "refusing to delete it, pick another --name"
            )
    return candidate


@contextmanager
def new_run(path: Path) -> Iterator[Path]:
    """Create the run folder ``path`` (chosen by :func:`plan_run_dir`) for the ``with`` body.

    A folder already there (``--overwrite``) is first moved aside, and deleted only when the
    new run succeeds or has written a checkpoint; if the new run fails before its first
    checkpoint, its folder is removed and the old one put back, so a failed run loses nothing
    and leaves nothing.
    """
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.replaced-{os.getpid()}")
        os.replace(path, old)
    path.mkdir(parents=True)
    try:
        yield path
    except BaseException:
        if not (path / CHECKPOINT).is_file():
            shutil.rmtree(path, ignore_errors=True)
            if old is not None:
                os.replace(old, path)
                old = None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def new_run_dir(runs_root: Path, name: str | None, default_name: str, overwrite: bool) -> Path:
    """Create the folder of a new run at once (see :func:`plan_run_dir`); an existing one is
    deleted. :func:`new_run` is the safer form: it restores the old folder on failure."""
    candidate = plan_run_dir(runs_root, name, default_name, overwrite)
    if candidate.exists():
        shutil.rmtree(candidate)
    candidate.mkdir(parents=True)
    return candidate


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the ``.NAME.PID.tmp`` files that a run killed mid-write left in ``run_dir``."""
    removed = []
    for temporary in run_dir.glob(".*.tmp"):
        pid = temporary.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid():
            temporary.unlink(missing_ok=True)
            removed.append(temporary)
    return removed


def kept_checkpoint(run_dir: Path) -> Path:
    """The checkpoint a finished run is used by: ``best.pt`` where it kept one (``--keep
    best``), else ``checkpoint.pt`` (the last epoch, which ``--resume`` always continues)."""
    return run_dir / BEST if (run_dir / BEST).is_file() else run_dir / CHECKPOINT


def kept_note(run_dir: Path, epoch: int) -> list[str] | None:
    """What to say when a run is used by its ``best.pt`` (epoch ``epoch``), else None."""
    if kept_checkpoint(run_dir).name != BEST:
        return None
    return [
        f"weights of {BEST}: epoch {epoch}, the best validation accuracy (--keep best; "
        f"{CHECKPOINT} holds the last epoch)"
    ]


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


def list_runs(names: list[str] | None = None, runs_root: Path = Path("runs")) -> list[Path]:
    """Run folders: ``names`` (paths or names under ``runs_root``, as :func:`resolve_run`
    takes them), or else every folder under ``runs_root`` that holds a checkpoint, sorted;
    none at all is an error."""
    if names:
        return [resolve_run(name, runs_root) for name in names]
    found = sorted(p.parent for p in runs_root.glob(f"*/{CHECKPOINT}"))
    if not found:
        raise CnnlabError(f"no trained runs under {runs_root}; train one with `cnnlab train`")
    return found


def load_checkpoint(
    path: Path, required: tuple[str, ...] = ("model", "model_spec")
) -> dict[str, Any]:
    """Load a checkpoint without executing code from it (``weights_only=True``); it must be a
    dict holding the ``required`` keys (an image run's by default)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        reason = first_line(err, "the file is empty or cut short")
        if path.is_file() and path.stat().st_size == 0:
            reason = "the file is empty (0 bytes)"
        raise RunFolderError(
            f"{path}: not a readable cnnlab checkpoint ({type(err).__name__}: {reason[:200]}); "
            "it was damaged or never finished: retrain the run or restore the file"
        ) from None
    if not isinstance(state, dict) or any(key not in state for key in required):
        raise RunFolderError(f"{path}: not a cnnlab checkpoint (it lacks {', '.join(required)})")
    return state


def run_record(previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """What config.json records beside the settings: the versions of cnnlab, torch,
    torchvision, numpy and Python that trained the run, and the command line (``sys.argv``).
    ``previous`` is the config.json of the run being resumed: its command stays, this one is
    added to ``resumed_with``."""
    from importlib import metadata

    import numpy

    from . import __version__

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    versions = {
        "cnnlab": __version__,
        "torch": torch.__version__,
        "torchvision": installed("torchvision"),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    command = list(sys.argv)
    if previous and isinstance(previous.get("command"), list):
        earlier = previous.get("resumed_with")
        earlier = earlier if isinstance(earlier, list) else []
        return {
            "versions": versions,
            "command": previous["command"],
            "resumed_with": [*earlier, command],
        }
    return {"versions": versions, "command": command}


def write_config(run_dir: Path, settings: dict[str, Any], resumed: bool = False) -> None:
    """``run_dir/config.json``: the run's settings and :func:`run_record` (on resume, the
    command that started the run is kept)."""
    previous = None
    if resumed and (run_dir / CONFIG).is_file():
        try:
            previous = read_config(run_dir)
        except RunFolderError:  # damaged: the settings are rewritten whole below
            previous = None
    record = run_record(previous)
    write_text(run_dir / CONFIG, json.dumps({**settings, **record}, indent=2) + "\n")


def read_config(run_dir: Path) -> dict[str, Any]:
    try:
        config = json.loads((run_dir / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFolderError(f"{run_dir / CONFIG}: cannot read ({err})") from None
    if not isinstance(config, dict):
        raise RunFolderError(
            f"{run_dir / CONFIG}: holds a JSON {type(config).__name__}, expected an object of "
            "settings; the file is damaged"
        )
    return config
