"""The one function that picks a run's exit code."""

import pytest

from nbbatch.engine.summary import exit_code_for
from nbbatch.errors import ExitCode, FatalError, UnknownModelError
from nbbatch.store.records import Counts

KEY = FatalError("key rejected")
MODEL = UnknownModelError("no such model")


@pytest.mark.parametrize(("counts", "kw", "code"), [
    (Counts(3, 3, 0, 0), {}, ExitCode.OK),
    (Counts(3, 2, 1, 0), {}, ExitCode.FAILED),
    (Counts(3, 2, 0, 1), {}, ExitCode.TEMPFAIL),
    (Counts(3, 2, 1, 1), {}, ExitCode.TEMPFAIL),  # pending beats failed: run again later
    (Counts(3, 3, 0, 0), {"interrupted": ExitCode.SIGTERM}, ExitCode.SIGTERM),
    (Counts(3, 0, 0, 3), {"interrupted": ExitCode.SIGINT, "fatal": KEY, "all_dropped": True},
     ExitCode.SIGINT),
    (Counts(3, 0, 0, 3), {"fatal": KEY, "all_dropped": True}, ExitCode.AUTH),
    (Counts(3, 0, 0, 3), {"fatal": MODEL, "all_dropped": True}, ExitCode.USAGE),
    (Counts(3, 1, 0, 2), {"fatal": KEY, "stuck_on_fatal": 2}, ExitCode.AUTH),
    # A backup's key was rejected, the others carried on: what is pending is not its doing.
    (Counts(3, 1, 0, 2), {"fatal": KEY}, ExitCode.TEMPFAIL),
    (Counts(3, 3, 0, 0), {"fatal": KEY}, ExitCode.OK),
])  # fmt: skip
def test_exit_codes(counts, kw, code):
    kw = {"interrupted": None, "fatal": None, "all_dropped": False, **kw}
    assert exit_code_for(counts, **kw) == code
