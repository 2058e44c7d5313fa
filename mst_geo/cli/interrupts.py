"""Ctrl-C and SIGTERM in the long-running commands (segment, bench noc, train, app).

Ctrl-C exits with code 130; SIGTERM (``kill``, ``timeout``, a batch scheduler or service manager
ending the job) is raised as ``Terminated`` inside the block, so the same clean-up runs
(temporary files removed, finished objects kept, unsaved clicks announced) and it exits with 143.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import typer

from mst_geo.errors import Terminated


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises ``Terminated``; its previous handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:  # a handler installed from C reads as None: the default is the closest to it
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def resume_hint_on_interrupt(hint: str, handle_sigterm: bool = True) -> Iterator[None]:
    """Turn Ctrl-C (and with ``handle_sigterm`` SIGTERM) inside the block into one line
    ``interrupted: <hint>`` and exit code 130 (143). ``train`` leaves SIGTERM to Lightning, which
    saves ``interrupted.ckpt`` on it (and raises ``Terminated`` after)."""
    with sigterm_as_interrupt() if handle_sigterm else contextlib.nullcontext():
        try:
            yield
        except KeyboardInterrupt as interrupt:
            if os.environ.get("LOCAL_RANK", "0") == "0":  # a training rank Lightning started says it once, not again
                typer.echo(f"interrupted: {hint}", err=True)
            raise typer.Exit(143 if isinstance(interrupt, Terminated) else 130) from None
