"""Reading image files: one place that opens them with clear errors, and one that fits an
image to a model's input (channels and size), saying what it changed."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import CnnlabError


@contextlib.contextmanager
def opened(path: str | os.PathLike[str]) -> Iterator[Image.Image]:
    """The decoded image at ``path``; a missing file or one that does not decode (corrupt,
    not an image, a decompression bomb) is a :class:`CnnlabError` naming the file.

    Only opening and decoding are checked: an error raised by the caller's own code inside the
    ``with`` block passes through unchanged."""
    try:
        image = Image.open(path)
    except FileNotFoundError:
        raise CnnlabError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CnnlabError(f"{path}: is a folder; give an image file (PNG or JPEG)") from None
    except PermissionError:
        raise CnnlabError(f"{path}: permission denied; give an image file you can read") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise _not_an_image(path, err) from None
    with image:
        try:
            image.load()
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise _not_an_image(path, err) from None
        yield image


def _not_an_image(path: str | os.PathLike[str], err: Exception) -> CnnlabError:
    return CnnlabError(
        f"{path}: not an image cnnlab can read ({type(err).__name__}); give a PNG or JPEG file"
    )


def fit_to_input(image: Image.Image, channels: int, size: int) -> tuple[np.ndarray, list[str]]:
    """``image`` as a uint8 ``channels x size x size`` array (gray for 1 channel, RGB for 3,
    bilinear resize), and notes on every change made."""
    notes = []
    mode = "L" if channels == 1 else "RGB"
    if image.mode != mode:
        notes.append(f"converted {image.mode} to {mode}")
        image = image.convert(mode)
    if image.size != (size, size):
        notes.append(f"resized {image.size[0]}x{image.size[1]} to {size}x{size}")
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return (array[None] if array.ndim == 2 else array.transpose(2, 0, 1)), notes
