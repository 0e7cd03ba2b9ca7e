"""The gallery writer: thumbnails made once, per image bytes; a page that is escaped,
self-contained, policy-locked and written atomically."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from nbbatch.errors import StorageError, UnsafeFolderError
from nbbatch.gallery import GalleryEntry, write_gallery
from nbbatch.gallery.page import json_for_script
from tests.gallery_helpers import HOSTILE_PROMPT, done, failed, pending, save_image

SCRIPT_BREAKER = "</script><script>alert(1)</script>"
IMG_ONERROR = "<img src=x onerror=alert(1)>"
TWO_HOURS_AGO = time.time() - 7200


class Page(HTMLParser):
    """What a browser's tokenizer sees: the scripts (with attributes), styles and metas."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self.metas: list[dict[str, str | None]] = []
        self._open: tuple[str, dict[str, str | None]] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._open = (tag, dict(attrs))
            self._text = ""
        elif tag == "meta":
            self.metas.append(dict(attrs))

    def handle_data(self, data):
        if self._open:
            self._text += data

    def handle_endtag(self, tag):
        if self._open and tag == self._open[0]:
            if tag == "script":
                self.scripts.append((self._open[1], self._text))
            else:
                self.styles.append(self._text)
            self._open = None

    @property
    def records(self) -> list[dict]:
        (data,) = [text for attrs, text in self.scripts if attrs.get("id") == "data"]
        return json.loads(data)

    @property
    def csp(self) -> str:
        (meta,) = [m for m in self.metas if m.get("http-equiv") == "Content-Security-Policy"]
        return meta["content"] or ""


def read_page(out: Path) -> tuple[str, Page]:
    html = (out / "gallery.html").read_text(encoding="utf-8")
    return html, Page(html)


def thumbnails(out: Path) -> set[str]:
    return {p.name for p in (out / "thumbnails").iterdir()}


def sha_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def test_thumbnails_are_made_once_small_and_named_after_the_image(out):
    entries = [done(out, "a", color="#e11d48"), done(out, "b", color="#16a34a", fmt="PNG",
                                                      size=(1200, 900))]
    first = write_gallery(out, entries)
    assert (first.thumbnails_made, first.thumbnails_failed) == (2, 0)
    assert thumbnails(out) == {f"{e.sha256[:32]}.webp" for e in entries if e.sha256}
    for path in (out / "thumbnails").iterdir():
        with Image.open(path) as image:
            assert image.format == "WEBP" and max(image.size) == 320
        assert path.stat().st_size < 60_000
    second = write_gallery(out, iter(entries))  # a generator is fine too
    assert (second.thumbnails_made, second.thumbnails_failed) == (0, 0)
    _, page = read_page(out)
    assert [r["th"] for r in page.records] == [f"thumbnails/{e.sha256[:32]}.webp"
                                               for e in entries if e.sha256]


def test_a_replaced_image_gets_a_new_thumbnail_and_the_old_one_goes_once_stale(out):
    old = done(out, "a", color="#e11d48")
    write_gallery(out, [old])
    old_thumb = out / "thumbnails" / f"{old.sha256[:32]}.webp"
    new = done(out, "a", color="#0891b2")  # same file name, new bytes
    assert new.sha256 != old.sha256
    result = write_gallery(out, [new])
    assert result.thumbnails_made == 1
    assert old_thumb.exists()  # young: might belong to a gallery being written beside us
    os.utime(old_thumb, (TWO_HOURS_AGO, TWO_HOURS_AGO))
    assert write_gallery(out, [new]).thumbnails_made == 0
    assert thumbnails(out) == {f"{new.sha256[:32]}.webp"}
    assert read_page(out)[1].records[0]["th"] == f"thumbnails/{new.sha256[:32]}.webp"


def test_only_its_own_old_leftovers_are_removed(out):
    folder = out / "thumbnails"
    folder.mkdir()
    keep = ["notes.txt", "ABCDEF0123456789ABCDEF0123456789.webp", "0" * 32 + ".jpg"]
    remove = ["0" * 32 + ".webp", f".{'1' * 32}.webp.0123456789ab.tmp"]
    for name in keep + remove:
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, (TWO_HOURS_AGO, TWO_HOURS_AGO))
    (folder / f".{'2' * 32}.webp.0123456789ab.tmp").write_bytes(b"x")  # young: a live writer's
    (out / ".gallery.html.0123456789ab.tmp").write_bytes(b"half a page")
    os.utime(out / ".gallery.html.0123456789ab.tmp", (TWO_HOURS_AGO, TWO_HOURS_AGO))
    write_gallery(out, [pending("p")])
    assert thumbnails(out) == {*keep, f".{'2' * 32}.webp.0123456789ab.tmp"}
    assert sorted(p.name for p in out.iterdir()) == ["gallery.html", "thumbnails"]


