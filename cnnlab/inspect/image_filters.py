"""Classic image filters — the hand-designed kernels CNNs learn versions of — applied to real
photos through cnnlab's own correlation (:func:`cnnlab.scratch.correlate2d`).

Border handling follows ``scipy.ndimage``: the image is extended past its edge (``reflect``:
``d c b a | a b c d | d c b a``, ``mirror``: ``d c b | a b c d | c b a``, ``nearest``, ``wrap``
or ``constant`` zeros), then correlated without padding, so the output has the input's size and
equals ``scipy.ndimage.correlate(image, kernel, mode=border)``. The default is ``mirror``, which
is OpenCV's ``BORDER_REFLECT_101``, the default of ``cv2.filter2D`` and ``cv2.GaussianBlur``: the
course's OpenCV exercise and ``cnnlab filter`` give the same picture, border included.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import CnnlabError, UnknownNameError
from ..images import opened
from ..scratch import correlate2d

# scipy.ndimage border mode -> numpy.pad mode
BORDERS = {
    "reflect": "symmetric",
    "mirror": "reflect",
    "nearest": "edge",
    "wrap": "wrap",
    "constant": "constant",
}
# OpenCV's names for the same borders (cv2.BORDER_REFLECT_101 is filter2D's default)
BORDER_ALIASES = {
    "reflect101": "mirror",
    "reflect_101": "mirror",
    "reflect-101": "mirror",
    "default": "mirror",
    "replicate": "nearest",
}
DEFAULT_BORDER = "mirror"  # = OpenCV's BORDER_REFLECT_101 (BORDER_DEFAULT)


def border_mode(name: str) -> str:
    """A border's scipy name from scipy's or OpenCV's name (``reflect101`` -> ``mirror``)."""
    mode = BORDER_ALIASES.get(str(name).lower(), str(name).lower())
    if mode not in BORDERS:
        known = ", ".join([*BORDERS, *BORDER_ALIASES])
        raise CnnlabError(
            f"border {name!r}: expected one of {known} (default {DEFAULT_BORDER}, OpenCV's "
            "filter2D default)"
        )
    return mode


MAX_SIZE = 255  # a 255 x 255 kernel is 65,025 multiply-adds per pixel and channel
MAX_SIGMA = 1000.0  # far beyond half of MAX_SIZE: every weight within 1% of a box filter's

# OpenCV's getGaussianKernel with sigma <= 0 takes these fixed (binomial-like) kernels for the
# small sizes, not the sampled formula (getGaussianKernelBitExact in imgproc/src/smooth)
OPENCV_SMALL_GAUSSIANS = {
    1: [1],
    3: [1, 2, 1],
    5: [1, 4, 6, 4, 1],
    7: [2, 7, 14, 18, 14, 7, 2],
    9: [4, 13, 30, 51, 60, 51, 30, 13, 4],
}


def check_size(size: object, what: str = "--size") -> int:
    """An odd whole number from 1 to :data:`MAX_SIZE`, or a one-line error naming it."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise CnnlabError(f"{what} {size!r}: expected an odd whole number (3, 5, 7, ...)")
    if not 1 <= size <= MAX_SIZE or size % 2 == 0:
        raise CnnlabError(
            f"{what} {size}: expected an odd size from 1 to {MAX_SIZE} (3, 5, 7, ...), so that "
            "the kernel has a centre pixel"
        )
    return int(size)


def check_sigma(sigma: float | None) -> float | None:
    """``None``, 0 (derive it from the size as OpenCV does) or a finite positive number up to
    :data:`MAX_SIGMA`; anything else is a one-line error naming it."""
    if sigma is None:
        return None
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.floating)):
        raise CnnlabError(f"--sigma {sigma!r}: expected a number of pixels, e.g. 1.5")
    if not math.isfinite(sigma) or not 0 <= sigma <= MAX_SIGMA:
        raise CnnlabError(
            f"--sigma {sigma}: expected a number of pixels greater than 0 and at most "
            f"{MAX_SIGMA:g} (0: derived from --size as OpenCV does), e.g. --sigma 1.5"
        )
    return float(sigma)


def opencv_sigma(size: int) -> float:
    """OpenCV's sigma for a requested sigma <= 0: ``0.3 * ((size - 1) / 2 - 1) + 0.8``, which is
    ``0.15 * size + 0.35``, rounded once as OpenCV's fused multiply-add rounds it."""
    return float(Fraction(size) * Fraction(0.15) + Fraction(0.35))


