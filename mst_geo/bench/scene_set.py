"""A user's labelled scene as a benchmark set: every polygon of a vector file is one object.

``mst-geo bench noc --scene scene.tif --labels polygons.gpkg`` measures the model and the
classical baselines on the imagery the analyst actually works with. Each object is read as a
window twice its size around it (the view ``mst-geo train`` holds out), decimated through the
overviews only when that window is wider than ``read_max_side``; labels may be in any CRS.
Objects are named by the labels' ``name`` column when it holds distinct values, else by their
feature number (``feature0``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from mst_geo.geo.bands import BandRef
from mst_geo.data.instance import Instance
from mst_geo.geo.raster import scene_stem
from mst_geo.geo.labels import LabelledObjects, column_named, scene_labels

READ_MAX_SIDE = 2048
"""Windows up to this side are read at native resolution (objects up to ~1 000 px across)."""


class LabelledScene:
    """The polygons of ``labels`` that overlap ``scene`` as bench instances, in file order."""

    def __init__(self, scene: str | Path, labels: str | Path, read_max_side: int = READ_MAX_SIDE,
                 bands: Sequence[BandRef] | None = None, name: str | None = None):
        polygons, chosen = scene_labels(scene, labels, bands)
        self.name = name or scene_stem(scene)
        self.objects = LabelledObjects(scene, polygons, list(range(len(polygons))), labels, read_max_side, chosen)
        column = column_named(polygons, "name")  # NAME from ArcGIS too
        values = polygons[column] if column is not None else None
        names = [] if values is None or values.isna().any() else values.astype(str).str.strip().tolist()
        self.names = names if len(set(names)) == len(polygons) and all(names) else None  # else feature numbers

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, index: int) -> Instance:
        instance = self.objects.instance(index)
        return replace(instance, name=self.name_of(index))

    def name_of(self, index: int) -> str:
        return self.objects.name_of(index) if self.names is None else self.names[index]