def test_an_undecodable_or_missing_image_gets_no_thumbnail_but_the_page_is_written(out):
    broken = out / "images" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 50)
    html_page = out / "images" / "page.jpg"
    html_page.write_bytes(b"<!doctype html><html>an error page</html>")
    entries = [
        done(out, "fine"),
        GalleryEntry("broken", 1, 1, "done", "p", "gemini", "m", 0.1, 1, "images/broken.png",
                     hashlib.sha256(broken.read_bytes()).hexdigest(), None, None),
        GalleryEntry("html", 1, 1, "done", "p", "gemini", "m", 0.1, 1, "images/page.jpg",
                     "ab" * 32, None, None),
        GalleryEntry("gone", 1, 1, "done", "p", "gemini", "m", 0.1, 1, "images/gone.png",
                     "cd" * 32, None, None),
    ]
    result = write_gallery(out, entries)
    assert (result.thumbnails_made, result.thumbnails_failed) == (1, 3)
    broken_error, *others = result.thumbnail_errors
    assert broken_error.startswith("images/broken.png: cannot decode it (")
    assert others == ["images/page.jpg: not a PNG, JPEG or WebP image",
                      "images/gone.png: the file is missing"]
    records = read_page(out)[1].records
    assert "th" in records[0]
    assert [r.get("th") for r in records[1:]] == [None, None, None]
    assert records[3]["np"] == "the file is missing"
    assert [r["href"] for r in records[1:]] == ["images/broken.png", "images/page.jpg",
                                               "images/gone.png"]


