"""The gallery in a real browser: headless Chromium opens gallery.html from file://.

One browser per module; each test gets a fresh page. A console error, an uncaught
exception or a Content-Security-Policy violation fails the test that caused it. The last
test keeps a screenshot under $NBBATCH_TEST_ARTIFACTS (default tests/artifacts/).

Waiting uses locators (`expect`), never `wait_for_function`: Playwright evaluates that
predicate as a string, which the page's policy rightly refuses ('unsafe-eval').
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbbatch.gallery import GalleryEntry, write_gallery
from tests.gallery_helpers import HOSTILE_PROMPT, done, failed, pending

sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
expect = sync_api.expect
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
                allow_module_level=True)

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
HOSTILE_MESSAGE = '<img src=x onerror="window.__pwned=3">'
IDS = ["red-sneaker", "blue-mug", "green-lamp #2 of 3", "hostile", "later", "batched", "broken"]
# Runs before any page script and is not subject to the page's CSP.
WATCH_CSP = """document.addEventListener("securitypolicyviolation",
  (e) => (window.__csp = window.__csp || []).push(e.violatedDirective + " " + e.blockedURI));"""
ARTIFACTS = Path(os.environ.get("NBBATCH_TEST_ARTIFACTS")
                 or Path(__file__).parent / "artifacts")


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    entries = [
        done(out, "red-sneaker", prompt="A red sneaker on white, studio light", color="#e11d48"),
        done(out, "blue-mug", prompt="A blue mug of coffee", color="#2563eb", provider="openai",
             model="gpt-image-1", cost=0.042, attempts=3, fmt="PNG"),
        done(out, "green-lamp", prompt="A green desk lamp", color="#16a34a", index=2, count=3,
             fmt="WEBP"),
        failed("hostile", prompt=HOSTILE_PROMPT, message=HOSTILE_MESSAGE),
        pending("later", prompt="A yellow raincoat"),
        pending("batched", prompt="A purple kite", kind=None, message=None, attempts=0,
                batch_job="batches/abc123", batch_state="JOB_STATE_RUNNING"),
        GalleryEntry("broken", 1, 1, "done", "A truncated download", "gemini", "m", 0.134, 1,
                     "images/broken.png", "ab" * 32, None, None),
    ]
    (out / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write_gallery(out, entries, spent_usd=0.75)
    return out / "gallery.html"


@pytest.fixture(scope="module")
def big_gallery(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("big")
    write_gallery(out, [pending(f"item-{i:04d}", prompt=f"prompt {i}") for i in range(400)])
    return out / "gallery.html"


class Tab:
    """A page plus every complaint the browser made while showing it."""

    def __init__(self, page: sync_api.Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", lambda m: m.type in ("error", "warning")
                and self.problems.append(f"console {m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.add_init_script(WATCH_CSP)

    def open(self, path: Path) -> Tab:
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("html[data-ready]")
        return self

    def shown_ids(self) -> list[str]:
        return self.page.locator("#grid .card .id").all_text_contents()

    def assert_quiet(self) -> None:
        assert self.problems == []
        assert self.page.evaluate("window.__csp") is None
        assert self.page.evaluate("window.__pwned") is None


@pytest.fixture(scope="module")
def context(browser) -> Iterator[sync_api.BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


@pytest.fixture
def tab(context) -> Iterator[Tab]:
    page = context.new_page()
    yield Tab(page)
    page.close()


def test_every_card_is_shown_and_thumbnails_load(tab, gallery):
    tab.open(gallery)
    assert tab.shown_ids() == IDS
    page = tab.page
    thumbnails = page.locator("#grid img")
    expect(thumbnails).to_have_count(3)
    for i in range(3):  # 640 x 480 images: 320 x 240 thumbnails
        expect(thumbnails.nth(i)).to_have_js_property("naturalWidth", 320)
    assert page.text_content("#shown") == "7 shown"
    broken = page.locator(".card", has_text="broken")
    assert broken.locator(".placeholder").text_content() == "no preview"
    assert broken.locator(".problem").text_content().startswith("no preview: cannot decode it")
    assert "in batch job: batches/abc123 (JOB_STATE_RUNNING)" in page.inner_text("#grid")
    assert "last error (transient): 503 UNAVAILABLE" in page.inner_text("#grid")
    assert "openai · gpt-image-1 · $0.042 · 3 attempts" in page.inner_text("#grid")
    tab.assert_quiet()


def test_hostile_text_is_shown_and_never_run(tab, gallery):
    page = tab.open(gallery).page
    hostile = page.locator(".card.failed")
    assert hostile.locator(".prompt").text_content() == HOSTILE_PROMPT
    assert HOSTILE_MESSAGE in hostile.locator(".problem").text_content()
    hostile.locator(".thumb").click()
    assert page.locator("#viewer-info .prompt").text_content() == HOSTILE_PROMPT
    assert page.locator('img[src="x"]').count() == 0
    assert page.evaluate("document.scripts.length") == 2
    tab.assert_quiet()


def test_status_provider_and_search_narrow_what_is_shown(tab, gallery):
    page = tab.open(gallery).page
    page.click('[data-status="failed"]')
    assert tab.shown_ids() == ["hostile"]
    assert page.text_content("#shown") == "1 of 7 shown"
    page.click('[data-status="pending"]')
    assert tab.shown_ids() == ["later", "batched"]
    page.click('[data-status=""]')
    page.select_option("#provider", "=openai")
    assert tab.shown_ids() == ["blue-mug"]
    page.select_option("#provider", "")
    cards = page.locator("#grid .card")
    page.fill("#search", "SNEAKER white")  # every word, any case, in the id or the prompt
    expect(cards).to_have_count(1)
    assert tab.shown_ids() == ["red-sneaker"]
    page.fill("#search", "batched")
    expect(cards.locator(".id")).to_have_text(["batched"])
    page.fill("#search", "no such thing")
    expect(cards).to_have_count(0)
    assert page.is_visible("#empty")
    page.press("#search", "Escape")
    assert tab.shown_ids() == IDS
    tab.assert_quiet()


def test_slash_goes_to_the_search_box(tab, gallery):
    page = tab.open(gallery).page
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"
    assert page.input_value("#search") == ""
    tab.assert_quiet()


def test_the_larger_view_steps_with_the_keyboard(tab, gallery):
    page = tab.open(gallery).page
    page.focus(".card .thumb")
    page.keyboard.press("Enter")
    assert page.is_visible("#viewer")
    position = lambda: page.text_content("#position")  # noqa: E731
    assert position() == "1 / 7"
    expect(page.locator("#viewer-media img")).to_have_js_property("naturalWidth", 640)
    assert page.get_attribute("#open-full", "href") == "images/red-sneaker.jpg"
    for key, expected in [("ArrowRight", "2 / 7"), ("j", "3 / 7"), ("k", "2 / 7"),
                          ("ArrowLeft", "1 / 7"), ("ArrowLeft", "1 / 7"), ("End", "7 / 7"),
                          ("k", "6 / 7")]:
        page.keyboard.press(key)
        assert position() == expected, key
    assert "batches/abc123" in page.text_content("#viewer-info")
    assert page.is_hidden("#open-full")
    page.keyboard.press("Escape")
    assert page.is_hidden("#viewer")
    focused = page.locator(".card", has=page.locator(":focus"))
    expect(focused.locator(".id")).to_have_text("batched")  # the card of the image last shown
    page.click('[data-status="done"]')
    page.click(".card:nth-child(2) .thumb")
    assert position() == "2 / 4"
    tab.assert_quiet()


def test_a_phone_screen_needs_no_sideways_scrolling(tab, gallery):
    page = tab.page
    page.set_viewport_size({"width": 390, "height": 844})
    tab.open(gallery)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.assert_quiet()


def test_many_cards_are_built_as_the_grid_scrolls(tab, big_gallery):
    page = tab.open(big_gallery).page
    cards = page.locator("#grid .card")
    built = cards.count()
    assert 0 < built < 400
    for _ in range(400):  # each scroll to the end builds at least one more card
        page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
        cards.nth(built).wait_for(state="attached")
        built = cards.count()
        if built == 400:
            break
    assert tab.shown_ids()[-1] == "item-0399"
    page.fill("#search", "item-0399")
    expect(cards.locator(".id")).to_have_text(["item-0399"])
    tab.assert_quiet()


def test_a_screenshot_is_kept(tab, gallery):
    page = tab.open(gallery).page
    thumbnails = page.locator("#grid img")
    for i in range(thumbnails.count()):
        expect(thumbnails.nth(i)).to_have_js_property("complete", True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "gallery.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tab.assert_quiet()
