"""The command line: Typer commands, the error -> exit code ladder, Rich rendering."""

from nbbatch.cli.app import app, main

__all__ = ["app", "main"]
