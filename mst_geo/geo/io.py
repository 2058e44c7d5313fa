"""The output contract and its atomic writers: polygons (GeoPackage / GeoJSON) and the mask COG.

Every file is written to a temporary name in the target directory and renamed when complete,
so an interrupted run never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import CRS
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from mst_geo.atomic import atomic_path
from mst_geo.errors import MSTGeoError
from mst_geo.geo.vectorize import area_m2

VECTOR_DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}
COLUMNS = ["object", "n_clicks", "area", "area_m2", "score", "model"]
MAX_MASK_OBJECTS = 255
"""The mask COG is uint8: 0 background, 1..255 the objects in output order."""


@dataclass(frozen=True)
class ObjectRecord:
    """One output feature before it becomes a table row."""

    object: object
    geometry: BaseGeometry
    n_clicks: int
    score: float


def polygons_frame(records: Sequence[ObjectRecord], crs: CRS, model: str) -> gpd.GeoDataFrame:
    """The output contract: one row per object with object, n_clicks, area, area_m2, score, model."""
    crs = CRS.from_user_input(crs)
    ids = [record.object for record in records]
    if not all(isinstance(obj, int) for obj in ids):  # one column type: a GeoPackage needs it
        ids = [str(obj) for obj in ids]
    data = {
        "object": ids,
        "n_clicks": [record.n_clicks for record in records],
        "area": [record.geometry.area for record in records],
        "area_m2": [area_m2(record.geometry, crs) for record in records],
        "score": [float(record.score) for record in records],
        "model": [model] * len(records),
    }
    return gpd.GeoDataFrame(data, columns=COLUMNS, geometry=[r.geometry for r in records], crs=crs)


def vector_driver(path: str | Path) -> str:
    """The OGR driver for an output path's extension (GeoPackage or GeoJSON)."""
    suffix = Path(path).suffix.lower()
    if suffix not in VECTOR_DRIVERS:
        raise MSTGeoError(f"unknown output format {suffix!r} (use .gpkg or .geojson)", path)
    return VECTOR_DRIVERS[suffix]


def check_output(path: str | Path, overwrite: bool) -> None:
    """Fail early (before any inference) when ``path`` exists or its directory is not writable;
    a missing directory is created."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise MSTGeoError("output exists (pass --overwrite to replace it)", path)
    if path.is_dir():
        raise MSTGeoError("output is a directory", path)
    if not path.parent.is_dir():
        try:
            path.parent.mkdir(parents=True)
        except OSError as error:
            raise MSTGeoError(f"cannot create the output directory ({error.strerror})", path.parent) from None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as error:
        raise MSTGeoError(f"output directory not writable ({error.strerror})", path.parent) from None


@contextlib.contextmanager
def atomic_output(path: str | Path, overwrite: bool) -> Iterator[Path]:
    """Refuse an existing ``path`` unless ``overwrite``, then yield an atomic temporary path."""
    check_output(path, overwrite)
    with atomic_path(path) as temporary:
        yield temporary


def write_polygons(frame: gpd.GeoDataFrame, path: str | Path, overwrite: bool = False) -> Path:
    """Write the polygons table atomically, GeoPackage or GeoJSON by extension."""
    driver = vector_driver(path)
    with atomic_output(path, overwrite) as temporary:
        frame.to_file(temporary, driver=driver, engine="pyogrio", layer="objects" if driver == "GPKG" else None)
    return Path(path)


def write_mask_cog(
    path: str | Path,
    crs: CRS,
    transform: Affine,
    width: int,
    height: int,
    masks: Iterable[tuple[Window, np.ndarray]],
    overwrite: bool = False,
) -> Path:
    """Rasterise object masks onto the scene grid as a uint8 COG (0 background, k = k-th object).

    Each mask covers a scene ``Window`` (possibly decimated: it is upsampled by nearest
    neighbour). The grid is built in a sparse tiled GeoTIFF window by window, so memory stays
    bounded by one object's window whatever the scene size, then copied to a COG.
    """
    with atomic_output(path, overwrite) as temporary:
        staging = temporary.with_name(temporary.name + ".staging.tif")
        profile = dict(
            driver="GTiff", dtype="uint8", count=1, crs=crs, transform=transform, width=width, height=height,
            nodata=None, tiled=True, blockxsize=512, blockysize=512, compress="deflate", sparse_ok=True,
        )  # fmt: skip
        with rasterio.open(staging, "w+", **profile) as grid:
            for value, (window, mask) in enumerate(masks, start=1):
                if value > MAX_MASK_OBJECTS:
                    raise MSTGeoError(f"a uint8 mask holds at most {MAX_MASK_OBJECTS} objects", path)
                native = _upsample(mask, int(window.height), int(window.width))
                current = grid.read(1, window=window)
                grid.write(np.where(native, np.uint8(value), current), 1, window=window)
        rasterio.shutil.copy(staging, temporary, driver="COG", compress="deflate", overview_resampling="nearest")
    return Path(path)


def _upsample(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to (height, width)."""
    rows = np.minimum((np.arange(height) * mask.shape[0]) // height, mask.shape[0] - 1)
    cols = np.minimum((np.arange(width) * mask.shape[1]) // width, mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]
