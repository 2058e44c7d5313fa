"""A user's labelled scene: a GeoTIFF plus vector labels (one polygon per object, any CRS).

The labels are reprojected to the scene's CRS with geopandas/pyproj. Each object is read as one
window around it through ``geo.raster.SceneRaster`` (the same band choice and percentile stretch
as ``mst-geo segment``, decimated through overviews for large objects), and only the polygons
that touch that window are rasterised; the scene is never read whole. ``bench --scene`` measures
these objects, ``train --scene`` (``train/scene_dataset.py``) trains on them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from rasterio.windows import Window
from shapely.geometry import box

from mst_geo.data.instance import IGNORE, Instance
from mst_geo.errors import MSTGeoError, a_few, warn
from mst_geo.geo.bands import BandRef
from mst_geo.geo.io import read_vector
from mst_geo.geo.prompts import describe_extent
from mst_geo.geo.raster import SceneRaster, scene_source, scene_stem, window_bounds
from mst_geo.geo.vectorize import polygon_to_mask, valid_polygons

HELD_OUT_CONTEXT = 2.0
"""Window side / object side of the held-out and benchmark view (the object in the middle)."""

MIN_WINDOW = 64
"""Smallest window side in scene pixels (a 5 px object still comes with some context)."""


def labels_digest(labels: str | Path) -> str:
    """A digest of what a labels file holds (its polygons, attributes and CRS, not its bytes): a
    file saved again with the same features (a notebook cell run twice, a re-export from QGIS; a
    GeoPackage's bytes change on each write) keeps it, while an edited one makes a bench's old rows
    another dataset's, and a training run's checkpoints another run's, refused rather than mixed in."""
    frame = read_vector(Path(labels), "labels")
    digest = hashlib.sha256(str(None if frame.crs is None else frame.crs.to_wkt()).encode())
    digest.update(frame.drop(columns=frame.geometry.name).to_csv().encode())
    for geometry in frame.geometry.to_wkb():
        digest.update(b"\0" if geometry is None else geometry)
    return f"features sha256 {digest.hexdigest()[:16]}"


def read_labels(labels: str | Path, scene_crs: Any) -> gpd.GeoDataFrame:
    """Polygon labels reprojected to the scene CRS; one row per object, empty rows and other
    geometries dropped. The index stays the feature's number in the file (0-based), which names
    the object in errors and bench rows and keys its held-out draw whatever else the file holds."""
    path = Path(labels)
    frame = read_vector(path, "labels")
    if frame.crs is None:
        raise MSTGeoError("labels have no CRS; save them with one (any CRS works)", path)
    polygons = _repaired(frame[frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])], path)  # none: no type
    polygons = polygons[~polygons.geometry.is_empty]  # also a ring with no area, repaired to nothing
    if polygons.empty:
        raise MSTGeoError("labels hold no polygons (one polygon per object is expected)", path)
    if len(polygons) < len(frame):
        warn(f"{path}: {len(frame) - len(polygons)} of {len(frame)} features are not polygons (points, "
             "lines or empty) and are left out")
    reprojected = polygons.to_crs(scene_crs)
    if not np.isfinite(reprojected.total_bounds).all():
        raise MSTGeoError(f"the labels' coordinates do not fit their CRS ({polygons.crs.name}): projected metres "
                          "tagged as degrees? (a GeoJSON without a crs member is read as WGS84)", path)
    return reprojected


def _repaired(polygons: gpd.GeoDataFrame, path: Path) -> gpd.GeoDataFrame:
    """``polygons`` with invalid ones (self-crossing rings, common in hand-drawn labels) made valid:
    their areas, sizes and overlaps are otherwise wrong (a bow tie's signed area is 0)."""
    invalid = ~polygons.geometry.is_valid & ~polygons.geometry.is_empty
    if not invalid.any():
        return polygons
    repaired = polygons.copy()
    repaired.loc[invalid, repaired.geometry.name] = [valid_polygons(geometry) for geometry in polygons.geometry[invalid]]
    reasons = sorted({shapely.is_valid_reason(geometry).split("[")[0] for geometry in polygons.geometry[invalid]})
    warn(f"{path}: {int(invalid.sum())} label polygon(s) are invalid ({', '.join(reasons)}; features "
         f"{a_few([str(feature) for feature in polygons.index[invalid]])}) and are repaired with "
         "shapely's make_valid")
    return repaired


