"""User-facing errors: the CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations

import errno
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path


class MSTGeoError(Exception):
    """Base of every error caused by user input (a file, a flag, a click), not by a bug."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


def a_few(names: Sequence[str], most: int = 5) -> str:
    """The first ``most`` of ``names`` for a one-line message, "…" standing for the rest."""
    return ", ".join(names[:most]) + (", …" if len(names) > most else "")


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def os_error_reason(error: OSError) -> str:
    """An ``OSError`` as the reason in a one-line error; a full disk also says what to do."""
    reason = error.strerror or str(error)
    if error.errno in DISK_FULL:
        return f"{reason}: free some space and try again (finished objects and checkpoints are kept)"
    return reason


def os_error_line(error: OSError) -> str | None:
    """The one line a user gets for a file-system error about a path they gave, or for a full disk
    (which also hits stream writes that name no file); None for anything else, a bug to report."""
    if error.filename is None and error.errno not in DISK_FULL:
        return None
    reason = os_error_reason(error)
    return f"{error.filename}: {reason}" if error.filename else reason


class MSTGeoWarning(UserWarning):
    """Something the user should know that does not stop the work (a guessed band order, say):
    the CLI prints it as one ``warning:`` line, a notebook shows it as a warning."""


_PACKAGE_FOLDER = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str) -> None:
    """Warn with an ``MSTGeoWarning`` attributed to the caller of the outermost mst_geo frame, so a
    notebook or script shows the user's own line, however deep in the package (and through other
    libraries it calls, such as Lightning) the warning was found; a package thread's, its start."""
    frame, level, outermost = sys._getframe(1), 2, 1
    while frame is not None:
        if os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_FOLDER):
            outermost = level
        frame, level = frame.f_back, level + 1
    warnings.warn(message, MSTGeoWarning, stacklevel=outermost + 1)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch scheduler), raised where a command runs so that it
    unwinds as an interrupt does; the CLI exits with 143 on it, 130 on Ctrl-C."""
