"""Learned filters against classic ones: for each first-layer filter of a trained network,
the classic filter (Sobel, Gaussian, Laplacian, ...) it resembles most.

The method: each learned filter is averaged over its input channels (a colour filter's mean
response to brightness), each classic kernel is resized to the learned kernel's size
(bilinear, corners aligned), both have their mean removed and are scaled to unit length, and
their dot product is the normalized correlation (Pearson's r, from -1 to 1). The absolute
value ranks the match: a filter equal to minus Sobel-x detects the same edges with the
opposite sign, which the next layer can undo."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .image_filters import kernel

CLASSIC_FILTERS = ("sobel-x", "sobel-y", "laplacian", "gaussian", "sharpen", "emboss")


@dataclass
class FilterMatch:
    index: int  # the learned filter's output channel
    learned: torch.Tensor  # k x k, averaged over input channels
    nearest: str  # name of the closest classic filter
    correlation: float  # signed normalized correlation with it (|r| is the match's strength)
    all_correlations: dict[str, float]


def resized_kernel(weights: torch.Tensor, size: int) -> torch.Tensor:
    """A ``kh x kw`` kernel resized to ``size x size`` (bilinear, corners aligned)."""
    if tuple(weights.shape) == (size, size):
        return weights.double()
    grid = weights.double()[None, None]
    return F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=True)[0, 0]


def normalized_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson's r of two equal-shape kernels: mean removed, unit length, dot product
    (0 when either is flat)."""
    a = a.double().flatten() - a.double().mean()
    b = b.double().flatten() - b.double().mean()
    norms = a.norm() * b.norm()
    return float(a @ b / norms) if norms > 1e-12 else 0.0


def classic_bank(size: int, names: tuple[str, ...] = CLASSIC_FILTERS) -> dict[str, torch.Tensor]:
    """The classic kernels, each resized to ``size x size``."""
    return {name: resized_kernel(torch.as_tensor(kernel(name)), size) for name in names}


def match_filters(
    weight: torch.Tensor, names: tuple[str, ...] = CLASSIC_FILTERS
) -> list[FilterMatch]:
    """The nearest classic filter of each filter of a convolution's ``weight``
    (``C_out x C_in x k x k``), by absolute normalized correlation."""
    learned = weight.double().mean(dim=1)  # C_out x k x k
    bank = classic_bank(learned.shape[-1], names)
    matches = []
    for index, filter_ in enumerate(learned):
        scores = {name: normalized_correlation(filter_, k) for name, k in bank.items()}
        nearest = max(scores, key=lambda name: abs(scores[name]))
        matches.append(FilterMatch(index, filter_, nearest, scores[nearest], scores))
    return matches
