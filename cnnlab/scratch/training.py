"""Training with the NumPy engine alone: a LeNet-5 builder and a plain mini-batch loop."""

from __future__ import annotations

import numpy as np

from . import layers as L
from .losses import SoftmaxCrossEntropy


def lenet5(
    num_classes: int = 10, modern: bool = True, seed: int = 0, dtype=np.float32
) -> L.Sequential:
    """LeNet-5 on a 1 x 32 x 32 input, the same layer list as ``cnnlab.models.lenet5``."""
    rng = np.random.default_rng(seed)
    act = L.ReLU if modern else L.Tanh
    pool = L.MaxPool2d if modern else L.AvgPool2d
    return L.Sequential(
        L.Conv2d(1, 6, 5, rng=rng, dtype=dtype),
        act(),
        pool(2),  # 6 x 14 x 14
        L.Conv2d(6, 16, 5, rng=rng, dtype=dtype),
        act(),
        pool(2),  # 16 x 5 x 5
        L.Conv2d(16, 120, 5, rng=rng, dtype=dtype),
        act(),  # 120 x 1 x 1
        L.Flatten(),
        L.Linear(120, 84, rng=rng, dtype=dtype),
        act(),
        L.Linear(84, num_classes, rng=rng, dtype=dtype),
    )


def train_epoch(
    model, optimizer, images: np.ndarray, labels: np.ndarray, batch_size: int, rng
) -> float:
    """One pass over shuffled mini-batches; returns the mean training loss."""
    loss_fn = SoftmaxCrossEntropy()
    model.train()
    order = rng.permutation(len(labels))
    losses = []
    for start in range(0, len(order) - batch_size + 1, batch_size):
        batch = order[start : start + batch_size]
        optimizer.zero_grad()
        losses.append(loss_fn(model(images[batch]), labels[batch]))
        model.backward(loss_fn.backward())
        optimizer.step()
    return float(np.mean(losses))


def accuracy(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    model.eval()
    predictions = np.concatenate(
        [
            model(images[i : i + batch_size]).argmax(axis=1)
            for i in range(0, len(labels), batch_size)
        ]
    )
    return float((predictions == labels).mean())
