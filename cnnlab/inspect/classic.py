"""Classic image filters — the hand-designed kernels CNNs learn versions of — applied to real
photos through cnnlab's own correlation (:func:`cnnlab.scratch.correlate2d`).

Border handling follows ``scipy.ndimage``: the image is extended past its edge (``reflect``:
``d c b a | a b c d | d c b a``, ``mirror``, ``nearest``, ``wrap`` or ``constant`` zeros), then
correlated without padding, so the output has the input's size and equals
``scipy.ndimage.correlate(image, kernel, mode=border)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import CnnlabError, UnknownNameError
from ..images import opened
from ..scratch import correlate2d

# scipy.ndimage border mode -> numpy.pad mode
BORDERS = {
    "reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap",
    "constant": "constant",
}  # fmt: skip


def gaussian_1d(size: int, sigma: float | None = None) -> np.ndarray:
    """``g[i] = exp(-(i - c)^2 / (2 sigma^2))`` for ``i = 0..size-1``, ``c = (size - 1) / 2``,
    divided by its sum. Without ``sigma``, OpenCV's rule ``0.3 * ((size - 1) / 2 - 1) + 0.8``."""
    if size < 1 or size % 2 == 0:
        raise CnnlabError(f"Gaussian size {size}: expected an odd size >= 1 (3, 5, 7, ...)")
    if sigma is None or sigma <= 0:
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    offsets = np.arange(size) - (size - 1) / 2
    g = np.exp(-(offsets**2) / (2 * sigma**2))
    return g / g.sum()


def gaussian(size: int = 5, sigma: float | None = 1.0) -> np.ndarray:
    """The 2-D Gaussian: the outer product of two 1-D ones (it is separable)."""
    g = gaussian_1d(size, sigma)
    return np.outer(g, g)


def box(size: int = 3) -> np.ndarray:
    """The mean of a ``size x size`` window."""
    if size < 1:
        raise CnnlabError(f"box size {size}: expected >= 1")
    return np.full((size, size), 1.0 / size**2)


_FIXED: dict[str, tuple[list[list[float]], str]] = {
    "sobel-x": ([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "horizontal change (vertical edges)"),
    "sobel-y": ([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], "vertical change (horizontal edges)"),
    "scharr-x": ([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]], "Sobel-x with better rotation symmetry"),
    "scharr-y": ([[-3, -10, -3], [0, 0, 0], [3, 10, 3]], "Sobel-y with better rotation symmetry"),
    "prewitt-x": ([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], "horizontal change, no centre weighting"),
    "prewitt-y": ([[-1, -1, -1], [0, 0, 0], [1, 1, 1]], "vertical change, no centre weighting"),
    "laplacian": ([[0, 1, 0], [1, -4, 1], [0, 1, 0]], "second derivative, 4 neighbours"),
    "laplacian-8": ([[1, 1, 1], [1, -8, 1], [1, 1, 1]], "second derivative, 8 neighbours"),
    "sharpen": ([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], "the image plus minus its Laplacian"),
    "emboss": ([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], "a diagonal relief (asymmetric)"),
    "gaussian-273": (
        [
            [1, 4, 7, 4, 1],
            [4, 16, 26, 16, 4],
            [7, 26, 41, 26, 7],
            [4, 16, 26, 16, 4],
            [1, 4, 7, 4, 1],
        ],
        "the classic 5x5 integer Gaussian, divided by 273 (its sum)",
    ),  # fmt: skip
}


