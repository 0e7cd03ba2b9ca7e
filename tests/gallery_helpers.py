"""Real image files and GalleryEntry values for the gallery tests (no simulator needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image, ImageDraw

from nbbatch.gallery import GalleryEntry

HOSTILE_PROMPT = '<img src=x onerror="window.__pwned=1"> </script><script>window.__pwned=2</script>'


def save_image(out: Path, name: str, color: str = "#2563eb", *, size: tuple[int, int] = (640, 480),
               fmt: str = "JPEG") -> tuple[str, str]:
    """Draw an image at OUT/images/NAME; return its path relative to OUT and its SHA-256."""
    path = out / "images" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill="white")
    draw.text((10, 10), name, fill="black")
    image.save(path, fmt)
    return f"images/{name}", hashlib.sha256(path.read_bytes()).hexdigest()


def done(out: Path, item_id: str, *, prompt: str = "a red sneaker on white", color: str = "#e11d48",
         provider: str = "gemini", model: str = "gemini-3-pro-image", cost: float = 0.134,
         attempts: int = 1, index: int = 1, count: int = 1, fmt: str = "JPEG",
         size: tuple[int, int] = (640, 480)) -> GalleryEntry:
    extension = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]
    stem = item_id if count == 1 else f"{item_id}-{index}"
    file, sha256 = save_image(out, f"{stem}.{extension}", color, size=size, fmt=fmt)
    return GalleryEntry(item_id, index, count, "done", prompt, provider, model, cost, attempts,
                        file, sha256, None, None)


def failed(item_id: str, *, prompt: str = "something blocked", kind: str = "blocked",
           message: str = "The prompt was blocked (SAFETY)", provider: str = "gemini",
           attempts: int = 1) -> GalleryEntry:
    return GalleryEntry(item_id, 1, 1, "failed", prompt, provider, "gemini-3-pro-image", None,
                        attempts, None, None, kind, message)


def pending(item_id: str, *, prompt: str = "still to come", kind: str | None = "transient",
            message: str | None = "503 UNAVAILABLE: The model is overloaded",
            provider: str | None = "gemini", attempts: int = 2, batch_job: str | None = None,
            batch_state: str | None = None) -> GalleryEntry:
    return GalleryEntry(item_id, 1, 1, "pending", prompt, provider,
                        "gemini-3-pro-image" if provider else None, None, attempts, None, None,
                        kind, message, batch_job, batch_state)
