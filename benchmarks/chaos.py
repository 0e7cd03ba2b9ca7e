"""Crash testing: SIGKILL the real CLI at random instants and check everything after each kill.

A simulator on 127.0.0.1 answers with latency and faults (503, 429, 500, and hangs long enough
for the client's timeout to fire). The real `python -m nbbatch run MANIFEST` runs against it
and is killed with SIGKILL - mostly from outside after a seeded random delay (a quarter of them
during start-up, lock and sync, the rest spread over the run), sometimes from inside at an exact
point of a save (half-way through writing the temporary file, just before or just after its
rename). Some runs are instead stopped (SIGSTOP, as Ctrl-Z does) for longer than the request
timeout while answers arrive, and continued (SIGCONT) to their end; some get SIGHUP (the
terminal closed). Then it runs again, until the batch completes; then a fresh output folder and
manifest (new prompts) take over, until the wanted number of kills is reached, and the last
batch is finished without kills.

After every run (and at the end) these must hold, or the script prints the violation and exits 1:

- the ledger opens and `PRAGMA integrity_check` is ok;
- every file in OUT/images is a whole image (Pillow verify and load) whose SHA-256 is the
  ledger's - of a done row, or of a save the next run will finish; every done row's file exists;
- temporary files a kill left behind are gone once the next run has started (it cleans them),
  and none remain after a run that finished;
- no image that was done (or whose save was under way with its bytes on disk) is requested
  again: the simulator's request log (`GET /_sim/requests`; prompts are unique per image) is
  compared with the ledger after every kill;
- successful responses <= images + interruptions x concurrency: only requests in flight at a
  kill or a SIGHUP may be paid for twice ("wasted"); every other request is a fault the
  simulator injected;
- a run that was not interrupted (stopped and continued, or left alone) wastes nothing: every
  successful answer it received is an image done;
- a SIGHUP ends the run with exit 129 and its record in the ledger closed;
- at the end every image of every batch is done and on disk exactly once.

With `--mode batch` the images go as batch jobs (the simulator's Gemini Batch API, results
in files to download) and the crash points include each step of a job's life: just after a
create call was answered (before the ledger has the job's name), while polling, part-way
through a results download, and the saves. Two more checks then hold after every run, from
the simulator's own record of its jobs (`GET /_sim/batches`): no image was submitted in a
job while an earlier job holding it was still live, and no image was made twice; and the
ledger links no image to a closed job.

    python benchmarks/chaos.py [--kills 200] [--seed 1] [--images 60] [--concurrency 4]
        [--latency 0.05-0.3] [--faults 503=0.2,429=0.05,500=0.05,timeout=0.01] [--hang 1.5]
        [--timeout 1.0] [--mode online|batch]

tests/test_chaos.py runs a short version of the same thing with these functions.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image

if __package__ in (None, ""):  # run as a script: the repository root holds tests/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nbbatch.sim import SimulatorOptions, SimulatorServer, parse_faults
from tests.e2e_helpers import KEY, env, nbbatch_cmd, requests_log, write_manifest

Key = tuple[str, int]
TEMP_NAME = re.compile(r"\.(.+)\.([0-9a-f]{16})\.tmp")
CRASH_POINTS = ("mid-write", "before-rename", "after-rename")
# Runs allowed per kill asked for: far more means kills do not land (say, a crash point
# patched where nbbatch no longer calls it), and the benchmark must fail, not spin.
RUNS_PER_KILL = 10
# Batch mode adds kills at each step of a job's life: just after a create call was answered
# (before the ledger records the job's name), while polling, and part-way through a download.
BATCH_CRASH_POINTS = ("creating", "polling", "downloading", *CRASH_POINTS)

# The real CLI, with nbbatch.store.atomic's `os` wrapped so that the process SIGKILLs itself at the
# Nth call of one file operation: the kill lands inside a save, where a timer rarely hits.
CRASH_BOOT = r"""
import os, signal, sys
import nbbatch.store.atomic as storage  # the one atomic writer: images and the gallery
point, nth = sys.argv.pop(1).split(":")
nth, calls = int(nth), [0]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

