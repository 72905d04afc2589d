"""Arrays to pictures for the browser: PNG data URLs, feature-map strips, Grad-CAM colours.

Only the encoding lives here; turning a model input into an image uses the one conversion
of :mod:`cnnlab.inspect` (:func:`cnnlab.inspect.plots.image_array`).
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

from ..inspect.plots import image_array

COLORMAPS = ("viridis", "jet")  # viridis: perceptually uniform and colour-blind safe
MID_GRAY = 128  # a constant map: neither the darkest nor the brightest value it could be


def png(array: np.ndarray, low: float | None = None, high: float | None = None) -> str:
    """A ``H x W`` float map (scaled to ``low..high``, by default its own range; a constant
    map mid-gray) or uint8 image -> PNG data URL."""
    if array.dtype != np.uint8:
        low = float(array.min()) if low is None else low
        high = float(array.max()) if high is None else high
        if high > low:
            array = (np.clip((array - low) / (high - low), 0, 1) * 255).astype(np.uint8)
        else:
            array = np.full(array.shape, MID_GRAY, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def sprite(maps: np.ndarray) -> np.ndarray:
    """``K x H x W`` maps side by side in one uint8 strip ``H x K*W``, each scaled to its own
    range (one PNG per layer instead of one per map); a constant map is mid-gray."""
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    scaled = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1) * 255, MID_GRAY)
    return scaled.astype(np.uint8).transpose(1, 0, 2).reshape(maps.shape[1], -1)


def colour(heat: np.ndarray, colormap: str = "viridis") -> np.ndarray:
    """A ``H x W`` map in 0..1 as ``H x W x 3`` uint8 colours of ``colormap``."""
    from matplotlib import colormaps

    return (colormaps[colormap](heat)[..., :3] * 255).astype(np.uint8)


def legend(colormap: str = "viridis", stops: int = 5) -> dict:
    """What the heat map's colours mean: 0 (``low``) to 1 (``high``) and the colours at
    ``stops`` even steps, as ``#rrggbb``, for a colour bar."""
    colours = colour(np.linspace(0, 1, stops), colormap)
    return {
        "colormap": colormap,
        "low": 0.0,
        "high": 1.0,
        "low_means": "no evidence for the class",
        "high_means": "the strongest evidence for the class",
        "stops": ["#{:02x}{:02x}{:02x}".format(*map(int, c)) for c in colours],
    }


def overlay(image: torch.Tensor, heat: np.ndarray, colormap: str = "viridis") -> np.ndarray:
    """The uint8 ``C x H x W`` image with the heat map's colours over it at half opacity."""
    picture = image_array(image).astype(np.float32)
    if picture.ndim == 2:
        picture = np.stack([picture] * 3, -1)
    return (0.5 * picture + 0.5 * colour(heat, colormap)).astype(np.uint8)


def image_png(image: torch.Tensor) -> str:
    """A uint8 ``C x H x W`` model input as a PNG data URL."""
    return png(image_array(image))


def sprite_on_scale(maps: np.ndarray) -> np.ndarray:
    """``K x H x W`` float maps side by side (``H x K*W``), values kept: :func:`png` then puts
    them all on one scale, so their sizes can be compared."""
    return maps.transpose(1, 0, 2).reshape(maps.shape[1], -1)
