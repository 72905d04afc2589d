"""A picture as numbers: the pixel values of an image or a crop of it, and what pooling (max,
average, min) and a strided convolution make of a real photo. Figures in
:mod:`.lesson_plots`."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..data import named_test_image
from ..errors import CnnlabError
from .image_filters import kernel, load_image

MAX_PIXEL_CELLS = 64  # a table of more than 64 x 64 numbers is no longer read, only scrolled


@dataclass
class Picture:
    """An image as ``H x W`` (gray) or ``H x W x 3`` uint8 values, and where it came from."""

    pixels: np.ndarray
    label: str


def load_picture(
    text: str, data_dir: str | os.PathLike[str] | None = None, gray: bool = False
) -> Picture:
    """An image file, or ``DATASET:N`` (``mnist:1``: image 1 of MNIST's test split, a
    handwritten 2), as uint8 ``H x W`` or ``H x W x 3``."""
    found = named_test_image(text, data_dir)
    if found is not None:
        data, index = found
        name = data.name
        image = data.images[index].permute(1, 2, 0).numpy()
        if gray and image.shape[2] == 3:
            image = (
                np.asarray(image @ np.array([0.299, 0.587, 0.114]), dtype=float)
                .round()
                .astype(np.uint8)[..., None]
            )
        pixels = image[..., 0] if image.shape[2] == 1 else image
        label = f"{name} test image {index} ({data.classes[int(data.labels[index])]})"
        return Picture(np.ascontiguousarray(pixels), label)
    pixels = load_image(text, gray).round().astype(np.uint8)
    return Picture(pixels, os.path.basename(text))


def parse_crop(text: str) -> tuple[int, int, int, int]:
    """``"4,6,10,8"`` -> ``(y, x, height, width)``."""
    try:
        y, x, height, width = (int(part) for part in text.split(","))
    except ValueError:
        raise CnnlabError(
            f"--crop {text!r}: expected four whole numbers y,x,height,width, e.g. 4,6,10,8"
        ) from None
    return y, x, height, width


def crop_pixels(pixels: np.ndarray, crop: tuple[int, int, int, int] | None) -> np.ndarray:
    """The ``(y, x, height, width)`` window of ``pixels`` (all of it for ``None``), checked
    against the image's size."""
    if crop is None:
        return pixels
    y, x, height, width = crop
    rows, cols = pixels.shape[:2]
    if height < 1 or width < 1 or y < 0 or x < 0 or y + height > rows or x + width > cols:
        raise CnnlabError(
            f"--crop {y},{x},{height},{width}: the window must lie inside the {rows}x{cols} "
            f"image (y + height <= {rows}, x + width <= {cols}, all >= 0, sizes >= 1)"
        )
    return pixels[y : y + height, x : x + width]


def resize_pixels(pixels: np.ndarray, size: int | None) -> np.ndarray:
    """``pixels`` scaled (area averaging, as a thumbnail) so the longer side is ``size``."""
    if size is None:
        return pixels
    if size < 1:
        raise CnnlabError(f"--size {size}: expected a positive number of pixels")
    rows, cols = pixels.shape[:2]
    scale = size / max(rows, cols)
    shape = (max(1, round(rows * scale)), max(1, round(cols * scale)))
    tensor = torch.as_tensor(pixels, dtype=torch.float64)
    tensor = tensor[None, None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)[None]
    resized = F.interpolate(tensor, size=shape, mode="area")[0]
    resized = resized[0] if pixels.ndim == 2 else resized.permute(1, 2, 0)
    return resized.round().clamp(0, 255).to(torch.uint8).numpy()


def check_cells(pixels: np.ndarray) -> None:
    rows, cols = pixels.shape[:2]
    if max(rows, cols) > MAX_PIXEL_CELLS:
        raise CnnlabError(
            f"a {rows}x{cols} image is too large to print as numbers (at most "
            f"{MAX_PIXEL_CELLS} a side): give --crop y,x,h,w or --size {min(28, MAX_PIXEL_CELLS)}"
        )


def pixel_text(pixels: np.ndarray) -> str:
    """The values as a table, one image row per line (colour: ``r/g/b`` per cell)."""
    if pixels.ndim == 2:
        return "\n".join(" ".join(f"{int(v):3d}" for v in row) for row in pixels)
    return "\n".join(" ".join("/".join(f"{int(c)}" for c in v) for v in row) for row in pixels)


# --------------------------------------------------------------------------------- pooling


@dataclass
class PoolingView:
    """What one down-sampling makes of the picture: ``H x W x C`` float 0..255 and its
    learnable parameters (0 for pooling)."""

    name: str
    image: np.ndarray
    parameters: int
    explanation: str


def pooling_views(pixels: np.ndarray, size: int = 2) -> list[PoolingView]:
    """Max, average and min pooling (window ``size``, stride ``size``) of a picture, beside
    two stride-``size`` convolutions: one whose weights are all ``1/size^2`` (it equals average
    pooling: pooling is a convolution with fixed weights) and one with Sobel-x weights (what a
    learned strided convolution may do instead: keep edges, drop flat areas)."""
    if size < 2:
        raise CnnlabError(f"--size {size}: expected a pooling window of at least 2")
    rows, cols = pixels.shape[:2]
    if size > min(rows, cols):
        raise CnnlabError(f"--size {size}: larger than the {rows}x{cols} image; give a smaller one")
    x = torch.as_tensor(pixels, dtype=torch.float64)
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    channels = x.shape[1]
    box = torch.full((channels, 1, size, size), 1.0 / size**2, dtype=torch.float64)
    sobel = torch.as_tensor(kernel("sobel-x"), dtype=torch.float64)
    sobel = F.interpolate(sobel[None, None], size=(size + 1, size + 1), mode="bilinear")
    sobel = sobel.expand(channels, 1, size + 1, size + 1)
    views = [
        ("max pooling", F.max_pool2d(x, size), 0, "the brightest pixel of each window survives"),
        ("average pooling", F.avg_pool2d(x, size), 0, "the mean of each window"),
        ("min pooling", -F.max_pool2d(-x, size), 0, "the darkest pixel of each window survives"),
        (
            "stride conv, box weights",
            F.conv2d(x, box, stride=size, groups=channels),
            channels * size * size,
            "weights 1/size^2 learned or fixed: equals average pooling",
        ),
        (
            "stride conv, Sobel-x weights",
            F.conv2d(x, sobel, stride=size, groups=channels).abs(),
            channels * (size + 1) ** 2,
            "|edge response| every size pixels: a learned down-sampler keeps what it needs",
        ),
    ]
    return [
        PoolingView(name, out[0].permute(1, 2, 0).numpy(), params, why)
        for name, out, params, why in views
    ]
