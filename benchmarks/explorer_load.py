"""Load on the explorer over loopback, against `cnnlab serve` in its own process, for a
LeNet-5 on MNIST and a CIFAR-10 ResNet-18:

1. mixed: 2,000 requests 16 at a time across both runs, one in four a layer table (/summary,
   which traces the model with torch.fx) and the rest feature maps (/analyze, real test
   images); no errors allowed (a trace once broke model calls in other threads: 1% were 500).
2. latency: 500 /analyze requests per run, 8 at a time. Target: LeNet-5 p95 < 100 ms on 2 CPU
   cores.
3. explain: 500 LeNet-5 /explain requests (the second convolution, every input channel, at
   positions in turn), 8 at a time; same target.
4. torchvision's ResNet-18 at 224x224, one request at a time: /summary (cached after the first)
   and the whole-network overview (/analyze of all 70 steps). Target: <= 1 s warm, < 2 MiB.

    python benchmarks/explorer_load.py [--requests 2000] [--concurrency 16]
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

from cnnlab.runs.start import train_run  # noqa: E402
from cnnlab.train import TrainConfig  # noqa: E402


def serve(runs: list[Path], data: str) -> tuple[str, subprocess.Popen]:
    """`cnnlab serve` in its own process, as a user runs it (the client threads here would
    otherwise share the server's interpreter lock)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "cnnlab",
        "serve",
        *map(str, runs),
        "--port",
        str(port),
        "--data-dir",
        data,
    ]
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


def _stats(outcomes: list[tuple[int, float]], wall: float, concurrency: int) -> dict:
    latencies = np.array([t for _, t in outcomes]) * 1000
    return {
        "requests": len(outcomes),
        "concurrency": concurrency,
        "errors": sum(status != 200 for status, _ in outcomes),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
        "throughput_rps": len(outcomes) / wall,
    }


def _line(label: str, r: dict) -> str:
    return (
        f"{label}: {r['requests']} requests, {r['concurrency']} at a time: p50 "
        f"{r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, {r['throughput_rps']:.0f} req/s, "
        f"{r['errors']} errors"
    )


