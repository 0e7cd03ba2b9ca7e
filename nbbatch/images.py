"""The one table of image formats nbbatch reads and writes, and telling what some bytes are.

Providers declare a MIME type; what gets saved is named after what the bytes really are.
`detect_image` runs once per received image. A PNG or WebP is decoded whole before it counts
(valid chunk checksums say nothing of the pixel data inside them) and a PNG's rows are counted
against its header. A JPEG must end with its end marker, and is decoded (at 1/8 scale) when it
does not: libjpeg fills most damage inside the data with grey blocks rather than report it, so
decoding every JPEG would cost about 10 ms per megabyte for little. Nothing over MAX_PIXELS is
decoded at all.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from io import BytesIO

from PIL import Image, UnidentifiedImageError


@dataclass(frozen=True)
class ImageFormat:
    pillow: str  # Pillow's format name
    mime_type: str
    extension: str


PNG = ImageFormat("PNG", "image/png", "png")
JPEG = ImageFormat("JPEG", "image/jpeg", "jpg")
WEBP = ImageFormat("WEBP", "image/webp", "webp")
FORMATS = (PNG, JPEG, WEBP)
_BY_PILLOW = {f.pillow: f for f in FORMATS} | {"MPO": JPEG}  # MPO: a JPEG with extra frames
_BY_MIME = {f.mime_type: f for f in FORMATS}
MAX_PIXELS = 40_000_000  # a 4K image is 17 megapixels; decoding more is a bomb, not a picture
_JPEG_END = b"\xff\xd9"


class NotAnImageError(ValueError):
    """The bytes are not a complete PNG, JPEG or WebP image. The message says why."""


@dataclass(frozen=True)
class ImageInfo:
    mime_type: str  # "image/png" | "image/jpeg" | "image/webp"
    extension: str  # "png" | "jpg" | "webp"
    width: int
    height: int


def sniff(data: bytes) -> ImageFormat | None:
    """The format the first bytes announce (magic numbers only; nothing is decoded)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    return None


def sniff_mime(data: bytes) -> str:
    found = sniff(data)
    return found.mime_type if found else "application/octet-stream"


def format_for(mime_type: str) -> ImageFormat | None:
    """The table's entry for a MIME type ("image/png"...), None for any other type."""
    return _BY_MIME.get(mime_type)


def format_named(name: str) -> ImageFormat:
    """The entry an API's format name stands for: "png", "jpeg" (or "jpg"), "webp"."""
    return {"png": PNG, "jpeg": JPEG, "jpg": JPEG, "webp": WEBP}[name.lower()]


def extension_for(mime_type: str) -> str:
    found = _BY_MIME.get(mime_type)
    return found.extension if found else "bin"


def detect_image(data: bytes) -> ImageInfo:
    """Identify a PNG, JPEG or WebP image and check it is whole; raise NotAnImageError if not."""
    if not data:
        raise NotAnImageError("empty image data")
    try:
        # A decompression-bomb warning must not escape as a warning: it means "reject".
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data), formats=[f.pillow for f in FORMATS]) as image:
                fmt, (width, height) = image.format, image.size
                if width * height > MAX_PIXELS:
                    raise Image.DecompressionBombError(f"{width}x{height}")
                if fmt == "PNG":
                    image.verify()  # every chunk's CRC; the pixels are decoded below
                    _check_png_rows(data, width, height)
                elif fmt in ("JPEG", "MPO"):
                    _check_jpeg_complete(image, data)
                else:
                    image.load()
            if fmt == "PNG":  # a verified image cannot be loaded: Pillow wants it opened again
                with Image.open(BytesIO(data), formats=["PNG"]) as image:
                    image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise NotAnImageError("image has too many pixels (decompression bomb?)") from None
    except UnidentifiedImageError:
        raise NotAnImageError(f"not a PNG, JPEG or WebP image ({_describe(data)})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
            zlib.error) as exc:
        # Pillow reports damaged files with any of these, depending on the format.
        raise NotAnImageError(f"damaged or truncated image: {exc}") from None
    found = _BY_PILLOW.get(fmt or "")
    if found is None or width < 1 or height < 1:
        raise NotAnImageError(f"unsupported image format {fmt}")
    return ImageInfo(found.mime_type, found.extension, width, height)


def dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image's header alone, or None if it cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data), formats=[f.pillow for f in FORMATS]) as image:
                return image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _check_jpeg_complete(image: Image.Image, data: bytes) -> None:
    # A whole file ends with the EOI marker; when it does not (padding, camera trailers, or
    # truncation) decode at 1/8 scale, which fails if truncated.
    if data[-64:].rstrip(b"\x00").endswith(_JPEG_END):
        return
    image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
    image.load()


# PNG colour type -> channels; the seven passes of Adam7 interlacing as (x0, y0, dx, dy).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))


def _check_png_rows(data: bytes, width: int, height: int) -> None:
    """Pillow fills the rows a PNG's pixel data stops short of with black, and calls it a
    picture: count the rows the data holds. ValueError when it holds fewer than the header
    says."""
    depth, colour, interlaced = data[24], data[25], data[28]
    bits = _PNG_CHANNELS.get(colour, 4) * depth

    def row_bytes(pixels: int) -> int:
        return 1 + (pixels * bits + 7) // 8  # a filter byte, then the pixels

    if interlaced:
        passes = [((width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy)
                  for x0, y0, dx, dy in _ADAM7]
        expected = sum(rows * row_bytes(cols) for cols, rows in passes if cols and rows)
    else:
        expected = height * row_bytes(width)
    inflate, pos, got = zlib.decompressobj(), 8, 0
    while pos + 8 <= len(data) and got < expected:
        length, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if kind == b"IDAT":
            got += len(inflate.decompress(data[pos + 8:pos + 8 + length], expected - got))
        pos += 12 + length
    if got < expected:
        raise ValueError(f"the pixel data holds {got} of the {expected} bytes its size needs")


def _describe(data: bytes) -> str:
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "looks like an HTML page"
    if head.startswith((b"{", b"[")):
        return "looks like JSON"
    return f"{len(data)} bytes starting {data[:8].hex()}"
