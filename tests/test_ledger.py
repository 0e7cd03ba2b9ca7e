from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nbbatch.errors import LedgerError
from nbbatch.store import migrations as ledger_module
from nbbatch.store.ledger import Ledger
from nbbatch.store.migrations import APPLICATION_ID, MIGRATIONS
from nbbatch.store.records import Attempt, Counts, PlannedImage, SaveIntent, SyncResult


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(db: Path):
    with Ledger.open(db) as opened:
        yield opened


def plan(*specs: tuple[str, int, str]) -> list[PlannedImage]:
    return [PlannedImage(id_, idx, fp, pos) for pos, (id_, idx, fp) in enumerate(specs)]


def save(ledger: Ledger, key, *, provider="gemini", model="m1", cost=0.1, usage=None) -> None:
    ledger.begin_save(key, file=f"images/{key[0]}-{key[1]}.png", sha256="ab" * 32, bytes=123,
                      provider=provider, model=model, cost_usd=cost, usage=usage)
    ledger.mark_done(key)


def attempt(outcome="success", **kw) -> Attempt:
    return Attempt(started_at=1000.0, provider="gemini", model="m1", outcome=outcome, **kw)


def statuses(ledger: Ledger) -> dict:
    return {(r.id, r.index): r.status for r in ledger.rows()}


# -- schema and migrations ------------------------------------------------------------------


def test_new_ledger_has_current_schema(db: Path) -> None:
    Ledger.open(db).close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "images", "attempts", "save_intents"} <= tables
    conn.close()


def test_reopening_is_idempotent_and_keeps_data(db: Path) -> None:
    with Ledger.open(db) as ledger:
        ledger.sync(plan(("a", 1, "f")))
    for _ in range(2):
        with Ledger.open(db) as ledger:
            assert ledger.counts() == Counts(1, 0, 0, 1)
            assert ledger.integrity_ok()


