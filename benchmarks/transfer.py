"""Transfer learning on real data: pretrain a CNN on CIFAR-10, then train it on 1,000
Fashion-MNIST images (converted to 3 x 32 x 32) with each strategy, against the same network
trained from scratch on the same 1,000 images.

    python benchmarks/transfer.py [--source-epochs 3] [--epochs 15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir, write_results  # noqa: E402

from cnnlab.runs.start import train_run, transfer_run  # noqa: E402
from cnnlab.train import TrainConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="fashion_cnn")
    parser.add_argument("--source-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--target-images", type=int, default=1000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cnnlab-transfer-"))
    data = str(data_dir())
    started = time.perf_counter()
    source = TrainConfig(
        model=args.model,
        dataset="cifar10",
        epochs=args.source_epochs,
        batch_size=128,
        lr=2e-3,
        augment=True,
        data_dir=data,
        progress=False,
    )
    pretrained = train_run(source, root, "source")
    source_acc = pretrained.history[-1]["test_acc"]
    print(
        f"source: {args.model} on CIFAR-10 (50,000 images, {args.source_epochs} epochs): "
        f"{source_acc:.2%} test accuracy, {time.perf_counter() - started:.0f} s"
    )

    def target(**extra) -> TrainConfig:
        return TrainConfig(
            dataset="fashion-mnist",
            train_subset=args.target_images,
            epochs=args.epochs,
            batch_size=64,
            lr=1e-3,
            data_dir=data,
            progress=False,
            **extra,
        )

    rows = []
    for strategy in ("feature-extract", "fine-tune-last:2", "full"):
        t0 = time.perf_counter()
        result, report = transfer_run(
            "source", target(), strategy, runs_root=root, name=strategy.replace(":", "-")
        )
        rows.append(
            {
                "strategy": strategy,
                "test_acc": result.history[-1]["test_acc"],
                "trainable_params": report["trainable_params"],
                "seconds": time.perf_counter() - t0,
            }
        )
    t0 = time.perf_counter()
    scratch = train_run(target(model=args.model, image_channels=3, image_size=32), root, "scratch")
    rows.append(
        {
            "strategy": "from scratch",
            "test_acc": scratch.history[-1]["test_acc"],
            "trainable_params": None,
            "seconds": time.perf_counter() - t0,
        }
    )
    print(
        f"target: Fashion-MNIST, {args.target_images} training images, {args.epochs} epochs, "
        "tested on all 10,000"
    )
    for row in rows:
        print(f"  {row['strategy']:<18} {row['test_acc']:7.2%}  ({row['seconds']:.0f} s)")
    write_results(
        "transfer",
        {
            "source_model": args.model,
            "source_test_acc": source_acc,
            "source_epochs": args.source_epochs,
            "epochs": args.epochs,
            "target_images": args.target_images,
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
