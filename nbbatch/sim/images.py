"""Deterministic placeholder images for the simulator: one prompt, always the same picture.

Colours and shapes come from sha256(prompt, variant); the prompt is written on the image so a
folder of results can be checked by eye. Sizes are the real 1K outputs of Gemini 3 Pro Image
divided by `scale`, so files are small and drawing takes a few milliseconds.
"""

from __future__ import annotations

import hashlib
import io
import textwrap
import zlib
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

# Gemini 3 Pro Image 1K output sizes, as the API documents them.
SIZES_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (848, 1264),
    "3:2": (1264, 848),
    "3:4": (896, 1200),
    "4:3": (1200, 896),
    "4:5": (928, 1152),
    "5:4": (1152, 928),
    "9:16": (768, 1376),
    "16:9": (1376, 768),
    "21:9": (1584, 672),
}

_LINE_SPACING = 2
# Pillow format and save options per MIME type; PNG favours speed over size.
_ENCODERS = {"image/png": ("PNG", {"compress_level": 1}), "image/jpeg": ("JPEG", {"quality": 85})}


def pixel_size(aspect_ratio: str | None, scale: int = 4) -> tuple[int, int]:
    """(width, height) for a ratio; ratios without a published size keep ~1 megapixel."""
    if scale < 1:
        raise ValueError(f"scale must be at least 1, got {scale}")
    ratio = aspect_ratio or "1:1"
    if ratio in SIZES_1K:
        w, h = SIZES_1K[ratio]
    else:  # e.g. 3.1-flash's 1:4 or 8:1, whose pixel sizes are not published
        try:
            rw, rh = (float(x) for x in ratio.split(":"))
            if rw <= 0 or rh <= 0:
                raise ValueError
        except ValueError:
            raise ValueError(f"aspect ratio must look like 16:9, got {ratio!r}") from None
        h = (1024 * 1024 * rh / rw) ** 0.5
        w, h = round(h * rw / rh / 16) * 16, round(h / 16) * 16
    return max(1, w // scale), max(1, h // scale)


@lru_cache(maxsize=1)
def _font() -> tuple[ImageFont.ImageFont | ImageFont.FreeTypeFont, float, int]:
    font = ImageFont.load_default()
    sample = "the quick brown fox jumps over a lazy dog"
    char_width = font.getlength(sample) / len(sample)
    line_height = int(font.getbbox("A")[3]) + _LINE_SPACING  # how multiline_text steps lines
    return font, char_width, line_height


def draw_image(
    prompt: str, *, aspect_ratio: str | None, mime_type: str, scale: int = 4, variant: int = 0
) -> bytes:
    """Encoded image bytes (PNG or JPEG) drawn from the prompt; `variant` gives a sibling image."""
    if mime_type not in _ENCODERS:
        raise ValueError(f"mime_type must be image/png or image/jpeg, got {mime_type!r}")
    width, height = pixel_size(aspect_ratio, scale)
    digest = hashlib.sha256(f"{prompt}\x00{variant}".encode()).digest()
    colours = [tuple(digest[i : i + 3]) for i in range(0, 30, 3)]

    # Vertical gradient between two colours, built by Pillow in C (no per-pixel Python).
    mask = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(
        Image.new("RGB", (width, height), colours[1]),
        Image.new("RGB", (width, height), colours[0]),
        mask,
    )
    draw = ImageDraw.Draw(image)
    for i in range(3 + digest[30] % 3):
        b = digest[(i * 4) % 28 : (i * 4) % 28 + 4]
        x, y = b[0] * width // 255, b[1] * height // 255
        r = max(2, (8 + b[2] % 40) * min(width, height) // 100)
        box = (x - r, y - r, x + r, y + r)
        if b[3] % 2:
            draw.ellipse(box, fill=colours[2 + i])
        else:
            draw.rectangle(box, fill=colours[2 + i])
    _write_prompt(draw, prompt, width, height)

    out = io.BytesIO()
    image_format, save_options = _ENCODERS[mime_type]
    image.save(out, image_format, **save_options)
    return out.getvalue()


def _write_prompt(draw: ImageDraw.ImageDraw, prompt: str, width: int, height: int) -> None:
    font, char_width, line_height = _font()
    margin = 4
    columns = max(4, int((width - 4 * margin) / char_width))
    max_lines = max(1, (height - 4 * margin) // line_height)
    lines = textwrap.wrap(" ".join(prompt.split()), columns) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(1, columns - 1)] + "…"
    text_height = len(lines) * line_height
    draw.rectangle(
        (margin, margin, width - margin, min(height - margin, 3 * margin + text_height)),
        fill=(255, 255, 255),
    )
    # One multiline call: FreeType renders the block once instead of once per line.
    text = "\n".join(lines)
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow without FreeType: Latin-1 only
        text = text.encode("latin-1", "replace").decode("latin-1")
    draw.multiline_text((2 * margin, 2 * margin), text, fill=(0, 0, 0), font=font,
                        spacing=_LINE_SPACING)


def padded(data: bytes, size: int | None) -> bytes:
    """The image grown to about `size` bytes with ignorable filler (JPEG comment segments, a
    private PNG chunk), still a whole, valid image: realistic response sizes for the price of
    drawing a small one."""
    missing = (size or 0) - len(data)
    if missing <= 0:
        return data
    if data.startswith(b"\xff\xd8"):
        segments = bytearray()
        while missing > 0:
            n = min(missing, 65533)
            segments += b"\xff\xfe" + (n + 2).to_bytes(2, "big") + b"\x00" * n
            missing -= n + 4
        return data[:2] + bytes(segments) + data[2:]
    if data.startswith(b"\x89PNG"):
        end = data.rindex(b"IEND") - 4  # the IEND chunk's length field
        filler = b"\x00" * max(missing - 12, 0)
        chunk = b"npAd" + filler
        crc = zlib.crc32(chunk).to_bytes(4, "big")
        return data[:end] + len(filler).to_bytes(4, "big") + chunk + crc + data[end:]
    return data
