"""Clicks in map coordinates: the clicks GeoJSON contract, reprojection and map → pixel mapping.

Contract (DESIGN.md): a FeatureCollection of Point features, with
- ``label``: positive/negative (also 1/0, true/false, fg/bg); missing, null or "" (an empty cell
  in a layer) means positive;
- ``object``: groups clicks into one object (missing, null or "": every click one object, id 1); ids
  must differ as text, since the output stores them as text when ints and names mix;
- ``order``: sorts the clicks of an object (missing, null or "": file order).
Field names match in any case (``LABEL`` from ArcGIS); a MultiPoint of one point is that point.
A field spelled otherwise (``labels``, ``object_id``) is not read, so a file whose only such field
holds negative labels, or ids that group clicks, is refused with the name to give it.
Coordinates are WGS84 (RFC 7946) unless the file has a ``crs`` member or the caller passes
``clicks_crs`` (which wins). A ``.geojson``/``.json`` file is parsed as JSON; any other vector file
OGR reads (a GeoPackage or Shapefile point layer digitised in QGIS) is read through geopandas with
the same fields, in its own CRS (WGS84 when it has none); a ``.csv`` table too (``csv_clicks``).
Every error names the file and the feature.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError

from mst_geo.errors import MSTGeoError, a_few, warn
from mst_geo.geo.io import check_input_file, epsg_code, read_vector

WGS84 = CRS.from_epsg(4326)
NAME_THE_CRS = ("name the clicks' CRS (--clicks-crs; crs= in add_click, clicks_crs= in load_clicks; or the file's "
                "'crs' member)")
"""How a click error tells the user where a CRS is given, in each way of giving clicks."""
JSON_SUFFIXES = {".geojson", ".json"}
"""Clicks files parsed as JSON, the contract as written; tables are read by ``csv_clicks``, any
other suffix through OGR."""
TABLE_SUFFIXES = {".csv", ".tsv", ".txt"}
"""Clicks files read as delimited tables by ``csv_clicks`` (comma, semicolon or tab: it sniffs)."""
CSV_COORDINATES = (("x", "y"), ("easting", "northing"), ("lon", "lat"), ("lng", "lat"), ("long", "lat"),
                   ("longitude", "latitude"))
"""Coordinate column pairs of a clicks CSV, in any case: x/y and easting/northing in the CRS the
caller names, the others WGS84 longitude/latitude."""
PROJECTED_X_COLUMNS = ("x", "easting")
"""The first columns of the ``CSV_COORDINATES`` pairs that name no CRS."""
WHOLE_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)")
"""A CSV object id read as a number, as 7 in a GeoJSON (not 007, 1e3 or 1.5: text as typed)."""
DEFAULT_OBJECT = 1
POSITIVE_LABELS = {"positive", "pos", "1", "true", "fg", "foreground", "+"}
NEGATIVE_LABELS = {"negative", "neg", "0", "false", "bg", "background", "-"}

ObjectId = Hashable
"""An object id as the user gave it: an int or a string."""


@dataclass(frozen=True)
class SceneClick:
    """One click: map position in the scene CRS, scene pixel position, label."""

    x: float
    y: float
    row: float
    col: float
    positive: bool


def parse_label(value: Any) -> bool:
    """True for a positive click, False for a negative one; ValueError on anything else."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):  # a GeoDataFrame's cells
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in POSITIVE_LABELS:
            return True
        if text in NEGATIVE_LABELS:
            return False
    raise ValueError(f"unknown label {value!r} (use positive/negative, 1/0, true/false or fg/bg)")


CONTRACT_FIELDS = ("label", "object", "order")
LABEL_LOOKALIKES = {"labels", "lable", "lbl", "class", "type", "kind", "sign", "polarity", "positive", "ispositive",
                    "pos", "clicktype", "clicklabel", "prompt", "prompttype"}
"""Field names (lower case, letters and digits) a clicks file may mean as ``label``."""
OBJECT_LOOKALIKES = {"objects", "obj", "objid", "objectid", "objectname", "objectnumber", "objectno", "id",
                     "instance", "instanceid", "group", "groupid", "target", "targetid", "segment", "segmentid"}
