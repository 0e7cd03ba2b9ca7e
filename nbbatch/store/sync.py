"""Bringing the ledger in line with a manifest's images: set-based, in one transaction.

The images a sync made the ledger hold are remembered as a digest: the nightly run of an
unchanged 100,000-prompt manifest compares one hash instead of 100,000 rows. Only a sync
moves what the digest covers (keys, fingerprints, positions, estimates, membership). A run
hands over a digest it made from the items (engine/planned.py), so an unchanged manifest
builds no row at all; without one, the digest is made here from the rows. The two kinds
never match each other, so changing kinds costs one full sync, never a stale ledger.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable

from nbbatch.store.records import PlannedImage, SyncResult


def sync_images(conn: sqlite3.Connection, images: Iterable[PlannedImage],
                digest: str | None = None) -> SyncResult:
    """Make the ledger match the manifest's images, set-based in one transaction.

    Counts are changes relative to the ledger: `removed` counts keys dropped by this sync;
    a key that comes back counts as unchanged or changed by its fingerprint. A changed key
    becomes pending with its old result and any save intent cleared (attempts kept).
    """
    if digest is None:
        images = list(images)
        digest = _digest(images)
    if unchanged_since_last_sync(conn, digest):
        (unchanged,) = conn.execute("SELECT count(*) FROM images WHERE in_manifest = 1").fetchone()
        return SyncResult(new=0, changed=0, unchanged=unchanged, removed=0)
    images = list(images)
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS plan (id TEXT, idx INTEGER, fingerprint TEXT,"
        " position INTEGER, estimate_usd REAL, legacy_id TEXT, legacy_fingerprint TEXT,"
        " PRIMARY KEY (id, idx)) WITHOUT ROWID"
    )
    conn.execute("DELETE FROM plan")
    try:
        conn.executemany(
            "INSERT INTO plan VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((i.id, i.index, i.fingerprint, i.position, i.estimate_usd,
              i.legacy_id, i.legacy_fingerprint) for i in images),
        )
    except sqlite3.IntegrityError as exc:
        raise ValueError(f"duplicate image key in the plan: {exc}") from exc
    _adopt_legacy_rows(conn)
    total = conn.execute("SELECT count(*) FROM plan").fetchone()[0]
    now = time.time()
    removed = conn.execute(
        "UPDATE images SET in_manifest = 0 WHERE in_manifest = 1 AND NOT EXISTS"
        " (SELECT 1 FROM plan p WHERE p.id = images.id AND p.idx = images.idx)"
    ).rowcount
    conn.execute(
        "DELETE FROM save_intents WHERE EXISTS (SELECT 1 FROM plan p JOIN images i"
        " USING (id, idx) WHERE p.id = save_intents.id AND p.idx = save_intents.idx"
        " AND i.fingerprint <> p.fingerprint)"
    )
    changed = conn.execute(
        "UPDATE images SET fingerprint = p.fingerprint, position = p.position,"
        " in_manifest = 1, status = 'pending', provider = NULL, model = NULL,"
        " file = NULL, sha256 = NULL, bytes = NULL, cost_usd = NULL, usage = NULL,"
        " width = NULL, height = NULL, shape_note = NULL,"
        " error_kind = NULL, error_message = NULL, updated_at = ?"
        " FROM plan p WHERE p.id = images.id AND p.idx = images.idx"
        " AND images.fingerprint <> p.fingerprint",
        (now,),
    ).rowcount
    # Only rows that moved or came back are written, so a no-change sync writes nothing.
    conn.execute(
        "UPDATE images SET position = p.position, in_manifest = 1,"
        " estimate_usd = p.estimate_usd FROM plan p"
        " WHERE p.id = images.id AND p.idx = images.idx"
        " AND (images.position <> p.position OR images.in_manifest = 0"
        " OR images.estimate_usd <> p.estimate_usd)"
    )
    new = conn.execute(
        "INSERT INTO images (id, idx, fingerprint, position, estimate_usd, updated_at)"
        " SELECT id, idx, fingerprint, position, estimate_usd, ? FROM plan p"
        " WHERE NOT EXISTS"
        " (SELECT 1 FROM images i WHERE i.id = p.id AND i.idx = p.idx)",
        (now,),
    ).rowcount
    conn.execute("DELETE FROM plan")
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('images_digest', ?)",
                 (digest,))
    return SyncResult(new=new, changed=changed, unchanged=total - new - changed,
                      removed=removed)


def _digest(images: list[PlannedImage]) -> str:
    h = hashlib.sha256()
    for i in images:
        h.update(f"{i.id}\x1f{i.index}\x1f{i.fingerprint}\x1f{i.position}\x1f{i.estimate_usd!r}"
                 f"\x1f{i.legacy_id}\x1f{i.legacy_fingerprint}\x1e".encode())
    return h.hexdigest()


def unchanged_since_last_sync(conn: sqlite3.Connection, digest: str) -> bool:
    row = conn.execute("SELECT value FROM meta WHERE key = 'images_digest'").fetchone()
    # Rows from before prompts were normalised are adopted by a full sync, whatever it says.
    return (row is not None and row[0] == digest and conn.execute(
        "SELECT 1 FROM images WHERE legacy_text = 1 LIMIT 1").fetchone() is None)


def _adopt_legacy_rows(conn: sqlite3.Connection) -> None:
    """Rows written before prompts were normalised (legacy_text = 1) that hold the fingerprint
    of an image's prompt as written take its normalised fingerprint, and its new derived id
    when that changed (attempts, save intents and files follow). Once the manifest names a
    row, it is compared by the normalised fingerprint alone from then on."""
    if conn.execute("SELECT 1 FROM images WHERE legacy_text = 1 LIMIT 1").fetchone() is None:
        return
    renames = conn.execute(
        "SELECT p.id, i.id, i.idx FROM images i JOIN plan p"
        " ON i.id = p.legacy_id AND i.idx = p.idx AND i.fingerprint = p.legacy_fingerprint"
        " WHERE i.legacy_text = 1 AND p.legacy_id <> p.id"
        " AND NOT EXISTS (SELECT 1 FROM images j WHERE j.id = p.id AND j.idx = p.idx)"
    ).fetchall()
    if renames:
        conn.execute("PRAGMA defer_foreign_keys = ON")  # children and parent move together
        for table in RENAMED_WITH_IMAGES:
            conn.executemany(f"UPDATE {table} SET id = ? WHERE id = ? AND idx = ?", renames)
    conn.execute(
        "UPDATE images SET fingerprint = p.fingerprint FROM plan p"
        " WHERE images.legacy_text = 1 AND images.id = p.id AND images.idx = p.idx"
        " AND images.fingerprint = p.legacy_fingerprint"
    )
    conn.execute(
        "UPDATE images SET legacy_text = 0 WHERE legacy_text = 1 AND EXISTS"
        " (SELECT 1 FROM plan p WHERE p.id = images.id AND p.idx = images.idx)"
    )


# Tables whose rows belong to an image by (id, idx): an image renamed takes them along.
RENAMED_WITH_IMAGES = ("images", "attempts", "save_intents", "files", "batch_requests")
