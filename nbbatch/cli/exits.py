"""The one place errors become exit codes, and where a failed output is told.

A command returns its exit code or raises an NbbatchError; the ladder here prints the
error (as text, on one line) and exits. Any other exception is a defect in nbbatch: it is
named by type and line, never by its message (which may hold a secret), and exits 70.
Output that could not be written (a full disk) is said on stderr: for `run` the exit code
stays what the run earned, for reading commands (`status`, `plan`), whose output is their
result, it is exit 74.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.text import Text

from nbbatch.cli.console import make_console, output_failure
from nbbatch.errors import ExitCode, NbbatchError, describe_defect
from nbbatch.text import printable

Command = TypeVar("Command", bound=Callable[..., Any])


def say_error(message: str, prefix: str = "error") -> None:
    make_console(stderr=True).print(Text(f"{prefix}: {printable(message)}"))


def exits(*, output_is_result: bool = False) -> Callable[[Command], Command]:
    def decorate(command: Command) -> Command:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            try:
                code = command(*args, **kwargs)
            except NbbatchError as exc:
                say_error(exc.message)
                code = exc.exit_code
            except KeyboardInterrupt:
                code = ExitCode.SIGINT
            except (typer.Exit, typer.Abort):
                raise
            except Exception as exc:
                if os.environ.get("NBBATCH_DEBUG"):
                    raise  # the whole traceback, for whoever debugs nbbatch itself
                say_error(f"internal error ({describe_defect(exc)}): please report it; what "
                          "was finished is saved (set NBBATCH_DEBUG=1 for the traceback)")
                code = ExitCode.SOFTWARE
            # What is still buffered (a short JSON document, say) fails only when flushed:
            # flush before asking whether the output was written.
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
            failure = output_failure()
            if failure is not None:
                reason = failure.strerror or str(failure)
                if output_is_result:
                    say_error(f"cannot write the output: {reason}")
                    code = ExitCode.OUTPUT
                else:
                    say_error(f"the output could not be written ({reason}); the run itself "
                              f"went on and ended with exit {int(code or 0)}", "warning")
            raise typer.Exit(int(code or 0))

        return wrapper  # type: ignore[return-value]

    return decorate
