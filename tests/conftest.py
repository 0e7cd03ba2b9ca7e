import asyncio
import compileall
import heapq
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


def pytest_configure(config):
    """Compile nbbatch once before the tests: the end-to-end tests start hundreds of nbbatch
    processes, and where PYTHONDONTWRITEBYTECODE is set (as on CI machines) each would
    compile every module again (a fifth of each start-up)."""
    if not hasattr(config, "workerinput"):  # the xdist controller, or a plain run
        compileall.compile_dir(Path(__file__).resolve().parents[1] / "nbbatch", quiet=1)

KEY_VARIABLES = (
    "GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY", "VERTEX_API_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS", "STABILITY_API_KEY", "OPENROUTER_API_KEY",
)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    """No test sees a real key or writes outside tmp_path."""
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NBBATCH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


class _CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, counting the calls still running (asyncio.to_thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = 0
        self._lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs):
        with self._lock:
            self.busy += 1

        def run():
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.busy -= 1

        return super().submit(run)


class FakeClock:
    """Virtual time for asyncio code: sleeping tasks wake in deadline order, instantly.

    Time moves only when every task is waiting, like a discrete-event simulation, and no work
    handed to a thread (a save) is still running; each requested sleep is recorded.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._timers: list = []
        self._seq = itertools.count()
        self._driver: asyncio.Task | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(seconds, 0), next(self._seq), future))
        if self._driver is None or self._driver.done():
            loop = asyncio.get_running_loop()
            if not isinstance(getattr(loop, "_default_executor", None), _CountingExecutor):
                loop.set_default_executor(_CountingExecutor())
            self._driver = asyncio.create_task(self._drive())
        await future

    async def _drive(self) -> None:
        executor = asyncio.get_running_loop()._default_executor
        while self._timers:
            for _ in range(20):  # let every runnable task reach its next wait
                await asyncio.sleep(0)
            while executor.busy:  # a thread's work takes no virtual time: wait for it
                await asyncio.sleep(0.0005)
                for _ in range(20):
                    await asyncio.sleep(0)
            deadline, _, future = heapq.heappop(self._timers)
            self.now = max(self.now, deadline)
            if not future.done():
                future.set_result(None)


@pytest.fixture
def clock():
    return FakeClock()
