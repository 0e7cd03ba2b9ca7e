"""Whether a provider makes an item's images in the shape asked.

Gemini models take the ratio and size as asked; OpenAI's take a few pixel sizes, so a 16:9
2K image made by an OpenAI backup comes back 1536x1024 (3:2). Such a change is recorded
with the image and said in its log line; with `failover.same_shape` the backup is not
used for that item at all.
"""

from __future__ import annotations

from functools import lru_cache

from nbbatch import catalog
from nbbatch.model import Item, Manifest
from nbbatch.providers import registry


class Shapes:
    def __init__(self, manifest: Manifest) -> None:
        self._backup_models = {
            name: config.model for name, config in manifest.providers.items() if config.model}

    def model_on(self, item: Item, provider: str) -> str:
        """The model `provider` uses for `item`: the item's own on its own provider, the
        provider's configured (or default) model when it stands in for another."""
        if provider == item.provider:
            return item.model
        return (self._backup_models.get(provider) or _default_model(provider)
                or item.model)

    def change(self, item: Item, provider: str, model: str | None = None) -> str | None:
        """'asked 16:9 at 2K; openai (gpt-image-1) makes 1536x1024 (3:2)', or None."""
        model = model or self.model_on(item, provider)
        made = _change(model, item.aspect_ratio, item.image_size)
        if made is None:
            return None
        return f"asked {_asked(item)}; {provider} ({model}) {made}"


def _asked(item: Item) -> str:
    ratio = item.aspect_ratio or "the default ratio"
    return f"{ratio} at {item.image_size}" if item.image_size else ratio


@lru_cache(maxsize=256)
def _change(model: str, aspect_ratio: str | None, image_size: str | None) -> str | None:
    return catalog.shape_change(model, aspect_ratio, image_size)


def _default_model(provider: str) -> str | None:
    return registry.default_model(provider) if provider in registry.PROVIDERS else None