"""Field names a clicks file may mean as ``object``."""
GIS_FEATURE_IDS = {"OBJECTID", "OBJECTID_1", "FID", "OID"}
"""Feature ids a GIS writes itself (ArcGIS, Shapefiles): never an object, even where appended
layers repeat them."""


def contract_fields(properties: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """The ``label``, ``object`` and ``order`` values of one feature, whatever the case of their
    field names (a Shapefile from ArcGIS says ``LABEL``); ValueError when two names mean one field."""
    found: dict[str, str] = {}
    for key in properties:
        field = str(key).strip().lower()
        if field in CONTRACT_FIELDS:
            if field in found:
                raise ValueError(f"fields {found[field]!r} and {key!r} both give the click's {field}")
            found[field] = key
    return tuple(properties[found[field]] if field in found else None for field in CONTRACT_FIELDS)


def parse_order(value: Any) -> float:
    """A click's ``order`` as a number; ValueError naming the field otherwise."""
    try:
        order = float(value)
    except (TypeError, ValueError):
        order = math.nan
    if not math.isfinite(order):
        raise ValueError(f"order {value!r} is not a finite number (clicks are sorted by it within an object)")
    return order


def parse_crs(value: Any, path: str | Path | None = None) -> CRS:
    """A pyproj CRS from user input (EPSG:4326, a URN, WKT, PROJ, a CRS object); MSTGeoError if unknown."""
    try:
        crs = CRS.from_user_input(value)
    except CRSError:
        raise MSTGeoError(f"unknown CRS {value!r}", path) from None
    kind = (crs.source_crs if crs.type_name == "Bound CRS" else crs).type_name
    if kind in ("Vertical CRS", "Geocentric CRS"):  # a height datum (EPSG:5773), Earth-centred x/y/z
        raise MSTGeoError(f"CRS {value!r} ({crs.name}) does not place points on the map: give a geographic "
                          "or projected CRS", path)
    return crs


def crs_member(crs: CRS) -> dict:
    """The GeoJSON ``crs`` member naming ``crs`` (an EPSG URN where one exists, else WKT)."""
    epsg = epsg_code(crs)
    name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else crs.to_wkt()
    return {"type": "name", "properties": {"name": name}}


EDGE = 1e-6
"""Pixels a click may lie past the scene's edge (round-off of a point placed on it) and still count as inside."""


class PixelMapper:
    """Maps coordinates in any CRS to the scene's CRS and pixel grid, refusing clicks off the data."""

    def __init__(
        self,
        scene_crs: CRS | Any,
        transform: Affine,
        width: int,
        height: int,
        is_valid: Callable[[float, float], bool] | None = None,
    ):
        self.scene_crs = CRS.from_user_input(scene_crs)
        self.transform = transform
        self.width = width
        self.height = height
        self.is_valid = is_valid

    def to_scene(self, x: float, y: float, crs: CRS | None) -> tuple[float, float]:
        """(x, y) reprojected from ``crs`` (None: already the scene CRS) to the scene CRS."""
        source = None if crs is None else CRS.from_user_input(crs)
        if source is None or source == self.scene_crs:
            return float(x), float(y)
        try:
            transformer = _transformer(source, self.scene_crs)
        except ProjError:  # a local grid without a datum: no coordinate of another CRS places a click on it
            raise ValueError(f"clicks in {source.name} cannot be placed in the scene's CRS ({self.scene_crs.name}): "
                             "no transformation joins them; give the clicks in the scene's CRS") from None
        try:
            return transformer.transform(x, y, errcheck=True)
        except ProjError:  # no valid position in the scene CRS: treated as outside the scene
            return float("inf"), float("inf")

    def _extent_hint(self, source: CRS) -> str:
        """The scene's extent in the clicks' CRS ``source``: a click in the wrong CRS shows at once."""
        left, top = self.transform @ (0, 0)
        right, bottom = self.transform @ (self.width, self.height)
        try:
            x0, y0, x1, y1 = _transformer(self.scene_crs, source).transform_bounds(
                min(left, right), min(top, bottom), max(left, right), max(top, bottom), errcheck=True
            )
        except ProjError:
            return ""
        return f" (the scene spans {describe_extent((x0, y0, x1, y1), source)} in {source.to_string()})"

    def _lands_as_lonlat(self, x: float, y: float) -> bool:
        """Whether (x, y) read as WGS84 longitude and latitude is a point of the scene."""
        if not (abs(x) <= 180 and abs(y) <= 90):
            return False
        try:
            col, row = ~self.transform @ self._same_longitudes(*self.to_scene(x, y, WGS84))
        except ValueError:  # a local grid no CRS of the world reaches
            return False
        return self._on_scene(row, col)

    def _on_scene(self, row: float, col: float) -> bool:
        return -EDGE <= row <= self.height + EDGE and -EDGE <= col <= self.width + EDGE

    def _same_longitudes(self, x: float, y: float) -> tuple[float, float]:
        """A longitude written in the other convention than a geographic scene's (-99 for a grid in
        0..360 degrees east, or 261 for one in -180..180) moved by a turn onto the scene."""
        if not self.scene_crs.is_geographic or not math.isfinite(x):
            return x, y
        for turn in (0.0, 360.0, -360.0):
            col, row = ~self.transform @ (x + turn, y)
            if self._on_scene(row, col):
                return x + turn, y
        return x, y

    def click(self, x: float, y: float, positive: bool, crs: CRS | None) -> SceneClick:
        """The SceneClick for map (x, y) in ``crs``; ValueError when off the scene or on nodata."""
        sx, sy = self._same_longitudes(*self.to_scene(x, y, crs))
        col, row = ~self.transform @ (sx, sy)
        if not self._on_scene(row, col):
            source = self.scene_crs if crs is None else CRS.from_user_input(crs)
            hint = ""
            if source.is_geographic and abs(x) <= 90 < abs(y) <= 180:
                hint = "; longitude and latitude look swapped (GeoJSON gives longitude first)"
            elif source.is_geographic and (abs(x) > 360 or abs(y) > 90):
                hint = f"; these are not degrees: {NAME_THE_CRS}"
            elif not source.is_geographic and self._lands_as_lonlat(x, y):
                hint = (f"; as longitude and latitude they fall on the scene: {NAME_THE_CRS} (EPSG:4326)" if crs is None
                        else f"; as longitude and latitude (EPSG:4326) they fall on the scene, not as {source.to_string()}")
            raise ValueError(f"click at ({x}, {y}) lies outside the scene{self._extent_hint(source)}{hint}")
        # the extent is closed, as its message shows it: a click on the far edge is in the last pixel
        row = min(max(row, 0.0), math.nextafter(self.height, 0.0))
        col = min(max(col, 0.0), math.nextafter(self.width, 0.0))
        if self.is_valid is not None and not self.is_valid(row, col):
            raise ValueError(f"click at ({x}, {y}) falls on nodata")
        return SceneClick(x=sx, y=sy, row=row, col=col, positive=positive)


def load_clicks_file(path: str | Path, clicks_crs: str | CRS | None = None) -> tuple[dict, CRS | None]:
    """A clicks file as a GeoJSON FeatureCollection and the CRS of its layer (None for JSON, whose
    CRS is its ``crs`` member); MSTGeoError when missing or unreadable.

    A ``.geojson``/``.json`` file is parsed as JSON, a ``.csv``/``.tsv``/``.txt`` table as ``csv_clicks`` says. Any
    other vector file goes through OGR, so clicks digitised in a projected layer need no
    ``--clicks-crs``; a single-point MultiPoint (how some tools save every point layer) counts as
    its point.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() in TABLE_SUFFIXES:
        return csv_clicks(path, clicks_crs)
    if path.suffix.lower() not in JSON_SUFFIXES:
        frame = read_vector(path, "clicks")
        _refuse_lost_click_order(path, frame)
        return frame_as_geojson(frame), frame.crs
    check_input_file(path, "clicks")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # Windows editors may start it with a BOM
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MSTGeoError(f"not valid JSON ({error})", path) from None
    if not isinstance(data, dict):
        raise MSTGeoError("not a GeoJSON FeatureCollection", path)
    return data, None


def csv_clicks(path: Path, clicks_crs: str | CRS | None) -> tuple[dict, CRS | None]:
    """A clicks table (typed in a spreadsheet, exported from a GPS log) as a clicks collection: one
    row per click, the contract's fields as columns, and one pair of ``CSV_COORDINATES`` columns.

    Cells are read as typed: text, except coordinates (a decimal comma is read where the
    delimiter is not a comma) and whole-number object ids; an empty cell is a missing value and
    a row of empty cells is skipped. x/y (easting/northing) name no CRS, so they need
    ``clicks_crs``; lon/lat are WGS84 unless ``clicks_crs`` names another geographic CRS. Errors
    name the file's line.
    """
    header, rows, delimiter = _read_table(path)
    x_column, y_column = _coordinate_columns(header, clicks_crs, path)
    features = []
    for line, cells in rows:
        if len(cells) < len(header):
            raise MSTGeoError(f"line {line}: {len(cells)} cells where the header names {len(header)}", path)
        unnamed = cells[len(header):] + [cell for cell, name in zip(cells, header) if not name]
        if any(unnamed):  # a label typed one cell too far would be dropped, the click read as positive
            raise MSTGeoError(f"line {line}: a value under no column name ({', '.join(map(repr, filter(None, unnamed)))})",
                              path)
        row = {name: cell for name, cell in zip(header, cells) if name}
        try:
            x, y = (_csv_number(row[column], delimiter) for column in (x_column, y_column))
        except ValueError:
            raise MSTGeoError(f"line {line}: {x_column}/{y_column} must be numbers, got {row[x_column]!r}, "
                              f"{row[y_column]!r}", path) from None
        properties = {name: _csv_cell(name, value) for name, value in row.items() if name not in (x_column, y_column)}
        features.append({"type": "Feature", "id": f"line {line}", "properties": properties,
                         "geometry": {"type": "Point", "coordinates": [x, y]}})
    geographic = x_column.lower() not in PROJECTED_X_COLUMNS
    return {"type": "FeatureCollection", "features": features}, WGS84 if geographic else None


def _read_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]], str]:
    """A CSV's header, its non-blank rows with their line numbers (cells stripped) and its
    delimiter: comma, semicolon or tab, as the header line shows, or as Excel's ``sep=`` line says."""
    check_input_file(path, "clicks")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise MSTGeoError(f"cannot read this CSV ({error}): save it as UTF-8", path) from None
    lines = text.splitlines()
    first = next((index for index, line in enumerate(lines) if line.strip()), len(lines))
    delimiter = max(",;\t", key=lines[first].count) if first < len(lines) else ","
    if first < len(lines) and re.fullmatch(r"sep=[,;\t]", lines[first].strip("\r\n")):
        delimiter, first = lines[first][4], first + 1
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    rows, read_to = [], 0
    try:
        for cells in reader:
            read_to = reader.line_num
            if reader.line_num > first and any(cell.strip() for cell in cells):
                start = reader.line_num - sum(cell.count("\n") for cell in cells)
                if start != reader.line_num:  # an unclosed quote swallows the rows after it
                    raise MSTGeoError(f"line {start}: a cell runs over {reader.line_num - start + 1} lines "
                                      "(an unclosed quote?)", path)
                rows.append((reader.line_num, [cell.strip() for cell in cells]))
    except csv.Error as error:  # the row after the last one read: an unclosed quote runs to the end
        raise MSTGeoError(f"line {read_to + 1}: not a CSV row ({error})", path) from None
    header = [name.strip() for name in rows[0][1]] if rows else []
    while header and not header[-1]:
        header.pop()
    lowered = [name.lower() for name in header]
    repeated = sorted({name for name in header if name and lowered.count(name.lower()) > 1})
    if repeated:
        raise MSTGeoError(f"column(s) {', '.join(map(repr, repeated))} appear more than once (in any case)", path)
    return header, rows[1:], delimiter


def _coordinate_columns(header: Sequence[str], clicks_crs: str | CRS | None, path: Path) -> tuple[str, str]:
    """The table's one pair of coordinate columns, checked against ``clicks_crs``."""
    columns = {name.lower(): name for name in header}
    pairs = [(columns[x], columns[y]) for x, y in CSV_COORDINATES if x in columns and y in columns]
    if not pairs:
        raise MSTGeoError(f"a clicks CSV needs coordinate columns x,y (or easting,northing; lon,lat; "
                          f"longitude,latitude), got {', '.join(map(repr, header)) or 'no header'}", path)
    if len(pairs) > 1:
        raise MSTGeoError(f"columns {' and '.join('/'.join(pair) for pair in pairs)} both give coordinates: keep one "
                          "pair", path)
    (x_column, y_column), = pairs
    if x_column.lower() in PROJECTED_X_COLUMNS:
        if clicks_crs is None:
            raise MSTGeoError(f"its {x_column}/{y_column} columns name no CRS: pass --clicks-crs (clicks_crs= in "
                              "Python), e.g. the scene's EPSG code", path)
    elif clicks_crs is not None and not parse_crs(clicks_crs, path).is_geographic:
        raise MSTGeoError(f"its {x_column}/{y_column} columns are longitude/latitude, but the clicks CRS "
                          "(--clicks-crs, clicks_crs= in Python) is projected: name projected coordinates x,y", path)
    return x_column, y_column


def _csv_number(cell: str, delimiter: str) -> float:
    """A coordinate cell as a number; ``-99,128`` too where commas do not delimit cells."""
    if delimiter != "," and cell.count(",") == 1 and "." not in cell:
        cell = cell.replace(",", ".")
    if "_" in cell:  # float() reads 1_000 as 1000: not as typed
        raise ValueError(cell)
    value = float(cell)
    if not math.isfinite(value):
        raise ValueError(cell)
    return value


def _csv_cell(name: str, value: str) -> Any:
    """A CSV cell as the contract reads it: empty is missing, an object id of digits is a number
    (as 7 in a GeoJSON; "007" stays text), everything else the text typed."""
    if value == "":
        return None
    if name.lower() == "object" and WHOLE_NUMBER.fullmatch(value):
        return int(value)
    return value


def _refuse_lost_click_order(path: Path, frame: Any) -> None:
    """A FlatGeobuf file with a spatial index stores its features in spatial order: without an
    ``order`` field the clicks of an object would run in another order than they were made."""
    info = pyogrio.read_info(path, layer=0)  # the driver is the file's; a FlatGeobuf has one layer
    if info["driver"] != "FlatGeobuf" or not info["capabilities"].get("fast_spatial_filter"):
        return
    columns = {str(name).strip().lower(): name for name in frame.columns}
    if len(columns) < len(frame.columns):
        return  # two fields named alike ("order", "ORDER"): reading the clicks names them
    if "order" in columns and not (frame[columns["order"]].isna() | frame[columns["order"]].astype(str).eq("")).any():
        return
    objects = frame[columns["object"]] if "object" in columns else [DEFAULT_OBJECT] * len(frame)
    if len(set(map(str, objects))) < len(frame):
        raise MSTGeoError("a FlatGeobuf file with a spatial index keeps its points in spatial order, not the "
                          "order they were clicked; give every click an 'order' field, or save the clicks "
                          "as GeoJSON or GeoPackage", path)


def describe_extent(bounds: Sequence[float], crs: CRS) -> str:
    """``x 485899..490569, y 5205631..5209246`` to about a metre (5 decimals in degrees)."""
    x0, y0, x1, y1 = bounds
    digits = 5 if CRS.from_user_input(crs).is_geographic else 0
    xs, ys = (f"{low:.{digits}f}..{high:.{digits}f}" for low, high in ((x0, x1), (y0, y1)))
    return f"x {xs}, y {ys}"


def frame_as_geojson(frame: Any) -> dict:
    """A point layer (GeoDataFrame) as a clicks FeatureCollection; a single-point MultiPoint
    (how some tools save every point layer) counts as its point."""
    frame = frame.copy()
    frame.geometry = [_single_point(geometry) for geometry in frame.geometry]
    return json.loads(frame.to_json(drop_id=True, default=str))  # dates (a GPX waypoint's time) as text


def _single_point_geojson(geometry: Any) -> Any:
    """A GeoJSON MultiPoint of one point as that Point (as ``_single_point`` does for OGR layers)."""
    if isinstance(geometry, dict) and geometry.get("type") == "MultiPoint":
        points = geometry.get("coordinates")
        if isinstance(points, list) and len(points) == 1:
            return {"type": "Point", "coordinates": points[0]}
    return geometry


def _single_point(geometry: Any) -> Any:
    if geometry is not None and geometry.geom_type == "MultiPoint" and len(geometry.geoms) == 1:
        return geometry.geoms[0]
    return geometry


def read_clicks(
    path: str | Path, mapper: PixelMapper, clicks_crs: str | CRS | None = None
) -> dict[ObjectId, list[SceneClick]]:
    """Clicks of a clicks file grouped by object (first-appearance order), each in click order."""
    data, layer_crs = load_clicks_file(path, clicks_crs)
    return clicks_from_geojson(data, mapper, clicks_crs=clicks_crs or layer_crs, source=path)


def clicks_from_geojson(
    data: Mapping[str, Any],
    mapper: PixelMapper,
    clicks_crs: str | CRS | None = None,
    source: str | Path | None = None,
) -> dict[ObjectId, list[SceneClick]]:
    """Validate a clicks FeatureCollection and map it onto the scene (see the module docstring)."""
    if data.get("type") == "Feature":
        data = {"type": "FeatureCollection", "features": [data]}
    if data.get("type") != "FeatureCollection" or not isinstance(data.get("features"), list):
        raise MSTGeoError("not a GeoJSON FeatureCollection", source)
    crs = _source_crs(data, clicks_crs, source)
    if not data["features"]:
        raise MSTGeoError("holds no click points", source)

    keyed: dict[ObjectId, list[tuple[float, int, SceneClick]]] = {}
    contract_used = False  # any click naming its label or object
    named = {"label": False, "object": False}  # which contract fields any click has
    unnamed: list[str] = []  # clicks without an object id: object 1, as the contract's default
    for index, feature in enumerate(data["features"]):
        where = _describe(index, feature)
        properties = (feature.get("properties") if isinstance(feature, dict) else None) or {}
        if not isinstance(properties, dict):
            raise MSTGeoError(f"{where}: properties must be a JSON object, got {properties!r}", source)
        geometry = _single_point_geojson(feature.get("geometry") if isinstance(feature, dict) else None)
        if not isinstance(geometry, dict) or geometry.get("type") != "Point":
            kind = geometry.get("type") if isinstance(geometry, dict) else "no geometry"
            raise MSTGeoError(f"{where} has {kind}; clicks must be Point features", source)
        coordinates = geometry.get("coordinates")
        if not isinstance(coordinates, list) or len(coordinates) < 2:
            raise MSTGeoError(f"{where} is a Point without x and y coordinates, got {coordinates!r}", source)
        try:
            x, y = (float(value) for value in coordinates[:2])
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError(f"coordinates must be finite numbers, got {coordinates[:2]!r}")
            label, obj, order = contract_fields(properties)
            named["label"] |= label is not None
            named["object"] |= obj is not None
            contract_used = contract_used or label not in (None, "") or obj not in (None, "")
            positive = True if label in (None, "") else parse_label(label)
            if obj is None or str(obj).strip() == "":
                obj = DEFAULT_OBJECT
                unnamed.append(where)
            else:
                obj = parse_object_id(obj)
            order = float(index if order in (None, "") else parse_order(order))
            click = mapper.click(x, y, positive, crs)
        except (KeyError, TypeError, ValueError) as error:
            raise MSTGeoError(f"{where}: {error}", source) from None
        keyed.setdefault(obj, []).append((order, index, click))
    _refuse_ids_alike_as_text(list(keyed), source)
    _refuse_unread_lookalikes(data["features"], named, source)
    if unnamed and len(unnamed) < len(data["features"]):  # some clicks name their object, these do not
        warn(f"{source or 'clicks'}: {len(unnamed)} click(s) have no object id and join object {DEFAULT_OBJECT} "
             f"({a_few(unnamed)}): give them their object's id")
    if not contract_used and len(data["features"]) > 1:
        _warn_one_positive_object(data["features"], source)
    return {obj: [click for *_, click in sorted(entries, key=lambda e: e[:2])] for obj, entries in keyed.items()}


def _refuse_unread_lookalikes(features: list, named: Mapping[str, bool], source: str | Path | None) -> None:
    """Refuse a file whose contract field is spelled otherwise (``labels``, ``object_id``) where its
    values show what it meant, since unread it would silently make every click positive (a field
    with negative labels) or every click one object (ids that group clicks)."""
    columns: dict[str, list] = {}
    for feature in features:
        properties = (feature.get("properties") or {}) if isinstance(feature, dict) else {}
        for key, value in properties.items():
            if value not in (None, ""):
                columns.setdefault(str(key), []).append(value)
    for key, values in columns.items():
        if key.strip().upper() in GIS_FEATURE_IDS:
            continue
        spelled = re.sub(r"[^a-z0-9]", "", key.lower())
        if not named["label"] and spelled in LABEL_LOOKALIKES and _negative_labels(values):
            raise MSTGeoError(f"field {key!r} holds negative clicks but is not read: name it 'label'", source)
        texts = [str(value) for value in values]
        if not named["object"] and spelled in OBJECT_LOOKALIKES and 1 < len(set(texts)) < len(texts):
            raise MSTGeoError(f"field {key!r} groups the clicks but is not read, so they make one object: name it "
                              "'object' if it names each click's object, else rename it", source)


def _negative_labels(values: Sequence[Any]) -> bool:
    """Whether every value is a click label and some are negative."""
    try:
        labels = [parse_label(value) for value in values]
    except ValueError:
        return False
    return not all(labels)


def _warn_one_positive_object(features: list, source: str | Path | None) -> None:
    """Several clicks with no label or object field at all (a Google Earth KML whose placemarks
    are only named "pond negative", a GPS's waypoints) make one object of positive clicks, as the
    contract says; said, because that is rarely what such a file meant."""
    names = {str(key) for feature in features for key in ((feature.get("properties") or {}) if isinstance(feature, dict) else {})
             if str(key).strip().lower() in ("name", "description")}
    unread = f"; its {', '.join(repr(name) for name in sorted(names))} field is not read" if names else ""
    warn(f"{source or 'clicks'}: {len(features)} clicks without a 'label' or 'object' field are read as one "
         f"object of positive clicks{unread} (give the points label and object fields to say otherwise)")


def clicks_to_geojson(objects: Mapping[ObjectId, list[SceneClick]], scene_crs: CRS | Any) -> dict:
    """The clicks contract for ``objects``, in the scene CRS (named in ``crs``) so a re-run is exact."""
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [click.x, click.y]},
            "properties": {"label": "positive" if click.positive else "negative", "object": obj, "order": order},
        }
        for obj, clicks in objects.items()
        for order, click in enumerate(clicks)
    ]
    return {"type": "FeatureCollection", "crs": crs_member(CRS.from_user_input(scene_crs)), "features": features}


