"""Finished objects of a long ``segment`` run, kept on disk so an interrupted run resumes.

Each finished object is stored under a digest of its clicks, next to a key naming the run
(scene, bands, model, device): a rerun of the same command finds them and skips their model
calls; any change of the key starts afresh. The stored result is exact (float32 probability),
so a resumed run writes the same polygons as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

from mst_geo.atomic import write_atomic, write_text_atomic
from mst_geo.geo.prompts import SceneClick
from mst_geo.geo.raster import scene_location, scene_source
from mst_geo.geo.scene import ObjectMask

KEY_FILE = "run.json"


def file_identity(path: str | Path) -> dict[str, Any]:
    """What identifies a file's content cheaply: resolved path, size and modification time.

    A URL (a ``str`` from ``scene_source``) is identified by itself without its query: published
    scenes do not change in place, asking a server for dates is not worth a request per run, and a
    presigned URL's signature changes with each signing (and is a secret, kept out of run files).
    A GDAL path into an archive (a VRT's ``/vsizip/`` tile) has no file of its own to stat: its name.
    """
    if isinstance(scene_source(path), str) or (str(path).startswith("/vsi") and not Path(path).exists()):
        return {"path": scene_location(path)}
    stat = Path(path).stat()
    return {"path": scene_location(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def files_digest(paths: Sequence[str | Path]) -> str:
    """12 hex digits of the ``file_identity`` of ``paths`` (a scene's files): a record's short
    stand-in for "these files as they are now"."""
    identities = json.dumps([file_identity(path) for path in paths], sort_keys=True)
    return hashlib.sha256(identities.encode()).hexdigest()[:12]


class ObjectJournal:
    """Results of finished objects in ``directory``, valid for the run described by ``key``."""

    def __init__(self, directory: str | Path, key: Mapping[str, Any]):
        self.directory = Path(directory)
        self.key = json.dumps(key, sort_keys=True, default=str)
        key_file = self.directory / KEY_FILE
        if self.directory.exists() and (not key_file.is_file() or key_file.read_text() != self.key):
            shutil.rmtree(self.directory)  # another run's leftovers: never mix them in

    def load(self, clicks: Sequence[SceneClick]) -> ObjectMask | None:
        """The stored result for exactly these clicks, or None."""
        path = self._path(clicks)
        if not path.is_file():
            return None
        with np.load(path) as stored:
            zoom = tuple(int(v) for v in stored["zoom"]) if stored["zoom"].size else None
            return ObjectMask(
                probability=stored["probability"],
                valid=stored["valid"],
                window=Window(*(int(v) for v in stored["window"])),
                transform=Affine(*stored["transform"]),
                clicks=tuple(clicks),
                zoom=zoom,
            )

    def save(self, result: ObjectMask) -> None:
        """Store a finished object (atomically: a half-written entry is never read back)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.directory / KEY_FILE, self.key)
        window = result.window
        write_atomic(self._path(result.clicks), lambda temporary: np.savez(
            temporary,
            probability=result.probability,
            valid=result.valid,
            window=np.array([window.col_off, window.row_off, window.width, window.height], dtype=np.int64),
            transform=np.array(result.transform[:6], dtype=np.float64),
            zoom=np.array(result.zoom if result.zoom is not None else [], dtype=np.int64),
        ))

    def _path(self, clicks: Sequence[SceneClick]) -> Path:
        text = json.dumps([[c.x, c.y, c.positive] for c in clicks])
        return self.directory / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.npz"
