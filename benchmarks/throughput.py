"""Training throughput of every registered model: images per second for one optimizer step
(forward, backward, SGD with momentum) on random inputs of the model's native input size,
beside its multiply-adds per image and its parameters (issue 15, target 5).

fp32, batch 32, on the CPU (all of torch's threads) and, when one is present, on the GPU. Each
model gets a warm-up step and then steps for about ``--seconds``; the figure is the batch over
the median step time (steady against a passing load), at least ``--min-steps`` steps. Every
model is included at its own input side, ImageNet-sized ones too (VGG-16 takes seconds per
step on a laptop CPU); ``--max-side 64`` leaves out those whose side is larger, and says so.

    python benchmarks/throughput.py                        # all models, ~15 minutes on 2 cores
    python benchmarks/throughput.py --models 'cifar_*' --seconds 2 --out /tmp/throughput.json

Writes benchmarks/results/throughput.json (or ``--out``) and prints a Markdown table for the
README.
"""

from __future__ import annotations

import argparse
import fnmatch
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_json  # noqa: E402

from cnnlab.inspect import summary  # noqa: E402
from cnnlab.models import create_model, get_model_entry, list_models  # noqa: E402
from cnnlab.train.steps import training_loss


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="*", help="shell pattern(s), comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per model")
    parser.add_argument("--min-steps", type=int, default=3, help="timed steps at least")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--max-side", type=int, default=None, help="skip models whose input side is larger"
    )
    parser.add_argument(
        "--devices", default="auto", help="cpu, cuda or cpu,cuda (auto: cpu, and cuda if present)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "throughput.json")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.min_steps < 1 or args.batch_size < 1:
        parser.error("--seconds, --min-steps and --batch-size must be positive")
    return args


def selected_models(patterns: str) -> list[str]:
    names = list_models()
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in wanted)]
    if not chosen:
        raise SystemExit(f"--models {patterns!r}: no registered model matches; see cnnlab models")
    return chosen


def devices(text: str) -> list[str]:
    if text == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    found = [d.strip() for d in text.split(",") if d.strip()]
    if "cuda" in found and not torch.cuda.is_available():
        raise SystemExit("--devices cuda: no CUDA GPU is visible to torch here")
    return found


def cost(name: str) -> dict[str, object]:
    """Input shape, parameters and multiply-adds per image (cnnlab's summary, meta device)."""
    entry = get_model_entry(name)
    shape = (entry.default_in_channels, entry.default_input_size, entry.default_input_size)
    with torch.device("meta"):
        model = create_model(name)
    report = summary(model, shape, name=name)
    return {
        "input": "x".join(map(str, shape)),
        "classes": entry.default_num_classes,
        "parameters": report.total_params,
        "macs_per_image": report.macs,
    }


def images_per_second(
    name: str, device: str, batch_size: int, seconds: float, min_steps: int
) -> dict[str, float]:
    """Steady training speed of one model on one device: batch / median step time."""
    entry = get_model_entry(name)
    torch.manual_seed(0)
    model = create_model(name).to(device).train()
    side, channels = entry.default_input_size, entry.default_in_channels
    images = torch.randn(batch_size, channels, side, side, device=device)
    labels = torch.randint(0, entry.default_num_classes, (batch_size,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> float:
        started = time.perf_counter()
        loss, _ = training_loss(model(images), labels, 0.0, model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    step()  # warm-up: allocations, cuDNN's choice of algorithm
    times, started = [], time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - started < seconds:
        times.append(step())
    median = statistics.median(times)
    return {
        "images_per_second": batch_size / median,
        "median_step_seconds": median,
        "steps": len(times),
    }


def millions(count: int) -> str:
    return f"{count / 1e6:,.2f} M" if count < 10e6 else f"{count / 1e6:,.0f} M"


def markdown(rows: list[dict], device_names: list[str], batch_size: int) -> str:
    heads = ["model", "input", "parameters", "multiply-adds / image"]
    heads += [f"{d.upper() if d == 'cpu' else 'GPU'} img/s" for d in device_names]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in rows:
        cells = [
            f"`{row['model']}`",
            row["input"],
            f"{row['parameters']:,}",
            millions(row["macs_per_image"]),
        ]
        for device in device_names:
            speed = row["speed"].get(device)
            cells.append(f"{speed['images_per_second']:,.0f}" if speed else row.get("skipped", "-"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        f"\nfp32, batch {batch_size}, forward + backward + SGD step on random inputs of each "
        f"model's own input size; {torch.get_num_threads()} CPU threads"
        + (f", GPU: {torch.cuda.get_device_name(0)}" if "cuda" in device_names else "")
        + "; `python benchmarks/throughput.py`"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    names, device_names = selected_models(args.models), devices(args.devices)
    rows = []
    for name in names:
        row = {"model": name, **cost(name), "speed": {}}
        side = get_model_entry(name).default_input_size
        if args.max_side is not None and side > args.max_side:
            row["skipped"] = f"skipped (side {side} > --max-side {args.max_side})"
        else:
            for device in device_names:
                row["speed"][device] = images_per_second(
                    name, device, args.batch_size, args.seconds, args.min_steps
                )
        rows.append(row)
        speeds = "  ".join(
            f"{d} {s['images_per_second']:,.0f} img/s" for d, s in row["speed"].items()
        )
        print(
            f"{name:<22} {row['input']:>10} {millions(row['macs_per_image']):>12} MACs  "
            f"{speeds or row.get('skipped', '')}",
            flush=True,
        )
    table = markdown(rows, device_names, args.batch_size)
    print()
    print(table)
    results = {
        "settings": {
            "batch_size": args.batch_size,
            "seconds_per_model": args.seconds,
            "min_steps": args.min_steps,
            "max_side": args.max_side,
            "devices": device_names,
            "precision": "fp32",
            "optimizer": "SGD, momentum 0.9",
            "figure": "batch size / median step time (forward, backward, optimizer step)",
        },
        "models": rows,
        "markdown": table,
    }
    write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