def _source_crs(data: Mapping[str, Any], clicks_crs: str | CRS | None, source: str | Path | None) -> CRS:
    if clicks_crs is not None:
        return clicks_crs if isinstance(clicks_crs, CRS) else parse_crs(clicks_crs, source)
    member = data.get("crs")
    if member is None:
        return WGS84
    try:
        return parse_crs(member["properties"]["name"], source)
    except (KeyError, TypeError):
        raise MSTGeoError('"crs" member must be {"type": "name", "properties": {"name": ...}}', source) from None


@lru_cache(maxsize=16)
def _transformer(source: CRS, target: CRS) -> Transformer:
    return Transformer.from_crs(source, target, always_xy=True)


def parse_object_id(value: Any) -> ObjectId:
    """``value`` as an object id (an int or a string, as the contract allows); ValueError otherwise.

    A whole float counts as an int: Shapefile and GeoPackage number fields are often real-valued;
    numpy numbers (a GeoDataFrame's column) count as Python's. A blank string names nothing.
    """
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"object id must be an integer or a string, got {value!r}")
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"object id must not be blank, got {value!r}")
    return value


def _refuse_ids_alike_as_text(ids: list[ObjectId], source: str | Path | None) -> None:
    """7 and "7" would be two objects here but one name in the output table and the app."""
    seen: dict[str, ObjectId] = {}
    for obj in ids:
        if str(obj) in seen:
            raise MSTGeoError(f"object ids {seen[str(obj)]!r} and {obj!r} read the same; give each object one id", source)
        seen[str(obj)] = obj


def _describe(index: int, feature: Any) -> str:
    """How an error names a feature: its 1-based position, and its id/object when present."""
    text = f"feature #{index + 1}"
    if isinstance(feature, dict):
        if feature.get("id") is not None:
            text += f" (id {feature['id']!r})"
        properties = feature.get("properties")
        try:
            obj = contract_fields(properties)[1] if isinstance(properties, dict) else None
        except ValueError:  # two fields named alike: the error itself says so
            obj = None
        if obj is not None:
            text += f" (object {obj!r})"
    return text
