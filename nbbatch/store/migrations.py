"""The ledger's schema, built by numbered migrations.

The schema version lives in `PRAGMA user_version`; MIGRATIONS[:N] build version N. The file is
stamped with `PRAGMA application_id` so a foreign SQLite database is refused, not modified.
Each migration is SQL, or a function of the connection once a table must be rebuilt. A
migration that rewrites the items or images table must also delete its digest from meta
(`items_digest`, `images_digest`), so the next run records them again in full (store/items.py,
store/sync.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from nbbatch.errors import LedgerError

Migration = str | Callable[[sqlite3.Connection], None]

APPLICATION_ID = 0x6E626231  # "nbb1"

MIGRATIONS: list[Migration] = [
    # 1: the initial schema.
    """
    CREATE TABLE runs (
        run_id      INTEGER PRIMARY KEY,
        started_at  REAL NOT NULL,
        finished_at REAL,
        manifest    TEXT NOT NULL,
        options     TEXT NOT NULL,          -- JSON: effective settings, no secrets
        cwd         TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        exit_code   INTEGER
    );
    CREATE TABLE images (
        id            TEXT NOT NULL,
        idx           INTEGER NOT NULL,
        fingerprint   TEXT NOT NULL,
        status        TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'done', 'failed')),
        in_manifest   INTEGER NOT NULL DEFAULT 1,   -- 0: dropped from the manifest, kept
        position      INTEGER NOT NULL,
        provider      TEXT,
        model         TEXT,
        attempts      INTEGER NOT NULL DEFAULT 0,
        file          TEXT,
        sha256        TEXT,
        bytes         INTEGER,
        cost_usd      REAL,
        usage         TEXT,                          -- JSON
        error_kind    TEXT,
        error_message TEXT,
        updated_at    REAL,
        PRIMARY KEY (id, idx)
    ) WITHOUT ROWID;
    CREATE INDEX images_order ON images (in_manifest, position, idx);
    CREATE TABLE save_intents (
        id        TEXT NOT NULL,
        idx       INTEGER NOT NULL,
        file      TEXT NOT NULL,
        sha256    TEXT NOT NULL,
        bytes     INTEGER NOT NULL,
        provider  TEXT NOT NULL,
        model     TEXT NOT NULL,
        cost_usd  REAL NOT NULL,
        usage     TEXT,
        PRIMARY KEY (id, idx),
        FOREIGN KEY (id, idx) REFERENCES images (id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE attempts (
        attempt_id      INTEGER PRIMARY KEY,
        id              TEXT NOT NULL,
        idx             INTEGER NOT NULL,
        run_id          INTEGER REFERENCES runs (run_id),
        started_at      REAL NOT NULL,
        provider        TEXT NOT NULL,
        model           TEXT NOT NULL,
        outcome         TEXT NOT NULL CHECK (outcome IN ('success', 'transient', 'blocked',
                            'invalid', 'quota', 'fatal', 'interrupted')),
        http_status     INTEGER,
        latency         REAL,
        error           TEXT,
        possibly_billed INTEGER NOT NULL DEFAULT 0,
        cost_usd        REAL NOT NULL DEFAULT 0,
        FOREIGN KEY (id, idx) REFERENCES images (id, idx)
    );
    CREATE INDEX attempts_image ON attempts (id, idx);
    """,
    # 2: each image's estimated price, so status can show what the pending ones will cost.
    """
    ALTER TABLE images ADD COLUMN estimate_usd REAL NOT NULL DEFAULT 0;
    """,
    # 3: what each item asked for, and each run's effective settings, so that `resume`
    # needs nothing but the ledger. Ledgers from before have neither until their next run.
    """
    CREATE TABLE items (
        id           TEXT PRIMARY KEY,
        seq          INTEGER NOT NULL,        -- its place in the manifest
        prompt       TEXT NOT NULL,
        provider     TEXT NOT NULL,
        model        TEXT NOT NULL,
        aspect_ratio TEXT,
        image_size   TEXT,
        count        INTEGER NOT NULL,
        refs         TEXT,                    -- JSON [[path, sha256], ...], or NULL
        fingerprint  TEXT NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE runs ADD COLUMN settings TEXT;  -- JSON: the effective manifest, no secrets
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;  -- digests, caches
    """,
    # 4: batch mode. Each job is recorded with its images before the create call is sent;
    # images.batch_job names the live job an image sits in (NULL: none).
    """
    CREATE TABLE batch_jobs (
        job_id        INTEGER PRIMARY KEY,
        provider      TEXT NOT NULL,
        model         TEXT NOT NULL,
        display_name  TEXT NOT NULL UNIQUE,   -- our identity for it, found in the job list
        name          TEXT,                   -- the provider's job name, once it answered
        phase         TEXT NOT NULL DEFAULT 'creating'
                      CHECK (phase IN ('creating', 'live', 'closed')),
        state         TEXT,                   -- the provider's own state, as last seen
        created_at    REAL NOT NULL,          -- recorded, before the create call
        submitted_at  REAL,                   -- the provider accepted it
        updated_at    REAL,
        closed_at     REAL,
        request_count INTEGER NOT NULL,
        succeeded     INTEGER NOT NULL DEFAULT 0,  -- counts the provider reports
        failed        INTEGER NOT NULL DEFAULT 0,
        input_file    TEXT,                   -- the uploaded requests file, if any
        outcome       TEXT,                   -- how it closed: succeeded, failed, expired...
        error         TEXT
    );
    CREATE INDEX batch_jobs_phase ON batch_jobs (phase);
    CREATE TABLE batch_requests (
        job_id      INTEGER NOT NULL REFERENCES batch_jobs (job_id),
        position    INTEGER NOT NULL,         -- order in the job: inline results keep it
        id          TEXT NOT NULL,
        idx         INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,            -- what was asked for
        PRIMARY KEY (job_id, position),
        FOREIGN KEY (id, idx) REFERENCES images (id, idx)
    ) WITHOUT ROWID;
    CREATE INDEX batch_requests_image ON batch_requests (id, idx);
    ALTER TABLE images ADD COLUMN batch_job INTEGER REFERENCES batch_jobs (job_id);
    CREATE INDEX images_batch_job ON images (batch_job) WHERE batch_job IS NOT NULL;
    """,
    # 5: what was made: the pixels, and how the shape differs from what was asked (a
    # backup that takes other sizes), so the log and status can say so.
    """
    ALTER TABLE images ADD COLUMN width INTEGER;
    ALTER TABLE images ADD COLUMN height INTEGER;
    ALTER TABLE images ADD COLUMN shape_note TEXT;
    ALTER TABLE save_intents ADD COLUMN width INTEGER;
    ALTER TABLE save_intents ADD COLUMN height INTEGER;
    ALTER TABLE save_intents ADD COLUMN shape_note TEXT;
    """,
    # 6: prompts are now normalised (line breaks, Unicode NFC) before they are hashed. Rows
    # written before may hold the fingerprint (and derived id) of the prompt as it was written:
    # the next sync recognises them by it and moves them to the normalised ones (sync.py), so
    # nothing is made again.
    """
    ALTER TABLE images ADD COLUMN legacy_text INTEGER NOT NULL DEFAULT 0;
    UPDATE images SET legacy_text = 1;
    """,
    # 7: every image file the ledger placed, with the image it belongs to, kept whatever the
    # manifest becomes: no other image is saved over it (names compared ignoring case, as
    # case-insensitive file systems do).
    """
    CREATE TABLE files (
        name   TEXT PRIMARY KEY COLLATE NOCASE,  -- "images/x.png"
        id     TEXT NOT NULL,
        idx    INTEGER NOT NULL,
        sha256 TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO files SELECT file, id, idx, coalesce(sha256, '') FROM images
        WHERE file IS NOT NULL;
    """,
    # 8: a sync of the images the last sync left compares one digest (sync.py). From this
    # schema on, an nbbatch that does not keep that digest cannot open the ledger, so no
    # sync can leave it stale; one kept before is dropped.
    "DELETE FROM meta WHERE key = 'images_digest';",
    # 9: the images of each status in manifest order, so the counts read the index alone and
    # "which are pending?" reads only those, not 100,000 rows.
    "CREATE INDEX images_state ON images (in_manifest, status, position, idx);",
]


def schema_version(conn: sqlite3.Connection, path: Path) -> int:
    """The ledger's schema version; LedgerError for a foreign SQLite file or a newer schema."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    empty = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    if app_id != APPLICATION_ID and not (app_id == 0 and version == 0 and empty):
        raise LedgerError(
            f"{path} is a SQLite database but not an nbbatch ledger; "
            "move it away or choose another output folder"
        )
    if version > len(MIGRATIONS):
        raise LedgerError(
            f"{path} was written by a newer nbbatch (ledger schema {version}, this "
            f"version knows up to {len(MIGRATIONS)}); upgrade nbbatch to use it"
        )
    return int(version)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the ledger at `path` to the current schema, refusing foreign or newer files."""
    # The common case (current schema) only reads, so `status` beside a run takes no lock.
    if schema_version(conn, path) == len(MIGRATIONS):
        return
    conn.execute("BEGIN IMMEDIATE")  # one migrator at a time; the next one sees its work
    try:
        version = schema_version(conn, path)
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            if callable(step):
                step(conn)
            else:
                for statement in _statements(step):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements (executescript would commit our open transaction)."""
    buffer = ""
    for part in script.split(";"):
        buffer += part + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\n;"):
                yield buffer
            buffer = ""
