"""Exceptions and exit codes.

    NbbatchError                 message is what the user reads; exit_code picks the exit status
    ├── UsageError               bad flags or arguments (exit 2)
    │   ├── ManifestError        bad manifest: file, line, field (exit 2)
    │   ├── MissingKeyError      a provider's key variable is not set (exit 2)
    │   └── OptionError          a provider option the provider cannot take (exit 2)
    ├── FolderLockedError        another run holds the output folder (exit 75)
    ├── SignalStop               a signal before any request was sent (exit 128 + signal)
    ├── LedgerError              the ledger cannot be read, is damaged or is not ours (exit 2)
    │   └── LedgerWriteError     the ledger cannot be written: disk full, no access (exit 75)
    ├── StorageError             an image could not be written: disk full, no access (exit 75)
    │   └── UnsafeFolderError    writing would land outside the output folder (exit 2)
    └── ProviderError            one classified API response: provider, HTTP status, request id
        ├── TransientError       retry with backoff (503, 500, per-minute 429, timeouts...)
        ├── BlockedError         safety / policy refusal: the image fails, never retried
        ├── InvalidRequestError  400 about the request: the image fails, never retried
        ├── QuotaExhaustedError  per-day quota or billing cap: the provider is done for this run
        ├── JobGoneError         the provider no longer knows a batch job (its images go back)
        └── FatalError           the whole run must stop: key rejected, permission (exit 4)
            └── UnknownModelError  the provider does not know the model (exit 2)
"""

from __future__ import annotations

import traceback
from enum import IntEnum, StrEnum
from pathlib import Path


class ExitCode(IntEnum):
    OK = 0
    USAGE = 2  # usage or manifest error, or an unknown model; nothing was sent
    FAILED = 3  # finished, nothing pending, some images failed
    AUTH = 4  # authentication or permission failure
    SOFTWARE = 70  # a defect in nbbatch itself: images in flight stay pending
    OUTPUT = 74  # what a reading command had to say could not be written (a full disk)
    TEMPFAIL = 75  # stopped with images pending: run again later
    SIGHUP = 129  # the terminal closed or the ssh session dropped
    SIGINT = 130
    SIGTERM = 143


class Outcome(StrEnum):
    """What one attempt came to, as the ledger records it."""

    SUCCESS = "success"
    TRANSIENT = "transient"
    BLOCKED = "blocked"
    INVALID = "invalid"
    QUOTA = "quota"
    FATAL = "fatal"
    INTERRUPTED = "interrupted"  # cancelled by a stop while the request was in flight


class NbbatchError(Exception):
    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(NbbatchError):
    exit_code = ExitCode.USAGE


class MissingKeyError(UsageError):
    """A provider's key variable is not set; nothing was sent. The command line adds how to
    go on with the command at hand."""


class OptionError(UsageError):
    """A provider option the provider cannot take: `key` names it (under providers.NAME)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.reason = key, message


class ManifestError(UsageError):
    def __init__(
        self, message: str, *, file: str, line: int | None = None, field: str | None = None
    ) -> None:
        where = file if line is None else f"{file}:{line}"
        text = f"{where}: {field}: {message}" if field else f"{where}: {message}"
        super().__init__(text)
        self.file, self.line, self.field, self.reason = file, line, field, message


class FolderLockedError(NbbatchError):
    exit_code = ExitCode.TEMPFAIL


class SignalStop(NbbatchError):
    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.exit_code = code


class LedgerError(NbbatchError):
    exit_code = ExitCode.USAGE


class LedgerWriteError(LedgerError):
    """Running again later may help: the disk fills up, a mount turns read-only."""

    exit_code = ExitCode.TEMPFAIL


class StorageError(NbbatchError):
    exit_code = ExitCode.TEMPFAIL


class UnsafeFolderError(StorageError):
    """The output folder is laid out so that writing to it would land elsewhere (a symbolic
    link where a folder or the lock file belongs). Running again later will not help."""

    exit_code = ExitCode.USAGE


class ProviderError(NbbatchError):
    """A classified response from a provider. `kind` is what the ledger records."""

    kind: Outcome = Outcome.FATAL

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        request_id: str | None = None,
        usage: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.request_id = request_id
        self.usage = usage


class TransientError(ProviderError):
    """Worth another try. `retry_after` is the server's own delay in seconds, if it gave one.

    `overload` marks 503s and per-minute 429s: the signals failover counts.
    `possibly_billed` marks failures after the request was sent (a timeout waiting for the
    answer), which the provider may still charge for.
    """

    kind = Outcome.TRANSIENT

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        overload: bool = False,
        possibly_billed: bool = False,
        **kw,
    ) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        self.overload = overload
        self.possibly_billed = possibly_billed


class BlockedError(ProviderError):
    kind = Outcome.BLOCKED


class InvalidRequestError(ProviderError):
    kind = Outcome.INVALID


class QuotaExhaustedError(ProviderError):
    kind = Outcome.QUOTA
    exit_code = ExitCode.TEMPFAIL


class JobGoneError(ProviderError):
    """A batch job the ledger records is unknown to the provider (deleted, or expired long
    ago): nothing more will come of it."""

    kind = Outcome.TRANSIENT


class FatalError(ProviderError):
    kind = Outcome.FATAL
    exit_code = ExitCode.AUTH


class UnknownModelError(FatalError):
    exit_code = ExitCode.USAGE


def describe_defect(exc: BaseException) -> str:
    """An unexpected exception named by its type and the line of nbbatch that raised it -
    never its message, which may hold anything (a header value with a key in it)."""
    where = ""
    package = Path(__file__).resolve().parent
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename).resolve()
        if path.is_relative_to(package):
            where = f" at nbbatch/{path.relative_to(package)}:{frame.lineno}"
    return f"{type(exc).__name__}{where}"
