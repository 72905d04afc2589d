"""``cnnlab show augmentations``: a grid of AlexNet-style augmented samples (random 224 crops of
the 256 x 256 image, flips, fancy PCA colour shifts) of one photo or of a data set's training
images, the first cell the unaugmented central crop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import augment as A
from ..errors import CnnlabError
from .plots import image_array, save_figure, subplots

MAX_SAMPLES = 64
PCA_IMAGES = 2000  # training images the colour covariance is taken over


@dataclass
class AugmentedSamples:
    source: str
    original: torch.Tensor  # uint8 3 x S x S: the central crop, unaugmented
    samples: torch.Tensor  # uint8 N x 3 x S x S
    shifts: np.ndarray  # N x 3 RGB shifts of fancy PCA (0..255 scale), zeros without it
    basis: A.PCABasis | None
    labels: list[str]
    flipped: bool = True  # whether random flips were on


def load_images(source: str, data_dir: str | None, count: int) -> tuple[torch.Tensor, list[str]]:
    """A photo (one image, its file name as the label) or the first ``count`` training images
    of a data set name (their class names), as uint8 ``N x C x H x W``."""
    path = Path(source)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"):
        from ..images import opened

        with opened(path) as image:
            array = np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy
        return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous(), [path.name]
    from ..data.datasets import DATASET_NAMES, load_dataset

    if source not in DATASET_NAMES:
        raise CnnlabError(
            f"{source!r}: expected an image file (.png, .jpg) or a data set "
            f"({', '.join(DATASET_NAMES)})"
        )
    data = load_dataset(source, "train", data_dir)
    images = data.images[:count]
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)  # gray: three equal channels, no colour to shift
    return images, [data.classes[int(y)] for y in data.labels[:count]]


def augmented_samples(
    source: str,
    n: int = 16,
    data_dir: str | None = None,
    resize: int = A.ALEXNET_RESIZE,
    crop: int = A.ALEXNET_CROP,
    flip: bool = True,
    pca_std: float | None = A.ALEXNET_PCA_STD,
    seed: int = 0,
) -> AugmentedSamples:
    """``n`` augmented versions of a photo, or one augmented version of each of a data set's
    first ``n`` training images. The colour basis is the photo's own pixels, or the data set's
    first :data:`PCA_IMAGES` training images. ``pca_std=None`` or 0: no colour shifts."""
    if not 1 <= n <= MAX_SAMPLES:
        raise CnnlabError(f"--n {n}: expected 1 to {MAX_SAMPLES} samples, e.g. --n 16")
    if pca_std is not None and not 0 <= pca_std <= 10:
        raise CnnlabError(
            f"--pca-std {pca_std}: expected a standard deviation from 0 (no colour shifts) to "
            "10; the paper's is 0.1"
        )
    if not 1 <= crop <= resize:
        raise CnnlabError(
            f"--crop {crop} with --resize {resize}: the crop must fit in the resized image "
            "(AlexNet: 224 of 256)"
        )
    images, labels = load_images(source, data_dir, max(n, PCA_IMAGES))
    basis = A.pca_basis(images, seed) if pca_std else None
    if len(images) == 1:
        batch, labels = images.repeat(n, 1, 1, 1), labels * n
    else:
        batch, labels = images[:n], labels[:n]
    batch = A.resize_and_center_crop(batch, resize)
    generator = torch.Generator().manual_seed(seed)
    shaped = A.random_crops(batch, crop, generator)
    if flip:
        shaped = A.random_flip(shaped, generator)
    shifts = np.zeros((len(shaped), 3))
    if basis is not None:
        shaped, shifts = A.fancy_pca(shaped, basis, pca_std, generator)
    original = A.center_crop(batch[:1], crop)[0]
    return AugmentedSamples(source, original, shaped, shifts, basis, labels, flip)


def plot_augmented(result: AugmentedSamples, path: Path) -> None:
    """The central crop, then every augmented sample titled with its PCA colour shift."""
    count = len(result.samples) + 1
    columns = min(count, 6)
    rows = -(-count // columns)
    figure, axes = subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    cells = [(result.original, f"{result.labels[0]}\ncentral crop")]
    for image, label, shift in zip(result.samples, result.labels, result.shifts):
        text = f"RGB {shift[0]:+.0f} {shift[1]:+.0f} {shift[2]:+.0f}" if result.basis else ""
        cells.append((image, f"{label}\n{text}".strip()))
    for ax, (image, title) in zip(axes.ravel(), cells):
        ax.imshow(image_array(image))
        ax.set_title(title, fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    side = result.samples.shape[-1]
    figure.suptitle(
        f"AlexNet augmentation of {Path(result.source).name}: {side}x{side} random crops"
        + (", flips" if result.flipped else "")
        + (", fancy PCA colour" if result.basis else ""),
        fontsize=9,
    )
    figure.tight_layout()
    save_figure(figure, path)
