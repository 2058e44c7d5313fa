"""Mask → one valid (Multi)Polygon per object, with holes, optional simplification and minimum area."""

from __future__ import annotations

import numpy as np
from affine import Affine
from rasterio.features import rasterize, shapes
from shapely import make_valid
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry


def mask_to_polygon(
    mask: np.ndarray, transform: Affine, simplify: float = 0.0, min_area: float = 0.0
) -> Polygon | MultiPolygon:
    """The foreground of a boolean ``mask`` as map geometry (``transform``: mask pixels → CRS).

    ``simplify`` is a tolerance in CRS units (topology kept, each object on its own: neighbours
    may overlap or part by up to about the tolerance); parts no larger than its square are dropped
    (a ring cannot collapse, so a one-pixel speck would stay as a triangle). Parts and holes
    smaller than ``min_area`` (CRS units²) are dropped / filled. Empty when nothing remains.
    """
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    parts = [shape(geom) for geom, _ in shapes(mask, mask=mask.astype(bool), transform=transform, connectivity=4)]
    parts = [_fill_small_holes(part, min_area) for part in parts
             if part.area >= min_area and (simplify == 0 or part.area > simplify**2)]
    geometry = valid_polygons(MultiPolygon(parts)) if parts else MultiPolygon()
    if simplify > 0 and not geometry.is_empty:
        geometry = valid_polygons(geometry.simplify(simplify, preserve_topology=True))
        geometry = MultiPolygon([_fill_small_holes(part, min_area) for part in geometry.geoms if part.area >= min_area])
    if len(geometry.geoms) == 1:
        return geometry.geoms[0]
    return geometry


def polygon_to_mask(geometry: BaseGeometry, out_shape: tuple[int, int], transform: Affine) -> np.ndarray:
    """The pixels of an ``out_shape`` grid (``transform``: pixels → CRS) whose centres ``geometry``
    covers: ``mask_to_polygon``'s inverse, exact on the grid the polygon was traced on."""
    if geometry.is_empty:
        return np.zeros(out_shape, bool)
    return rasterize([(geometry, 1)], out_shape=out_shape, transform=transform, fill=0, dtype="uint8").astype(bool)


def _fill_small_holes(polygon: Polygon, min_area: float) -> Polygon:
    if min_area <= 0:
        return polygon
    holes = [ring for ring in polygon.interiors if Polygon(ring).area >= min_area]
    return Polygon(polygon.exterior, holes)


def valid_polygons(geometry: BaseGeometry) -> MultiPolygon:
    """``geometry`` made valid (a self-crossing ring split where it crosses), its polygon parts kept."""
    return _polygonal(make_valid(geometry))


def _polygonal(geometry: BaseGeometry) -> MultiPolygon:
    """Only the polygon parts of ``geometry`` (make_valid may add lines or points), as a MultiPolygon."""
    if isinstance(geometry, Polygon):
        return MultiPolygon([geometry]) if not geometry.is_empty else MultiPolygon()
    if isinstance(geometry, MultiPolygon):
        return geometry
    polygons: list[Polygon] = []
    for part in getattr(geometry, "geoms", ()):
        polygons.extend(_polygonal(part).geoms)
    return MultiPolygon(polygons)
