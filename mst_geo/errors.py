"""User-facing errors: the CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations

from pathlib import Path


class MSTGeoError(Exception):
    """Base of every error caused by user input (a file, a flag, a click), not by a bug."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class MSTGeoWarning(UserWarning):
    """Something the user should know that does not stop the work (a guessed band order, say):
    the CLI prints it as one ``warning:`` line, a notebook shows it as a warning."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch scheduler), raised where a command runs so that it
    unwinds as an interrupt does; the CLI exits with 143 on it, 130 on Ctrl-C."""