def sigma_note(size: int) -> str:
    """What sigma 0 means for this size, as ``cnnlab filter`` prints it."""
    if size in OPENCV_SMALL_GAUSSIANS:
        weights = OPENCV_SMALL_GAUSSIANS[size]
        return (
            f"sigma 0: derived from the size as OpenCV does; for size {size} that is its fixed "
            f"kernel [{' '.join(map(str, weights))}] / {sum(weights)}"
        )
    return (
        f"sigma 0: derived from the size as OpenCV does: 0.3 * (({size} - 1) / 2 - 1) + 0.8 = "
        f"{opencv_sigma(size):.4g}"
    )


def gaussian_1d(size: int, sigma: float | None = None) -> np.ndarray:
    """``g[i] = exp(-(i - c)^2 / (2 sigma^2))`` for ``i = 0..size-1``, ``c = (size - 1) / 2``,
    divided by its sum, computed as OpenCV's ``getGaussianKernel`` computes it. Without
    ``sigma`` (``None`` or 0), OpenCV's rule: its fixed kernels for sizes 1 to 9, else
    ``sigma = 0.3 * ((size - 1) / 2 - 1) + 0.8``."""
    size = check_size(size, "Gaussian size")
    sigma = check_sigma(sigma)
    if not sigma and size in OPENCV_SMALL_GAUSSIANS:
        weights = np.array(OPENCV_SMALL_GAUSSIANS[size], dtype=float)
        return weights / weights.sum()  # a power of two: exact
    sigma = sigma or opencv_sigma(size)
    scale = -0.125 / (sigma * sigma)  # doubled offsets x = 2 (i - c), as OpenCV writes it
    half = size // 2
    values = [math.exp(float(x * x) * scale) for x in range(1 - size, 0, 2)]  # left of centre
    total = 0.0
    for value in values:  # summed in OpenCV's order, then mirrored, plus the centre's 1
        total += value
    scale_to_one = 1.0 / (total * 2 + 1.0)
    g = np.empty(size)
    g[:half] = [value * scale_to_one for value in values]
    g[half + 1 :] = g[:half][::-1]
    g[half] = scale_to_one
    return g


def gaussian(size: int = 5, sigma: float | None = 1.0) -> np.ndarray:
    """The 2-D Gaussian: the outer product of two 1-D ones (it is separable)."""
    g = gaussian_1d(size, sigma)
    return np.outer(g, g)


def box(size: int = 3) -> np.ndarray:
    """The mean of a ``size x size`` window (``size`` odd, so the window has a centre)."""
    size = check_size(size, "box size")
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
    ),
}


