"""Vector files in (any format OGR reads, with one-line errors), and the output contract and its
atomic writers out: polygons (GeoPackage / GeoJSON / FlatGeobuf) and the mask COG.

Every output is written to a temporary name in the target directory and renamed when complete,
so an interrupted run never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import CRS
from pyproj.exceptions import ProjError
from rasterio.windows import Window
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from mst_geo.atomic import atomic_path, check_output
from mst_geo.errors import MSTGeoError, MSTGeoWarning, a_few, warn
from mst_geo.geo.ground import ground_area

VECTOR_DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".fgb": "FlatGeobuf"}
"""Single-file formats only: a Shapefile's four files could not be renamed into place at once."""
COLUMNS = ["object", "n_clicks", "area", "area_m2", "score", "model"]


def mask_dtype(count: int) -> str:
    """The smallest unsigned type that numbers ``count`` objects after 0 (background): uint8 up to
    255 objects, the type GIS tools show as classes; more (every building of a town) widen it."""
    return next(dtype for dtype in ("uint8", "uint16", "uint32") if count <= np.iinfo(dtype).max)


@dataclass(frozen=True)
class ObjectRecord:
    """One output feature before it becomes a table row."""

    object: object
    geometry: BaseGeometry
    n_clicks: int
    score: float


def read_vector(path: str | Path, what: str) -> gpd.GeoDataFrame:
    """Every feature of an OGR-readable vector file (GeoPackage, Shapefile, GeoJSON, ...).

    ``what`` names the file's role in the errors ("labels", "clicks"), so a user reads
    ``clicks.gpkg: cannot read these clicks (...)`` rather than a driver traceback.
    """
    path = Path(path)
    check_input_file(path, what)
    if path.suffix.lower() == ".shp" and not any(path.with_suffix(suffix).is_file() for suffix in (".dbf", ".DBF")):
        raise MSTGeoError(f"the Shapefile's .dbf (its attribute table) is missing beside it: the {what}' fields "
                          "would be lost", path)
    try:
        with warnings.catch_warnings():  # GDAL's notes on a broken file would print as extra lines
            warnings.simplefilter("ignore", RuntimeWarning)
            layers = _layers_to_read(path)
            frame = gpd.read_file(path, engine="pyogrio", layer=layers[0]) if len(layers) == 1 else None
    except Exception as error:  # pyogrio raises several types for unreadable files
        raise MSTGeoError(f"cannot read these {what} ({str(error).splitlines()[0]})", path) from None
    if frame is None:  # reading the first of several layers would be a silent guess
        raise MSTGeoError(f"holds {len(layers)} layers with features ({', '.join(layers)}); keep the {what} in a "
                          "file of their own", path)
    if not isinstance(frame, gpd.GeoDataFrame):
        raise MSTGeoError(f"{what} hold no geometry column (a table without features)", path)
    return frame


def check_input_file(path: Path, what: str) -> None:
    """Refuse an input file that is missing, or a folder given where a file belongs."""
    if path.is_dir():
        raise MSTGeoError(f"is a folder, not a {what} file", path)
    if not path.is_file():
        raise MSTGeoError(f"{what} file not found", path)


def _layers_to_read(path: Path) -> list[str]:
    """The layers of a vector file that can hold the features: a GPX file's waypoints (its tracks
    and routes are no clicks), else the spatial layers that hold any (a GeoPackage's
    ``layer_styles`` table and empty layers aside), else the first layer (its emptiness said later)."""
    layers = pyogrio.list_layers(path)
    names = [str(name) for name, _ in layers]
    if len(names) == 1:
        return names
    if path.suffix.lower() == ".gpx" and "waypoints" in names:
        return ["waypoints"]
    spatial = [str(name) for name, geometry in layers if geometry is not None]
    filled = [name for name in spatial if pyogrio.read_info(path, layer=name, force_feature_count=True)["features"] != 0]
    return filled or names[:1]


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
        "area_m2": [ground_area(record.geometry, crs) for record in records],
        "score": [float(record.score) for record in records],
        "model": [model] * len(records),
    }
    return gpd.GeoDataFrame(data, columns=COLUMNS, geometry=[r.geometry for r in records], crs=crs)


def vector_driver(path: str | Path) -> str:
    """The OGR driver for an output path's extension (GeoPackage, GeoJSON or FlatGeobuf)."""
    if Path(path).is_dir():
        raise MSTGeoError("output is a folder; give a file name such as objects.gpkg", path)
    suffix = Path(path).suffix.lower()
    if suffix not in VECTOR_DRIVERS:
        raise MSTGeoError(f"unknown output format {suffix!r} (use .gpkg, .geojson or .fgb)", path)
    return VECTOR_DRIVERS[suffix]


FULL_DISK_BYTES = 1 << 20
"""Free space under which a failed write is put down to a full disk (GDAL often names a symptom)."""
FULL_DISK_SIGNS = ("no space left", "disk is full", "disk full")


