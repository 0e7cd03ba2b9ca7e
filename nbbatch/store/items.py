"""What each item asked for, kept in the ledger: `resume` rebuilds the items from here.

Written set-based in one transaction, like the images: only items that changed are written,
so a nightly run of an unchanged 100,000-prompt manifest writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from nbbatch.errors import LedgerError
from nbbatch.model import Item
from nbbatch.store.connection import json_cell

_COLUMNS = "id, seq, prompt, provider, model, aspect_ratio, image_size, count, refs, fingerprint"
_FIELDS = _COLUMNS.split(", ")[1:]
_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in _FIELDS)
_CHANGED = " OR ".join(f"items.{c} IS NOT excluded.{c}" for c in _FIELDS)


def _row(seq: int, item: Item) -> tuple[object, ...]:
    refs = None
    if item.references:
        refs = json.dumps([[str(path), digest] for path, digest
                           in zip(item.references, item.reference_digests, strict=True)])
    return (item.id, seq, item.prompt, item.provider, item.model, item.aspect_ratio,
            item.image_size, item.count, refs, item.fingerprint)


def record_items(conn: sqlite3.Connection, items: Sequence[Item],
                 digest: str | None = None) -> int:
    """Store what each item asks for (the caller holds the transaction); returns how many
    rows were written. A manifest recorded as it is costs one digest, not 100,000 rows:
    the caller's, when it has one that covers every field of the rows (engine/planned.py),
    else one made here."""
    digest = digest or _digest(items)
    if _recorded_digest(conn) == digest:
        return 0
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS planned_items ({_COLUMNS},"
                 " PRIMARY KEY (id)) WITHOUT ROWID")
    conn.execute("DELETE FROM planned_items")
    conn.executemany("INSERT INTO planned_items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (_row(seq, item) for seq, item in enumerate(items)))
    written = conn.execute(
        f"INSERT INTO items SELECT {_COLUMNS} FROM planned_items WHERE true"
        f" ON CONFLICT (id) DO UPDATE SET {_UPDATE} WHERE {_CHANGED}"
    ).rowcount
    conn.execute("DELETE FROM planned_items")
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('items_digest', ?)", (digest,))
    return written


def _digest(items: Sequence[Item]) -> str:
    """Everything an items row holds, hashed: the fingerprint covers the request itself."""
    h = hashlib.sha256()
    for item in items:
        refs = "\x1f".join(map(str, item.references))
        h.update(f"{item.id}\x1e{item.fingerprint}\x1e{item.count}\x1e{refs}\x1d".encode())
    return h.hexdigest()


def _recorded_digest(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'items_digest'").fetchone()
    return row[0] if row else None


def load_items(conn: sqlite3.Connection) -> Iterator[Item]:
    """The items of the images in the manifest, in manifest order."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM items WHERE id IN"
        " (SELECT id FROM images WHERE in_manifest = 1) ORDER BY seq"
    )
    for id_, _seq, prompt, provider, model, ratio, size, count, refs, _fp in rows:
        pairs = json_cell(refs) if refs else []
        if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
                for p in pairs):
            # Guessing would send a different request: better to ask for the manifest.
            raise LedgerError(f"the ledger's record of item {id_!r} is damaged (its reference "
                              "images); use nbbatch run MANIFEST to continue")
        yield Item(id=id_, prompt=prompt, provider=provider, model=model, aspect_ratio=ratio,
                   image_size=size, count=count,
                   references=tuple(Path(path) for path, _ in pairs),
                   reference_digests=tuple(digest for _, digest in pairs))
