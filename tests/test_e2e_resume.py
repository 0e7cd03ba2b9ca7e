"""`resume` from the ledger alone: the manifest moved, edited or deleted; a reference gone."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from nbbatch.sim import SimulatorOptions, SimulatorServer
from tests.e2e_helpers import KEY, configure, requests_log, run_cli, status_json, write_manifest

pytestmark = pytest.mark.e2e


@pytest.fixture
def sim():
    with SimulatorServer(SimulatorOptions(api_key=KEY, seed=3)) as server:
        yield server


def png(path, colour):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    return path


def test_resume_continues_from_the_ledger_with_the_manifest_deleted(tmp_path, sim):
    prompts = [f"scene {i}" for i in range(6)]
    manifest = write_manifest(tmp_path / "m.yaml", prompts, base_url=sim.url,
                              defaults={"provider": "gemini", "model": "gemini-3-pro-image",
                                        "aspect_ratio": "16:9", "image_size": "2K"})
    configure(sim.url, daily_quota=2)  # the day's quota runs out after two images
    first = run_cli(tmp_path, "run", manifest, "--interval", "0.01")
    assert first.returncode == 75, first.stderr
    manifest.unlink()
    configure(sim.url, daily_quota=None)  # the quota is back
    result = run_cli(tmp_path, "resume")  # no argument: the run started here
    assert result.returncode == 0, result.stderr + result.stdout
    doc = status_json(tmp_path, tmp_path / "out")
    assert doc["counts"] == {"total": 6, "done": 6, "failed": 0, "pending": 0}
    assert [item["prompt"] for item in doc["items"]] == prompts
    made = [r for r in requests_log(sim.url) if r["outcome"] == "success"]
    assert sorted(r["prompt"] for r in made) == sorted(prompts)  # nothing was bought twice
    assert {r["model"] for r in made} == {"gemini-3-pro-image"}


def test_resume_ignores_an_edited_manifest_and_run_applies_it(tmp_path, sim):
    manifest = write_manifest(tmp_path / "m.yaml", ["a fox", "a whale"], base_url=sim.url)
    assert run_cli(tmp_path, "run", manifest, "--max-images", "1").returncode == 75
    write_manifest(manifest, ["a fox", "a dolphin"], base_url=sim.url)
    assert run_cli(tmp_path, "resume", tmp_path / "out").returncode == 0
    assert {r["prompt"] for r in requests_log(sim.url)} == {"a fox", "a whale"}
    assert run_cli(tmp_path, "run", manifest).returncode == 0
    assert {r["prompt"] for r in requests_log(sim.url)} == {"a fox", "a whale", "a dolphin"}


@pytest.mark.parametrize("damage", ["deleted", "changed"])
def test_a_reference_gone_keeps_its_image_pending_naming_the_file_and_the_rest_go_on(
        tmp_path, sim, damage):
    refs = tmp_path / "refs"
    refs.mkdir()
    ref = png(refs / "shoe.png", "red")
    manifest = write_manifest(
        tmp_path / "m.yaml",
        [{"id": "plain", "prompt": "a plain shoe"},
         {"id": "styled", "prompt": "this shoe at night", "images": ["refs/shoe.png"]},
         {"id": "other", "prompt": "a hat"}],
        base_url=sim.url)
    assert run_cli(tmp_path, "run", manifest, "--max-images", "1").returncode == 75
    manifest.unlink()
    if damage == "deleted":
        ref.unlink()
    else:
        png(ref, "blue")
    result = run_cli(tmp_path, "resume")
    assert result.returncode == 75
    items = {i["id"]: i for i in status_json(tmp_path, tmp_path / "out")["items"]}
    assert items["styled"]["status"] == "pending"
    assert str(ref) in items["styled"]["error"]["message"]
    assert items["plain"]["status"] == items["other"]["status"] == "done"
    assert "this shoe at night" not in {r["prompt"] for r in requests_log(sim.url)}