@dataclass(frozen=True)
class MaskOutput:
    """Object masks to burn into a COG on the scene grid (see ``mask_cog_to_file``): value k for
    the k-th polygon of the table written beside it."""

    path: Path
    crs: CRS
    transform: Affine
    width: int
    height: int
    masks: Sequence[tuple[Window, np.ndarray]]


def write_outputs(frame: gpd.GeoDataFrame, path: str | Path, overwrite: bool = False,
                  mask: MaskOutput | None = None) -> Path:
    """Write the polygons (GeoPackage, GeoJSON or FlatGeobuf by extension) and optionally the mask
    COG. Both are checked before either is written, and renamed into place together: a failed
    write leaves neither, and an output that existed stays as it was."""
    driver = check_outputs(path, None if mask is None else mask.path, overwrite)
    with contextlib.ExitStack() as outputs:
        absent = []
        if mask is not None:
            absent = mask_cog_to_file(outputs.enter_context(atomic_path(mask.path)),
                                      mask.crs, mask.transform, mask.width, mask.height, mask.masks)
        polygons_to_file(frame, outputs.enter_context(atomic_path(path)), driver, Path(path))
    drawn = [value for value in absent if not frame.geometry.iloc[value - 1].is_empty]  # empty ones: the caller's warning
    if drawn:
        names = [repr(frame["object"].tolist()[value - 1]) for value in drawn]  # 3, not np.int64(3)
        warn(f"{mask.path}: {len(drawn)} object(s) have no pixel in the mask (under later objects, or "
             f"covering no pixel centre) ({a_few(names)}); their polygons are in {path}")
    return Path(path)


def check_outputs(path: str | Path, mask_path: str | Path | None, overwrite: bool) -> str:
    """Refuse, before any work, a polygons output or mask of a format we do not write, or one that
    exists (without ``overwrite``) or cannot be written; the polygons' OGR driver otherwise."""
    driver = vector_driver(path)
    check_output(path, overwrite)
    if mask_path is not None:
        check_mask_path(mask_path)
        check_output(mask_path, overwrite)
    return driver


def polygons_to_file(frame: gpd.GeoDataFrame, path: Path, driver: str, target: Path) -> None:
    """Write the polygons table to ``path`` as it is (callers pass an ``atomic_path`` temporary, so
    ``target``, the final file, names the layer and the errors rather than the temporary file),
    and check that the file holds the polygons' CRS (``MSTGeoError`` where the format cannot)."""
    options = {}
    if driver == "FlatGeobuf":
        # its spatial index stores features in spatial order (mask value k would no longer be the
        # k-th feature) and cannot hold an object that came out empty
        options["SPATIAL_INDEX"] = "NO"
    if driver == "GeoJSON":
        frame = geojson_nameable(frame, target)
    layer = "objects" if driver == "GPKG" else target.stem
    try:
        frame.to_file(path, driver=driver, engine="pyogrio", layer=layer, layer_options=options or None)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as error:
        raise _failed_write(path, error) from error
    written = pyogrio.read_info(path, layer=layer)["crs"]
    written = None if written is None else CRS.from_user_input(written)
    if frame.crs is None or (written is not None and written.equals(frame.crs, ignore_axis_order=True)):
        return
    if written is not None and same_coordinates(frame.crs, written):
        warn(f"{target}: {driver} stores the scene's CRS ({frame.crs.name}, its datum unnamed) as {written.name}: "
             "the same ellipsoid, projection and units, so the coordinates are the scene's")
        return
    # GDAL's FlatGeobuf writer names a custom CRS by the EPSG code whose parameters it shares,
    # units aside: US-foot coordinates would be read as metres, thousands of kilometres away
    held = "no CRS" if written is None else written.name
    keep = "write .geojson (WGS84) instead" if driver == "GPKG" else "write .gpkg to keep it"
    raise MSTGeoError(f"{driver} cannot hold the scene's CRS ({frame.crs.name}; it would be read as {held}): {keep}",
                      target)


def same_coordinates(scene: CRS, written: CRS) -> bool:
    """Whether ``written``, the CRS a format stored for ``scene``, reads the same numbers as the
    same places: a scene CRS whose datum has no name (``+proj=utm +ellps=GRS80``) is stored by
    GDAL as a named CRS on that ellipsoid with the same prime meridian, projection and axes, and refusing
    it would leave no output that keeps the scene's coordinates."""
    axes = lambda crs: [(axis.direction, axis.unit_name) for axis in crs.axis_info]  # noqa: E731
    return (scene.datum is not None and "id" not in scene.datum.to_json_dict()
            and scene.ellipsoid == written.ellipsoid and scene.prime_meridian == written.prime_meridian
            and scene.coordinate_operation == written.coordinate_operation and axes(scene) == axes(written))


