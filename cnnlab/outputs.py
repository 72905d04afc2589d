"""Checks on where a command will write, made before the command does any work.

A command that trains for a minute and then cannot save its figure has lost the minute; these
checks run first and turn every reason a path cannot be written into one line that names it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

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
    try:  # os.access says yes to root even on a read-only mount: try it for real
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise CnnlabError(
            f"{option} {str(folder)!r}: cannot write in {existing} ({reason}); pick a "
            "writable folder"
        ) from None
    return folder


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


def name_fits(name: str, option: str) -> str:
    """Refuse a folder or file name longer than file systems allow (255 bytes)."""
    if len(name.encode()) > 255:
        raise CnnlabError(
            f"{option} {name[:20]!r}...: {len(name.encode())} bytes long; names may have at "
            "most 255, pick a shorter one"
        )
    return name
