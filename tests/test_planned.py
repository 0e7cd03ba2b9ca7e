"""The images a manifest plans, and the digest that stands for them: an unchanged manifest is
compared by that one hash (no row built), and anything the rows would hold changes it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from nbbatch.engine.planned import planned_digest, planned_images
from nbbatch.model import Interval, Item, Manifest, PacingConfig, ProviderConfig, RetryConfig
from nbbatch.store.ledger import Ledger


def manifest(tmp_path: Path, *items: Item, **changes) -> Manifest:
    m = Manifest(path=tmp_path / "m.yaml", output=tmp_path / "out", providers={},
                 pacing=PacingConfig(Interval(1, 1), 2), retry=RetryConfig(), failover=None,
                 items=items)
    return replace(m, **changes)


def item(id_: str, prompt: str = "a red sneaker", **fields) -> Item:
    return Item(id=id_, prompt=prompt, provider="gemini", model="gemini-3-pro-image", **fields)


BASE = (item("a"), item("b", "a blue boot", count=2), item("c", "socks"))


@pytest.mark.parametrize("changed", [
    pytest.param(lambda m: replace(m, items=(m.items[1], m.items[0], m.items[2])), id="order"),
    pytest.param(lambda m: replace(m, items=m.items[:2]), id="one item fewer"),
    pytest.param(lambda m: replace(m, items=(m.items[0], replace(m.items[1], count=3),
                                             m.items[2])), id="count"),
    pytest.param(lambda m: replace(m, items=(replace(m.items[0], prompt="a green sneaker"),
                                             *m.items[1:])), id="prompt"),
    pytest.param(lambda m: replace(m, items=(replace(m.items[0], image_size="4K"),
                                             *m.items[1:])), id="size and so the price"),
    pytest.param(lambda m: replace(m, mode="batch"), id="batch price"),
    pytest.param(lambda m: replace(m, items=(replace(m.items[0], id="a2"), *m.items[1:])),
                 id="id"),
    pytest.param(lambda m: replace(m, items=(replace(m.items[0], legacy_prompt="a red  sneaker",
                                                     legacy_id="old"), *m.items[1:])),
                 id="what an old ledger knows it by"),
    pytest.param(lambda m: replace(m, providers={"gemini": ProviderConfig("gemini")}),
                 id="nothing the images hold"),
])
def test_the_digest_changes_exactly_when_the_planned_images_do(tmp_path, changed) -> None:
    before = manifest(tmp_path, *BASE)
    after = changed(before)
    same_images = list(planned_images(before)) == list(planned_images(after))
    assert (planned_digest(before) == planned_digest(after)) == same_images


def test_an_unchanged_manifest_is_synced_without_building_its_images(tmp_path) -> None:
    m = manifest(tmp_path, *BASE)

    def must_not_be_read():
        raise AssertionError("the images of an unchanged manifest were built")
        yield

    with Ledger.open(tmp_path / "ledger.db") as ledger:
        first = ledger.sync(planned_images(m), m.items, digest=planned_digest(m))
        assert first.new == 4
        again = ledger.sync(must_not_be_read(), m.items, digest=planned_digest(m))
        assert (again.new, again.changed, again.unchanged, again.removed) == (0, 0, 4, 0)
        # A digest of the other kind (made from the rows) is never taken for this one.
        assert ledger.sync(planned_images(m), m.items).unchanged == 4
        grown = replace(m, items=(*m.items, item("d", "a hat")))
        assert ledger.sync(planned_images(grown), grown.items,
                           digest=planned_digest(grown)).new == 1
        assert [(r.id, r.index, r.position) for r in ledger.rows()] == [
            ("a", 1, 0), ("b", 1, 1), ("b", 2, 2), ("c", 1, 3), ("d", 1, 4)]


def test_an_item_sets_every_field_once_stays_frozen_and_replace_refingerprints() -> None:
    import dataclasses

    made = Item("a", "a red sneaker", "gemini", "gemini-3-pro-image")
    assert list(vars(made)) == [f.name for f in dataclasses.fields(Item)]  # keys shared
    assert (made.aspect_ratio, made.image_size, made.count, made.references, made.line) == (
        None, None, 1, (), None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.prompt = "something else"  # type: ignore[misc]
    other = replace(made, prompt="a blue boot")
    assert other.fingerprint == Item("a", "a blue boot", "gemini",
                                     "gemini-3-pro-image").fingerprint != made.fingerprint
    assert made == Item("a", "a red sneaker", "gemini", "gemini-3-pro-image", line=None)
    assert hash(made) == hash(Item("a", "a red sneaker", "gemini", "gemini-3-pro-image"))


def test_plan_reads_only_the_unfinished_images_of_a_ledger_synced_as_planned(
        tmp_path, monkeypatch) -> None:
    """The same plan, whether the ledger's every image is read or, when its last sync was
    of exactly these images, only the failed and pending ones (done, failed, pending and a
    deleted file among them)."""
    import yaml

    from nbbatch.engine.plan import plan_batch
    from nbbatch.engine.run import run_batch
    from nbbatch.settings import RunOptions, resolve
    from nbbatch.sim import SimulatorOptions
    from nbbatch.sim.inprocess import simulator_transport
    from nbbatch.store.view import LedgerView

    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "output": "out", "pacing": {"interval": 0},
        "defaults": {"provider": "simulator", "model": "gemini-3-pro-image"},
        "prompts": [{"id": f"p{i}", "prompt": p} for i, p in enumerate(
            ["a", "no [blocked]", "c", "d", "e", "f"])]}))
    transport = simulator_transport(SimulatorOptions())
    run_batch(resolve(path, RunOptions(max_images=4), cwd=tmp_path), env={}, cwd=tmp_path,
              handle_signals=False, transport_factory=lambda name: transport)
    (tmp_path / "out/images/p0.jpg").unlink()
    settings = resolve(path, RunOptions(), cwd=tmp_path)
    read: list[bool] = []
    states = LedgerView.states
    monkeypatch.setattr(LedgerView, "states", lambda self, **kw: (
        read.append(kw.get("unfinished_only", False)), states(self, **kw))[1])
    fast = plan_batch(settings)
    monkeypatch.setattr(LedgerView, "synced_as", lambda self, digest: False)
    slow = plan_batch(settings)
    assert read == [True, False]
    assert fast == slow
    assert (fast.done, fast.failed, fast.pending, fast.missing) == (3, 1, 2, 1)


def test_the_digest_also_stands_for_the_items_rows(tmp_path) -> None:
    """One digest gates both tables: a reference moved to another path (same bytes, so the
    same fingerprint and images) still changes it, and the items table follows."""
    digest = "ab" * 32
    first = manifest(tmp_path, item("a", references=(tmp_path / "r1.png",),
                                    reference_digests=(digest,)))
    moved = replace(first, items=(replace(first.items[0], references=(tmp_path / "r2.png",)),))
    assert list(planned_images(first)) == list(planned_images(moved))
    assert planned_digest(first) != planned_digest(moved)
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        for m in (first, first, moved):
            ledger.sync(planned_images(m), m.items, digest=planned_digest(m))
        assert [str(i.references[0]) for i in ledger.items()] == [str(tmp_path / "r2.png")]
