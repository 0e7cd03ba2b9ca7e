"""The live display on a terminal: counts, ETA, elapsed time, a bar and each provider's state,
laid out to the terminal's width.

`layout` is a pure function of what to show and the width, so any width can be tested
without a terminal. Detail is dropped in order of importance when space runs short (the
bar, then rate, in-flight and retry counts, then elapsed time); the counts and the ETA are
always there, wrapped onto further lines when they must be.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions
from rich.live import Live
from rich.text import Text

from nbbatch.engine.events import Event, EventKind, Level, Progress, ProviderState
from nbbatch.text import clock_parts, printable

SEPARATOR = " · "
BAR_MIN, BAR_MAX = 10, 40  # columns
RATE_WINDOW = 20  # recent images the rate (and so the ETA) is measured over
STATE_STYLE = {
    ProviderState.OK: "green", ProviderState.RETRYING: "yellow", ProviderState.PAUSED: "yellow",
    ProviderState.SWITCHED_AWAY: "yellow", ProviderState.DROPPED: "red",
}
LEVEL_STYLE = {Level.WARNING: "yellow", Level.ERROR: "bold red"}


@dataclass(frozen=True)
class LiveView:
    """What the display shows at one instant."""

    done: int
    failed: int
    pending: int
    total: int
    in_flight: int = 0
    retries: int = 0
    providers: tuple[tuple[str, ProviderState], ...] = ()
    elapsed: float = 0.0
    eta: float | None = None  # seconds; None until the rate is known
    per_minute: float | None = None
    jobs_open: int = 0  # batch mode: live jobs, and the images waiting in them
    in_jobs: int = 0


@dataclass(frozen=True)
class Chunk:
    text: str
    style: str = ""
    required: bool = False  # wrapped onto a new line rather than dropped


def clock_text(seconds: float) -> str:
    if (parts := clock_parts(seconds)) is None:
        return ">100 days"
    hours, minutes, secs = parts
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def layout(view: LiveView, width: int) -> list[Text]:
    width = max(width, 1)
    eta = "ETA " + (clock_text(view.eta) if view.eta is not None else "?")
    counts = [
        Chunk(f"{view.done} done", "green", True),
        Chunk(f"{view.failed} failed", "red" if view.failed else "", True),
        Chunk(f"{view.pending} pending of {view.total}", required=True),
        Chunk(eta, "bold", True),
        Chunk(f"elapsed {clock_text(view.elapsed)}", "dim"),
    ]
    details = [Chunk(f"{name}: {state}", STATE_STYLE.get(state, ""), True)
               for name, state in view.providers]
    if view.retries:
        details.append(Chunk(f"{view.retries} {'retry' if view.retries == 1 else 'retries'}",
                             "yellow"))
    if view.in_flight:
        details.append(Chunk(f"{view.in_flight} in flight"))
    if view.jobs_open:
        details.append(Chunk(f"{view.in_jobs} in {view.jobs_open} batch "
                             f"job{'s' if view.jobs_open > 1 else ''}"))
    if view.per_minute is not None:
        details.append(Chunk(f"{view.per_minute:.1f}/min", "dim"))
    first = _pack(counts, width)
    lines = [_text(line, width) for line in first]
    room = width - cell_len(lines[0].plain) - 1
    if room >= BAR_MIN:
        lines[0] = Text.assemble(_bar(view, min(room, BAR_MAX)), " ", lines[0])
    lines += [_text(line, width) for line in _pack(details, width)]
    return lines


def _pack(chunks: list[Chunk], width: int) -> list[list[Chunk]]:
    """Chunks in order onto lines of `width`: an optional chunk that does not fit where it
    falls is dropped, a required one starts a new line."""
    lines: list[list[Chunk]] = [[]]
    used = 0
    for chunk in chunks:
        need = cell_len(chunk.text) + (len(SEPARATOR) if lines[-1] else 0)
        if used + need <= width:
            lines[-1].append(chunk)
            used += need
        elif chunk.required:
            if lines[-1]:
                lines.append([])
            lines[-1].append(chunk)
            used = cell_len(chunk.text)
    return [line for line in lines if line]


def _text(chunks: list[Chunk], width: int) -> Text:
    text = Text()
    for i, chunk in enumerate(chunks):
        if i:
            text.append(SEPARATOR, "dim")
        text.append(chunk.text, chunk.style)
    text.truncate(width, overflow="ellipsis")
    return text


def _bar(view: LiveView, width: int) -> Text:
    total = max(view.total, 1)
    done = round(width * view.done / total)
    failed = min(width - done, round(width * view.failed / total))
    return Text.assemble(("━" * done, "green"), ("━" * failed, "red"),
                         ("━" * (width - done - failed), "grey35"))


class LiveDisplay:
    """Receives run events; keeps a live view at the bottom of the terminal and prints the
    events worth a line above it. Rich redraws it a few times a second from another thread,
    which only ever reads the last immutable view."""

    def __init__(self, console: Console, *, verbosity: int = 1) -> None:
        self.console = console
        # On a terminal the view itself is the progress: lines are for news only.
        self.min_level = Level.DEBUG if verbosity > 1 else Level.WARNING
        self._view: LiveView | None = None
        self._started_at = time.monotonic()
        self._finished: deque[float] = deque(maxlen=RATE_WINDOW)
        self._running = False
        self._live = Live(console=console, get_renderable=self._renderable, transient=True,
                          auto_refresh=True, refresh_per_second=4, redirect_stdout=False,
                          redirect_stderr=False)

    def __enter__(self) -> LiveDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._running:
            self._live.stop()
            self._running = False

    def __call__(self, event: Event, progress: Progress) -> None:
        if event.kind == EventKind.STARTED:
            self._started_at = progress.started_at
            if progress.pending and not self._running:  # nothing to do: no display at all
                self._live.start()
                self._running = True
        elif event.kind in (EventKind.DONE, EventKind.FAILED):
            self._finished.append(time.monotonic())
        self._view = LiveView(
            done=progress.done, failed=progress.failed, pending=progress.pending,
            total=progress.total, in_flight=progress.in_flight, retries=progress.retries,
            providers=tuple(progress.providers.items()), jobs_open=progress.jobs_open,
            in_jobs=progress.in_jobs)
        # Providers and batch jobs change state a few times a run: each change is news.
        news = event.kind in (EventKind.PROVIDER, EventKind.BATCH_JOB) and \
            event.level >= Level.INFO
        if event.level >= self.min_level or news:
            self.say(event.message, event.level)

    def say(self, text: str, level: Level = Level.INFO) -> None:
        """A line above the view (or on its own once the run is over)."""
        self.console.print(Text(printable(text), style=LEVEL_STYLE.get(level, "")))

    def _renderable(self) -> _Rendered:
        view = self._view or LiveView(0, 0, 0, 0)
        now = time.monotonic()
        elapsed = now - self._started_at
        per_second = self._rate(now)
        eta = 0.0 if not view.pending else view.pending / per_second if per_second else None
        return _Rendered(LiveView(**{**view.__dict__, "elapsed": elapsed, "eta": eta,
                                     "per_minute": per_second * 60 if per_second else None}))

    def _rate(self, now: float) -> float | None:
        """Images per second over the last few finished ones."""
        if not self._finished:
            return None
        since = self._started_at if len(self._finished) < RATE_WINDOW else self._finished[0]
        span = max(now - since, 1e-6)
        return len(self._finished) / span


@dataclass(frozen=True)
class _Rendered:
    view: LiveView

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        yield from layout(self.view, options.max_width)