def check_output_crs(target: str | Path, crs: CRS) -> None:
    """Refuse, before any work, an output format that cannot hold ``crs``: the same write and check
    as ``polygons_to_file``, of one point, to a scratch file."""
    target = Path(target)
    probe = gpd.GeoDataFrame({"object": ["probe"]}, geometry=[Point(0, 0)], crs=crs)
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", MSTGeoWarning)  # the real write announces its WGS84 fallback
        polygons_to_file(probe, Path(folder) / f"probe{target.suffix}", vector_driver(target), target)


def _failed_write(path: Path, error: Exception) -> OSError:
    """GDAL's write error as the ``OSError`` it is (``atomic_path`` names the file): a full disk
    says so, where GDAL names a symptom (a GeoPackage's "no such table: gpkg_contents")."""
    message = str(error).splitlines()[0]
    if any(sign in message.lower() for sign in FULL_DISK_SIGNS) or shutil.disk_usage(path.parent).free < FULL_DISK_BYTES:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return OSError(errno.EIO, message)


def epsg_code(crs: CRS) -> int | None:
    """The EPSG code of ``crs`` or of a CRS equal to it whatever its name (a WKT without ID);
    None where only a looser match exists (pyproj's default confidence, 70, would name
    ``+proj=utm +zone=14 +ellps=GRS80`` EPSG:6369, a Mexican datum)."""
    return crs.to_epsg(min_confidence=90)


def geojson_nameable(frame: gpd.GeoDataFrame, target: Path) -> gpd.GeoDataFrame:
    """``frame`` in a CRS a GeoJSON file can name: its own when it has an EPSG code (GDAL writes
    it as the ``crs`` member), else WGS84 (RFC 7946), announced, since a file without a ``crs``
    member is read as WGS84 and a projected CRS's metres would land as degrees. A CRS that matches
    an EPSG code but carries none (a WKT without ID) is named by that code."""
    if frame.crs is None:
        return frame
    code = epsg_code(frame.crs)
    if code is not None:
        return frame.set_crs(CRS.from_epsg(code), allow_override=True)
    try:
        in_wgs84 = frame.to_crs("EPSG:4326")
    except ProjError:  # a local engineering grid has no datum to reach the Earth from
        raise MSTGeoError(f"GeoJSON cannot name the scene's CRS ({frame.crs.name}: no EPSG code), nor does it reach "
                          "WGS84: write .gpkg to keep it", target) from None
    warn(f"{target.name}: the scene's CRS has no EPSG code, which a GeoJSON file cannot name, so the "
         "polygons are written in WGS84 longitude/latitude (write .gpkg to keep the "
         "scene's CRS)")
    return in_wgs84


def check_mask_path(path: str | Path) -> None:
    """Refuse a mask name whose extension promises another format: the mask is always a GeoTIFF."""
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        raise MSTGeoError(f"unknown mask format {Path(path).suffix!r} (the mask is a GeoTIFF: use .tif)", path)


def mask_cog_to_file(
    path: Path, crs: CRS, transform: Affine, width: int, height: int, masks: Sequence[tuple[Window, np.ndarray]]
) -> list[int]:
    """Rasterise object masks onto the scene grid as a COG (0 background, k = k-th object, of
    ``mask_dtype``) at ``path``, an ``atomic_path``
    temporary: its side files (the staging grid) are cleaned up with it. Where objects overlap,
    the later one's value wins; returns the values of objects left with no pixel at all (empty,
    under later objects, or thinner than a pixel).

    Each mask covers a scene ``Window`` (possibly decimated: it is upsampled by nearest
    neighbour). The grid is built in a sparse tiled GeoTIFF window by window, so memory stays
    bounded by one object's window whatever the scene size, then copied to a COG.
    """
    staging = path.with_name(path.name + ".staging.tif")  # atomic_path removes it with the temporary
    profile = dict(
        driver="GTiff", dtype=mask_dtype(len(masks)), count=1, crs=crs, transform=transform, width=width, height=height,
        nodata=None, tiled=True, blockxsize=512, blockysize=512, compress="deflate", sparse_ok=True,
    )  # fmt: skip
    with rasterio.open(staging, "w+", **profile) as grid:
        for value, (window, mask) in enumerate(masks, start=1):
            native = _upsample(mask, int(window.height), int(window.width))
            current = grid.read(1, window=window)
            grid.write(np.where(native, current.dtype.type(value), current), 1, window=window)
        absent = [value for value, (window, _) in enumerate(masks, start=1)
                  if not (grid.read(1, window=window) == value).any()]
    rasterio.shutil.copy(staging, path, driver="COG", compress="deflate", overview_resampling="nearest")
    return absent


def _upsample(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to (height, width), sampled at pixel centres
    (so the mask raster lines up with the polygons vectorised from the same mask)."""
    rows = np.minimum(((2 * np.arange(height) + 1) * mask.shape[0]) // (2 * height), mask.shape[0] - 1)
    cols = np.minimum(((2 * np.arange(width) + 1) * mask.shape[1]) // (2 * width), mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]
