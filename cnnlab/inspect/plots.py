"""Figures of a run: learning curves and the confusion matrix, written as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..runs import atomic_write  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> None:
    atomic_write(Path(path), lambda handle: figure.savefig(handle, format="png", dpi=110))
    plt.close(figure)


def plot_curves(history: list[dict[str, float]], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train against test, side by side."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-o"), ("test", "--s")):
        loss_axes.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=split)
        acc_axes.plot(epochs, [100 * r[f"{split}_acc"] for r in history], style, label=split)
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    acc_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    last = history[-1]
    acc_axes.annotate(
        f"test {100 * last['test_acc']:.2f}%", (last["epoch"], 100 * last["test_acc"]),
        textcoords="offset points", xytext=(-60, -18),
    )  # fmt: skip
    for axes in (loss_axes, acc_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)


def plot_confusion(confusion: torch.Tensor, classes: list[str], path: Path) -> None:
    """Counts of (true class, predicted class); the diagonal holds the correct predictions."""
    matrix = confusion.numpy()
    size = max(5.0, 0.55 * len(classes) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axes.set_yticks(range(len(classes)), classes)
    axes.set(xlabel="predicted class", ylabel="true class")
    accuracy = matrix.trace() / max(matrix.sum(), 1)
    axes.set_title(f"confusion matrix: {matrix.trace()} of {matrix.sum()} right ({accuracy:.2%})")
    threshold = matrix.max() / 2
    if len(classes) <= 20:
        for row in range(len(classes)):
            for col in range(len(classes)):
                axes.text(
                    col, row, str(matrix[row, col]), ha="center", va="center", fontsize=8,
                    color="white" if matrix[row, col] > threshold else "black",
                )  # fmt: skip
    figure.tight_layout()
    _save(figure, path)
