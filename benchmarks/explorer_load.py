"""Load on the explorer over loopback: 500 feature-map requests (/analyze), 8 at a time, for a
LeNet-5 on MNIST and a CIFAR-10 ResNet-18; no errors allowed. Target: LeNet-5 p95 < 100 ms on
2 CPU cores.

    python benchmarks/explorer_load.py [--requests 500] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir, write_results  # noqa: E402

from cnnlab.experiment import train_run  # noqa: E402
from cnnlab.train import TrainConfig  # noqa: E402


def serve(runs: list[Path], data: str) -> tuple[str, subprocess.Popen]:
    """`cnnlab serve` in its own process, as a user runs it (the client threads here would
    otherwise share the server's interpreter lock)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "cnnlab", "serve", *map(str, runs), "--port", str(port),
               "--data-dir", data]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{url}/api/runs", timeout=30)
            return url, server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the explorer did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    root, data = Path(tempfile.mkdtemp(prefix="cnnlab-load-")), str(data_dir())
    common = {"data_dir": data, "progress": False, "epochs": 1, "batch_size": 128}
    lenet = TrainConfig(model="lenet5", model_options={"modern": True}, dataset="mnist",
                        train_subset=6000, test_subset=500, **common)  # fmt: skip
    resnet = TrainConfig(model="resnet18_cifar", dataset="cifar10", data_variant="subset",
                         train_subset=256, test_subset=100, **common)  # fmt: skip
    train_run(lenet, root, "lenet5")
    train_run(resnet, root, "resnet18")
    url, server = serve([root / "lenet5", root / "resnet18"], data)
    results = {}
    with httpx.Client(timeout=60) as client:
        for run in ("lenet5", "resnet18"):
            samples = [client.get(f"{url}/api/runs/{run}/sample/{i}").json()["pixels"]
                       for i in range(50)]  # fmt: skip
            client.post(f"{url}/api/runs/{run}/analyze", json={"pixels": samples[0]})  # warm-up

            def one(i: int, run: str = run, samples=samples) -> tuple[int, float]:
                started = time.perf_counter()
                body = {"pixels": samples[i % len(samples)]}  # real test images, in turn
                response = client.post(f"{url}/api/runs/{run}/analyze", json=body)
                return response.status_code, time.perf_counter() - started

            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                outcomes = list(pool.map(one, range(args.requests)))
            wall = time.perf_counter() - started
            latencies = np.array([t for _, t in outcomes]) * 1000
            errors = sum(status != 200 for status, _ in outcomes)
            results[run] = {
                "requests": args.requests, "concurrency": args.concurrency, "errors": errors,
                "p50_ms": float(np.percentile(latencies, 50)),
                "p95_ms": float(np.percentile(latencies, 95)),
                "throughput_rps": args.requests / wall,
            }  # fmt: skip
            r = results[run]
            print(f"{run}: {args.requests} requests, {args.concurrency} at a time: p50 "
                  f"{r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, {r['throughput_rps']:.0f} "
                  f"req/s, {errors} errors")  # fmt: skip
    server.terminate()
    met = results["lenet5"]["p95_ms"] < 100 and not any(r["errors"] for r in results.values())
    print(f"target LeNet-5 p95 < 100 ms with no errors: {'met' if met else 'MISSED'}")
    write_results("explorer_load", results)


if __name__ == "__main__":
    main()
