"""The gallery from a real run: every run that made images updates it, `nbbatch gallery`
writes it on demand, and only new images cost a thumbnail."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from nbbatch.cli import app

runner = CliRunner()


def manifest(tmp_path, prompts):
    doc = {"version": 1, "output": "out",
           "defaults": {"provider": "simulator", "model": "gemini-3-pro-image"},
           "pacing": {"interval": 0, "concurrency": 2},
           "prompts": [{"id": f"p{i}", "prompt": p} for i, p in enumerate(prompts)]}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_run_that_made_images_updates_the_gallery_and_names_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hostile = "<script>alert(1)</script> a fox"
    result = runner.invoke(app, ["run", str(manifest(tmp_path, [hostile, "x [blocked]"]))])
    page = tmp_path / "out" / "gallery.html"
    assert result.exit_code == 3, result.output
    assert "gallery: out/gallery.html" in result.output  # said from where the user is
    html = page.read_text()
    assert "<script>alert(1)</script>" not in html  # the prompt is data, escaped
    assert "a fox" in html and "blocked" in html
    thumbs = sorted((tmp_path / "out" / "thumbnails").iterdir())
    assert len(thumbs) == 1  # one done image, one thumbnail


def test_the_gallery_command_makes_only_missing_thumbnails_and_prints_the_path(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = manifest(tmp_path, ["a", "b", "c"])
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0
    thumbs = tmp_path / "out" / "thumbnails"
    before = {p.name: p.stat().st_mtime_ns for p in thumbs.iterdir()}
    (tmp_path / "out" / "gallery.html").unlink()
    result = runner.invoke(app, ["gallery"])
    assert result.exit_code == 0
    assert result.output.strip() == str(tmp_path / "out" / "gallery.html")
    assert {p.name: p.stat().st_mtime_ns for p in thumbs.iterdir()} == before
    # A run with nothing new to make leaves the page alone.
    mtime = (tmp_path / "out" / "gallery.html").stat().st_mtime_ns
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0 and "gallery:" not in result.output
    assert (tmp_path / "out" / "gallery.html").stat().st_mtime_ns == mtime


def test_open_hands_the_page_to_the_browser_as_a_file_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["run", str(manifest(tmp_path, ["a"]))]).exit_code == 0
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    result = runner.invoke(app, ["gallery", "out", "--open"])
    assert result.exit_code == 0, result.output
    assert opened == [(tmp_path / "out" / "gallery.html").resolve().as_uri()]
    assert "warning" not in result.output


def test_open_without_a_browser_says_so_and_still_writes_the_page(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["run", str(manifest(tmp_path, ["a"]))]).exit_code == 0
    monkeypatch.setattr("webbrowser.open", lambda url: False)
    result = runner.invoke(app, ["gallery", "out", "--open"])
    assert result.exit_code == 0, result.output
    page = tmp_path / "out" / "gallery.html"
    assert f"warning: no browser could be opened; open {page} in one" in result.output
    assert page.is_file()
