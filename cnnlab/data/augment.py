"""AlexNet's data augmentation (Krizhevsky, Sutskever & Hinton 2012, Section 4.1) on uint8
``N x C x H x W`` batches, for image-folder and ImageNet-sized data:

1. every image rescaled so its shorter side is 256 and its central 256 x 256 patch kept
   (:func:`resize_and_center_crop`, done once per image);
2. at training time a random 224 x 224 patch (:func:`random_crops`) and its mirror image with
   probability 1/2 (:func:`random_flip`); at test time the central patch;
3. "fancy PCA" colour augmentation (:func:`pca_basis`, :func:`pca_shift`,
   :func:`fancy_pca`): the eigenvectors ``p_i`` and eigenvalues ``lambda_i`` of the 3 x 3
   covariance of the training set's RGB pixel values (on the 0..1 scale), and for every image
   a fresh ``alpha_i ~ N(0, 0.1)``; the image's every pixel gets
   ``[p_1 p_2 p_3] [alpha_1 lambda_1, alpha_2 lambda_2, alpha_3 lambda_3]^T`` added: the
   illumination's colour and intensity change, the object does not.

:class:`AlexNetAugment` puts them together as the optional ``augmentation`` of
:class:`cnnlab.data.batches.Preprocess`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import CnnlabError
from .batches import random_flip as random_flip  # re-exported: the flip is the same

ALEXNET_RESIZE = 256
ALEXNET_CROP = 224
ALEXNET_PCA_STD = 0.1  # the standard deviation of alpha in the paper
MAX_PCA_PIXELS = 2_000_000  # pixels sampled for the covariance: plenty for a 3 x 3 matrix


def resize_and_center_crop(images: torch.Tensor, size: int = ALEXNET_RESIZE) -> torch.Tensor:
    """Rescale ``N x C x H x W`` uint8 images so the shorter side is ``size`` (bilinear, with
    antialiasing when shrinking), then keep the central ``size x size`` patch."""
    _check_batch(images)
    n, c, height, width = images.shape
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        resized = F.interpolate(
            images.float(), (new_h, new_w), mode="bilinear", align_corners=False, antialias=True
        )
        images = resized.round().clamp(0, 255).to(torch.uint8)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return images[:, :, top : top + size, left : left + size]


def center_crop(images: torch.Tensor, size: int = ALEXNET_CROP) -> torch.Tensor:
    """The central ``size x size`` patch of every image (AlexNet's test-time view)."""
    _check_fits(images, size)
    height, width = images.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    return images[..., top : top + size, left : left + size]


def random_crops(
    images: torch.Tensor, size: int = ALEXNET_CROP, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random ``size x size`` patch of every image, each at its own offset, no padding:
    from a 256 x 256 image there are 33 x 33 = 1,089 positions (x2 with the flip: the
    paper's factor of 2,048 counts 32 x 32 x 2)."""
    _check_fits(images, size)
    n, _, height, width = images.shape
    device = generator.device if generator is not None else "cpu"
    tops = torch.randint(0, height - size + 1, (n,), generator=generator, device=device)
    lefts = torch.randint(0, width - size + 1, (n,), generator=generator, device=device)
    tops, lefts = tops.to(images.device), lefts.to(images.device)
    span = torch.arange(size, device=images.device)
    rows = (tops[:, None] + span)[:, None, :, None]
    cols = (lefts[:, None] + span)[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return images[batch, channels, rows, cols]


@dataclass
class PCABasis:
    """The principal components of RGB pixel values: ``eigenvalues[i]`` (largest first) is the
    variance along ``eigenvectors[:, i]`` (unit length), on the 0..1 scale."""

    eigenvalues: np.ndarray  # (3,)
    eigenvectors: np.ndarray  # (3, 3), one component per column

    def lines(self) -> list[str]:
        out = ["RGB covariance of the training pixels (0..1 scale), largest component first:"]
        for i in range(len(self.eigenvalues)):
            vector = ", ".join(f"{v:+.3f}" for v in self.eigenvectors[:, i])
            out.append(f"  lambda_{i + 1} = {self.eigenvalues[i]:.5f}   p_{i + 1} = ({vector})")
        return out


def pca_basis_of_covariance(covariance: np.ndarray) -> PCABasis:
    """Eigen decomposition of a symmetric 3 x 3 covariance, components sorted by variance
    (largest first) and each eigenvector's sign fixed so its largest entry is positive."""
    covariance = np.asarray(covariance, dtype=np.float64)
    if covariance.shape != (3, 3) or not np.allclose(covariance, covariance.T):
        raise CnnlabError(
            f"covariance of shape {covariance.shape}: expected a symmetric 3 x 3 matrix (RGB)"
        )
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order]
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), range(3)])
    return PCABasis(values, vectors * np.where(signs == 0, 1, signs))


