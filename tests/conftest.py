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


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``-n 2``) each worker gets one of the cores: two workers with two
    torch threads each would fight over them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return data_root()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Decoded-array caches go to one temporary folder for the session, never to ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    yield


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory, data_dir) -> Path:
    """Two short real trainings: LeNet-5 on MNIST and a small CIFAR-10 CNN."""
    from cnnlab.runs.start import train_run
    from cnnlab.train import TrainConfig

    root = tmp_path_factory.mktemp("runs")
    common = dict(data_dir=str(data_dir), progress=False, epochs=1, batch_size=128, lr=3e-3)
    lenet = TrainConfig(
        model="lenet5",
        model_options={"modern": True},
        dataset="mnist",
        train_subset=12000,
        test_subset=2000,
        **common,
    )
    cifar = TrainConfig(
        model="cifar_residual_pool",
        dataset="cifar10",
        data_variant="subset",
        train_subset=500,
        test_subset=200,
        **common,
    )
    assert train_run(lenet, root, "lenet").history[-1]["test_acc"] > 0.9
    train_run(cifar, root, "cifar")
    return root


@pytest.fixture(scope="session")
def lenet(runs_root):
    from cnnlab.runs.load import load_run

    return load_run(runs_root / "lenet")
