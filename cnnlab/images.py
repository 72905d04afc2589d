"""Reading image files: the one place that decodes them (a file by path, a data set's member by
its bytes) and turns what PIL raises into a clear error, and one that fits an image to a
model's input (channels and size), saying what it changed."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import CnnlabError, DataError, reason

# What PIL raises for bytes it cannot decode: corrupt or truncated, not an image at all
# (UnidentifiedImageError is an OSError), or a decompression bomb.
DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError)


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
    except DECODE_ERRORS as err:
        raise _not_an_image(path, err) from None
    with image:
        try:
            image.load()
        except DECODE_ERRORS as err:
            raise _not_an_image(path, err) from None
        yield image


@contextlib.contextmanager
def decoded(data: bytes, name: str) -> Iterator[Image.Image]:
    """The image in one file's ``data`` (a data set's member; ``name`` says which, in
    messages). Whatever PIL raises while the ``with`` block reads or converts it (corrupt,
    truncated, not an image, a decompression bomb) is a :class:`DataError` naming ``name``."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            yield image
    except DECODE_ERRORS as err:
        raise DataError(f"{name}: not a readable image ({reason(err)})") from None


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
