"""The same text written another way is the same image: re-saving a manifest (CRLF line
breaks, Unicode NFD) buys nothing again, and ledgers from before normalisation keep theirs."""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from pathlib import Path

import pytest
import yaml

import nbbatch.store.migrations as migrations
from nbbatch.engine.plan import plan_batch
from nbbatch.engine.run import run_batch
from nbbatch.model import Item
from nbbatch.settings import RunOptions, resolve
from nbbatch.sim import SimulatorOptions
from nbbatch.sim.inprocess import simulator_transport
from nbbatch.store.ledger import Ledger

PROMPTS = ["Crème brûlée on a plate,\nstudio light", "Ein Bär im Café\r\nat dusk", "plain"]
WITH_IDS = [True, False, False]  # explicit ids keep their id; derived ones are re-derived


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def write(folder: Path, form: str, spell) -> Path:
    """The PROMPTS in a manifest of `form` (yaml, csv, jsonl), each spelled by `spell`."""
    entries = [{"id": f"p{i}", "prompt": spell(p)} if explicit else {"prompt": spell(p)}
               for i, (p, explicit) in enumerate(zip(PROMPTS, WITH_IDS, strict=True))]
    doc: dict = {"version": 1, "output": "out", "pacing": {"interval": 0},
                 "defaults": {"provider": "simulator", "model": "gemini-3-pro-image"}}
    if form == "yaml":
        doc["prompts"] = entries
    elif form == "csv":
        cells = ['"' + e["prompt"].replace('"', '""') + '"' for e in entries]
        rows = [f"{e.get('id', '')},{cell}" for e, cell in zip(entries, cells, strict=True)]
        newline = "\r\n" if spell in (crlf, both) else "\n"
        (folder / "p.csv").write_bytes(newline.join(["id,prompt", *rows, ""]).encode())
        doc["prompts_file"] = "p.csv"
    else:
        (folder / "p.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
        doc["prompts_file"] = "p.jsonl"
    path = folder / "m.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def both(text: str) -> str:
    return crlf(nfd(text))


def run(path: Path, tmp_path: Path, transport) -> int:
    settings = resolve(path, RunOptions(), cwd=tmp_path)
    run_batch(settings, env={}, cwd=tmp_path, handle_signals=False,
              transport_factory=lambda name: transport)
    return len(transport.core.requests())


@pytest.mark.parametrize("form", ["yaml", "csv", "jsonl"])
@pytest.mark.parametrize("spell", [crlf, nfd, both], ids=["CRLF", "NFD", "CRLF+NFD"])
def test_a_manifest_saved_with_other_line_breaks_or_unicode_form_buys_nothing_again(
        tmp_path, form, spell):
    transport = simulator_transport(SimulatorOptions(seed=1))
    assert run(write(tmp_path, form, lambda t: t.replace("\r\n", "\n")), tmp_path,
               transport) == 3
    resaved = write(tmp_path, form, spell)
    assert plan_batch(resolve(resaved, RunOptions(), cwd=tmp_path)).pending == 0
    assert run(resaved, tmp_path, transport) == 3  # no request more


def _ledger_before_normalisation(tmp_path: Path, monkeypatch, spell) -> Path:
    """A ledger as the previous schema wrote it for the PROMPTS spelled by `spell`, all done:
    fingerprints and derived ids of the text as written, an attempt each, files on disk."""
    path = write(tmp_path, "csv", spell)
    manifest = resolve(path, RunOptions(), cwd=tmp_path).manifest
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])
    Ledger.open(out / "ledger.db").close()
    monkeypatch.undo()
    with sqlite3.connect(out / "ledger.db") as db:
        for position, item in enumerate(manifest.items):
            written = item.legacy_prompt or item.prompt
            old_id = item.id if item.legacy_id is None else item.legacy_id
            old = Item(id=old_id, prompt=written, provider=item.provider, model=item.model)
            file = f"images/{old_id}.jpg"
            (out / file).write_bytes(b"an image")
            db.execute("INSERT INTO images (id, idx, fingerprint, status, position, file, sha256,"
                       " bytes, cost_usd) VALUES (?, 1, ?, 'done', ?, ?, 'ab', 8, 0)",
                       (old_id, old.fingerprint, position, file))
            db.execute("INSERT INTO attempts (id, idx, started_at, provider, model, outcome)"
                       " VALUES (?, 1, 0, 'simulator', 'm', 'success')", (old_id,))
    db.close()
    return path


@pytest.mark.parametrize("spell", [crlf, nfd], ids=["CRLF", "NFD"])
def test_a_ledger_from_before_normalisation_keeps_its_images(tmp_path, monkeypatch, spell):
    path = _ledger_before_normalisation(tmp_path, monkeypatch, spell)
    settings = resolve(path, RunOptions(), cwd=tmp_path)
    assert plan_batch(settings).done == 3  # plan already sees them

    transport = simulator_transport(SimulatorOptions(seed=1))
    assert run(path, tmp_path, transport) == 0
    with Ledger.open(settings.out / "ledger.db") as ledger:
        rows = {row.id: row for row in ledger.rows()}
        assert set(rows) == {item.id for item in settings.manifest.items}  # new derived ids
        for item in settings.manifest.items:
            row = rows[item.id]
            assert row.status == "done" and row.fingerprint == item.fingerprint
            assert (settings.out / row.file).exists()  # the file keeps its name
            assert [a.outcome for a in ledger.attempts((item.id, 1))] == ["success"]
        assert ledger.integrity_ok()
    # And from now on the normalised spelling is the one compared: writing it that way is no
    # change either.
    assert run(write(tmp_path, "csv", lambda t: t.replace("\r\n", "\n")), tmp_path,
               transport) == 0


def test_fingerprints_hash_the_json_every_ledger_was_written_with():
    """A fingerprint that changed would make every image of every ledger again."""
    import hashlib
    import json

    from nbbatch.model import Item

    legacy = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    prompts = ["plain", 'quote " and \\ slash /', "tab\tline\nfeed\r\x00\x1f\x7f",
               "é e\u0301 \u2028\u2029 \ufeff 😀 \U0010ffff", "控制 " * 40]
    for prompt in prompts:
        for refs in ((), ("ab" * 32,), ("ab" * 32, "cd" * 32)):
            item = Item(id="x", prompt=prompt, provider="gemini", model="gemini-3-pro-image",
                        aspect_ratio=None if refs else "1:1", image_size="2K",
                        reference_digests=refs)
            shape = [prompt, "gemini", "gemini-3-pro-image", item.aspect_ratio, "2K", refs]
            assert item.fingerprint == hashlib.sha256(legacy.encode(shape).encode()).hexdigest()