def test_empty_file_and_empty_sqlite_db_are_initialised(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    bare = tmp_path / "bare.db"
    sqlite3.connect(bare).close()
    for path in (empty, bare):
        with Ledger.open(path) as ledger:
            assert ledger.counts() == Counts(0, 0, 0, 0)


def test_later_migration_upgrades_existing_ledger(db: Path, monkeypatch) -> None:
    with Ledger.open(db) as ledger:
        ledger.sync(plan(("a", 1, "f")))
    monkeypatch.setattr(
        ledger_module, "MIGRATIONS",
        [*MIGRATIONS, "ALTER TABLE images ADD COLUMN note TEXT; UPDATE images SET note = 'x';"],
    )
    with Ledger.open(db) as ledger:
        assert ledger.counts() == Counts(1, 0, 0, 1)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
    assert conn.execute("SELECT note FROM images").fetchall() == [("x",)]
    conn.close()


def test_failed_migration_leaves_ledger_untouched(db: Path, monkeypatch) -> None:
    Ledger.open(db).close()
    monkeypatch.setattr(
        ledger_module, "MIGRATIONS",
        [*MIGRATIONS, "ALTER TABLE images ADD COLUMN note TEXT; SELECT * FROM no_such_table;"],
    )
    with pytest.raises(LedgerError, match="no such table"):
        Ledger.open(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(images)")]
    assert "note" not in columns
    conn.close()


def test_open_while_another_process_writes(db: Path) -> None:
    with Ledger.open(db) as ledger:
        ledger.sync(plan(("a", 1, "f")))
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE images SET status = 'done'")
    try:
        with Ledger.open(db) as reader:  # `status` beside a running `run`: no lock needed
            assert reader.counts() == Counts(1, 0, 0, 1)
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_newer_schema_is_refused(db: Path) -> None:
    Ledger.open(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    conn.close()
    with pytest.raises(LedgerError, match=r"newer nbbatch.*upgrade nbbatch"):
        Ledger.open(db)


def test_garbage_file_is_refused(db: Path) -> None:
    db.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(LedgerError, match="not an nbbatch ledger"):
        Ledger.open(db)
    assert db.read_bytes().startswith(b"this is not a database")


def test_foreign_sqlite_database_is_refused_and_untouched(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE photos (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="SQLite database but not an nbbatch ledger"):
        Ledger.open(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()


def test_missing_folder_is_a_ledger_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="cannot open"):
        Ledger.open(tmp_path / "nope" / "ledger.db")


# -- runs ------------------------------------------------------------------------------------


def test_runs_round_trip(ledger: Ledger) -> None:
    assert ledger.last_run() is None
    options = {"provider": "gemini", "interval": [5, 10], "max_cost": None, "nested": {"a": 1}}
    first = ledger.start_run(manifest="prompts.yaml", options={}, cwd="/w", pid=1)
    run_id = ledger.start_run(manifest="/abs/prompts.yaml", options=options, cwd="/home", pid=42)
    assert run_id > first
    run = ledger.last_run()
    assert run is not None
    assert (run.run_id, run.manifest, run.options, run.cwd, run.pid) == (
        run_id, "/abs/prompts.yaml", options, "/home", 42)
    assert run.finished_at is None and run.exit_code is None
    ledger.finish_run(run_id, 75)
    run = ledger.last_run()
    assert run is not None and run.exit_code == 75 and run.finished_at >= run.started_at


def test_attempts_carry_the_current_run(ledger: Ledger, db: Path) -> None:
    ledger.sync(plan(("a", 1, "f")))
    ledger.record_attempt(("a", 1), attempt("transient"))
    run_id = ledger.start_run(manifest="m", options={}, cwd="/", pid=1)
    ledger.record_attempt(("a", 1), attempt("success"))
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT run_id FROM attempts ORDER BY attempt_id").fetchall() == [
        (None,), (run_id,)]
    conn.close()


# -- sync -------------------------------------------------------------------------------------


def test_sync_new_unchanged_changed_removed_returning(ledger: Ledger) -> None:
    assert ledger.sync(plan(("a", 1, "fa"), ("b", 1, "fb"), ("b", 2, "fb2"))) == SyncResult(
        new=3, changed=0, unchanged=0, removed=0)
    assert ledger.sync(plan(("a", 1, "fa"), ("b", 1, "fb"), ("b", 2, "fb2"))) == SyncResult(
        new=0, changed=0, unchanged=3, removed=0)

    save(ledger, ("a", 1))
    ledger.mark_failed(("b", 1), kind="blocked", message="no", provider="gemini", model="m1")
    # b#2 dropped, a#1 changed although done, b#1 unchanged stays failed, c new.
    result = ledger.sync(plan(("c", 1, "fc"), ("a", 1, "fa-2"), ("b", 1, "fb")))
    assert result == SyncResult(new=1, changed=1, unchanged=1, removed=1)
    rows = {(r.id, r.index): r for r in ledger.rows()}
    assert set(rows) == {("c", 1), ("a", 1), ("b", 1)}
    a = rows["a", 1]
    assert (a.status, a.fingerprint, a.file, a.sha256, a.bytes, a.cost_usd, a.provider) == (
        "pending", "fa-2", None, None, None, None, None)
    assert a.attempts == 0  # kept (none were recorded here)
    assert rows["b", 1].status == "failed"
    assert ledger.counts() == Counts(total=3, done=0, failed=1, pending=2)

    # Removing again counts nothing new; b#2 coming back unchanged is unchanged, still pending.
    assert ledger.sync(plan(("c", 1, "fc"), ("a", 1, "fa-2"), ("b", 1, "fb"))).removed == 0
    result = ledger.sync(plan(("c", 1, "fc"), ("a", 1, "fa-2"), ("b", 1, "fb"), ("b", 2, "fb2")))
    assert result == SyncResult(new=0, changed=0, unchanged=4, removed=0)
    assert statuses(ledger)["b", 2] == "pending"


def test_excluded_done_image_returns_done(ledger: Ledger) -> None:
    ledger.sync(plan(("a", 1, "fa"), ("b", 1, "fb")))
    save(ledger, ("a", 1), cost=0.5)
    ledger.sync(plan(("b", 1, "fb")))
    assert ledger.counts() == Counts(1, 0, 0, 1)
    assert ledger.cost_summary().on_disk_usd == 0
    ledger.sync(plan(("a", 1, "fa"), ("b", 1, "fb")))
    assert ledger.counts() == Counts(2, 1, 0, 1)
    assert ledger.cost_summary().on_disk_usd == 0.5


def test_changed_fingerprint_keeps_attempts_and_drops_save_intent(ledger: Ledger) -> None:
    ledger.sync(plan(("a", 1, "fa")))
    ledger.record_attempt(("a", 1), attempt("transient"))
    ledger.record_attempt(("a", 1), attempt("success"))
    ledger.begin_save(("a", 1), file="images/a.png", sha256="0" * 64, bytes=1,
                      provider="gemini", model="m1", cost_usd=0.1, usage=None)
    ledger.sync(plan(("a", 1, "fa-new")))
    assert ledger.saves_in_progress() == []
    (row,) = ledger.pending()
    assert row.attempts == 2 and row.fingerprint == "fa-new"


def test_sync_updates_positions(ledger: Ledger) -> None:
    ledger.sync(plan(("a", 1, "f"), ("b", 1, "f"), ("b", 2, "f")))
    ledger.sync(plan(("b", 1, "f"), ("b", 2, "f"), ("a", 1, "f")))
    assert [(r.id, r.index, r.position) for r in ledger.rows()] == [
        ("b", 1, 0), ("b", 2, 1), ("a", 1, 2)]
    assert [(r.id, r.index) for r in ledger.pending()] == [("b", 1), ("b", 2), ("a", 1)]


def test_rows_and_pending_order_by_position_then_index(ledger: Ledger) -> None:
    ledger.sync([PlannedImage("z", 2, "f", 0), PlannedImage("z", 1, "f", 0),
                 PlannedImage("a", 1, "f", 1)])
    save(ledger, ("z", 1))
    assert [(r.id, r.index) for r in ledger.rows()] == [("z", 1), ("z", 2), ("a", 1)]
    assert [(r.id, r.index) for r in ledger.pending()] == [("z", 2), ("a", 1)]


def test_sync_rejects_duplicate_keys_without_changes(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        ledger.sync(plan(("a", 1, "f"), ("a", 1, "g")))
    assert ledger.counts().total == 0


def test_sync_many_images(ledger: Ledger) -> None:
    images = [PlannedImage(f"i{n:05d}", 1, f"f{n}", n) for n in range(5000)]
    assert ledger.sync(images).new == 5000
    assert ledger.sync(iter(images)).unchanged == 5000
    assert ledger.counts() == Counts(5000, 0, 0, 5000)
    assert sum(1 for _ in ledger.rows()) == 5000


# -- outcomes ---------------------------------------------------------------------------------


def test_record_attempt_appends_and_counts(ledger: Ledger) -> None:
    ledger.sync(plan(("a", 1, "f")))
    first = attempt("transient", http_status=503, latency=61.5, error="overloaded")
    second = attempt("transient", possibly_billed=True, cost_usd=0.134, error="timeout")
    ledger.record_attempt(("a", 1), first)
    ledger.record_attempt(("a", 1), second)
    assert ledger.attempts(("a", 1)) == [first, second]
    assert ledger.pending()[0].attempts == 2
    assert ledger.attempts(("b", 1)) == []


def test_record_attempt_for_unknown_image_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="not in the ledger"):
        ledger.record_attempt(("ghost", 1), attempt())
    with pytest.raises(LedgerError, match="not in the ledger"):
        ledger.begin_save(("ghost", 1), file="f", sha256="s", bytes=1, provider="p", model="m",
                          cost_usd=0, usage=None)


def test_save_intent_then_done(ledger: Ledger) -> None:
    ledger.sync(plan(("a", 1, "f")))
    ledger.mark_pending(("a", 1), kind="transient", message="503")
    usage = {"input_tokens": 10, "output_tokens": 1290}
    ledger.begin_save(("a", 1), file="images/a.png", sha256="cd" * 32, bytes=2048,
                      provider="openai", model="gpt-image-1", cost_usd=0.04, usage=usage)
    assert ledger.saves_in_progress() == [SaveIntent("a", 1, "images/a.png", "cd" * 32)]
    assert ledger.counts() == Counts(1, 0, 0, 1)  # still pending until mark_done
    ledger.mark_done(("a", 1))
    assert ledger.saves_in_progress() == []
    (row,) = ledger.rows()
    assert (row.status, row.provider, row.model, row.file, row.sha256, row.bytes, row.cost_usd,
            row.usage, row.error_kind, row.error_message) == (
        "done", "openai", "gpt-image-1", "images/a.png", "cd" * 32, 2048, 0.04, usage, None, None)


def test_mark_done_without_intent_is_refused(ledger: Ledger) -> None:
    ledger.sync(plan(("a", 1, "f")))
    with pytest.raises(LedgerError, match="no save in progress"):
        ledger.mark_done(("a", 1))
    assert ledger.counts().done == 0


def test_clear_save_forgets_intent(ledger: Ledger) -> None:
    ledger.sync(plan(("a", 1, "f")))
    ledger.begin_save(("a", 1), file="images/a.png", sha256="0" * 64, bytes=1,
                      provider="gemini", model="m1", cost_usd=0.1, usage=None)
    ledger.clear_save(("a", 1))
    assert ledger.saves_in_progress() == []
    assert ledger.pending()[0].file is None


def test_intent_survives_crash_and_yields_one_success(db: Path) -> None:
    with Ledger.open(db) as ledger:
        ledger.sync(plan(("a", 1, "f"), ("b", 1, "f")))
        ledger.record_attempt(("a", 1), attempt())
        ledger.begin_save(("a", 1), file="images/a.png", sha256="0" * 64, bytes=1,
                          provider="gemini", model="m1", cost_usd=0.1, usage=None)
        # the process dies here: no mark_done
    with Ledger.open(db) as ledger:
        assert ledger.saves_in_progress() == [SaveIntent("a", 1, "images/a.png", "0" * 64)]
        ledger.mark_done(("a", 1))  # the file had landed
        ledger.sync(plan(("a", 1, "f"), ("b", 1, "f")))
        assert [(r.id, r.index) for r in ledger.pending()] == [("b", 1)]
        assert ledger.counts() == Counts(2, 1, 0, 1)
        assert len(ledger.attempts(("a", 1))) == 1


def test_mark_failed_and_pending_keep_errors(ledger: Ledger) -> None:
    ledger.sync(plan(("a", 1, "f"), ("b", 1, "f")))
    ledger.mark_failed(("a", 1), kind="blocked", message="IMAGE_SAFETY", provider="gemini",
                       model="m1")
    ledger.mark_pending(("b", 1), kind="transient", message="503 overloaded")
    rows = {r.id: r for r in ledger.rows()}
    assert (rows["a"].status, rows["a"].error_kind, rows["a"].error_message,
            rows["a"].provider) == ("failed", "blocked", "IMAGE_SAFETY", "gemini")
    assert (rows["b"].status, rows["b"].error_kind) == ("pending", "transient")


def test_done_image_is_never_demoted(ledger: Ledger) -> None:
    ledger.sync(plan(("a", 1, "f")))
    save(ledger, ("a", 1))
    ledger.mark_pending(("a", 1), kind="interrupted", message="SIGTERM")
    ledger.mark_failed(("a", 1), kind="blocked", message="x", provider=None, model=None)
    (row,) = ledger.rows()
    assert (row.status, row.error_kind, row.file) == ("done", None, "images/a-1.png")


def test_retry_failed(ledger: Ledger) -> None:
    ledger.sync(plan(("a", 1, "f"), ("b", 1, "f"), ("c", 1, "f")))
    for key in (("a", 1), ("b", 1)):
        ledger.mark_failed(key, kind="invalid", message="bad", provider="gemini", model="m1")
    ledger.sync(plan(("a", 1, "f"), ("c", 1, "f")))  # b is no longer in the manifest
    assert ledger.retry_failed() == 1
    assert ledger.retry_failed() == 0
    a = next(r for r in ledger.rows() if r.id == "a")
    assert (a.status, a.error_kind, a.error_message) == ("pending", None, None)
    assert ledger.counts() == Counts(2, 0, 0, 2)


# -- reporting --------------------------------------------------------------------------------


def test_counts_by_provider_and_cost_summary(ledger: Ledger) -> None:
    ledger.sync(plan(("a", 1, "f"), ("b", 1, "f"), ("c", 1, "f"), ("d", 1, "f"), ("e", 1, "f")))
    save(ledger, ("a", 1), provider="gemini", cost=0.134)
    save(ledger, ("b", 1), provider="openai", cost=0.04)
    save(ledger, ("c", 1), provider="gemini", cost=0.134)
    ledger.mark_failed(("d", 1), kind="blocked", message="no", provider="openai", model="m")
    ledger.record_attempt(("e", 1), attempt("transient", possibly_billed=True, cost_usd=0.134))
    ledger.record_attempt(("e", 1), attempt("transient", http_status=503))
    assert ledger.counts() == Counts(total=5, done=3, failed=1, pending=1)
    assert ledger.counts_by_provider() == {
        "": Counts(1, 0, 0, 1),
        "gemini": Counts(2, 2, 0, 0),
        "openai": Counts(2, 1, 1, 0),
    }
    summary = ledger.cost_summary()
    assert summary.on_disk_usd == pytest.approx(0.308)
    assert summary.done_images == 3
    assert summary.possibly_spent_usd == pytest.approx(0.134)
    assert summary.spent.lost == 1 and summary.spent.interrupted == 0


def test_spent_counts_every_billed_attempt_apart_from_the_images_on_disk(ledger: Ledger) -> None:
    ledger.sync(plan(("a", 1, "fa"), ("b", 1, "fb")))
    ledger.record_attempt(("a", 1), attempt("success", cost_usd=0.134))
    save(ledger, ("a", 1), cost=0.134)
    ledger.record_attempt(("b", 1), attempt("interrupted", possibly_billed=True, cost_usd=0.2))
    ledger.sync(plan(("a", 1, "fa-changed"), ("b", 1, "fb")))  # a's prompt changed
    ledger.record_attempt(("a", 1), attempt("success", cost_usd=0.15))
    save(ledger, ("a", 1), cost=0.15)
    summary = ledger.cost_summary()
    assert summary.on_disk_usd == pytest.approx(0.15)  # the image there now
    assert summary.spent.billed_usd == pytest.approx(0.284)  # both images of a were paid for
    assert (summary.spent.interrupted, summary.spent.interrupted_usd) == (1, 0.2)
    assert summary.spent.usd == pytest.approx(0.484)


def test_integrity_ok(ledger: Ledger) -> None:
    assert ledger.integrity_ok()


# -- crash safety -----------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from nbbatch.store.ledger import Ledger
    from nbbatch.store.records import Attempt, PlannedImage

    ledger = Ledger.open(Path(sys.argv[1]))
    images = [PlannedImage(f"i{n:04d}", 1, "f", n) for n in range(N)]
    ledger.sync(images)
    ledger.start_run(manifest="m.yaml", options={}, cwd="/", pid=0)
    print("ready", flush=True)
    while True:
        for image in ledger.pending():
            key = (image.id, image.index)
            ledger.record_attempt(key, Attempt(time.time(), "gemini", "m", "success"))
            ledger.begin_save(key, file=f"images/{image.id}.png", sha256="0" * 64, bytes=1,
                              provider="gemini", model="m", cost_usd=0.1, usage={"n": 1})
            ledger.mark_done(key)
        ledger.sync([PlannedImage(i.id, 1, str(time.time()), i.position) for i in images])
    """
).replace("N)", "300)")


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.4])
def test_kill_9_leaves_a_consistent_ledger(db: Path, delay: float) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE,
                            env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    with Ledger.open(db) as ledger:
        assert ledger.integrity_ok()
        counts = ledger.counts()
        assert counts.total == 300
        assert counts.done + counts.pending == counts.total and counts.failed == 0
        assert len(ledger.saves_in_progress()) <= 1
        for row in ledger.rows():
            assert row.attempts == len(ledger.attempts((row.id, row.index)))
            if row.status == "done":
                assert row.file == f"images/{row.id}.png" and row.usage == {"n": 1}


def test_a_version_1_ledger_gains_price_estimates_and_keeps_its_images(db: Path, monkeypatch):
    monkeypatch.setattr(ledger_module, "MIGRATIONS", MIGRATIONS[:1])
    Ledger.open(db).close()
    monkeypatch.undo()
    with sqlite3.connect(db) as conn:  # rows as version 1 wrote them
        conn.executemany("INSERT INTO images (id, idx, fingerprint, position) VALUES (?, 1, ?, ?)",
                         [("a", "f1", 0), ("b", "f2", 1)])
    conn.close()
    with Ledger.open(db) as upgraded:
        assert upgraded.counts().pending == 2
        upgraded.sync([PlannedImage("a", 1, "f1", 0, 0.134), PlannedImage("b", 1, "f2", 1, 0.067)])
        assert upgraded.cost_summary().remaining_usd == pytest.approx(0.201)


# ------------------------------------------------------------------ recorded requests (schema 3)

def _schema_2_ledger(db: Path) -> None:
    """A ledger exactly as nbbatch wrote it at schema 2: built from those migrations' SQL."""
    conn = sqlite3.connect(db, isolation_level=None)
    for script in MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.executescript("""
        INSERT INTO runs (started_at, manifest, options, cwd, pid, exit_code)
            VALUES (1.0, 'm.yaml', '{"max_images": 3}', '/', 1, 75);
        INSERT INTO images (id, idx, fingerprint, status, position, provider, model, file,
                            sha256, bytes, cost_usd, attempts, estimate_usd)
            VALUES ('a', 1, 'f', 'done', 0, 'gemini', 'm', 'images/a.png', 'aa', 1, 0.1, 1,
                    0.134),
                   ('b', 1, 'g', 'pending', 1, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0.134);
        INSERT INTO attempts (id, idx, run_id, started_at, provider, model, outcome)
            VALUES ('a', 1, 1, 1.0, 'gemini', 'm', 'success');
    """)
    conn.close()


def test_a_schema_2_ledger_is_migrated_and_keeps_everything(db: Path) -> None:
    _schema_2_ledger(db)
    with Ledger.open(db) as ledger:
        assert ledger.counts() == Counts(2, 1, 0, 1)
        last = ledger.last_run()
        assert last is not None and last.options == {"max_images": 3} and last.settings is None
        assert [(r.id, r.status, r.prompt) for r in ledger.rows()] == [
            ("a", "done", None), ("b", "pending", None)]  # asked before requests were kept
        assert len(ledger.attempts(("a", 1))) == 1
        assert ledger.items() == []
        assert ledger.cost_summary().on_disk_usd == pytest.approx(0.1)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()


def _items():
    from nbbatch.model import Item

    return (Item("a", "A red sneaker", "gemini", "gemini-3-pro-image", "4:3", "2K", 2,
                 (Path("/refs/x.png"),), ("ab" * 32,)),
            Item("b", "A blue sneaker", "openai", "gpt-image-1"))


def test_the_request_of_each_item_is_recorded_and_read_back(db: Path) -> None:
    items = _items()
    images = [PlannedImage(i.id, k, i.fingerprint, n) for n, i in enumerate(items)
              for k in range(1, i.count + 1)]
    with Ledger.open(db) as ledger:
        ledger.sync(images, items)
        ledger.start_run(manifest="m.yaml", options={}, cwd="/", pid=1,
                         settings={"pacing": {"concurrency": 2}})
        assert ledger.items() == list(items)
        assert [i.fingerprint for i in ledger.items()] == [i.fingerprint for i in items]
        assert {r.id: r.prompt for r in ledger.rows()} == {"a": "A red sneaker",
                                                          "b": "A blue sneaker"}
        assert ledger.last_run().settings == {"pacing": {"concurrency": 2}}


def test_recording_unchanged_items_writes_nothing_and_a_change_is_written(db: Path) -> None:
    from dataclasses import replace

    from nbbatch.store.items import record_items

    items = _items()
    with Ledger.open(db) as ledger:
        ledger.sync([PlannedImage(i.id, 1, i.fingerprint, n) for n, i in enumerate(items)],
                    items)
    conn = sqlite3.connect(db)
    assert record_items(conn, items) == 0
    assert record_items(conn, (replace(items[0], prompt="A green sneaker"), items[1])) == 1
    assert conn.execute("SELECT prompt FROM items WHERE id = 'a'").fetchone() == (
        "A green sneaker",)
    conn.close()


def test_the_per_status_reads_use_the_status_index_and_the_whole_reads_read_straight_through(
        ledger: Ledger) -> None:
    """At 100,000 images the counts must come from the index alone, "which are pending?" read
    only those, and what reads every done image read the table in order, not the index."""
    ledger.sync(plan(*((f"i{n}", 1, "f") for n in range(50))))
    sent: list[str] = []
    ledger._conn.set_trace_callback(sent.append)
    ledger.counts()
    ledger.batch.submittable()
    list(ledger.done_files())
    ledger._conn.set_trace_callback(None)
    plans = {sql.split()[1][:20]: " ".join(row[3] for row in ledger._conn.execute(
        "EXPLAIN QUERY PLAN " + sql)) for sql in sent if sql.startswith("SELECT")}
    counts, pending, done = (plans[k] for k in ("count(*),", "images.id,", "id,"))
    assert "COVERING INDEX images_state" in counts
    assert "INDEX images_state (in_manifest=? AND status=?)" in pending
    assert "TEMP B-TREE" not in pending
    assert done == "SCAN images"


def test_status_rows_come_failed_then_pending_then_done_each_in_manifest_order(
        ledger: Ledger) -> None:
    ledger.sync(plan(("a", 1, "f"), ("b", 1, "f"), ("c", 1, "f"), ("d", 1, "f"), ("e", 1, "f")))
    for key in (("a", 1), ("d", 1)):
        save(ledger, key)
    for key in (("e", 1), ("b", 1)):
        ledger.mark_failed(key, kind="invalid", message="no", provider="gemini", model="m1")
    assert [r.id for r in ledger.rows(attention_first=True)] == ["b", "e", "c", "a", "d"]
    assert [r.id for r in ledger.rows()] == ["a", "b", "c", "d", "e"]


def test_the_image_columns_come_in_the_order_of_the_row_fields() -> None:
    from nbbatch.store.records import _IMAGE_FIELDS, ImageRow

    assert list(ImageRow._fields) == _IMAGE_FIELDS


def test_a_sync_of_the_images_the_last_sync_left_compares_one_digest(ledger: Ledger) -> None:
    images = plan(("a", 1, "fa"), ("b", 1, "fb"))
    ledger.sync(images)
    save(ledger, ("a", 1))  # what runs write leaves the digest as it is
    before = ledger._conn.total_changes
    assert ledger.sync(images) == SyncResult(new=0, changed=0, unchanged=2, removed=0)
    assert ledger._conn.total_changes == before  # not one row written, not even the temp table
    # Any other plan is compared row by row, and the one after it too.
    assert ledger.sync(plan(("a", 1, "fa-2"))) == SyncResult(new=0, changed=1, unchanged=0,
                                                             removed=1)
    assert ledger.sync(images) == SyncResult(new=0, changed=1, unchanged=1, removed=0)
    assert statuses(ledger) == {("a", 1): "pending", ("b", 1): "pending"}
    # Rows from before prompts were normalised always get the full sync that adopts them.
    ledger._conn.execute("UPDATE images SET legacy_text = 1 WHERE id = 'b'")
    before = ledger._conn.total_changes
    ledger.sync(images)
    assert ledger._conn.total_changes > before
