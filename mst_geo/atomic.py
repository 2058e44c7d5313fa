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

from mst_geo.errors import MSTGeoError, os_error_reason


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` (not yet created, so writers and GDAL drivers
    create it with the usual permissions); rename it onto ``path`` only if the block succeeds.
    Leftovers (the temp file and driver side files such as ``-wal``) are removed either way; a
    failed write (an ``OSError``) becomes a one-line error naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    except OSError as error:  # a link to nothing, a folder made read-only since the check
        raise MSTGeoError(f"cannot write it ({os_error_reason(error)})", path) from None
    os.close(handle)
    temporary = Path(name)
    temporary.unlink()
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as error:  # disk full, permissions: name the file the user asked for
        raise MSTGeoError(f"cannot write it ({os_error_reason(error)})", path) from None
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


def check_output(path: str | Path, overwrite: bool) -> None:
    """Fail early (before any inference) when ``path`` exists or its folder is not writable. A
    missing folder is checked through the nearest one that exists and created only when the
    output is written, so a run that fails later leaves no empty folders behind."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise MSTGeoError("output exists (pass --overwrite, or overwrite=True in Python, to replace it)", path)
    if path.is_dir():
        raise MSTGeoError("output is a directory", path)
    if path.is_file() and not (os.access(path, os.W_OK) and path.stat().st_mode & 0o222):
        # a rename would replace it whatever its mode (and root writes anything): honour the mode
        raise MSTGeoError("output is read-only (make it writable to replace it)", path)
    folder = next(folder for folder in path.absolute().parents if folder.exists() or folder.is_symlink())
    if not folder.exists():
        raise MSTGeoError("is a link to nothing: the output cannot go inside it", folder)
    if not folder.is_dir():
        raise MSTGeoError("is a file, not a folder: the output cannot go inside it", folder)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as error:
        raise MSTGeoError(f"cannot write a file in this folder ({error.strerror})", folder) from None
