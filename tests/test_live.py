"""The live display's layout at any width: what is dropped first, what is never dropped."""

from __future__ import annotations

import io

import pytest
from rich.cells import cell_len
from rich.console import Console

from nbbatch.cli.live import LiveDisplay, LiveView, clock_text, layout
from nbbatch.engine.events import Event, EventKind, Level, Progress, ProviderState

FAILOVER = (("gemini", ProviderState.SWITCHED_AWAY), ("openai", ProviderState.RETRYING))
VIEW = LiveView(done=19, failed=0, pending=4, total=23, in_flight=2, retries=5,
                providers=FAILOVER, elapsed=41, eta=12, per_minute=27.8)
HUGE = LiveView(done=99_999, failed=12_345, pending=1, total=112_345, in_flight=256,
                retries=100_000, providers=FAILOVER, elapsed=86_400 * 3, eta=36_000,
                per_minute=1234.5)


def lines(view, width):
    return [line.plain for line in layout(view, width)]


@pytest.mark.parametrize("width", [40, 60, 80, 120, 200])
@pytest.mark.parametrize("view", [VIEW, HUGE], ids=["small", "huge"])
def test_every_line_fits_and_counts_eta_and_states_are_always_there(view, width):
    shown = lines(view, width)
    assert all(cell_len(line) <= width for line in shown), shown
    text = " ".join(shown)
    for must in (f"{view.done} done", f"{view.failed} failed",
                 f"{view.pending} pending of {view.total}", "ETA ",
                 "gemini: switched away", "openai: retrying"):
        assert must in text, (must, shown)


def test_at_80_columns_everything_fits_on_two_lines_with_the_bar():
    first, second = lines(VIEW, 80)
    assert first.startswith("━") and first.endswith(
        "19 done · 0 failed · 4 pending of 23 · ETA 0:12 · elapsed 0:41")
    assert second == ("gemini: switched away · openai: retrying · 5 retries · 2 in flight"
                      " · 27.8/min")


def test_at_40_columns_detail_goes_first_and_the_eta_moves_to_its_own_line():
    shown = lines(VIEW, 40)
    assert shown[:2] == ["19 done · 0 failed · 4 pending of 23", "ETA 0:12 · elapsed 0:41"]
    assert "━" not in shown[0]  # no room for the bar
    assert shown[2:] == ["gemini: switched away · openai: retrying"]  # no room for detail


def test_at_120_columns_the_bar_is_wider():
    assert lines(VIEW, 120)[0].count("━") > lines(VIEW, 80)[0].count("━")


def test_counts_read_as_labels_not_as_the_next_number():
    # "19/23 done 19 failed 0 pending 4" read as "19 failed": each count before its label
    assert "19 done · 0 failed · 4 pending of 23" in lines(VIEW, 80)[0]


def test_unknown_eta_and_times():
    assert "ETA ?" in lines(LiveView(0, 0, 5, 5), 80)[0]
    assert clock_text(41) == "0:41" and clock_text(3725) == "1:02:05"


@pytest.mark.parametrize("seconds", [1e300, float("inf"), float("nan")])
def test_an_eta_past_100_days_is_said_in_words_not_300_digits_or_a_crash(seconds):
    assert clock_text(seconds) == ">100 days"
    assert "ETA >100 days" in lines(LiveView(0, 0, 5, 5, eta=seconds), 80)[0]


def progress(**kw) -> Progress:
    base = dict(total=3, done=0, failed=0, pending=3, started_at=0.0)
    return Progress(**{**base, **kw})


def test_a_run_with_nothing_to_do_shows_no_display_and_events_are_text():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80)
    with LiveDisplay(console) as display:
        display(Event(EventKind.STARTED, "start"), progress(done=3, pending=0))
        assert not display._running
        display(Event(EventKind.PROVIDER, "gemini: [red]down[/] \x1b[2J", level=Level.WARNING),
                progress())
    shown = out.getvalue()
    assert "[red]down[/]" in shown and "\\x1b[2J" in shown and "\x1b[2J" not in shown
    assert "pending of" not in shown  # no live view was drawn
