"""The images a manifest asks for, as the ledger records them (one row per image), and
their digest, made from the items alone.

The nightly run of an unchanged 100,000-prompt manifest compares that one hash with the one
the last sync left (store/sync.py) and builds no row at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from nbbatch.engine.pricing import Pricing
from nbbatch.model import Manifest
from nbbatch.store.records import PlannedImage


def planned_images(manifest: Manifest) -> Iterator[PlannedImage]:
    """Each item's images in manifest order, with what one is expected to cost."""
    pricing = Pricing(manifest.providers)
    position = 0
    batch = manifest.mode == "batch"
    for item in manifest.items:
        estimate = pricing.estimate(item, batch=batch)
        legacy = item.legacy_fingerprint
        for index in range(1, item.count + 1):
            yield PlannedImage(item.id, index, item.fingerprint, position, estimate,
                               item.legacy_id, legacy)
            position += 1


def planned_digest(manifest: Manifest) -> str:
    """A digest of everything planned_images(manifest) holds and the ledger's items table
    keeps, one line per item: its images' keys and places follow from its id, its count and
    its place among the items; its request, from its fingerprint and reference paths."""
    pricing = Pricing(manifest.providers)
    batch = manifest.mode == "batch"
    h = hashlib.sha256(b"planned 2\n")  # a kind of its own: never equal to another digest
    for item in manifest.items:
        h.update(f"{item.id}\x1f{item.count}\x1f{item.fingerprint}\x1f"
                 f"{pricing.estimate(item, batch=batch)!r}\x1f{item.legacy_id}\x1f"
                 f"{item.legacy_fingerprint}\x1f{item.references}\x1e".encode())
    return h.hexdigest()
