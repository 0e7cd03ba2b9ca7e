"""Keeping secrets out of every text nbbatch shows or stores.

A server may echo the key it was sent: plainly, percent- or HTML-encoded, in base64, cut short,
or masked the way OpenAI does ("sk-abc***wxyz"). `Redactor` removes all of those forms; it is
the one redaction used for messages, usage reports and ids that reach a terminal, a log or
the ledger. `Redactor.message` redacts first and shortens after, so a key can never be cut in
half with its first half left standing.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MAX_MESSAGE = 500  # characters of one error message kept in the ledger and shown
MIN_SECRET = 8  # shorter "keys" are test values, not secrets: redacting them mangles text
PREFIX_ECHO = 8  # this many leading characters of a key are treated as the key itself
PART_ECHO = 12  # this many characters in a row from anywhere in a key: the key too

# Key-shaped tokens whoever they belong to: OpenAI/Stability (sk-…), OpenRouter (sk-or-…),
# sessions (sess-…), Google API keys (AIza + 35). Masked echoes keep their shape: sk-ab***yz.
_KEY_SHAPES = re.compile(r"\b(?:sk|sess)-[A-Za-z0-9_*\-]{2,}|\bAIza[0-9A-Za-z_\-*]{8,}")
_PERCENT = re.compile(r"%[0-9A-F]{2}")
# A long token mixing upper case, lower case and digits is random, as keys are; the names of
# environment variables are words (GEMINI_API_KEY, my_key_2).
_RANDOM_TOKEN = re.compile(r"(?=[^\s]*[a-z])(?=[^\s]*[A-Z])(?=[^\s]*[0-9])[^\s]{20,}")


# Keys in one case (hex, sk_live_…, ghp_…) are told by a long part that mixes letters and
# digits again and again, or holds many digits; a name's parts are words and a year at most.
_PART_RE = re.compile(r"[^_\-]{16,}")
_SWITCH_RE = re.compile(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")


def looks_like_a_key(text: str) -> bool:
    """Whether `text` is shaped like a secret (a key pasted where a name belongs)."""
    return bool(_KEY_SHAPES.search(text) or _RANDOM_TOKEN.fullmatch(text)
                or any(_random_part(m.group(0)) for m in _PART_RE.finditer(text)))


def _random_part(part: str) -> bool:
    digits = sum(c.isdigit() for c in part)
    if digits == 0 or digits == len(part):
        return False
    return len(_SWITCH_RE.findall(part)) >= 2 or digits >= 6


class Redactor:
    """Replaces each secret (in any of the forms above) with '***'."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets = tuple(s for s in secrets if s and len(s) >= MIN_SECRET)
        forms: set[str] = set()
        for secret in self.secrets:
            forms.update(_encoded_forms(secret))
        self._forms = sorted((f for f in forms if len(f) >= MIN_SECRET // 2), key=len,
                             reverse=True)  # an encoded form may contain the plain one
        self._prefixes = [s[:PREFIX_ECHO] for s in self.secrets]

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        # Key shapes before prefixes: a masked echo ("sk-proj-***ABCD") goes whole.
        text = _KEY_SHAPES.sub(_mask_shape, text)
        for secret, prefix in zip(self.secrets, self._prefixes, strict=True):
            if prefix in text:
                text = _cut_prefix_echoes(text, secret, prefix)
            text = _cut_part_echoes(text, secret)
        return text

    def message(self, text: str, limit: int = MAX_MESSAGE) -> str:
        """One line for a message: redacted, whitespace collapsed, then shortened."""
        text = " ".join(self(text).split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def scrub(self, doc: dict[str, Any]) -> dict[str, Any]:
        """`doc` (a usage report, say) with the secrets gone from every string in it."""
        text = json.dumps(doc, ensure_ascii=False)
        clean = self(text)
        if clean == text:
            return doc
        try:
            return dict(json.loads(clean))
        except ValueError:  # the secret spanned JSON syntax: keep nothing rather than leak it
            return {}


def _encoded_forms(secret: str) -> set[str]:
    raw = secret.encode("utf-8", "surrogatepass")
    # repr() is how Python quotes a value in its own messages ("Illegal header value b'…'").
    forms = {secret, html.escape(secret), repr(secret)[1:-1]}
    for encoded in (quote(secret, safe=""), quote_plus(secret)):
        forms.update((encoded, _PERCENT.sub(lambda m: m.group(0).lower(), encoded)))
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for shift in range(3):
            # Inside a longer base64 text the key's bytes start at any offset mod 3: the
            # characters that encode only key bytes are the same for each offset.
            encoded = encode(b"\0" * shift + raw).decode().rstrip("=")
            start = (shift * 4 + 2) // 3
            end = len(encoded) - (1 if (shift + len(raw)) % 3 else 0)
            forms.add(encoded[start:end])
    return forms


def _cut_prefix_echoes(text: str, secret: str, prefix: str) -> str:
    """Mask every run of text that starts like the key, as far as it goes on matching."""
    out, pos = [], 0
    while (start := text.find(prefix, pos)) >= 0:
        end = start + len(prefix)
        while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
            end += 1
        out.append(text[pos:start] + MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _cut_part_echoes(text: str, secret: str) -> str:
    """Mask every run of PART_ECHO or more characters that appears in the key, wherever in
    the key it starts (a message cut at its start, or showing the end of a header)."""
    width = min(PART_ECHO, len(secret))
    spans: list[tuple[int, int]] = []
    for offset in range(len(secret) - width + 1):
        pos = 0
        while (start := text.find(secret[offset:offset + width], pos)) >= 0:
            end, k = start + width, offset + width
            while end < len(text) and k < len(secret) and text[end] == secret[k]:
                end, k = end + 1, k + 1
            spans.append((start, end))
            pos = start + 1
    if not spans:
        return text
    out, pos = [], 0
    for start, end in sorted(spans):
        if start > pos:
            out.append(text[pos:start] + MASK)
        elif not out:
            out.append(MASK)
        pos = max(pos, end)
    out.append(text[pos:])
    return "".join(out)


def _mask_shape(match: re.Match[str]) -> str:
    token = match.group(0)
    head = token.split("-", 1)[0] + "-" if "-" in token[:6] else token[:4]
    return head + MASK
