"""The practitioner's view of one trained run: its learning curves (metrics.csv), and on the
first :data:`REPORT_IMAGES` test images (the answer says how many of how many) the overall
accuracy, the confusion matrix, the accuracy per class and the most confident mistakes (with
their pictures and test-image numbers, which ``/sample/{index}`` loads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..inspect.views import class_probabilities_of, mistakes_by_confidence
from ..run_folder import read_metrics
from ..runs.sources import ModelSource
from .png import image_png

REPORT_IMAGES = 2000
MISTAKES = 16
BATCH = 256


def curves(metrics: Path) -> list[dict[str, float | int]]:
    """One row per epoch: epoch, train and test loss and accuracy."""
    keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")
    return [
        {key: int(row[key]) if key == "epoch" else float(row[key]) for key in keys}
        for row in read_metrics(metrics)
    ]


def build_report(
    source: ModelSource, images: torch.Tensor, labels: torch.Tensor, metrics: Path
) -> dict[str, Any]:
    """The report's numbers, computed on the first :data:`REPORT_IMAGES` test images
    (``images`` of ``test_images``, said in ``note``). The caller holds the run's lock (the
    model is called here)."""
    total = len(images)
    images, labels = images[:REPORT_IMAGES], labels[:REPORT_IMAGES].long()
    classes = source.classes
    probs = class_probabilities_of(source.model, images, source.preprocess, BATCH)
    predicted = probs.argmax(1)
    confusion = torch.zeros(len(classes), len(classes), dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    per_class = confusion.diag() / confusion.sum(1).clamp(min=1)
    mistakes = [
        {
            "index": m.index,
            "true": m.true,
            "predicted": m.predicted,
            "true_class": classes[m.true],
            "predicted_class": classes[m.predicted],
            "confidence": m.confidence,
            "image": image_png(images[m.index]),
        }
        for m in mistakes_by_confidence(probs, labels, MISTAKES)
    ]
    accuracy = float((predicted == labels).float().mean())
    used = "all" if len(images) == total else f"the first {len(images):,} of"
    return {
        "curves": curves(metrics) if metrics.is_file() else [],
        "classes": classes,
        "images": len(images),
        "test_images": total,
        "accuracy": accuracy,
        "note": f"on {used} {total:,} test images: accuracy {accuracy:.1%} "
        f"({int((predicted == labels).sum()):,} right); mistakes are numbered as test images",
        "confusion": confusion.tolist(),
        "per_class_accuracy": per_class.tolist(),
        "mistakes": mistakes,
    }
