"""Items -> the ImageRequest each attempt sends, with reference images read when needed."""

from __future__ import annotations

import hashlib
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
        self._cache: OrderedDict[tuple[Path, str], ReferenceImage] = OrderedDict()
        self._size = cache_size

    def request_for(self, item: Item) -> ImageRequest:
        """ReferenceGone when a reference image cannot be read any more or has changed."""
        return ImageRequest(
            prompt=item.prompt, model=item.model, aspect_ratio=item.aspect_ratio,
            image_size=item.image_size,
            references=tuple(self._reference(path, digest) for path, digest
                             in zip(item.references, item.reference_digests, strict=True)),
        )

    def _reference(self, path: Path, digest: str) -> ReferenceImage:
        key = (path, digest)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ReferenceGone(f"reference image {path} cannot be read ({exc.strerror}); put "
                                "it back, or run nbbatch run MANIFEST without it") from None
        # The image was asked for with these exact bytes: anything else is another request.
        if hashlib.sha256(data).hexdigest() != digest:
            raise ReferenceGone(f"reference image {path} has changed since this image was "
                                "asked for; put the original back, or run nbbatch run MANIFEST "
                                "to ask for the new one")
        self._cache[key] = ReferenceImage(sniff_mime(data), data)
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return self._cache[key]


class ReferenceGone(Exception):
    """A reference image is gone or changed: the image stays pending, the run goes on."""
