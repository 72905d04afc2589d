"""The shape most classic CNNs share: a feature extractor, then a classifier.

What else a model may declare (its spec, its classifier head, fx leaves, NumPy twins, its own
optimizer groups, a data-dependent initialisation, the weight of auxiliary losses, fixed
parameters) is listed once in :mod:`cnnlab.model_interface`, at the ground floor because the
NumPy engine reads it too."""

from __future__ import annotations

import torch
from torch import nn


class FeaturesClassifier(nn.Module):
    """``classifier(features(x))``; subclasses set ``self.features`` and ``self.classifier``
    (named as torchvision names them, so layer names read the same in summaries)."""

    features: nn.Module
    classifier: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