def scene_labels(scene: str | Path, labels: str | Path,
                 bands: Sequence[BandRef] | None = None) -> tuple[gpd.GeoDataFrame, tuple[int, int, int]]:
    """The label polygons that overlap the scene's data, in its CRS (a clear error when none does),
    and the scene's bands as chosen once here (a bad choice fails before any work, and a guess is
    announced once, not again by every loader process that reads the scene). A polygon that only
    touches the scene's edge, or covers nodata alone, has no pixel to learn or score: it is left
    out, with a warning naming it."""
    with SceneRaster(scene, bands) as raster:
        crs, bounds, chosen = raster.crs, box(*raster.bounds), raster.bands
        every = read_labels(labels, crs)
        meets = every.intersects(bounds)
        frame = every[meets & ~every.touches(bounds)]
        if frame.empty and meets.any():
            raise MSTGeoError(f"every label polygon that meets the scene {scene} only touches its edge "
                              "(no area inside it)", labels)
        if frame.empty:
            raise MSTGeoError(f"no label polygon overlaps the scene {scene} (the labels span "
                              f"{describe_extent(every.total_bounds, crs)}, the scene "
                              f"{describe_extent(bounds.bounds, crs)} in its CRS; is the labels' CRS right?)", labels)
        _warn_left_out(labels, every, frame, "lie outside the scene")
        if raster.may_lack_data:
            on_data = frame[[_covers_data(raster, geometry) for geometry in frame.geometry]]
            if on_data.empty:
                raise MSTGeoError(f"every label polygon inside the scene {scene} covers nodata pixels only", labels)
            _warn_left_out(labels, every, on_data, "cover nodata pixels of the scene only", frame)
            frame = on_data
    return frame, chosen


def bounds_in_pixels(transform: Affine, bounds: Sequence[float]) -> tuple[float, float, float, float]:
    """Map ``bounds`` (minx, miny, maxx, maxy) as (row0, col0, row1, col1) on ``transform``'s grid."""
    minx, miny, maxx, maxy = bounds
    inverse = ~transform
    cols, rows = zip(*(inverse @ (x, y) for x, y in ((minx, miny), (maxx, maxy))), strict=True)
    return min(rows), min(cols), max(rows), max(cols)


DATA_CHECK_SIDES = (64, 1024)
"""Sides in pixels of the decimated mask reads that tell whether a polygon covers any data: a
quick look, then a closer one before a polygon is called nodata only (its data may be a strip)."""


def _covers_data(raster: SceneRaster, geometry: Any) -> bool:
    """Whether any pixel under ``geometry`` holds data, on its box's masks decimated to
    ``DATA_CHECK_SIDES`` (a polygon too thin to cover a pixel centre there counts as covering data)."""
    row0, col0, row1, col1 = bounds_in_pixels(raster.transform, geometry.bounds)
    top, left = int(np.floor(row0)), int(np.floor(col0))
    window = Window(left, top, max(1, int(np.ceil(col1)) - left), max(1, int(np.ceil(row1)) - top))
    for side in DATA_CHECK_SIDES:
        valid, transform = raster.holds_data(window, side)
        inside = polygon_to_mask(geometry, valid.shape, transform)
        if not inside.any() or valid[inside].any():
            return True
    return False


def _warn_left_out(labels: str | Path, every: gpd.GeoDataFrame, kept: gpd.GeoDataFrame, why: str,
                   among: gpd.GeoDataFrame | None = None) -> None:
    """Warn (naming the features, 0-based as bench rows) about the polygons of ``among`` (default
    ``every``) that ``kept`` leaves out."""
    among = every if among is None else among
    left_out = [str(feature) for feature in among.index.difference(kept.index)]
    if left_out:
        warn(f"{labels}: {len(left_out)} of {len(every)} label polygons {why} and are left out "
             f"(features {a_few(left_out)})")


def column_named(frame: gpd.GeoDataFrame, name: str) -> str | None:
    """The frame's column called ``name`` in any case (``NAME``, ``Split`` from ArcGIS), else None."""
    return next((column for column in frame.columns if str(column).strip().lower() == name), None)


HELD_OUT_SPLITS = {"held_out", "heldout", "val", "validation", "test"}
"""``split`` values, in lower case with spaces and hyphens as ``_``, that keep a polygon out of training."""
TRAIN_SPLITS = {"train", "training", ""}


def held_out_marks(frame: gpd.GeoDataFrame, path: str | Path) -> list[bool] | None:
    """Per polygon, whether its ``split`` column marks it held out (never trained on), or None
    when the labels have no such column or it marks none held out (a training-only file); a blank
    cell is ``train``, any other value an error."""
    column = column_named(frame, "split")
    if column is None:
        return None
    marks = []
    for feature, value in zip(frame.index, frame[column]):
        text = "" if pd.isna(value) else "_".join(str(value).lower().replace("-", " ").split())  # "Held out"
        if text not in HELD_OUT_SPLITS | TRAIN_SPLITS:
            raise MSTGeoError(f"feature {feature}: split {value!r} is neither train (or blank) nor held_out "
                              f"({', '.join(sorted(HELD_OUT_SPLITS))})", path)
        marks.append(text in HELD_OUT_SPLITS)
    return marks if any(marks) else None


