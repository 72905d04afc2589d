"""MNIST and Fashion-MNIST on the CPU: accuracy within a training-time budget, and the trainer's
throughput against a bare PyTorch loop over the same tensors.

Targets (issue 2): LeNet-5 (modern) >= 99.0% test accuracy in <= 20 s of training wall time;
fashion_cnn on Fashion-MNIST >= 91% in <= 60 s; trainer throughput within 10% of the bare loop.

    python benchmarks/mnist_cpu.py            # about 4 minutes on 2 cores
"""

from __future__ import annotations

import sys
import time

import torch
from torch.nn import functional as F

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import data_dir, write_results  # noqa: E402

from cnnlab.data import load_dataset  # noqa: E402
from cnnlab.models import create_model  # noqa: E402
from cnnlab.train import TrainConfig, fit  # noqa: E402


def train_to_target(model_name, dataset, config, target, budget, **model_options):
    torch.manual_seed(config.seed)
    train = load_dataset(dataset, "train", root=data_dir())
    test = load_dataset(dataset, "test", root=data_dir())
    model = create_model(model_name, input_size=28, **model_options)
    result = fit(model, (train, test), config)
    seconds = sum(row["train_seconds"] for row in result.history)
    accuracy = result.test_accuracy
    verdict = "met" if accuracy >= target and seconds <= budget else "MISSED"
    print(
        f"{model_name:<12} {dataset:<14} {config.epochs} epochs  test {accuracy:.2%} "
        f"(target {target:.1%})  train time {seconds:.1f} s (budget {budget} s)  {verdict}"
    )
    return {
        "model": model_name,
        "dataset": dataset,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "optimizer": config.optimizer,
        "lr": config.lr,
        "test_accuracy": accuracy,
        "train_seconds": seconds,
        "target_accuracy": target,
        "budget_seconds": budget,
        "met": verdict == "met",
        "per_epoch": result.history,
    }


def bare_loop_images_per_second(train, mean, std, batch_size, lr):
    """The 15-line loop: shuffle, slice, normalize, forward, backward, step."""
    torch.manual_seed(0)
    model = create_model("lenet5", input_size=28, modern=True).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    mean_t, std_t = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    images, labels = train.images, train.labels
    started = time.perf_counter()
    order = torch.randperm(len(labels))
    steps = len(labels) // batch_size
    for step in range(steps):
        index = order[step * batch_size : (step + 1) * batch_size]
        x = ((images[index].float() / 255 - mean_t) / std_t).contiguous(
            memory_format=torch.channels_last
        )
        loss = F.cross_entropy(model(x), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - started)


def trainer_images_per_second(train, test, batch_size, lr):
    torch.manual_seed(0)
    model = create_model("lenet5", input_size=28, modern=True)
    config = TrainConfig(
        epochs=1,
        batch_size=batch_size,
        lr=lr,
        schedule="none",
        channels_last=True,
        progress=True,
        seed=0,
    )
    return fit(model, (train, test.subset(500)), config).history[0]["images_per_second"]


def main() -> None:
    torch.set_num_threads(2)  # the target machine: 2 CPU cores
    results = {"runs": []}
    results["runs"].append(
        train_to_target(
            "lenet5",
            "mnist",
            TrainConfig(epochs=3, batch_size=128, lr=3e-3, channels_last=True, progress=False),
            target=0.99,
            budget=20,
            modern=True,
        )
    )
    results["runs"].append(
        train_to_target(
            "mnist_cnn",
            "mnist",
            TrainConfig(epochs=1, batch_size=128, lr=1e-3, channels_last=True, progress=False),
            target=0.98,
            budget=90,
        )
    )
    results["runs"].append(
        train_to_target(
            "fashion_cnn",
            "fashion-mnist",
            TrainConfig(
                epochs=2,
                batch_size=128,
                lr=3e-3,
                warmup_epochs=0.2,
                channels_last=True,
                progress=False,
            ),
            target=0.91,
            budget=60,
        )
    )

    # ---- throughput: the trainer against the bare loop, alternating, best of 3 each
    train = load_dataset("mnist", "train", root=data_dir())
    test = load_dataset("mnist", "test", root=data_dir())
    mean, std = train.channel_stats()
    bare, trainer = [], []
    for _ in range(3):
        bare.append(bare_loop_images_per_second(train, mean, std, 128, 1e-3))
        trainer.append(trainer_images_per_second(train, test, 128, 1e-3))
    ratio = max(trainer) / max(bare)
    print(
        f"throughput, LeNet-5 batch 128: bare loop {max(bare):,.0f} img/s, trainer "
        f"{max(trainer):,.0f} img/s, trainer/bare = {ratio:.3f} (target >= 0.90)"
    )
    results["throughput"] = {
        "model": "lenet5 (modern)",
        "batch_size": 128,
        "bare_images_per_second": bare,
        "trainer_images_per_second": trainer,
        "trainer_over_bare_best": ratio,
        "target_ratio": 0.9,
        "met": ratio >= 0.9,
    }
    write_results("mnist_cpu", results)


if __name__ == "__main__":
    main()
