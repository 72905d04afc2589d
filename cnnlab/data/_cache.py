"""The decoded-array cache: each data set split is decoded from its source once, then read back
from an npz beside the source (or in the user cache when the source folder is read-only).

A cache file carries a stamp of what it was made from (the data set, split, and the path, size
and modification time of every input file), is checked like its source when read back, and is
written atomically (temp + rename); a damaged one is reported, removed and decoded again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DataError, reason
from .catalog import Expected, Found


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnnlab"


CACHE_FORMAT = "v2"  # v2: the npz holds a stamp of its source; v1 files are never read


def _stamp(name: str, split: str, found: Found) -> str:
    """A digest of what a decoded cache is made from: the data set, split and key, and the path,
    size and modification time of every input file (all the files in an input folder)."""
    digest = hashlib.sha256(f"{name}|{split}|{found.key}|{CACHE_FORMAT}".encode())
    for item in found.inputs or (found.source,):
        for path in _files_in(item) if item.is_dir() else [item]:
            try:
                info = path.stat()
            except OSError:
                continue  # the decode names a file that is missing or unreadable
            digest.update(f"|{path}|{info.st_size}|{info.st_mtime_ns}".encode())
    return digest.hexdigest()


def _files_in(folder: Path) -> list[Path]:
    """Every file under ``folder`` (not in the cache folders), sorted."""
    files = []
    for top, folders, names in os.walk(folder):
        folders[:] = [f for f in folders if f != ".cnnlab-cache"]
        files.extend(Path(top) / name for name in names)
    return sorted(files)


def _cache_files(name: str, split: str, source: Path, stamp: str) -> list[Path]:
    filename = f"{name}-{split}-{stamp[:16]}.npz"
    folder = source if source.is_dir() else source.parent
    in_user_cache = [user_cache_dir() / "decoded" / filename]
    # Beside the source only where its folder is meant to be written: the mode bits are asked,
    # not os.access, which says yes to root even for a folder marked read-only.
    if folder.stat().st_mode & stat.S_IWUSR and os.access(folder, os.W_OK):
        return [folder / ".cnnlab-cache" / filename, *in_user_cache]
    return in_user_cache


def _read_cache(path: Path, stamp: str, expected: Expected) -> tuple[np.ndarray, np.ndarray]:
    """A decoded cache file, checked like its source; DataError says what is wrong with it."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "stamp" not in archive.files or str(archive["stamp"]) != stamp:
                raise DataError(f"{path}: made from another source (its stamp differs)")
            images, labels = archive["images"], archive["labels"]
    except DataError:
        raise
    except Exception as err:  # truncated (BadZipFile), a forged header (ValueError, MemoryError)
        raise DataError(f"{path}: unreadable ({reason(err)})") from None
    expected.check(images, labels, str(path))
    return images, labels.astype(np.int64, copy=False)


def cached(name: str, split: str, found: Found) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``found`` once: read the decoded arrays back from the cache when a valid copy is
    there, else decode the source, check it, and write the cache (atomically, temp + rename).
    A damaged cache file is reported on stderr, removed and decoded again; it never fails."""
    stamp = _stamp(name, split, found)
    candidates = _cache_files(name, split, found.source, stamp)
    for path in candidates:
        if not path.is_file():
            continue
        try:
            return _read_cache(path, stamp, found.expected)
        except DataError as err:
            print(
                f"cnnlab: ignoring a damaged decoded cache ({err}); decoding {found.source} again",
                file=sys.stderr,
            )
            with contextlib.suppress(OSError):
                path.unlink()
    images, labels = found.decode()
    found.expected.check(images, labels, str(found.source))
    for path in candidates:
        temporary = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "wb", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
            ) as handle:
                temporary = Path(handle.name)
                np.savez(handle, images=images, labels=labels, stamp=np.array(stamp))
            os.replace(temporary, path)
            break
        except OSError:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    temporary.unlink()
            continue  # read-only source folder, full disk: try the user cache
    return images, labels
