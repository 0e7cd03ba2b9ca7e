"""No image is ever saved over a file it does not own: not over another image the ledger
holds (whatever the manifest has become, ignoring case), not over a file nbbatch did not
write. The image takes another name and the run says so; the ledger matches every file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from benchmarks.chaos import inspect_output
from nbbatch.engine.events import EventKind
from nbbatch.engine.run import run_batch
from nbbatch.settings import RunOptions, resolve
from nbbatch.sim import SimulatorOptions
from nbbatch.sim.inprocess import simulator_transport
from nbbatch.store import open_for_reading


def run(tmp_path: Path, prompts: list[dict], out: str = "out"):
    """Run `prompts` on the in-process simulator; returns (summary, events, rows by key)."""
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "output": out, "pacing": {"interval": 0, "concurrency": 2},
        "defaults": {"provider": "simulator", "model": "gemini-3-pro-image"},
        "prompts": prompts}))
    settings = resolve(path, RunOptions(), cwd=tmp_path)
    events = []
    transport = simulator_transport(SimulatorOptions(seed=1))
    summary = run_batch(settings, env={}, cwd=tmp_path, handle_signals=False,
                        on_event=lambda e, p: events.append(e),
                        transport_factory=lambda name: transport)
    with open_for_reading(settings.out) as ledger:
        rows = {(r.id, r.index): r for r in ledger.rows()}
    return summary, events, rows


def renamed(events) -> list[str]:
    return [e.message for e in events if e.kind == EventKind.RENAMED]


def test_a_new_item_named_like_an_earlier_numbered_image_gets_its_own_file(tmp_path):
    run(tmp_path, [{"id": "shoe", "prompt": "a shoe", "count": 2}])
    images = tmp_path / "out/images"
    paid_for = {p.name: p.read_bytes() for p in images.iterdir()}
    assert set(paid_for) == {"shoe-1.jpg", "shoe-2.jpg"}

    summary, events, rows = run(tmp_path, [{"id": "shoe", "prompt": "a shoe"},
                                           {"id": "shoe-1", "prompt": "another shoe"}])
    assert summary.counts.done == 2
    assert rows[("shoe", 1)].file == "images/shoe-1.jpg"  # unchanged: never made again
    assert rows[("shoe-1", 1)].file == "images/shoe-1~2.jpg"
    for name, data in paid_for.items():
        assert (images / name).read_bytes() == data  # nothing paid for was overwritten
    [message] = renamed(events)
    assert "images/shoe-1.jpg belongs to image shoe #1 in the ledger" in message
    inspect_output(tmp_path / "out")  # every file is the one the ledger names, hash and all


@pytest.mark.parametrize(("first", "then"), [
    ([{"id": "a", "prompt": "a", "count": 3}], [{"id": "a-2", "prompt": "other"}]),
    ([{"id": "Hero", "prompt": "hero"}], [{"id": "hero", "prompt": "another hero"}]),
    ([{"id": "x-1", "prompt": "x"}], [{"id": "x", "prompt": "x again", "count": 2}]),
], ids=["dropped numbered image", "another case", "count over an old id"])
def test_every_file_the_ledger_holds_is_taken_even_for_items_dropped_since(tmp_path, first,
                                                                          then):
    run(tmp_path, first)
    images = tmp_path / "out/images"
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    summary, events, rows = run(tmp_path, then)
    assert summary.exit_code == 0
    for name, data in before.items():
        assert (images / name).read_bytes() == data
    assert renamed(events), "the run says which name was taken"
    names = [row.file for row in rows.values()]
    assert all("~2" in name for name in names if name.lower().removeprefix("images/")
               in {n.lower() for n in before})
    inspect_output(tmp_path / "out")


def test_a_file_nbbatch_did_not_write_is_kept_and_said_so(tmp_path):
    images = tmp_path / "out/images"
    images.mkdir(parents=True)
    (images / "hero.jpg").write_bytes(b"the user's own picture")
    summary, events, rows = run(tmp_path, [{"id": "hero", "prompt": "a hero"}])
    assert summary.exit_code == 0
    assert (images / "hero.jpg").read_bytes() == b"the user's own picture"
    assert rows[("hero", 1)].file == "images/hero~2.jpg"
    [message] = renamed(events)
    assert "images/hero.jpg is not one nbbatch wrote" in message and "it is kept" in message


def test_images_made_again_after_the_ledger_was_moved_away_overwrite_nothing(tmp_path):
    prompts = [{"id": f"p{i}", "prompt": f"picture {i}"} for i in range(3)]
    run(tmp_path, prompts)
    images = tmp_path / "out/images"
    first = {p.name: p.read_bytes() for p in images.iterdir()}
    shutil.move(tmp_path / "out/ledger.db", tmp_path / "old-ledger.db")
    # Other prompts, so other pictures: as a real model answers the same prompt anew.
    summary, events, rows = run(tmp_path, [{**p, "prompt": p["prompt"] + " again"}
                                           for p in prompts])
    assert summary.counts.done == 3 and len(renamed(events)) == 3
    for name, data in first.items():
        assert (images / name).read_bytes() == data
    assert sorted(row.file for row in rows.values()) == [f"images/p{i}~2.jpg" for i in range(3)]


def test_a_file_holding_exactly_the_image_is_adopted_as_it_is(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    run(tmp_path / "elsewhere", [{"id": "same", "prompt": "a fixed picture"}])
    made = (tmp_path / "elsewhere/out/images/same.jpg").read_bytes()
    images = tmp_path / "out/images"
    images.mkdir(parents=True)
    (images / "same.jpg").write_bytes(made)  # the simulator draws it again byte for byte
    summary, events, rows = run(tmp_path, [{"id": "same", "prompt": "a fixed picture"}])
    assert summary.exit_code == 0 and not renamed(events)
    assert rows[("same", 1)].file == "images/same.jpg"
    assert sorted(p.name for p in images.iterdir()) == ["same.jpg"]


def test_a_folder_where_the_image_belongs_does_not_throw_the_paid_image_away(tmp_path):
    (tmp_path / "out/images/a.jpg").mkdir(parents=True)
    summary, _, rows = run(tmp_path, [{"id": "a", "prompt": "a"}])
    assert summary.exit_code == 0
    assert rows[("a", 1)].file == "images/a~2.jpg" and (tmp_path / "out/images/a.jpg").is_dir()


def test_an_image_made_again_replaces_its_own_file_unless_someone_changed_it(tmp_path):
    run(tmp_path, [{"id": "a", "prompt": "first"}, {"id": "b", "prompt": "first b"}])
    images = tmp_path / "out/images"
    (images / "b.jpg").write_bytes(b"retouched by hand")
    summary, events, rows = run(tmp_path, [{"id": "a", "prompt": "second"},
                                           {"id": "b", "prompt": "second b"}])
    assert summary.counts.done == 2
    assert rows[("a", 1)].file == "images/a.jpg"  # its own earlier image: replaced
    assert rows[("b", 1)].file == "images/b~2.jpg"  # changed by someone else: kept
    assert (images / "b.jpg").read_bytes() == b"retouched by hand"
    [message] = renamed(events)
    assert "images/b.jpg was changed since nbbatch wrote it" in message


def test_start_up_removes_only_its_own_temporary_files(tmp_path):
    images = tmp_path / "out/images"
    images.mkdir(parents=True)
    others = [".syncthing.photo.jpg.tmp", ".notes.tmp", ".a.jpg.tmp", ".~lock.a.jpg.tmp",
              ".a.jpg.0123456789ABCDEF.tmp"]
    for name in others:
        (images / name).write_bytes(b"someone else's")
    (images / ".a.jpg.0123456789abcdef.tmp").write_bytes(b"a torn save of ours")
    run(tmp_path, [{"id": "a", "prompt": "a"}])
    left = {p.name for p in images.iterdir()}
    assert left == {*others, "a.jpg"}
