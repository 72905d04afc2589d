"""An uploaded picture as a model's input: the limits (bytes, pixels, formats: one constant
each, every message derived from it), the decoding, and the fit (aspect ratio kept by a centre
crop, as ``cnnlab predict`` reads photos, or the whole picture squashed with ``fit=squash``)."""

from __future__ import annotations

import io
from typing import Any, BinaryIO

from PIL import Image

from ..images import DECODE_ERRORS, fit_resized_crop, upright
from ..runs.sources import ModelSource
from .problems import Refusal

MAX_UPLOAD_BYTES = 5 * 2**20  # 5 MiB
MAX_UPLOAD_PIXELS = 25_000_000  # width x height; larger files are decompression bombs here
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
FITS = ("crop", "squash")  # keep the aspect ratio (centre crop) or squash to a square


def mib(size: int) -> str:
    """A byte count in MiB as messages write it (``5 MiB``, ``5.5 MiB``)."""
    return f"{size / 2**20:g} MiB"


def formats() -> str:
    """The accepted formats as a message names them: ``PNG, JPEG, GIF, BMP or WEBP``."""
    return ", ".join(UPLOAD_FORMATS[:-1]) + f" or {UPLOAD_FORMATS[-1]}"


def upload_too_large() -> str:
    return (
        f"the upload is larger than {mib(MAX_UPLOAD_BYTES)}: expected an image file of at most "
        f"{mib(MAX_UPLOAD_BYTES)}; send a smaller or more compressed picture"
    )


def body_too_large(limit: int) -> str:
    """The answer to a (non-upload) body over ``limit`` bytes."""
    return (
        f"the request body is larger than {mib(limit)}: expected at most {mib(limit)} of JSON "
        f"(pixels of an image up to 3x512x512); send a smaller image"
    )


def read_upload(stream: BinaryIO, source: ModelSource, fit: str = "crop") -> dict[str, Any]:
    """The picture in ``stream`` as ``source``'s uint8 input (``pixels``, C x H x W lists) with
    ``notes`` on every change (transparency laid on white, colours converted, resized and
    centre-cropped, or squashed with ``fit="squash"``). Refusals: too many bytes or pixels (413),
    a format not in :data:`UPLOAD_FORMATS` (415), not a readable image (400)."""
    if fit not in FITS:
        raise Refusal(422, f"fit {fit!r}: expected one of {', '.join(FITS)}; leave it out to crop")
    data = stream.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise Refusal(413, upload_too_large())
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in UPLOAD_FORMATS:
                raise Refusal(
                    415,
                    f"{image.format} images are not accepted: expected {formats()}; save the "
                    "picture in one of these formats",
                )
            width, height = image.size
            if width * height > MAX_UPLOAD_PIXELS:
                raise Refusal(
                    413,
                    f"image of {width}x{height} pixels is too large: expected at most "
                    f"{MAX_UPLOAD_PIXELS:,} pixels (width x height); shrink it first",
                )
            image.load()
            image = upright(image)  # as the browser showed it
            array, notes = fit_resized_crop(
                image, source.in_channels, source.input_size, source.resize, fit == "squash"
            )
    except Image.DecompressionBombError:
        raise Refusal(
            413,
            f"the image has too many pixels (a decompression bomb): expected at most "
            f"{MAX_UPLOAD_PIXELS:,}; shrink it first",
        ) from None
    except DECODE_ERRORS:
        raise Refusal(
            400,
            f"the upload is not a readable image: expected a {formats()} file; open it in an "
            "image viewer and save it again",
        ) from None
    return {"pixels": array.tolist(), "notes": notes}
