"""Checks on where a command will write, made before the command does any work.

A command that trains for a minute and then cannot save its figure has lost the minute; these
checks run first and turn every reason a path cannot be written into one line that names it.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from .errors import CnnlabError


def check_writable_folder(folder: Path, option: str, create: bool = False) -> Path:
    """Refuse ``folder`` (given through ``option``) unless files can be written into it.

    With ``create`` the folder may be missing as long as its nearest existing ancestor is a
    writable folder (it is then made later, by whoever writes). Nothing is left behind: the
    probe file is removed again.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists():
        if not create:
            raise CnnlabError(
                f"{option} {str(folder)!r}: the folder {existing} does not exist; create it "
                "first or pick another path"
            )
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise CnnlabError(
            f"{option} {str(folder)!r}: {existing} is a file, not a folder; pick another path"
        )
    reason = write_refusal(existing)
    if reason is not None:
        raise CnnlabError(
            f"{option} {str(folder)!r}: cannot write in {existing} ({reason}); pick a "
            "writable folder"
        )
    return folder


def write_refusal(folder: Path) -> str | None:
    """Why no file can be made in the existing folder ``folder`` (the OS's reason), or None when
    one can. Tried for real with a temporary file that is gone again: ``os.access`` says yes to
    root even on a read-only mount."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return err.strerror or type(err).__name__
    return None


def check_output_file(path: Path, option: str = "--out", suffixes: tuple[str, ...] = ()) -> Path:
    """Refuse an output file path whose folder is missing or unwritable, that names a folder,
    or (with ``suffixes``) whose extension the writer cannot produce."""
    path = Path(path)
    if path.is_dir():
        raise CnnlabError(f"{option} {str(path)!r}: is a folder; give a file name such as out.png")
    if suffixes and path.suffix.lower() not in suffixes:
        raise CnnlabError(
            f"{option} {str(path)!r}: expected a file ending in {' or '.join(suffixes)}"
        )
    check_writable_folder(path.parent if str(path.parent) else Path("."), option)
    if len(path.name.encode()) > 255:
        raise CnnlabError(
            f"{option}: the file name is {len(path.name.encode())} bytes long; at most 255 "
            "are allowed"
        )
    return path


def view_output(out: Path | None, run_dir: Path | None, default_name: str, stem: str) -> Path:
    """Where a ``show`` view writes its PNG, checked before any work: ``out`` (``--out``), else
    ``RUN/inspect/STEM.png`` beside a run (the folder made when the figure is written), else
    ``DEFAULT_NAME.png`` in the current folder. A default place that cannot be written (a
    read-only run folder, ``inspect`` a file) is one line naming the folder and ``--out``."""
    if out:
        return check_output_file(out, "--out", (".png",))
    path = run_dir / "inspect" / f"{stem}.png" if run_dir is not None else Path(default_name)
    folder = path.parent if str(path.parent) else Path(".")
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    reason = write_refusal(existing) if existing.is_dir() else f"{existing} is a file"
    if reason is not None:
        raise CnnlabError(
            f"{folder}: cannot write {path.name} there ({reason}); give --out with a PNG path "
            "in a writable folder, e.g. --out ~/" + path.name
        )
    return path


def name_fits(name: str, option: str) -> str:
    """Refuse a folder or file name longer than file systems allow (255 bytes)."""
    if len(name.encode()) > 255:
        raise CnnlabError(
            f"{option} {name[:20]!r}...: {len(name.encode())} bytes long; names may have at "
            "most 255, pick a shorter one"
        )
    return name


def progress_bars_shown(wanted: bool, stream: TextIO | None = None) -> bool:
    """Whether to draw a progress bar: when ``wanted`` and the stream (stderr) is a terminal. A
    log file, a pipe or a notebook cell's captured output gets the epoch lines alone, never
    the bar's ``\\r`` frames."""
    stream = sys.stderr if stream is None else stream
    try:
        return wanted and stream.isatty()
    except (AttributeError, ValueError):  # a closed or stand-in stream
        return False


class _CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is at the time (a notebook or a test
    may swap it after the handler was made)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


# cnnlab's messages (an epoch's result, a note) go to the "cnnlab" logger, which writes the bare
# line to stderr through STDERR_HANDLER, as a command-line tool prints it, and does not pass
# it on to the root logger. To silence it: ``fit(..., verbose=False)`` or
# ``logging.getLogger("cnnlab").setLevel(logging.WARNING)``; to send the lines elsewhere, replace
# its handlers: ``logging.getLogger("cnnlab").handlers = [your_handler]``.
LOGGER = logging.getLogger("cnnlab")
STDERR_HANDLER = _CurrentStderr()
STDERR_HANDLER.setFormatter(logging.Formatter("%(message)s"))
if not LOGGER.handlers:
    LOGGER.addHandler(STDERR_HANDLER)
    LOGGER.propagate = False
if LOGGER.level == logging.NOTSET:
    LOGGER.setLevel(logging.INFO)


def report(line: str, verbose: bool = True) -> None:
    """Tell the user ``line`` through the ``cnnlab`` logger: at INFO when ``verbose`` (shown on
    stderr), else at DEBUG (hidden unless the logger is set to DEBUG): a quiet notebook cell."""
    LOGGER.log(logging.INFO if verbose else logging.DEBUG, line)