def imagenet_overview(client: httpx.Client, url: str, repeats: int = 20) -> dict:
    """torchvision's ResNet-18 at 224x224, one request at a time: the layer table (/summary,
    cached after the first), and the whole-network overview (/analyze: every one of its 70
    steps) for an image seen before (its trace cached) and for a new image each time; the
    answer's size. Targets: the overview within 1 s warm and under 2 MiB."""
    run = "torchvision%3Aresnet18"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (3, 224, 224)).tolist() for _ in range(repeats + 1)]

    def timed(call) -> tuple[float, httpx.Response]:
        started = time.perf_counter()
        response = call()
        assert response.status_code == 200, response.text[:200]
        return time.perf_counter() - started, response

    first_summary, _ = timed(lambda: client.get(f"{url}/api/runs/{run}/summary"))
    summaries = [
        timed(lambda: client.get(f"{url}/api/runs/{run}/summary"))[0] for _ in range(repeats)
    ]
    body = {"pixels": images[0]}
    first, answer = timed(lambda: client.post(f"{url}/api/runs/{run}/analyze", json=body))
    warm = [
        timed(lambda: client.post(f"{url}/api/runs/{run}/analyze", json=body))[0]
        for _ in range(repeats)
    ]
    new = [
        timed(lambda i=i: client.post(f"{url}/api/runs/{run}/analyze", json={"pixels": images[i]}))[
            0
        ]
        for i in range(1, repeats + 1)
    ]
    result = {
        "steps": len(answer.json()["layers"]),
        "summary_first_ms": 1000 * first_summary,
        "summary_p50_ms": 1000 * float(np.median(summaries)),
        "overview_first_ms": 1000 * first,
        "overview_same_image_p50_ms": 1000 * float(np.median(warm)),
        "overview_new_image_p50_ms": 1000 * float(np.median(new)),
        "overview_mib": len(answer.content) / 2**20,
        "met": bool(np.median(warm) <= 1.0 and len(answer.content) < 2 * 2**20),
    }
    print(
        f"torchvision:resnet18 (224x224, {result['steps']} steps): /summary first "
        f"{result['summary_first_ms']:.0f} ms, then p50 {result['summary_p50_ms']:.1f} ms; "
        f"overview first {result['overview_first_ms']:.0f} ms, same image p50 "
        f"{result['overview_same_image_p50_ms']:.0f} ms, new image p50 "
        f"{result['overview_new_image_p50_ms']:.0f} ms, {result['overview_mib']:.2f} MiB"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000, help="of the mixed load")
    parser.add_argument("--concurrency", type=int, default=16, help="of the mixed load")
    parser.add_argument("--latency-requests", type=int, default=500, help="per run")
    parser.add_argument("--latency-concurrency", type=int, default=8)
    args = parser.parse_args()
    root, data = Path(tempfile.mkdtemp(prefix="cnnlab-load-")), str(data_dir())
    common = {"data_dir": data, "progress": False, "epochs": 1, "batch_size": 128}
    lenet = TrainConfig(
        model="lenet5",
        model_options={"modern": True},
        dataset="mnist",
        train_subset=6000,
        test_subset=500,
        **common,
    )
    resnet = TrainConfig(
        model="resnet18_cifar",
        dataset="cifar10",
        data_variant="subset",
        train_subset=256,
        test_subset=100,
        **common,
    )
    train_run(lenet, root, "lenet5")
    train_run(resnet, root, "resnet18")
    names = ("lenet5", "resnet18")
    url, server = serve([*(root / name for name in names), "torchvision:resnet18"], data)
    results: dict[str, dict] = {}
    try:
        with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=64)) as client:
            samples = {
                run: [
                    client.get(f"{url}/api/runs/{run}/sample/{i}").json()["pixels"]
                    for i in range(50)
                ]
                for run in names
            }
            for run in names:  # warm-up
                client.post(f"{url}/api/runs/{run}/analyze", json={"pixels": samples[run][0]})
                client.get(f"{url}/api/runs/{run}/summary")

            def one(i: int, run: str, endpoint: str) -> tuple[int, float]:
                started = time.perf_counter()
                if endpoint == "summary":
                    response = client.get(f"{url}/api/runs/{run}/summary")
                else:  # real test images, in turn
                    body = {"pixels": samples[run][i % len(samples[run])]}
                    response = client.post(f"{url}/api/runs/{run}/analyze", json=body)
                return response.status_code, time.perf_counter() - started

            # 1. mixed: both runs at once, /summary among /analyze
            plan = [
                (i, names[i % 2], "summary" if (i // 2) % 4 == 0 else "analyze")
                for i in range(args.requests)
            ]
            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                outcomes = list(pool.map(lambda job: one(*job), plan))
            wall = time.perf_counter() - started
            mixed = _stats(outcomes, wall, args.concurrency)
            mixed["by_kind"] = {}
            print(_line("mixed", mixed))
            for run in names:
                for endpoint in ("summary", "analyze"):
                    picked = [
                        o for o, (_, r, e) in zip(outcomes, plan) if (r, e) == (run, endpoint)
                    ]
                    kind = _stats(picked, wall, args.concurrency)
                    del kind["throughput_rps"], kind["concurrency"]
                    mixed["by_kind"][f"{run} /{endpoint}"] = kind
                    print(
                        f"  {run} /{endpoint}: {kind['requests']} requests, p50 "
                        f"{kind['p50_ms']:.1f} ms, p95 {kind['p95_ms']:.1f} ms, "
                        f"{kind['errors']} errors"
                    )
            results["mixed"] = mixed

            # 2. latency of /analyze, one run at a time
            for run in names:
                started = time.perf_counter()
                with ThreadPoolExecutor(args.latency_concurrency) as pool:
                    outcomes = list(
                        pool.map(
                            lambda i, run=run: one(i, run, "analyze"), range(args.latency_requests)
                        )
                    )
                wall = time.perf_counter() - started
                results[run] = _stats(outcomes, wall, args.latency_concurrency)
                print(_line(f"{run} /analyze", results[run]))

            # 3. latency of /explain (LeNet-5's second convolution, positions in turn)
            def explain(i: int) -> tuple[int, float]:
                started = time.perf_counter()
                body = {
                    "pixels": samples["lenet5"][i % len(samples["lenet5"])],
                    "layer": "features.3",
                    "channel": i % 16,
                    "y": i % 10,
                    "x": (i // 10) % 10,
                }
                response = client.post(f"{url}/api/runs/lenet5/explain", json=body)
                return response.status_code, time.perf_counter() - started

            started = time.perf_counter()
            with ThreadPoolExecutor(args.latency_concurrency) as pool:
                outcomes = list(pool.map(explain, range(args.latency_requests)))
            wall = time.perf_counter() - started
            results["lenet5 explain"] = _stats(outcomes, wall, args.latency_concurrency)
            print(_line("lenet5 /explain", results["lenet5 explain"]))
            results["torchvision:resnet18"] = imagenet_overview(client, url)
    finally:
        server.terminate()
        server.wait(timeout=30)
    errors = sum(r.get("errors", 0) for r in results.values())
    met = max(results["lenet5"]["p95_ms"], results["lenet5 explain"]["p95_ms"]) < 100
    met = met and not errors and results["torchvision:resnet18"]["met"]
    print(
        f"target: no errors ({errors}) and LeNet-5 /analyze and /explain p95 < 100 ms: "
        f"{'met' if met else 'MISSED'}"
    )
    write_results("explorer_load", results)


if __name__ == "__main__":
    main()