def kernel(name: str, size: int | None = None, sigma: float | None = None) -> np.ndarray:
    """A kernel by name: the fixed ones in :data:`KERNEL_NAMES`, ``box`` (``size``, default 3)
    and ``gaussian`` (``size`` default 5, ``sigma`` default 1)."""
    if name in _FIXED:
        values = np.array(_FIXED[name][0], dtype=float)
        return values / 273 if name == "gaussian-273" else values
    if name == "box":
        return box(3 if size is None else size)
    if name == "gaussian":
        return gaussian(5 if size is None else size, 1.0 if sigma is None else sigma)
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
    image: np.ndarray, weights: np.ndarray, border: str = DEFAULT_BORDER, convolve: bool = False
) -> np.ndarray:
    """Correlate a gray (``H x W``) or colour (``H x W x C``, each channel on its own) image
    with ``weights`` through cnnlab's correlation; ``convolve=True`` rotates the kernel by 180
    degrees first (true convolution). Output has the input's size."""
    border = border_mode(border)
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
    # im2col holds kh * kw values per output pixel: take the rows in bands of at most
    # BAND_BYTES, so that a large kernel on a large photo needs no more memory than that
    band = max(1, BAND_BYTES // (8 * image.shape[1] * kh * kw))
    if band >= image.shape[0]:
        return correlate2d(extended, weights)
    return np.concatenate(
        [
            correlate2d(extended[top : top + band + kh - 1], weights)
            for top in range(0, image.shape[0], band)
        ]
    )


BAND_BYTES = 256 * 2**20
MAX_WORK = 10**9  # multiply-adds: im2col runs about 10^8 a second, so at most ~10 seconds


def check_fits(weights: np.ndarray, image: np.ndarray) -> None:
    """Refuse a kernel larger than the image (it would see little but the border's
    reflections) or one whose correlation would take minutes, before any work is done."""
    kh, kw = weights.shape
    height, width = image.shape[:2]
    shown = f"{width}x{height}" + (f" {image.shape[2]}-channel" if image.ndim == 3 else "")
    shorter = min(height, width)
    if kh > shorter or kw > shorter:
        raise CnnlabError(
            f"the {kh}x{kw} kernel is larger than the {shown} image; give a larger image or "
            f"--size at most {shorter - (1 - shorter % 2)}"
        )
    work = image.size * kh * kw
    if work > MAX_WORK:
        raise CnnlabError(
            f"--size {kh} on a {shown} image: {work:.2g} multiply-adds (more than "
            f"{MAX_WORK:.0e}, about 10 seconds); give a smaller --size, --gray, or a smaller image"
        )


def edge_magnitude(image: np.ndarray, border: str = DEFAULT_BORDER) -> np.ndarray:
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
    from ..run_folder import atomic_write

    image = Image.fromarray(array)
    atomic_write(Path(path), lambda handle: image.save(handle, format="PNG"))


def plot_correlation_vs_convolution(
    image: np.ndarray, weights: np.ndarray, path: Path, name: str, border: str = DEFAULT_BORDER
) -> float:
    """Input, correlation, convolution and their difference side by side; returns the largest
    absolute difference (0 for a kernel symmetric under 180-degree rotation)."""
    from .plots import save_figure, subplots  # matplotlib only when drawing

    corr = correlate(image, weights, border)
    conv = correlate(image, weights, border, convolve=True)
    gray = (lambda a: a.mean(axis=-1)) if image.ndim == 3 else (lambda a: a)
    difference = float(np.abs(corr - conv).max())
    figure, axes = subplots(1, 4, figsize=(14, 4))
    panels = [
        (gray(image), "input", "gray"),
        (gray(corr), "correlation (what CNN layers do)", "RdBu_r"),
        (gray(conv), "convolution (kernel rotated 180 degrees)", "RdBu_r"),
        (gray(corr - conv), f"difference (max {difference:.3g})", "RdBu_r"),
    ]
    for ax, (values, title, cmap) in zip(axes, panels):
        limit = np.abs(values).max() or 1
        kwargs = {} if cmap == "gray" else {"vmin": -limit, "vmax": limit}
        ax.imshow(values, cmap=cmap, **kwargs)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    figure.suptitle(f"{name} kernel:\n{np.array2string(weights, precision=3)}", fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)
    return difference


def plot_side_by_side(
    image: np.ndarray, result: np.ndarray, signed: bool, path: Path, title: str
) -> None:
    """The photo and its filtered version next to each other, as the course's OpenCV exercise
    shows them (``plt.subplot(121)``, ``plt.subplot(122)``): a signed response (edges) as its
    magnitude, a smoothing response clipped to 0..255, both in gray for a gray photo."""
    from .plots import save_figure, subplots  # matplotlib only when drawing

    figure, axes = subplots(1, 2, figsize=(10, 5))
    shown = to_uint8(result, signed)
    for ax, values, label in zip(axes, (image, shown), ("original", title)):
        values = np.clip(values, 0, 255).astype(np.uint8)
        ax.imshow(values, cmap="gray" if values.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    figure.tight_layout()
    save_figure(figure, path)


def kernel_text(weights: np.ndarray) -> str:
    """The kernel as the terminal shows it; integer kernels keep integers."""
    if np.allclose(weights, weights.round()):
        return np.array2string(weights.astype(int))
    for denominator in (16, 273, 256, 9, 25, 64, 4096, 65536):
        scaled = weights * denominator
        if np.allclose(scaled, scaled.round(), atol=1e-9):
            return f"{np.array2string(scaled.round().astype(int))} / {denominator}"
    return np.array2string(weights, precision=4, suppress_small=True)
