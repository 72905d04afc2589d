"""Reading image files: the one place that decodes them (a file by path, a data set's member by
its bytes) and turns what PIL raises into a clear error, and one that fits an image to a
model's input (channels and size), saying what it changed."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import CnnlabError, DataError, reason

# What PIL raises for bytes it cannot decode: corrupt or truncated, not an image at all
# (UnidentifiedImageError is an OSError), or a decompression bomb.
DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError)


ORIENTATION = 0x0112  # the EXIF tag a camera sets instead of turning the pixels
SIDEWAYS = (5, 6, 7, 8)  # orientations that swap width and height


def upright(image: Image.Image) -> Image.Image:
    """``image`` the way it is meant to be seen: a phone saves a portrait photo as landscape
    pixels plus an EXIF orientation tag, which browsers and photo viewers apply; so does
    cnnlab (torchvision's and Keras's loaders do not). Untagged images come back as they are."""
    if image.getexif().get(ORIENTATION, 1) in (1, None):
        return image
    return ImageOps.exif_transpose(image)


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the image as seen, from its header: swapped for a sideways tag."""
    width, height = image.size
    sideways = image.getexif().get(ORIENTATION, 1) in SIDEWAYS
    return (height, width) if sideways else (width, height)


@contextlib.contextmanager
def opened(path: str | os.PathLike[str]) -> Iterator[Image.Image]:
    """The decoded image at ``path``, turned upright (:func:`upright`); a missing file or one
    that does not decode (corrupt, not an image, a decompression bomb) is a
    :class:`CnnlabError` naming the file.

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
            image = upright(image)
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


def resize_and_crop(image: Image.Image, size: int) -> tuple[Image.Image, str | None]:
    """``image`` with its shorter side resized to ``size`` (bilinear; PIL antialiases when it
    shrinks) and then cut to the central ``size x size`` square, so nothing is squashed; and a
    note on what was done (None when the image already was ``size x size``)."""
    width, height = image.size
    if (width, height) == (size, size):
        return image, None
    scale = size / min(width, height)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    if new != image.size:
        image = image.resize(new, Image.Resampling.BILINEAR)
    note = f"resized {width}x{height} to {new[0]}x{new[1]}"
    if new != (size, size):
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        image = image.crop((left, top, left + size, top + size))
        note += f", centre-cropped to {size}x{size}"
    return image, note


def to_mode(image: Image.Image, mode: str) -> tuple[Image.Image, list[str]]:
    """``image`` in ``mode`` ("L" or "RGB"), with notes. Transparent pixels are first laid on
    white (a converted alpha channel would be dropped, and what was hidden behind it shown);
    then the colours are converted."""
    notes = []
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:  # some pixel is (partly) transparent
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            notes.append(f"composited the transparent pixels of {image.mode} on white")
            image = Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode != mode:
        notes.append(f"converted {image.mode} to {mode}")
        image = image.convert(mode)
    return image, notes


def fit_to_input(
    image: Image.Image, channels: int, size: int, squash: bool = False
) -> tuple[np.ndarray, list[str]]:
    """``image`` as a uint8 ``channels x size x size`` array (gray for 1 channel, RGB for 3),
    and notes on every change made. The aspect ratio is kept: the shorter side is resized to
    ``size`` and the centre cut out (:func:`resize_and_crop`); ``squash`` resizes the whole
    image to ``size x size`` instead (bilinear)."""
    image, notes = to_mode(image, "L" if channels == 1 else "RGB")
    if squash and image.size != (size, size):
        notes.append(f"resized {image.size[0]}x{image.size[1]} to {size}x{size} (squashed)")
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    elif not squash:
        image, note = resize_and_crop(image, size)
        notes += [note] if note else []
    array = np.asarray(image, dtype=np.uint8)
    return (array[None] if array.ndim == 2 else array.transpose(2, 0, 1)), notes


def fit_resized_crop(
    image: Image.Image, channels: int, size: int, resize: int | None = None, squash: bool = False
) -> tuple[np.ndarray, list[str]]:
    """``image`` as a model trained on ImageNet reads it (torchvision's weights' own
    transforms): the shorter side resized to ``resize`` (256 for a 224 input; bilinear), then
    the central ``size x size``, as a uint8 ``channels x size x size`` array, with notes.
    Without ``resize``, or with ``squash``, it is :func:`fit_to_input`."""
    if squash or not resize:
        return fit_to_input(image, channels, size, squash)
    image, notes = to_mode(image, "L" if channels == 1 else "RGB")
    width, height = image.size
    resize = max(resize, size)
    longer = int(resize * max(width, height) / min(width, height))  # torchvision's rounding
    new = (resize, longer) if width <= height else (longer, resize)
    if new != image.size:
        image = image.resize(new, Image.Resampling.BILINEAR)
    left, top = (int(round((side - size) / 2.0)) for side in new)
    image = image.crop((left, top, left + size, top + size))
    notes.append(
        f"resized {width}x{height} to {new[0]}x{new[1]} (shorter side {resize}), "
        f"centre-cropped to {size}x{size}, as ImageNet models read photos"
    )
    array = np.asarray(image, dtype=np.uint8)
    return (array[None] if array.ndim == 2 else array.transpose(2, 0, 1)), notes
