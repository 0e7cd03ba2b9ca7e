"""A progress bar for making a gallery's thumbnails, shown on a terminal once there are many."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class ThumbnailProgress:
    """A progress bar for making thumbnails, shown on a terminal once there are many."""

    SHOW_FROM = 50  # fewer are made in a blink: no bar

    def __init__(self, console: Console, *, live: bool) -> None:
        self.console, self.live = console, live
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None and self.live and total >= self.SHOW_FROM:
            self._bar = RichProgress(TextColumn("thumbnails"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task("thumbnails", total=total)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done)

    def __enter__(self) -> ThumbnailProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
