"""Items -> the ImageRequest each attempt sends, with reference images read when needed."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from nbbatch.images import sniff_mime
from nbbatch.model import Item
from nbbatch.providers.base import ImageRequest, ReferenceImage

REFERENCE_CACHE_SIZE = 16  # reference images kept in memory


class RequestBuilder:
    """Batches often reuse one reference image, but 100,000 distinct ones must not all sit in
    memory: the last few read are kept."""

    def __init__(self, cache_size: int = REFERENCE_CACHE_SIZE) -> None:
        self._cache: OrderedDict[Path, ReferenceImage] = OrderedDict()
        self._size = cache_size

    def request_for(self, item: Item) -> ImageRequest:
        """OSError when a reference image cannot be read any more."""
        return ImageRequest(
            prompt=item.prompt, model=item.model, aspect_ratio=item.aspect_ratio,
            image_size=item.image_size,
            references=tuple(self._reference(path) for path in item.references),
        )

    def _reference(self, path: Path) -> ReferenceImage:
        if path in self._cache:
            self._cache.move_to_end(path)
        else:
            data = path.read_bytes()
            self._cache[path] = ReferenceImage(sniff_mime(data), data)
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return self._cache[path]