def kernel(name: str, size: int | None = None, sigma: float | None = None) -> np.ndarray:
    """A kernel by name: the fixed ones in :data:`KERNEL_NAMES`, ``box`` (``size``, default 3)
    and ``gaussian`` (``size`` default 5, ``sigma`` default 1)."""
    if name in _FIXED:
        values = np.array(_FIXED[name][0], dtype=float)
        return values / 273 if name == "gaussian-273" else values
    if name == "box":
        return box(size or 3)
    if name == "gaussian":
        return gaussian(size or 5, 1.0 if sigma is None else sigma)
    import difflib

    close = difflib.get_close_matches(name, KERNEL_NAMES, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(f"unknown kernel {name!r}.{hint} Kernels: {', '.join(KERNEL_NAMES)}")


KERNEL_NAMES = sorted([*_FIXED, "box", "gaussian"])


def describe(name: str) -> str:
    if name in _FIXED:
        return _FIXED[name][1]
    return {
        "box": "the mean of the window (size x size, each weight 1/size^2)",
        "gaussian": "exp(-(dx^2 + dy^2) / (2 sigma^2)), normalized to sum 1",
    }[name]


def correlate(
    image: np.ndarray, weights: np.ndarray, border: str = "reflect", convolve: bool = False
) -> np.ndarray:
    """Correlate a gray (``H x W``) or colour (``H x W x C``, each channel on its own) image
    with ``weights`` through cnnlab's correlation; ``convolve=True`` rotates the kernel by 180
    degrees first (true convolution). Output has the input's size."""
    if border not in BORDERS:
        raise CnnlabError(f"border {border!r}: expected one of {', '.join(BORDERS)}")
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2:
        raise CnnlabError(f"kernel must be 2-D, got shape {weights.shape}")
    if convolve:
        weights = weights[::-1, ::-1]
    image = np.asarray(image, dtype=float)
    if image.ndim == 3:
        return np.stack(
            [correlate(image[..., c], weights, border) for c in range(image.shape[2])], axis=-1
        )
    if image.ndim != 2:
        raise CnnlabError(f"image must be H x W or H x W x C, got shape {image.shape}")
    kh, kw = weights.shape
    # scipy's origin: the kernel's centre is element size // 2
    pads = ((kh // 2, kh - 1 - kh // 2), (kw // 2, kw - 1 - kw // 2))
    extended = np.pad(image, pads, mode=BORDERS[border])
    return correlate2d(extended, weights)


def edge_magnitude(image: np.ndarray, border: str = "reflect") -> np.ndarray:
    """``sqrt(sobel_x^2 + sobel_y^2)``: how strongly the brightness changes, in any direction."""
    gx = correlate(image, kernel("sobel-x"), border)
    gy = correlate(image, kernel("sobel-y"), border)
    return np.sqrt(gx**2 + gy**2)


def load_image(path: str | os.PathLike[str], gray: bool = False) -> np.ndarray:
    """A photo as float ``H x W`` (gray, ITU-R 601 luma as PIL's "L") or ``H x W x 3`` in
    0..255."""
    with opened(path) as image:
        image = image.convert("L" if gray or image.mode in ("L", "I", "F", "1") else "RGB")
        return np.asarray(image, dtype=float)


def to_uint8(result: np.ndarray, signed: bool) -> np.ndarray:
    """For saving: a signed response (edges) as its magnitude scaled to 0..255; a smoothing
    response clipped to 0..255."""
    if signed:
        magnitude = np.abs(result)
        top = magnitude.max()
        return (magnitude / top * 255 if top > 0 else magnitude).round().astype(np.uint8)
    return np.clip(result, 0, 255).round().astype(np.uint8)


def save_png(array: np.ndarray, path: Path) -> None:
    from ..runs import atomic_write

    image = Image.fromarray(array)
    atomic_write(Path(path), lambda handle: image.save(handle, format="PNG"))


def plot_correlation_vs_convolution(
    image: np.ndarray, weights: np.ndarray, path: Path, name: str, border: str = "reflect"
) -> float:
    """Input, correlation, convolution and their difference side by side; returns the largest
    absolute difference (0 for a kernel symmetric under 180-degree rotation)."""
    from .plots import _save, plt

    corr = correlate(image, weights, border)
    conv = correlate(image, weights, border, convolve=True)
    gray = (lambda a: a.mean(axis=-1)) if image.ndim == 3 else (lambda a: a)
    difference = float(np.abs(corr - conv).max())
    figure, axes = plt.subplots(1, 4, figsize=(14, 4))
    panels = [
        (gray(image), "input", "gray"), (gray(corr), "correlation (what CNN layers do)", "RdBu_r"),
        (gray(conv), "convolution (kernel rotated 180 degrees)", "RdBu_r"),
        (gray(corr - conv), f"difference (max {difference:.3g})", "RdBu_r"),
    ]  # fmt: skip
    for ax, (values, title, cmap) in zip(axes, panels):
        limit = np.abs(values).max() or 1
        kwargs = {} if cmap == "gray" else {"vmin": -limit, "vmax": limit}
        ax.imshow(values, cmap=cmap, **kwargs)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    figure.suptitle(f"{name} kernel:\n{np.array2string(weights, precision=3)}", fontsize=8)
    figure.tight_layout()
    _save(figure, path)
    return difference


def kernel_text(weights: np.ndarray) -> str:
    """The kernel as the terminal shows it; integer kernels keep integers."""
    if np.allclose(weights, weights.round()):
        return np.array2string(weights.astype(int))
    for denominator in (16, 273, 256, 9, 25):
        scaled = weights * denominator
        if np.allclose(scaled, scaled.round(), atol=1e-9):
            return f"{np.array2string(scaled.round().astype(int))} / {denominator}"
    return np.array2string(weights, precision=4, suppress_small=True)
