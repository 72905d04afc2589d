"""The course's long CIFAR-10 runs (E4-E6) in another memory layout: faster, and the same numbers?

For each of the course's three Keras stacks (``cifar_plain7``, ``cifar_residual``,
``cifar_residual_pool``), built from Keras' initialisation, this times the course's training
step (Adam 1e-3, epsilon 1e-7, batch 32, fp32) in PyTorch's default NCHW layout and in
channels_last (NHWC), in alternating rounds, and checks that both layouts compute the same
training: the same weights and batches, ``--steps`` Adam steps each, then the largest
difference of the logits and of the weights (fp32 rounding differs between the kernels, so
equal means "within a few 1e-6 relative"). From the faster layout's speed it says how long
each lesson's 5 epochs of 50,000 images take on this machine. Run it alone.

    python benchmarks/course_layout.py [--seconds 3] [--rounds 3] [--steps 5]

Writes benchmarks/results/course_layout.json.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

from cnnlab.models import create_model  # noqa: E402
from cnnlab.models.init import initialize  # noqa: E402

MODELS = {
    "e4-cifar-plain7": "cifar_plain7",
    "e5-cifar-residual": "cifar_residual",
    "e6-cifar-residual-pool": "cifar_residual_pool",
}
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
BATCH, IMAGES, EPOCHS = 32, 50_000, 5


def in_layout(model: torch.nn.Module, layout: str) -> tuple[torch.nn.Module, Any]:
    model = copy.deepcopy(model).to(memory_format=LAYOUTS[layout])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    return model, optimizer


def step(model, optimizer, images: torch.Tensor, labels: torch.Tensor) -> None:
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-30))


def same_training(base: torch.nn.Module, steps: int) -> dict[str, float]:
    """Both layouts from the same weights on the same batches: the relative difference
    (largest difference over largest value) of the logits and of all the gradients of one
    forward and backward pass, and of the logits after ``steps`` Adam steps (where Adam's
    first steps, about lr x sign(gradient), turn rounding-sized differences of gradients near
    zero into differences of lr)."""
    generator = torch.Generator().manual_seed(1)
    batches = [
        (torch.rand(BATCH, 3, 32, 32, generator=generator), torch.randint(0, 10, (BATCH,)))
        for _ in range(steps + 1)
    ]
    first: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = {}
    last: dict[str, torch.Tensor] = {}
    for layout, memory in LAYOUTS.items():
        model, optimizer = in_layout(base, layout)
        images, labels = batches[0]
        logits = model(images.contiguous(memory_format=memory))
        torch.nn.functional.cross_entropy(logits, labels).backward()
        first[layout] = (logits.detach(), [p.grad.clone() for p in model.parameters()])
        optimizer.zero_grad(set_to_none=True)
        for images, labels in batches[:-1]:
            step(model, optimizer, images.contiguous(memory_format=memory), labels)
        with torch.no_grad():
            last[layout] = model(batches[-1][0].contiguous(memory_format=memory))
    (logits_a, grads_a), (logits_b, grads_b) = first["nchw"], first["channels_last"]
    return {
        "logits_relative_difference": _relative(logits_a, logits_b),
        "gradients_relative_difference": _relative(
            torch.cat([g.flatten() for g in grads_a]), torch.cat([g.flatten() for g in grads_b])
        ),
        "logits_relative_difference_after_steps": _relative(last["nchw"], last["channels_last"]),
        "steps": steps,
    }


def speed(base: torch.nn.Module, seconds: float, rounds: int) -> dict[str, Any]:
    """Images per second of each layout: alternating rounds, median step time per round."""
    images, labels = torch.rand(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))
    prepared = {layout: in_layout(base, layout) for layout in LAYOUTS}
    per_round: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
    for round_ in range(rounds):
        order = list(LAYOUTS) if round_ % 2 == 0 else list(reversed(LAYOUTS))
        for layout in order:
            model, optimizer = prepared[layout]
            x = images.contiguous(memory_format=LAYOUTS[layout])
            step(model, optimizer, x, labels)  # warm-up
            times, started = [], time.perf_counter()
            while time.perf_counter() - started < seconds:
                t0 = time.perf_counter()
                step(model, optimizer, x, labels)
                times.append(time.perf_counter() - t0)
            per_round[layout].append(BATCH / statistics.median(times))
    return {
        layout: {"median": statistics.median(rates), "rounds": rates}
        for layout, rates in per_round.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per layout and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="Adam steps for the equality check")
    args = parser.parse_args()
    rows = []
    for key, name in MODELS.items():
        torch.manual_seed(0)
        base = create_model(name)
        initialize(base, "keras")
        rates = speed(base, args.seconds, args.rounds)
        faster = max(rates, key=lambda layout: rates[layout]["median"])
        minutes = EPOCHS * IMAGES / rates[faster]["median"] / 60
        row = {
            "experiment": key,
            "model": name,
            "images_per_second": rates,
            "channels_last_over_nchw": rates["channels_last"]["median"] / rates["nchw"]["median"],
            "faster": faster,
            "same_training": same_training(base, args.steps),
            "expected_minutes_5_epochs": minutes,
        }
        rows.append(row)
        check, ratio = row["same_training"], row["channels_last_over_nchw"]
        print(
            f"{key}: NCHW {rates['nchw']['median']:.0f} img/s, channels_last "
            f"{rates['channels_last']['median']:.0f} img/s (x{ratio:.2f}); "
            f"one step's logits and gradients differ by {check['logits_relative_difference']:.0e}"
            f" and {check['gradients_relative_difference']:.0e} (relative), the logits after "
            f"{args.steps} Adam steps by {check['logits_relative_difference_after_steps']:.0e}; "
            f"5 epochs: about {minutes:.0f} min",
            flush=True,
        )
    write_results(
        "course_layout",
        {
            "command": "python benchmarks/course_layout.py " + " ".join(sys.argv[1:]),
            "step": "Adam 1e-3, eps 1e-7, batch 32, fp32, cross-entropy, random 32x32 inputs",
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
