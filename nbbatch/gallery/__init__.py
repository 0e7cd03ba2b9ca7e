"""The gallery: OUT/gallery.html, a self-contained contact sheet of every image in the ledger,
with thumbnails made once per image under OUT/thumbnails/.

    result = write_gallery(out, entries, on_progress=lambda done, total: ...)

`entries` are GalleryEntry values, one per image, in the order the page shows them.
"""

from nbbatch.gallery.entries import GalleryEntry, GalleryResult
from nbbatch.gallery.from_ledger import ledger_entries, update_gallery
from nbbatch.gallery.writer import GALLERY_FILE, write_gallery

__all__ = ["GALLERY_FILE", "GalleryEntry", "GalleryResult", "ledger_entries", "update_gallery",
           "write_gallery"]
