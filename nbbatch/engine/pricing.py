"""What an image costs on a provider: the catalog's list price for its shape, read with the
provider's own options (OpenAI's quality), nothing for providers that do not bill."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbbatch import catalog
from nbbatch.model import Item, ProviderConfig
from nbbatch.providers import registry


class Pricing:
    def __init__(self, providers: Mapping[str, ProviderConfig]) -> None:
        self._providers = providers
        # A price depends on a handful of fields that 100,000 items share: look each up once.
        self._prices: dict[tuple[Any, ...], float] = {}

    def list_price(self, item: Item, provider: str, model: str, *, batch: bool = False,
                   dearest: bool = False) -> float:
        """USD for one of `item`'s images made by `provider` with `model`. With `dearest`,
        the most it may cost (the provider picks quality or size): what a budget counts."""
        key = (provider, model, item.image_size, item.aspect_ratio, batch, dearest)
        price = self._prices.get(key)
        if price is None:
            price = self._prices[key] = self._price(*key)
        return price

    def _price(self, provider: str, model: str, image_size: str | None,
               aspect_ratio: str | None, batch: bool, dearest: bool) -> float:
        if not self.billed(provider):
            return 0.0
        config = self._providers.get(provider)
        quality = config.options.get("quality") if config else None
        return catalog.price(model, image_size=image_size, aspect_ratio=aspect_ratio,
                             quality=quality, batch=batch, dearest=dearest)

    @staticmethod
    def billed(provider: str) -> bool:
        """Whether `provider` charges for images (the simulator does not)."""
        return provider not in registry.PROVIDERS or registry.spec(provider).billed

    def reserve(self, item: Item, models: Mapping[str, str],
                seen: Mapping[str, float]) -> float:
        """The most one of `item`'s images may cost on any provider of `models` (provider ->
        the model it would use): the dearest list price, or more when an image of that model
        was already seen to cost more (reported tokens)."""
        return max((max(self.list_price(item, name, model, dearest=True), seen.get(model, 0.0))
                    for name, model in models.items()), default=0.0)

    def estimate(self, item: Item, *, batch: bool = False) -> float:
        """The usual price of one of `item`'s images on its own provider."""
        return self.list_price(item, item.provider, item.model, batch=batch)
