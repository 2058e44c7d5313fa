"""Atomic file output: write beside the target, rename onto it only when the write succeeded.

One mechanism for every file the package writes (polygons, masks, checkpoints, bench reports,
resume journals), so an interrupted or failed write never leaves a half-written file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` (not yet created, so writers and GDAL drivers
    create it with the usual permissions); rename it onto ``path`` only if the block succeeds.
    Leftovers (the temp file and driver side files such as ``-wal``) are removed either way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(handle)
    temporary = Path(name)
    temporary.unlink()
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        for leftover in temporary.parent.iterdir():
            if leftover.name.startswith(temporary.name):
                leftover.unlink()


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)``, then rename the result onto ``path``."""
    with atomic_path(path) as temporary:
        write(temporary)


def write_text_atomic(path: str | Path, text: str) -> None:
    """``Path.write_text`` without a half-written file on failure."""
    write_atomic(path, lambda temporary: temporary.write_text(text))
