"""The shape most classic CNNs share: a feature extractor, then a classifier."""

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