def test_a_decompression_bomb_is_a_failed_thumbnail_not_a_crash(out, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    warns = done(out, "warns", size=(150, 100), fmt="PNG")  # over the limit: Pillow warns
    errors = done(out, "errors", size=(300, 300), fmt="PNG")  # over twice: Pillow raises
    result = write_gallery(out, [warns, errors])
    assert (result.thumbnails_made, result.thumbnails_failed) == (0, 2)
    assert all("too many pixels" in line for line in result.thumbnail_errors)


def test_progress_is_reported_per_thumbnail_and_shared_bytes_make_one(out):
    a = done(out, "a")
    twin = GalleryEntry("twin", 1, 1, "done", "same bytes", "openai", "gpt-image-1", 0.04, 1,
                        a.file, a.sha256, None, None)
    calls: list[tuple[int, int]] = []
    result = write_gallery(out, [a, twin, done(out, "b", color="#7c3aed")], workers=2,
                           on_progress=lambda d, t: calls.append((d, t)))
    assert result.thumbnails_made == 2
    assert calls == [(0, 2), (1, 2), (2, 2)]
    records = read_page(out)[1].records
    assert records[0]["th"] == records[1]["th"]
    calls.clear()
    write_gallery(out, [a, twin], on_progress=lambda d, t: calls.append((d, t)))
    assert calls == []


def test_hostile_strings_are_only_ever_escaped(out):
    entries = [
        failed("f", prompt=SCRIPT_BREAKER, message=IMG_ONERROR),
        pending("p", prompt=f"{IMG_ONERROR} <!-- <script> \u2028\u2029 &amp;", provider=None,
                batch_job="</script>job", batch_state="<u>RUNNING</u>"),
        done(out, "d", prompt=HOSTILE_PROMPT, provider="<u>prov</u>", model="</title>"),
    ]
    write_gallery(out, entries, title="</title><script>alert(1)</script>")
    html, page = read_page(out)
    for raw in (SCRIPT_BREAKER, IMG_ONERROR, "<u>", "</title><script>", "<!--", "\u2028"):
        assert raw not in html
    assert html.count("</script>") == 2 and html.count("<script") == 2
    assert len(page.scripts) == 2  # the data block could not be closed early
    records = page.records
    assert records[0]["pr"] == SCRIPT_BREAKER and records[0]["em"] == IMG_ONERROR
    assert records[1]["job"] == "</script>job" and "\u2028" in records[1]["pr"]
    assert records[2]["pr"] == HOSTILE_PROMPT and records[2]["pv"] == "<u>prov</u>"
    assert "<title>&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;</title>" in html
    assert '<option value="=&lt;u&gt;prov&lt;/u&gt;">&lt;u&gt;prov&lt;/u&gt; (1)</option>' in html


def test_the_json_escaping_leaves_no_way_out_of_a_script_element():
    text = json_for_script({"s": "</SCRIPT ><!--<script>&\u2028\u2029"})
    assert not re.search(r"[<>&\u2028\u2029]", text)
    assert json.loads(text) == {"s": "</SCRIPT ><!--<script>&\u2028\u2029"}


def test_links_are_relative_and_percent_encoded(out):
    odd = done(out, "odd")
    strange = out / "images" / "a b#?%&\"'.jpg"
    (out / odd.file).rename(strange)
    entries = [
        GalleryEntry("odd", 1, 1, "done", "p", "gemini", "m", 0.1, 1, f"images/{strange.name}",
                     odd.sha256, None, None),
        GalleryEntry("abs", 1, 1, "done", "p", "gemini", "m", 0.1, 1, str(out / "x.png"),
                     "ab" * 32, None, None),
        GalleryEntry("up", 1, 1, "done", "p", "gemini", "m", 0.1, 1, "../escape/x.png",
                     "cd" * 32, None, None),
    ]
    result = write_gallery(out, entries)
    html, page = read_page(out)
    records = page.records
    assert records[0]["href"] == "images/a%20b%23%3F%25%26%22%27.jpg"
    assert records[0]["th"] == f"thumbnails/{odd.sha256[:32]}.webp"
    assert "href" not in records[1] and "href" not in records[2]
    assert "th" not in records[1] and "th" not in records[2]
    assert result.thumbnails_made == 1
    assert str(out.parent) not in html and "file://" not in html


def test_the_policy_allows_exactly_the_inline_script_and_style(out):
    write_gallery(out, [done(out, "a"), failed("b"), pending("c")])
    _, page = read_page(out)
    directives = dict(d.strip().split(" ", 1) for d in page.csp.split(";"))
    (code,) = [text for attrs, text in page.scripts if not attrs]
    (style,) = page.styles
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == sha_hash(code)
    assert directives["style-src"] == sha_hash(style)
    assert directives["img-src"] == "'self' file:"
    assert "unsafe" not in page.csp and "http" not in page.csp
    assert "innerHTML" not in code and "insertAdjacentHTML" not in code


def test_counts_and_costs_head_the_page(out):
    entries = [done(out, "a", cost=0.134), done(out, "b", cost=0.039, provider="openai"),
               failed("c"), pending("d"), pending("e", provider=None, kind=None, message=None)]
    result = write_gallery(out, entries, spent_usd=1.5)
    assert (result.images, result.done, result.failed, result.pending) == (5, 2, 1, 2)
    html, page = read_page(out)
    assert "<b>5</b> images: <b>2</b> done,\n<b>1</b> failed, <b>2</b> pending" in html
    assert "<b>$0.17</b> for the images on disk · <b>$1.50</b> spent in all" in html
    assert 'data-status="failed" aria-pressed="false">Failed 1</button>' in html
    assert '<option value="-">not sent yet (1)</option>' in html
    assert '<option value="=openai">openai (1)</option>' in html
    assert "usd" not in page.records[2]  # a failed image cost nothing on disk


def test_the_page_is_replaced_atomically(out, monkeypatch):
    write_gallery(out, [pending("a")])
    before = (out / "gallery.html").read_bytes()

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(StorageError, match="disk is full"):
        write_gallery(out, [pending("a"), pending("b")])
    assert (out / "gallery.html").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["gallery.html", "thumbnails"]


def test_a_linked_thumbnails_folder_is_refused(out, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "thumbnails").symlink_to(elsewhere)
    with pytest.raises(UnsafeFolderError, match="symbolic link"):
        write_gallery(out, [done(out, "a")])
    assert list(elsewhere.iterdir()) == []


def test_an_unknown_status_is_a_programming_error(out):
    entry = GalleryEntry("a", 1, 1, "lost", None, None, None, None, 0, None, None, None, None)
    with pytest.raises(ValueError, match="unknown status 'lost'"):
        write_gallery(out, [entry])


def test_a_missing_output_folder_is_a_storage_error(tmp_path):
    with pytest.raises(StorageError, match="is not a folder"):
        write_gallery(tmp_path / "nowhere", [])


def test_save_image_helper_makes_real_files(out):
    file, sha256 = save_image(out, "x.png", fmt="PNG")
    assert hashlib.sha256((out / file).read_bytes()).hexdigest() == sha256
