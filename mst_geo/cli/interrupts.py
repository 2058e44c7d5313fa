"""Ctrl-C in the resumable commands (segment, bench noc, train): say how to resume, exit code 130."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer


@contextlib.contextmanager
def resume_hint_on_interrupt(hint: str) -> Iterator[None]:
    """Turn Ctrl-C inside the block into one line ``interrupted: <hint>`` and exit code 130."""
    try:
        yield
    except KeyboardInterrupt:
        typer.echo(f"interrupted: {hint}", err=True)
        raise typer.Exit(130) from None
