"""Tell what image some bytes are, cheaply, without trusting anyone's label.

Providers declare a MIME type; what gets saved is named after what the bytes really are.
This runs once per received image, so it avoids decoding pixels: PNG and WebP are checked
from their structure; a JPEG is decoded (at 1/8 scale) only when its end marker is missing.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from io import BytesIO

from PIL import Image, UnidentifiedImageError

# Pillow format name -> (MIME type, file extension). MPO is a JPEG carrying extra frames.
_FORMATS = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "MPO": ("image/jpeg", "jpg"),
    "WEBP": ("image/webp", "webp"),
}
_JPEG_END = b"\xff\xd9"


class NotAnImageError(ValueError):
    """The bytes are not a complete PNG, JPEG or WebP image. The message says why."""


@dataclass(frozen=True)
class ImageInfo:
    mime_type: str  # "image/png" | "image/jpeg" | "image/webp"
    extension: str  # "png" | "jpg" | "webp"
    width: int
    height: int


def detect_image(data: bytes) -> ImageInfo:
    """Identify a PNG, JPEG or WebP image and check it is whole; raise NotAnImageError if not."""
    if not data:
        raise NotAnImageError("empty image data")
    try:
        # A decompression-bomb warning must not escape as a warning: it means "reject".
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data), formats=("PNG", "JPEG", "WEBP")) as image:
                fmt, (width, height) = image.format, image.size
                if fmt in ("JPEG", "MPO"):
                    _check_jpeg_complete(image, data)
                else:
                    image.verify()  # PNG: walks every chunk and checks its CRC
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise NotAnImageError("image has too many pixels (decompression bomb?)") from None
    except UnidentifiedImageError:
        raise NotAnImageError(f"not a PNG, JPEG or WebP image ({_sniff(data)})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        # Pillow reports damaged files with any of these, depending on the format.
        raise NotAnImageError(f"damaged or truncated image: {exc}") from None
    if fmt not in _FORMATS or width < 1 or height < 1:
        raise NotAnImageError(f"unsupported image format {fmt}")
    mime_type, extension = _FORMATS[fmt]
    return ImageInfo(mime_type, extension, width, height)


def _check_jpeg_complete(image: Image.Image, data: bytes) -> None:
    # verify() is a no-op for JPEG. A whole file ends with the EOI marker; when it does not
    # (padding, camera trailers, or truncation) decode at 1/8 scale, which fails if truncated.
    if data[-64:].rstrip(b"\x00").endswith(_JPEG_END):
        return
    image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
    image.load()


def _sniff(data: bytes) -> str:
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "looks like an HTML page"
    if head.startswith((b"{", b"[")):
        return "looks like JSON"
    return f"{len(data)} bytes starting {data[:8].hex()}"
