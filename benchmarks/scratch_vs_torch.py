"""Forward + backward time of the scratch (NumPy) layers against torch.nn on the same CPU threads.

Cases (issue 3), float32, batch 64: (a) LeNet's C3, 6 -> 16 channels, 5x5, on 14x14; (b) 64 -> 64
channels, 3x3, padding 1, on 32x32; (c) 2x2 max pooling of 64 x 32 x 32. Target: scratch within
2x of torch on each (issue 15; stretch 1.5x).

    python benchmarks/scratch_vs_torch.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

from cnnlab import scratch as S


def best_times(steps, budget_s: float = 3.0, min_rounds: int = 7) -> list[float]:
    """The fastest of many runs of each step, in alternating rounds so that both sides see the
    same machine load; at least ``min_rounds`` rounds and about ``budget_s`` seconds."""
    for step in steps:
        step()  # warm-up
    best = [float("inf")] * len(steps)
    started, rounds = time.perf_counter(), 0
    while rounds < min_rounds or time.perf_counter() - started < budget_s:
        for i, step in enumerate(steps):
            t0 = time.perf_counter()
            step()
            best[i] = min(best[i], time.perf_counter() - t0)
        rounds += 1
    return best


def case(name, scratch_layer, torch_layer, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    for attr in ("weight", "bias"):
        if hasattr(torch_layer, attr) and getattr(scratch_layer, attr, None) is not None:
            getattr(scratch_layer, attr).data = getattr(torch_layer, attr).detach().numpy().copy()
            getattr(scratch_layer, attr).grad = np.zeros_like(getattr(scratch_layer, attr).data)
    dout = np.ones_like(scratch_layer(x))

    def scratch_step():
        scratch_layer(x)
        scratch_layer.backward(dout)

    xt = torch.tensor(x, requires_grad=True)
    dout_t = torch.tensor(dout)

    def torch_step():
        torch_layer(xt).backward(dout_t)

    scratch_s, torch_s = best_times([scratch_step, torch_step])
    ratio = scratch_s / torch_s
    print(
        f"{name:<40} scratch {scratch_s * 1e3:7.2f} ms  torch {torch_s * 1e3:7.2f} ms  "
        f"ratio {ratio:5.2f}x  {'met' if ratio <= 2 else 'MISSED'} (target <= 2x)"
    )
    return {"case": name, "scratch_ms": scratch_s * 1e3, "torch_ms": torch_s * 1e3, "ratio": ratio}


def main() -> None:
    torch.set_num_threads(2)
    try:
        from threadpoolctl import threadpool_info

        blas = [
            {k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for info in threadpool_info()
        ]
    except ImportError:
        blas = "threadpoolctl not installed"
    print("BLAS:", blas)
    results = [
        case(
            "(a) conv 6->16 5x5 on 14x14, batch 64",
            S.Conv2d(6, 16, 5, dtype=np.float32),
            torch.nn.Conv2d(6, 16, 5),
            (64, 6, 14, 14),
        ),
        case(
            "(b) conv 64->64 3x3 pad 1 on 32x32, batch 64",
            S.Conv2d(64, 64, 3, padding=1, dtype=np.float32),
            torch.nn.Conv2d(64, 64, 3, padding=1),
            (64, 64, 32, 32),
        ),
        case(
            "(c) max pool 2x2 on 64x32x32, batch 64",
            S.MaxPool2d(2),
            torch.nn.MaxPool2d(2),
            (64, 64, 32, 32),
        ),
    ]
    write_results("scratch_vs_torch", {"blas": blas, "torch_threads": 2, "cases": results})


if __name__ == "__main__":
    main()
