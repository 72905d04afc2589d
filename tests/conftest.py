"""Shared fixtures. Real data comes from $CNNLAB_DATA (set by .ci/run to ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    root = Path(os.environ.get("CNNLAB_DATA") or REPO.parent / "shared" / "data")
    if not (root / "mnist").is_dir():
        raise RuntimeError(
            f"real test data not found at {root}; set CNNLAB_DATA to the shared data folder"
        )
    return root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return data_root()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Decoded-array caches go to one temporary folder for the session, never to ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    yield