class LabelledWindow(NamedTuple):
    """One window around a labelled object, as the model sees it."""

    image: np.ndarray
    """HxWx3 uint8."""
    valid: np.ndarray
    """False on nodata."""
    target: np.ndarray
    """The object's mask (bool)."""
    neighbours: list[np.ndarray]
    """The masks of the other polygons touching the window (not the unseen ones)."""
    unseen: np.ndarray
    """Where the window's unseen polygons lie (bool): labels never to learn from, neither object nor background."""
    native_pixels: float
    """Scene pixels per image pixel (``WindowImage.native_pixels``)."""


class LabelledObjects:
    """The label polygons of one scene, each read as a window of the scene around it with its
    mask (``instance``: the bench's view). ``rows`` are positions in ``labels``; the labels' index
    holds each polygon's feature number in its file. ``unseen`` rows (the held-out polygons, for a
    training source) are never a neighbour: a window only says where they lie."""

    def __init__(self, scene: str | Path, labels: gpd.GeoDataFrame, rows: list[int],
                 labels_path: str | Path, read_max_side: int, bands: Sequence[BandRef] | None = None,
                 unseen: Collection[int] = ()):
        self.scene = scene_source(scene)  # a local Path, or a COG's URL
        self.bands = bands  # the scene's R,G,B (or grey) band numbers; None: SceneRaster's choice
        self.labels = labels
        self.rows = rows
        self.unseen = frozenset(unseen)
        self.labels_path = str(labels_path)
        self.read_max_side = read_max_side
        self._raster: SceneRaster | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict:
        """Loader workers get the paths and polygons, never an open file handle."""
        return {**self.__dict__, "_raster": None, "_pid": -1}

    @property
    def raster(self) -> SceneRaster:
        """The scene, opened once per process (a loader worker opens its own)."""
        if self._raster is None or self._pid != os.getpid():
            self._raster = SceneRaster(self.scene, self.bands)
            self._pid = os.getpid()
        return self._raster

    def pixel_box(self, row: int) -> tuple[float, float, float, float]:
        """The polygon's bounding box in scene pixels: (row0, col0, row1, col1)."""
        return bounds_in_pixels(self.raster.transform, self.labels.geometry.iloc[row].bounds)

    def window_around(self, row: int, context: float, offsets: tuple[float, float]) -> Window:
        """A square window ``context`` times the object's size, the object at ``offsets`` (0..1)."""
        row0, col0, row1, col1 = self.pixel_box(row)
        height, width = row1 - row0, col1 - col0
        side = max(max(height, width) * context, MIN_WINDOW)
        top = row0 - (side - height) * offsets[0]
        left = col0 - (side - width) * offsets[1]
        return Window(int(np.floor(left)), int(np.floor(top)), int(np.ceil(side)), int(np.ceil(side)))

    def masks_in(self, window: Window, shape: tuple[int, int], transform: Affine,
                 row: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """The object's mask, those of the other polygons touching the window, and where the
        unseen ones among them lie."""
        bounds = box(*window_bounds(window, self.raster.transform))
        near = [int(i) for i in self.labels.sindex.query(bounds, predicate="intersects") if i != row]

        def burn(index: int) -> np.ndarray:
            return polygon_to_mask(self.labels.geometry.iloc[index], shape, transform)

        unseen = np.zeros(shape, dtype=bool)
        for index in near:
            if index in self.unseen:
                unseen |= burn(index)
        return burn(row), [burn(i) for i in near if i not in self.unseen], unseen

    def read(self, row: int, window: Window) -> LabelledWindow:
        """Image, valid-data map, object mask, neighbour masks and unseen polygons of one window."""
        view = self.raster.read(window, max_side=self.read_max_side)
        target, neighbours, unseen = self.masks_in(view.window, view.valid.shape, view.transform, row)
        image = np.round(view.image * 255).astype(np.uint8)
        return LabelledWindow(image, view.valid, target, neighbours, unseen, view.native_pixels)

    def instance(self, position: int) -> Instance:
        row = self.rows[position]
        read = self.read(row, self.window_around(row, HELD_OUT_CONTEXT, (0.5, 0.5)))
        mask = read.target.astype(np.uint8)
        mask[~read.valid] = IGNORE
        return Instance(read.image, mask, self.name_of(position), scene_stem(self.scene), read.native_pixels)

    def feature(self, position: int) -> int:
        """The object's feature number in the labels file (0-based, counting every feature)."""
        return int(self.labels.index[self.rows[position]])

    def name_of(self, position: int) -> str:
        """The object's name in bench rows: its feature number in the labels file."""
        return f"feature{self.feature(position)}"

    def where(self, position: int) -> str:
        return f"{self.labels_path} (feature {self.feature(position)})"