class CrashingOs:
    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data):
        if point == "mid-write":
            calls[0] += 1
            if calls[0] == nth:
                os.write(fd, bytes(data[: len(data) // 2]))
                die()
        return os.write(fd, data)

    def replace(self, src, dst):
        if point in ("before-rename", "after-rename"):
            calls[0] += 1
            if calls[0] == nth and point == "before-rename":
                die()
            os.replace(src, dst)
            if calls[0] == nth:
                die()
            return None
        return os.replace(src, dst)

storage.os = CrashingOs()

import nbbatch.providers.gemini_batch as gemini_batch
import nbbatch.providers.transfer as transfer
client = gemini_batch.GeminiBatchClient

def after_nth(method, wanted):
    async def wrapped(*args, **kwargs):
        result = await method(*args, **kwargs)
        if point == wanted:
            calls[0] += 1
            if calls[0] == nth:
                die()
        return result
    return wrapped

client.create = after_nth(client.create, "creating")
client.get = after_nth(client.get, "polling")
get_lines = transfer.get_lines

async def dying_lines(*args, **kwargs):
    async for line in get_lines(*args, **kwargs):
        if point == "downloading":
            calls[0] += 1
            if calls[0] == nth:
                die()
        yield line

gemini_batch.get_lines = dying_lines
sys.argv[0] = "nbbatch"
from nbbatch.cli import main
main()
"""


class Violation(AssertionError):
    """A broken promise: the message says which and where."""


@dataclass(frozen=True)
class ChaosConfig:
    kills: int = 200
    seed: int = 1
    images: int = 60
    concurrency: int = 4
    latency: tuple[float, float] = (0.05, 0.3)
    faults: str = "503=0.2,429=0.05,500=0.05,timeout=0.01"
    hang: float = 1.5  # how long a timeout fault holds the request (> timeout)
    timeout: float = 1.0  # the client's total timeout per request (manifest)
    retry_delay: float = 0.3  # what the simulator's 429s ask to wait
    interval: float = 0.01  # pacing between request starts
    max_attempts: int = 10
    startup: float = 0.8  # early kills fall in [0, startup): interpreter, imports, lock, sync
    span: float = 4.0  # other timer kills fall in [startup, startup + span)
    early_share: float = 0.25
    crash_share: float = 0.15  # kills from inside, at a crash point of a save
    stop_share: float = 0.1  # runs stopped past the timeout (SIGSTOP), continued to the end
    hup_share: float = 0.05  # runs ended by SIGHUP
    stop_for: tuple[float, float] = (1.3, 2.5)  # how long a stop lasts, in request timeouts
    run_timeout: float = 120.0  # a run that takes longer is a violation (hung)
    mode: str = "online"  # or "batch": the images go as batch jobs (the simulator's API)
    batch_size: int = 10  # batch.max_requests: images per job
    batch_duration: float = 0.5  # how long the simulator takes over each job
    crash_points: tuple[str, ...] = ()  # crash kills go through these in turn (else random)


@dataclass
class Snapshot:
    """The output folder as the next run will find it."""

    runs: int  # runs recorded: a run records itself after it has finished interrupted saves
    rows: int
    done: set[Key]
    secured: set[Key]  # done, or a save under way whose bytes are on disk (the next run ends it)
    intents: int
    temps: set[tuple[str, int, int, int]]  # (name, inode, mtime_ns, size)
    files: int  # image files (not temporary)


@dataclass
class Figures:
    kills: int = 0
    stops: int = 0  # runs stopped past the timeout and continued
    hups: int = 0  # runs ended by SIGHUP
    runs: int = 0
    finished_runs: Counter = field(default_factory=Counter)  # exit code -> runs not killed
    kill_kinds: Counter = field(default_factory=Counter)  # early / mid-run / crash point
    kill_phases: Counter = field(default_factory=Counter)  # where the ledger says it was
    batches: int = 0
    images: int = 0
    requests: int = 0
    successes: int = 0
    outcomes: Counter = field(default_factory=Counter)
    saves_finished_by_recovery: int = 0
    temp_files_cleaned: int = 0
    seconds: float = 0.0
    concurrency: int = 0

    @property
    def interruptions(self) -> int:
        """Runs that ended with requests in flight: SIGKILL or SIGHUP."""
        return self.kills + self.hups

    @property
    def wasted(self) -> int:
        """Successful responses beyond one per image: paid for, then lost to a kill."""
        return self.successes - self.images

    def lines(self) -> list[str]:
        faulted = self.requests - self.successes
        per_image = self.requests / self.images if self.images else 0.0
        finished = ", ".join(f"exit {c}: {n}" for c, n in sorted(self.finished_runs.items()))
        return [
            f"kills survived      {self.kills} ({_counts(self.kill_kinds)})",
            f"  killed while      {_counts(self.kill_phases)}",
            f"stopped, continued  {self.stops} (SIGSTOP past the request timeout): every answer "
            "used",
            f"SIGHUP              {self.hups} (exit 129, run closed in the ledger)",
            f"runs                {self.runs} ({self.kills} killed; finished: {finished or '-'})",
            f"batches / images    {self.batches} / {self.images}, every one done exactly once",
            f"requests            {self.requests} ({per_image:.2f} per image): "
            f"{self.successes} successful, {faulted} faults ({_counts(self.outcomes)})",
            f"wasted              {self.wasted} successful responses discarded "
            f"(bound: interruptions x concurrency = {self.interruptions * self.concurrency})",
            f"request budget      {self.requests} <= {self.images} images + "
            f"{self.interruptions * self.concurrency} (interruptions x concurrency) + "
            f"{faulted} faults",
            f"recovered           {self.saves_finished_by_recovery} interrupted saves finished, "
            f"{self.temp_files_cleaned} temporary files cleaned by the next run",
            f"seconds             {self.seconds:.1f}",
        ]


def _counts(counter: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "-"


# --------------------------------------------------------------------------- the checks


_decoded: dict[tuple[str, int, int, int], str] = {}  # file identity -> sha256, once decoded


def check_image_file(path: Path) -> str:
    """SHA-256 of `path` after checking it is a whole image; Violation if it is not."""
    st = path.stat()
    identity = (str(path), st.st_ino, st.st_mtime_ns, st.st_size)
    if identity not in _decoded:
        try:
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:
                image.load()
        except Exception as exc:  # Pillow says "damaged" in many ways
            raise Violation(f"{path} is not a whole image: {exc}") from None
        _decoded[identity] = _sha256(path)
    return _decoded[identity]


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def inspect_output(out: Path) -> Snapshot:
    """Check the ledger and the images folder of a run that is not running; Violation if
    anything is torn, missing, extra or different."""
    rows: list[tuple] = []
    intents: list[tuple] = []
    runs = 0
    ledger = out / "ledger.db"
    if ledger.exists():
        conn = sqlite3.connect(ledger)  # read-write: recovers the WAL as the next run would
        try:
            check = conn.execute("PRAGMA integrity_check").fetchall()
            if check != [("ok",)]:
                raise Violation(f"{ledger}: integrity_check says {check}")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "images" in tables:
                rows = conn.execute("SELECT id, idx, status, file, sha256 FROM images").fetchall()
                intents = conn.execute("SELECT id, idx, file, sha256 FROM save_intents").fetchall()
                runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise Violation(f"{ledger} cannot be read: {exc}") from None
        finally:
            conn.close()

    images = out / "images"
    finals: dict[str, Path] = {}
    temps: dict[str, tuple[str, int, int, int]] = {}
    if images.is_dir():
        for entry in os.scandir(images):
            if entry.name.startswith("."):
                if not TEMP_NAME.fullmatch(entry.name):
                    raise Violation(f"unexpected hidden file {entry.path}")
                st = entry.stat()
                temps[entry.name] = (entry.name, st.st_ino, st.st_mtime_ns, st.st_size)
            elif entry.is_file(follow_symlinks=False):
                finals[f"images/{entry.name}"] = Path(entry.path)
            else:
                raise Violation(f"unexpected entry {entry.path} (not a plain file)")

    owners: dict[str, tuple[Key, str]] = {}
    done: set[Key] = set()
    for id_, idx, status, file, sha in rows:
        if status != "done":
            continue
        done.add((id_, idx))
        if not file or not sha:
            raise Violation(f"{id_}#{idx} is done without a file and hash in the ledger")
        if file not in finals:
            raise Violation(f"{id_}#{idx} is done but its file {file} does not exist")
        owners[file] = ((id_, idx), sha)
    secured = set(done)
    for id_, idx, file, sha in intents:
        owners.setdefault(file, ((id_, idx), sha))
        final_name = file.removeprefix("images/")
        temp = images / f".{final_name}.{sha[:16]}.tmp"
        on_disk = (file in finals and check_image_file(finals[file]) == sha) or (
            temp.exists() and _sha256(temp) == sha)
        if on_disk:
            secured.add((id_, idx))
    for file, path in finals.items():
        sha = check_image_file(path)
        owner = owners.get(file)
        if owner is None:
            raise Violation(f"{path} belongs to no done image and no save under way")
        if owner[1] != sha:
            raise Violation(f"{path} has SHA-256 {sha[:12]}, the ledger says {owner[1][:12]} "
                            f"for {owner[0][0]}#{owner[0][1]}")
    return Snapshot(runs=runs, rows=len(rows), done=done, secured=secured,
                    intents=len(intents), temps=set(temps.values()), files=len(finals))


def check_recovered(before: Snapshot, after: Snapshot, *, finished: bool) -> None:
    """What a kill left must be dealt with once a later run has started (recorded a run: it
    finishes interrupted saves and removes temporary files first thing): the saves whose bytes
    were on disk are done, and those temporary files are gone. A finished run leaves none."""
    if finished and after.temps:
        raise Violation(f"a finished run left temporary files: {sorted(t[0] for t in after.temps)}")
    if after.runs == before.runs:
        return  # killed before it got that far: nothing is promised yet
    survived = before.temps & after.temps
    if survived:
        raise Violation(f"temporary files survived the next run: {sorted(t[0] for t in survived)}")
    lost = before.secured - after.done
    if lost:
        raise Violation(f"saves interrupted with their bytes on disk were not finished by the "
                        f"next run: {sorted(lost)}")


def check_final(out: Path, images: int) -> Snapshot:
    snap = inspect_output(out)
    if snap.rows != images or len(snap.done) != images:
        raise Violation(f"{out}: {len(snap.done)} of {snap.rows} images done, expected {images}")
    if snap.files != images or snap.temps or snap.intents:
        raise Violation(f"{out}: {snap.files} image files for {images} images "
                        f"({len(snap.temps)} temporary files, {snap.intents} saves under way)")
    return snap


def check_no_repeat(log: list[dict], start: int, secured: dict[str, str]) -> None:
    """Requests log[start:] must not ask for any prompt already secured (prompt -> when)."""
    for entry in log[start:]:
        prompt = entry.get("prompt")
        if prompt in secured:
            raise Violation(f"{prompt!r} was requested again (at t={entry['t']}) although it "
                            f"was done {secured[prompt]}")


def check_budget(log: list[dict], secured_images: int, kills: int, concurrency: int) -> None:
    """`kills`: runs ended with requests in flight (SIGKILL, SIGHUP)."""
    successes = sum(1 for entry in log if entry["outcome"] == "success")
    if successes > secured_images + kills * concurrency:
        raise Violation(f"{successes} successful responses for {secured_images} images kept "
                        f"after {kills} kills: more than {kills} x {concurrency} were lost")


def batch_jobs(url: str) -> list[dict]:
    return httpx.get(f"{url}/_sim/batches", timeout=5).json()


def check_batch_jobs(jobs: list[dict]) -> None:
    """Batch mode, from the simulator's side: no image was submitted in a job while an
    earlier job holding it was still live, and none was made (paid for) twice."""
    live_until: dict[str, tuple[float, str]] = {}
    made: dict[str, str] = {}
    for job in sorted(jobs, key=lambda j: j["created"]):
        for request in job["requests"]:
            prompt = request["prompt"]
            earlier = live_until.get(prompt)
            if earlier and job["created"] < earlier[0]:
                raise Violation(f"{prompt!r} was submitted in {job['name']} at t="
                                f"{job['created']} while {earlier[1]} still held it (live "
                                f"until t={earlier[0]})")
            live_until[prompt] = (job["ends"], job["name"])
            if request["outcome"] == "success":
                if prompt in made:
                    raise Violation(f"{prompt!r} was made twice: in {made[prompt]} and "
                                    f"{job['name']}")
                made[prompt] = job["name"]


def check_job_links(out: Path) -> None:
    """Every image the ledger places in a job places it in an open one."""
    ledger = out / "ledger.db"
    if not ledger.exists():
        return
    conn = sqlite3.connect(ledger)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "batch_jobs" not in tables:
            return
        stray = conn.execute(
            "SELECT i.id FROM images i JOIN batch_jobs j ON j.job_id = i.batch_job"
            " WHERE j.phase = 'closed'").fetchall()
    finally:
        conn.close()
    if stray:
        raise Violation(f"{len(stray)} images are still linked to closed batch jobs")


def check_nothing_wasted(log: list[dict], start: int, newly_secured: set[str]) -> None:
    """A run that was not interrupted keeps every successful answer it got (log[start:]):
    `newly_secured` holds the prompts of the images it made."""
    answered = [entry for entry in log[start:] if entry["outcome"] == "success"]
    if len(answered) != len(newly_secured):
        lost = sorted({e["prompt"] for e in answered} - newly_secured) or [
            e["prompt"] for e in answered]
        raise Violation(f"a run that was not interrupted received {len(answered)} successful "
                        f"answers but kept {len(newly_secured)} images: answers were thrown "
                        f"away ({', '.join(lost[:5])})")


def check_closed(out: Path, code: int) -> None:
    """The last run's record is closed, and says 129 if the run exited 129 (a SIGHUP that
    arrived after the run was closed, as the process was leaving, ends it by default)."""
    with sqlite3.connect(f"file:{out / 'ledger.db'}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT exit_code, finished_at FROM runs ORDER BY run_id DESC"
                           " LIMIT 1").fetchone()
    conn.close()
    if row is None or row[1] is None or (code == 129 and row[0] != 129):
        raise Violation(f"the run that exited {code} after SIGHUP is recorded as {row}")


# --------------------------------------------------------------------------- the driver


@dataclass
class _Batch:
    number: int
    folder: Path
    manifest: Path
    out: Path
    prompts: dict[Key, str]  # (id, index) -> prompt
    snapshot: Snapshot
    signalled: bool = False  # the last run got its SIGSTOP or SIGHUP before it ended


def _new_batch(work: Path, number: int, cfg: ChaosConfig, url: str) -> _Batch:
    folder = work / f"batch-{number:03d}"
    folder.mkdir(parents=True)
    prompts = {(f"img{i}", 1): f"chaos batch {number} image {i}" for i in range(cfg.images)}
    manifest = write_manifest(
        folder / "m.yaml", list(prompts.values()), base_url=url, interval=cfg.interval,
        concurrency=cfg.concurrency, max_attempts=cfg.max_attempts,
        providers={"gemini": {"api_key_env": "GEMINI_API_KEY", "base_url": url,
                              "timeout": cfg.timeout}},
        retry={"max_attempts": cfg.max_attempts, "initial_delay": 0.02, "max_delay": 0.2},
        # 4K answers are too large to come back inline: results come as files to download.
        **({"mode": "batch", "batch": {"poll_every": 0.05, "max_requests": cfg.batch_size},
            "defaults": {"provider": "gemini", "model": "gemini-3-pro-image",
                         "aspect_ratio": "1:1", "image_size": "4K"}}
           if cfg.mode == "batch" else {}),
    )
    out = folder / "out"
    return _Batch(number, folder, manifest, out, prompts, inspect_output(out))


def _draw(rng: random.Random, cfg: ChaosConfig,
          crashes: int = 0) -> tuple[str, float | str | tuple[float, float]]:
    """How the next run ends: ("early"|"mid-run"|"hup", seconds until SIGKILL or SIGHUP),
    ("stop", (seconds until SIGSTOP, seconds stopped)) or ("crash", point). `crashes`: crash
    kills so far (cfg.crash_points are taken in turn)."""
    r = rng.random()
    mid_run = rng.uniform(cfg.startup, cfg.startup + cfg.span)
    if r < cfg.crash_share:
        points = BATCH_CRASH_POINTS if cfg.mode == "batch" else CRASH_POINTS
        point = (cfg.crash_points[crashes % len(cfg.crash_points)] if cfg.crash_points
                 else rng.choice(points))
        return "crash", f"{point}:{rng.randint(1, 3)}"
    r -= cfg.crash_share
    if r < cfg.stop_share:
        return "stop", (mid_run, rng.uniform(*cfg.stop_for) * cfg.timeout)
    r -= cfg.stop_share
    if r < cfg.hup_share:
        return "hup", mid_run
    if r - cfg.hup_share < cfg.early_share:
        return "early", rng.uniform(0, cfg.startup)
    return "mid-run", mid_run


def _run(batch: _Batch, work: Path, cfg: ChaosConfig, how: str | None,
         arg: float | str | tuple[float, float] | None) -> int:
    """One run of the real CLI; returns its exit code (-9 when SIGKILLed)."""
    args = ["run", batch.manifest, "--quiet"]
    cmd = nbbatch_cmd(*args)
    if how == "crash":
        cmd = [sys.executable, "-c", CRASH_BOOT, str(arg), *map(str, args)]
    with open(batch.folder / "cli.log", "ab") as log:
        log.write(f"--- run ({how or 'to the end'} {arg or ''})\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, cwd=batch.folder, env=env(work), stdout=log,
                                stderr=subprocess.STDOUT)
    if how in ("stop", "hup"):
        return _signal_mid_run(proc, how, arg, cfg, batch)
    wait = arg if how in ("early", "mid-run") else cfg.run_timeout
    try:
        return proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        code = proc.wait()
        if how not in ("early", "mid-run"):
            raise Violation(f"a run did not finish within {cfg.run_timeout:g} s "
                            f"(log: {batch.folder / 'cli.log'})") from None
        return code


def _settled_log(url: str, quiet: float = 0.1, limit: float = 2.0) -> list[dict]:
    """The simulator's request log once it has stopped growing for `quiet` seconds."""
    log, deadline = requests_log(url), time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(quiet)
        again = requests_log(url)
        if len(again) == len(log):
            break
        log = again
    return log


def _signal_mid_run(proc: subprocess.Popen, how: str, arg: object, cfg: ChaosConfig,
                    batch: _Batch) -> int:
    """SIGSTOP, wait, SIGCONT (a "stop"), or SIGHUP, at a moment mid-run; then the run's end."""
    at, stopped_for = arg if isinstance(arg, tuple) else (arg, 0.0)
    batch.signalled = False
    try:
        return proc.wait(timeout=float(at))  # it finished first
    except subprocess.TimeoutExpired:
        batch.signalled = True
    if how == "stop":
        proc.send_signal(signal.SIGSTOP)
        time.sleep(stopped_for)  # the server answers meanwhile
        proc.send_signal(signal.SIGCONT)
    else:
        proc.send_signal(signal.SIGHUP)
    try:
        return proc.wait(timeout=cfg.run_timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        raise Violation(f"a run did not end within {cfg.run_timeout:g} s after {how} "
                        f"(log: {batch.folder / 'cli.log'})") from None


class _Chaos:
    def __init__(self, cfg: ChaosConfig, work: Path, url: str, report: Callable[[str], None]):
        self.cfg, self.work, self.url, self.report = cfg, work, url, report
        self.figures = Figures(concurrency=cfg.concurrency)
        self.secured: dict[str, str] = {}  # prompt -> when it was secured
        self.secured_done_batches = 0  # images in finished batches
        self.seen = 0  # request log entries checked so far

    def after_run(self, batch: _Batch, code: int, how: str | None,
                  arg: float | str | None = None) -> bool:
        """Check everything after one run; True when the batch is complete."""
        cfg, fig = self.cfg, self.figures
        fig.runs += 1
        killed = code == -signal.SIGKILL
        # A SIGHUP before nbbatch set up its handlers (interpreter, imports, the manifest)
        # ends it as the default action does; it had recorded nothing yet (checked below).
        hung_up = how == "hup" and code in (129, -signal.SIGHUP)
        context = f"run {fig.runs}, batch {batch.number}"
        if killed:
            fig.kills += 1
            context = f"kill {fig.kills} ({how}), " + context
        elif hung_up:
            fig.hups += 1
            context = f"SIGHUP {fig.hups}, " + context
        elif code not in (0, 75):
            raise Violation(f"{context}: exit {code}; see {batch.folder / 'cli.log'}")
        else:
            fig.finished_runs[code] += 1
            fig.stops += how == "stop" and batch.signalled
        try:
            before = batch.snapshot
            after = inspect_output(batch.out)
            check_recovered(before, after, finished=not (killed or hung_up))
            if after.runs > before.runs:
                fig.temp_files_cleaned += len(before.temps)
                fig.saves_finished_by_recovery += len(before.secured - before.done)
            # A request a killed run had sent may reach the server's log a moment later:
            # let it settle, so the next run is not charged with it.
            log = _settled_log(self.url) if killed or hung_up else requests_log(self.url)
            check_no_repeat(log, self.seen, self.secured)
            if hung_up and after.runs > before.runs:  # it got as far as recording a run
                check_closed(batch.out, code)
            elif not killed and cfg.mode == "online":  # batch results may wait for a later run
                check_nothing_wasted(log, self.seen, {batch.prompts[key] for key in
                                                      after.secured - before.secured})
            self.seen = len(log)
            for key in after.secured:
                self.secured.setdefault(batch.prompts[key], f"after {context}")
            if cfg.mode == "batch":  # results wait in live jobs: the sharper checks apply
                check_batch_jobs(batch_jobs(self.url))
                check_job_links(batch.out)
            else:
                check_budget(log, self.secured_done_batches + len(after.secured),
                             fig.interruptions, cfg.concurrency)
        except Violation as exc:
            raise Violation(f"{context}: {exc}") from None
        if killed:
            ran = after.runs > before.runs
            phase = ("start-up, lock or sync" if not ran
                     else "save under way" if after.intents or after.temps else "requests")
            if cfg.mode == "batch" and how == "crash":
                phase = str(arg).split(":")[0]  # creating, polling, downloading or a save
            fig.kill_phases[phase] += 1
            fig.kill_kinds[how if how != "crash" else "crash point"] += 1
        batch.snapshot = after
        # Complete when it says so (exit 0), or when a signal ended it just after the batch was
        # finished (a SIGHUP as it was leaving): then the folder must show it all the same.
        complete = code == 0 or (len(after.done) == cfg.images and not after.intents)
        if complete:
            try:
                check_final(batch.out, cfg.images)
            except Violation as exc:
                raise Violation(f"{context}: exit {code} but {exc}") from None
        return complete

    def run(self) -> Figures:
        cfg, fig = self.cfg, self.figures
        rng = random.Random(cfg.seed)
        started = time.monotonic()
        batch = _new_batch(self.work, 1, cfg, self.url)
        while fig.kills < cfg.kills:
            if fig.runs > RUNS_PER_KILL * (cfg.kills + 1):
                raise Violation(f"{fig.runs} runs for {fig.kills} kills: the kills do not land")
            how, arg = _draw(rng, cfg, fig.kill_kinds["crash point"])
            code = _run(batch, self.work, cfg, how, arg)
            if self.after_run(batch, code, how, arg):
                self._finished(batch)
                batch = _new_batch(self.work, batch.number + 1, cfg, self.url)
            if fig.runs % 10 == 0:
                self.report(f"  {fig.runs} runs, {fig.kills} kills, batch {batch.number}, "
                            f"{len(batch.snapshot.done)}/{cfg.images} done")
        for _ in range(20):  # the last batch, without kills (exit 75: attempts ran out)
            if batch.snapshot.rows and len(batch.snapshot.done) == cfg.images:
                break
            if self.after_run(batch, _run(batch, self.work, cfg, None, None), None):
                self._finished(batch)
                break
        else:
            raise Violation(f"batch {batch.number} did not complete in 20 runs without kills")
        log = requests_log(self.url)
        fig.requests = len(log)
        fig.successes = sum(1 for e in log if e["outcome"] == "success")
        fig.outcomes = Counter(e["outcome"] for e in log if e["outcome"] != "success")
        fig.images = fig.batches * cfg.images
        check_budget(log, fig.images, fig.interruptions, cfg.concurrency)
        fig.seconds = time.monotonic() - started
        return fig

    def _finished(self, batch: _Batch) -> None:
        self.figures.batches += 1
        self.secured_done_batches += self.cfg.images


def run_chaos(cfg: ChaosConfig, work: Path, report: Callable[[str], None] = print) -> Figures:
    """Kill, check, repeat, as the module says. Raises Violation at the first broken promise."""
    options = SimulatorOptions(
        latency=cfg.latency, api_key=KEY, seed=cfg.seed, hang=cfg.hang,
        retry_delay=cfg.retry_delay, batch_duration=cfg.batch_duration,
        **parse_faults(cfg.faults),
    )
    with SimulatorServer(options) as sim:
        # A killed client resets its connection under a handler that is still answering it;
        # socketserver would print a traceback for each. That is the point here, not news.
        sim._httpd.handle_error = lambda request, client_address: None
        return _Chaos(cfg, work, sim.url, report).run()


def main() -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--latency", default="0.05-0.3", help='seconds, "0.2" or "0.05-0.3"')
    parser.add_argument("--faults", default=ChaosConfig.faults)
    parser.add_argument("--hang", type=float, default=ChaosConfig.hang,
                        help="seconds a timeout fault holds its request")
    parser.add_argument("--timeout", type=float, default=ChaosConfig.timeout,
                        help="the client's timeout per request (manifest)")
    parser.add_argument("--span", type=float, default=ChaosConfig.span,
                        help="seconds after start-up over which mid-run kills are spread")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--mode", choices=("online", "batch"), default="online",
                        help="batch: the images go as batch jobs, killed at every step")
    args = parser.parse_args()
    low, _, high = args.latency.partition("-")
    cfg = ChaosConfig(
        kills=args.kills, seed=args.seed, images=args.images, concurrency=args.concurrency,
        latency=(float(low), float(high or low)), faults=args.faults, hang=args.hang,
        timeout=args.timeout, span=args.span, mode=args.mode,
    )
    print(f"chaos: {cfg.kills} kills, seed {cfg.seed}, {cfg.images} images per batch, "
          f"concurrency {cfg.concurrency}, latency {args.latency} s, faults {cfg.faults}, "
          f"hang {cfg.hang:g} s, client timeout {cfg.timeout:g} s, mode {cfg.mode}", flush=True)
    with tempfile.TemporaryDirectory(prefix="nbbatch-chaos-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            figures = run_chaos(cfg, work, report=lambda line: print(line, flush=True))
        except Violation as exc:
            print(f"VIOLATION: {exc}", file=sys.stderr, flush=True)
            return 1
    print("\n".join(figures.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
