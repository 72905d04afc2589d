"""The process a run trains in: its device, which of the ``torchrun`` processes (PyTorch DDP:
gloo on CPU, NCCL on GPU) it is, and its random state (seeding, saved and restored with each
checkpoint). One process without ``torchrun`` is rank 0 of 1, so the same code runs alone or
distributed."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from ..errors import CnnlabError

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> Distributed:
    """Join the process group ``torchrun`` describes in the environment (no-op for 1 process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed()
    info = Distributed(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return info


def current_distributed() -> Distributed:
    if dist.is_available() and dist.is_initialized():
        return Distributed(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        )
    return Distributed()


def together(work: Callable[[], T]) -> T:
    """``work()`` on every DDP rank; when it fails with a user error on any rank, every rank
    raises that error (instead of the others waiting for, or dying in, a collective)."""
    ranks = current_distributed()
    error, result = None, None
    try:
        result = work()
    except CnnlabError as err:
        error = err
    if ranks.world_size > 1:
        messages: list[Any] = [None] * ranks.world_size
        dist.all_gather_object(messages, None if error is None else str(error))
        first = next((m for m in messages if m is not None), None)
        if first is not None and error is None:
            error = CnnlabError(first)
    if error is not None:
        raise error
    return result  # type: ignore[return-value]


def parse_device(name: str) -> torch.device | None:
    """``auto`` (None), ``cpu``, ``cuda`` or ``cuda:N`` as a device; anything else is refused."""
    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise CnnlabError(f"device {name!r}: expected auto, cpu, cuda or cuda:N (e.g. cuda:0)")
    return device


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device a run trains on; a GPU that is not there is refused with the fix."""
    device = parse_device(name)
    if device is None:
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CnnlabError(f"device {name!r}: no CUDA GPU is visible here; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise CnnlabError(
                f"device {name!r}: this machine has {count} GPU(s), cuda:0..cuda:{count - 1}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CnnlabError(f"device {name!r}: no Apple GPU (MPS) here; use --device cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


# ------------------------------------------------------------------------------ random state


def rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [x.tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
