import io
import struct
import zlib

import pytest
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from nbbatch.images import ImageInfo, NotAnImageError, detect_image


def encode(fmt: str, size=(64, 48), **options) -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert("RGB").save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("PNG", ImageInfo("image/png", "png", 64, 48)),
        ("JPEG", ImageInfo("image/jpeg", "jpg", 64, 48)),
        ("WEBP", ImageInfo("image/webp", "webp", 64, 48)),
    ],
)
def test_detects_supported_formats(fmt, expected):
    assert detect_image(encode(fmt)) == expected


def test_jpeg_with_bytes_after_the_end_marker_is_accepted():
    assert detect_image(encode("JPEG") + b"TRAILER" * 20).mime_type == "image/jpeg"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><title>502</title></html>", "HTML"),
        (b'{"error": "nope"}', "JSON"),
        (b"\x00" * 100, "not a PNG, JPEG or WebP"),
        (encode("GIF"), "not a PNG, JPEG or WebP"),
        (encode("BMP"), "not a PNG, JPEG or WebP"),
    ],
)
def test_rejects_what_is_not_a_supported_image(data, reason):
    with pytest.raises(NotAnImageError, match=reason):
        detect_image(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_rejects_truncated_images(fmt, keep):
    data = encode(fmt, size=(256, 256), **({"quality": 95} if fmt != "PNG" else {}))
    with pytest.raises(NotAnImageError):
        detect_image(data[: int(len(data) * keep)])


def test_rejects_a_header_only_png():
    with pytest.raises(NotAnImageError):
        detect_image(encode("PNG")[:40])


def test_rejects_decompression_bombs_without_a_warning_escaping():
    # Only the header matters: Pillow refuses (or warns about) the size before any pixel data.
    for side in (10_000, 100_000):  # 100 Mpx: Pillow warns; 10 Gpx: Pillow raises
        with pytest.raises(NotAnImageError, match="too many pixels"):
            detect_image(png_header(side, side))


def png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_a_complete_jpeg_is_not_decoded(monkeypatch):
    # Detection runs on every received image; pixels are decoded only for a JPEG whose end
    # marker is missing. (Speed itself is measured by the benchmarks, not by a timed test.)
    data = encode("JPEG", size=(512, 512))

    def fail(self):
        raise AssertionError("decoded pixels")

    monkeypatch.setattr(JpegImageFile, "load", fail)
    assert detect_image(data).width == 512
