"""Profile pictures: check an uploaded image and re-encode it as a clean JPEG (CPU-bound; call it in an executor).

The output is built from pixels only: EXIF orientation is applied first, then every piece of metadata (EXIF with
GPS, ICC profile, XMP, comments) is left behind, so nothing a camera wrote ever reaches another user.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image

from core.errors import Invalid, PayloadTooLarge, UnsupportedMedia

#: Content types accepted on upload, and the Pillow format each must turn out to be.
ACCEPTED_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
OUTPUT_TYPE = "image/jpeg"
#: Decompression-bomb guard: refuse images with more pixels than this before decoding them.
MAX_PIXELS = 50_000_000
JPEG_QUALITY = 85
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class Picture:
    data: bytes
    content_type: str
    width: int
    height: int


def check_content_type(content_type: str) -> None:
    """Refuse (415) a body not labelled as one of the accepted image types."""
    if content_type not in ACCEPTED_TYPES:
        raise UnsupportedMedia("send the picture as image/jpeg, image/png or image/webp", code="unsupported_media")


def _invalid() -> Invalid:
    return Invalid("this file is not a JPEG, PNG or WebP picture we can read", code="invalid_image")


def normalise_picture(raw: bytes, max_side: int) -> Picture:
    """A metadata-free JPEG of `raw`, upright and at most `max_side` pixels on its longer side.

    Raises `Invalid` (`invalid_image`) for anything Pillow cannot read or that is not JPEG, PNG or WebP, and
    `PayloadTooLarge` (`too_large`) for an image with more than `MAX_PIXELS` pixels, checked before decoding.
    """
    try:
        source = Image.open(io.BytesIO(raw))
    except Image.DecompressionBombError:
        raise PayloadTooLarge("the picture has too many pixels", code="too_large") from None
    except Exception:  # noqa: BLE001 - Pillow's parsers raise many types for hostile input; all mean "not readable"
        raise _invalid() from None
    with source:
        if source.format not in ACCEPTED_TYPES.values():
            raise _invalid()
        width, height = source.size
        if width < 1 or height < 1:
            raise _invalid()
        if width * height > MAX_PIXELS:
            raise PayloadTooLarge("the picture has too many pixels", code="too_large")
        try:
            return _reencode(source, max_side)
        except (Invalid, PayloadTooLarge):
            raise
        except Exception:  # noqa: BLE001 - truncated or corrupt pixel data surfaces only while decoding
            raise _invalid() from None


def _reencode(source: Image.Image, max_side: int) -> Picture:
    orientation = source.getexif().get(_ORIENTATION_TAG, 1)
    if source.format == "JPEG":
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the picture is far larger than needed (as thumbnail does).
        longest = max(source.size)
        if longest > 2 * max_side:
            factor = 2 * max_side / longest
            source.draft("RGB", (max(1, math.ceil(source.width * factor)), max(1, math.ceil(source.height * factor))))
    image = _to_rgb(source)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if orientation in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[orientation])
    # A fresh image holds pixels only: no EXIF, GPS, ICC profile, XMP or comment can follow.
    clean = Image.frombytes("RGB", image.size, image.tobytes())
    out = io.BytesIO()
    clean.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return Picture(out.getvalue(), OUTPUT_TYPE, clean.width, clean.height)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels (the first frame of an animation); transparent areas become white rather than black."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I;16"):
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    return image.convert("RGB")
