"""The HTML of gallery.html: a static skeleton (title, counts, filters, the larger view), the
records as JSON, the stylesheet and the script.

Everything from the ledger reaches the page one of two ways, both inert: escaped with
html.escape in the skeleton, or inside the JSON block with every `<`, `>` and `&` written as
a \\u escape, so no prompt can close the `<script>` element or open a comment in it. The
Content-Security-Policy allows exactly this stylesheet and this script (by hash) and images
from the page's own folder: nothing external, no other script, ever.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from nbbatch.gallery.cards import Card, Totals
from nbbatch.gallery.entries import STATUSES
from nbbatch.gallery.script import SCRIPT
from nbbatch.gallery.style import STYLE

_JSON_ESCAPES = {
    ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
    0x2028: "\\u2028", 0x2029: "\\u2029",
}


def csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


# 'self' covers a page opened from file:// in Chromium; `file:` is there for browsers whose
# file origins are opaque. Both only ever reach images: default-src 'none' blocks the rest.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self' file:; "
    f"style-src {csp_hash(STYLE)}; script-src {csp_hash(SCRIPT)}; "
    "base-uri 'none'; form-action 'none'"
)


def json_for_script(value: object) -> str:
    """JSON that is safe verbatim inside `<script type="application/json">`."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_JSON_ESCAPES)


@dataclass(frozen=True)
class PageHeader:
    title: str
    totals: Totals
    spent_usd: float | None


def render_page(header: PageHeader, cards: Sequence[Card]) -> str:
    t = header.totals
    counts = t.by_status
    spent = (f" · <b>${header.spent_usd:,.2f}</b> spent in all"
             if header.spent_usd is not None else "")
    updated = time.strftime("%Y-%m-%d %H:%M")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">
<meta name="referrer" content="no-referrer">
<title>{escape(header.title)}</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>{escape(header.title)}</h1>
<p class="totals"><b>{t.total:,}</b> images: <b>{counts['done']:,}</b> done,
<b>{counts['failed']:,}</b> failed, <b>{counts['pending']:,}</b> pending
· <b>${t.cost_on_disk_usd:,.2f}</b> for the images on disk{spent} · updated {updated}</p>
<div class="controls" role="search">
<div class="status-filter" role="group" aria-label="Status">
{_status_buttons(t)}
</div>
<label>Provider <select id="provider">
{_provider_options(t)}
</select></label>
<input type="search" id="search" placeholder="Search ids and prompts" autocomplete="off"
 aria-label="Search ids and prompts" aria-keyshortcuts="/">
<output id="shown" aria-live="polite"></output>
</div>
<p class="hint"><kbd>/</kbd> search · <kbd>Tab</kbd> then <kbd>Enter</kbd> opens an image ·
<kbd>←</kbd> <kbd>→</kbd> or <kbd>k</kbd> <kbd>j</kbd> previous / next · <kbd>Esc</kbd> closes</p>
</header>
<main>
<ul id="grid" class="grid" aria-label="Images"></ul>
<div id="more"></div>
<p id="empty" hidden>No image matches these filters.</p>
<noscript><p>The cards need JavaScript; the images themselves are in the images folder.</p>
</noscript>
</main>
<dialog id="viewer" aria-label="Larger view">
<div class="viewer-bar">
<button type="button" id="prev" aria-label="Previous image"
 aria-keyshortcuts="ArrowLeft k">←</button>
<span id="position"></span>
<button type="button" id="next" aria-label="Next image"
 aria-keyshortcuts="ArrowRight j">→</button>
<span class="spacer"></span>
<a id="open-full" target="_blank" rel="noopener">Open the full image</a>
<button type="button" id="close" aria-label="Close" aria-keyshortcuts="Escape" autofocus>✕</button>
</div>
<div class="viewer-body"><div id="viewer-media" class="viewer-media"></div>
<div id="viewer-info" class="viewer-info"></div></div>
</dialog>
<script type="application/json" id="data">{json_for_script(list(cards))}</script>
<script>{SCRIPT}</script>
</body>
</html>
"""


def _status_buttons(t: Totals) -> str:
    choices = [("", "All", t.total)] + [
        (status, status.capitalize(), t.by_status[status]) for status in STATUSES
    ]
    return "\n".join(
        f'<button type="button" data-status="{value}" aria-pressed="{str(value == "").lower()}">'
        f"{label} {count:,}</button>"
        for value, label, count in choices
    )


def _provider_options(t: Totals) -> str:
    # Values: "" every provider, "-" images not sent yet, "=NAME" one provider (the script
    # reads the same encoding), so no provider name can collide with the two special ones.
    options = ['<option value="">all</option>']
    for name, count in sorted(t.by_provider.items()):
        value, label = ("-", "not sent yet") if name == "" else (f"={name}", name)
        options.append(f'<option value="{escape(value)}">{escape(label)} ({count:,})</option>')
    return "\n".join(options)
