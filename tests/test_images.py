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


def png_with_pixels(width: int, height: int, pixel_data: bytes) -> bytes:
    """A PNG whose every chunk checksum is right, whatever `pixel_data` (the IDAT) holds."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixel_data)
            + chunk(b"IEND", b""))


ROW = b"\x00" + b"\x80" * 3 * 16  # one scanline of a 16-pixel-wide RGB image, filter 0


@pytest.mark.parametrize(("pixel_data", "what"), [
    (b"not zlib at all" * 10, "pixel data that is not compressed data"),
    (zlib.compress(ROW * 3), "fewer rows than the header says"),
    (zlib.compress(ROW * 16)[:-9], "compressed data cut short"),
    (zlib.compress(b"\x07" + ROW[1:] + ROW * 15), "an unknown row filter"),
])
def test_a_png_with_valid_checksums_but_pixels_that_do_not_decode_is_refused(pixel_data, what):
    data = png_with_pixels(16, 16, pixel_data)
    Image.open(io.BytesIO(data)).verify()  # what used to be all the checking there was
    with pytest.raises(NotAnImageError, match="damaged or truncated image"):
        detect_image(data)


def test_a_whole_png_with_the_same_construction_is_accepted():
    assert detect_image(png_with_pixels(16, 16, zlib.compress(ROW * 16))).width == 16


def test_a_complete_jpeg_is_not_decoded(monkeypatch):
    # Detection runs on every received image; a JPEG's pixels are decoded only when its end
    # marker is missing. (Speed itself is measured by the benchmarks, not by a timed test.)
    data = encode("JPEG", size=(512, 512))

    def fail(self):
        raise AssertionError("decoded pixels")

    monkeypatch.setattr(JpegImageFile, "load", fail)
    assert detect_image(data).width == 512


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_png_and_webp_are_decoded_whole(monkeypatch, fmt):
    loaded = []
    real_load = Image.Image.load

    def load(self):
        loaded.append(self.format)
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", load)
    detect_image(encode(fmt))
    assert fmt in loaded


def test_nothing_over_the_pixel_cap_is_decoded():
    with pytest.raises(NotAnImageError, match="too many pixels"):
        detect_image(png_header(8000, 6000))  # 48 Mpx: under Pillow's own limit, over ours
