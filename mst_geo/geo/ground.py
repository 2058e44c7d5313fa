"""Ground measures in any CRS: the ellipsoid a CRS sits on, for areas and pixel shapes in metres.

A map's own units are ground units only in some projections (Web Mercator's areas are 2.15 times
too large at 47°N, degrees are not square), so areas and pixel aspects are measured geodesically
on the CRS's ellipsoid. The transformer and ellipsoid are cached per CRS: the app re-measures
every polygon on every click.
"""

from __future__ import annotations

import functools

import numpy as np
import shapely
from pyproj import CRS, Geod, Transformer
from shapely.geometry.base import BaseGeometry


@functools.lru_cache(maxsize=32)
def _ellipsoid(crs_text: str) -> tuple[Transformer, Geod] | None:
    """(to longitude/latitude, the ellipsoid) for a CRS; None for a local CRS without a datum."""
    crs = CRS.from_user_input(crs_text)
    lonlat = crs.geodetic_crs
    if lonlat is None:
        return None
    return Transformer.from_crs(crs, lonlat, always_xy=True), lonlat.get_geod() or Geod(ellps="WGS84")


def _frame(crs: CRS | str) -> tuple[Transformer, Geod] | None:
    crs = CRS.from_user_input(crs)
    return _ellipsoid(crs.to_wkt() or crs.srs)  # a CRS without a WKT form is keyed by its own text


def ground_area(geometry: BaseGeometry, crs: CRS | str) -> float | None:
    """Area in square metres on the CRS's ellipsoid; None for a local CRS without a datum."""
    frame = _frame(crs)
    if frame is None:
        return None
    to_lonlat, geod = frame
    lonlat = shapely.transform(geometry, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1])))
    return abs(geod.geometry_area_perimeter(lonlat)[0])


def ground_steps(crs: CRS | str, origin: tuple[float, float], across: tuple[float, float],
                 down: tuple[float, float]) -> tuple[float, float] | None:
    """Metres from ``origin`` to ``across`` and to ``down`` (map points in ``crs``); None for a local
    CRS without a datum or points the ellipsoid cannot place."""
    frame = _frame(crs)
    if frame is None:
        return None
    to_lonlat, geod = frame
    lons, lats = to_lonlat.transform(*zip(origin, across, down))
    steps = (geod.inv(lons[0], lats[0], lons[1], lats[1])[2], geod.inv(lons[0], lats[0], lons[2], lats[2])[2])
    return steps if all(np.isfinite(step) and step > 0 for step in steps) else None