def pca_basis(images: torch.Tensor, seed: int = 0) -> PCABasis:
    """The principal components of the RGB values of every pixel of ``images`` (uint8
    ``N x 3 x H x W``, the training set), from at most :data:`MAX_PCA_PIXELS` pixels drawn at
    random."""
    _check_batch(images)
    if images.shape[1] != 3:
        raise CnnlabError(
            f"PCA colour augmentation needs RGB images; got {images.shape[1]} channel(s): use "
            "it on colour data, or without --pca"
        )
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3)
    if len(pixels) > MAX_PCA_PIXELS:
        generator = torch.Generator().manual_seed(seed)
        pick = torch.randint(0, len(pixels), (MAX_PCA_PIXELS,), generator=generator)
        pixels = pixels[pick.to(pixels.device)]
    values = pixels.double().cpu().numpy() / 255.0
    return pca_basis_of_covariance(np.cov(values, rowvar=False))


def pca_shift(basis: PCABasis, alpha: np.ndarray) -> np.ndarray:
    """``sum_i alpha_i * lambda_i * p_i`` for each row of ``alpha`` (``N x 3``): the RGB value
    (0..1 scale) added to every pixel of image ``n``. ``alpha`` may also be one row (3,)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    return (alpha * basis.eigenvalues) @ basis.eigenvectors.T


def fancy_pca(
    images: torch.Tensor,
    basis: PCABasis,
    std: float = ALEXNET_PCA_STD,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Add each image's :func:`pca_shift` with a fresh ``alpha ~ N(0, std)`` to all its pixels
    (uint8 in and out, clipped to 0..255); returns the images and the shifts used (``N x 3``,
    on the 0..255 scale)."""
    _check_batch(images)
    device = generator.device if generator is not None else "cpu"
    alpha = torch.randn((len(images), 3), generator=generator, device=device) * std
    shift = pca_shift(basis, alpha.double().cpu().numpy()) * 255.0
    shifted = (
        images.float()
        + torch.as_tensor(shift, dtype=torch.float32).to(images.device)[:, :, None, None]
    )
    return shifted.round().clamp(0, 255).to(torch.uint8), shift


@dataclass
class AlexNetAugment:
    """AlexNet's augmentation as one step of :class:`cnnlab.data.batches.Preprocess`: for
    training a random ``crop`` patch, a flip with probability 1/2 and, given a ``basis``, fancy
    PCA with ``alpha ~ N(0, pca_std)``; for evaluation the central patch. The images it
    receives are already ``resize`` pixels square (:func:`resize_and_center_crop`)."""

    crop: int = ALEXNET_CROP
    flip: bool = True
    basis: PCABasis | None = None
    pca_std: float = ALEXNET_PCA_STD

    def __post_init__(self) -> None:
        if isinstance(self.crop, bool) or not isinstance(self.crop, int) or self.crop < 1:
            raise CnnlabError(f"crop={self.crop!r}: expected a positive side in pixels, e.g. 224")
        if not 0 <= self.pca_std <= 10:
            raise CnnlabError(
                f"pca_std={self.pca_std!r}: expected a number from 0 to 10 (the paper's is 0.1)"
            )

    def __call__(
        self, images: torch.Tensor, augment: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if not augment:
            return center_crop(images, self.crop)
        images = random_crops(images, self.crop, generator)
        if self.flip:
            images = random_flip(images, generator)
        if self.basis is not None and self.pca_std > 0:
            images, _ = fancy_pca(images, self.basis, self.pca_std, generator)
        return images


@dataclass
class AlexNetTraining:
    """AlexNet's augmentation at a data set's own image size, for ``cnnlab train --augment
    --augment-style alexnet``: each training batch is scaled up by 256/224 (bilinear), a random
    ``size x size`` patch of every image is kept (the paper's 224 of 256, in proportion), it is
    mirrored with probability 1/2 where ``flip`` allows, and, given a ``basis`` (RGB data),
    fancy PCA shifts its colour. Test images pass unchanged: the model sees them whole, at the
    size it was trained on."""

    size: int
    flip: bool = True
    basis: PCABasis | None = None
    pca_std: float = ALEXNET_PCA_STD

    def __call__(
        self, images: torch.Tensor, augment: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if not augment:
            return images
        larger = max(self.size + 1, round(self.size * ALEXNET_RESIZE / ALEXNET_CROP))
        images = random_crops(resize_and_center_crop(images, larger), self.size, generator)
        if self.flip:
            images = random_flip(images, generator)
        if self.basis is not None and self.pca_std > 0:
            images, _ = fancy_pca(images, self.basis, self.pca_std, generator)
        return images


def _check_batch(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.dtype != torch.uint8:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else "?"
        raise CnnlabError(f"images are {got}: expected a uint8 N x C x H x W batch")


def _check_fits(images: torch.Tensor, size: int) -> None:
    height, width = images.shape[-2:]
    if size > min(height, width):
        raise CnnlabError(
            f"crop {size}: larger than the {height}x{width} images; give a crop of at most "
            f"{min(height, width)}, or resize the images first (AlexNet: 256, then 224 crops)"
        )
