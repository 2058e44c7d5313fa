"""Which scene bands the model reads, as a user names them: 1-based numbers (``4,3,2``, as GDAL
counts) or the bands' descriptions (``B04,B03,B02``, ``red,green,blue``). One grey band or three
(R, G, B). Kept free of rasterio, so a training config can check its ``scene_bands`` anywhere."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mst_geo.errors import MSTGeoError

BandRef = int | str
"""A band by its 1-based number or by its description."""

SENSOR_BAND = re.compile(r"(sr_|toa_|st_)?b([0-9]+a?)")
"""A satellite band name as ``band_key`` spells it: Sentinel-2's ``b4``/``b8a``, Landsat Collection
2's ``sr_b4`` and ``st_b10``; the groups are Landsat's product prefix and the band's number."""


def band_choice(bands: Any, where: Any = None) -> tuple[BandRef, ...]:
    """1 (grey) or 3 (R,G,B) band numbers from 1 or band names, as ``--bands``, the API's ``bands``
    and ``data.scene_bands`` take them; MSTGeoError naming ``where`` otherwise."""
    if isinstance(bands, (str, bytes)) or not isinstance(bands, Iterable):
        raise MSTGeoError(f"bands must be band numbers such as (4, 3, 2) or names, got {bands!r}", where)
    chosen = tuple(_number_if_written_as_one(band) for band in bands)
    for band in chosen:
        number = isinstance(band, (int, np.integer)) and not isinstance(band, bool)
        if not (number and band >= 1) and not (isinstance(band, str) and band.strip()):
            raise MSTGeoError(f"bands must be whole band numbers from 1 such as (4, 3, 2), or band names, "
                              f"got {chosen!r}", where)
    if len(chosen) not in (1, 3):
        raise MSTGeoError(f"bands takes 1 band (grey) or 3 bands (R,G,B), got {len(chosen)}", where)
    return tuple(int(band) if not isinstance(band, str) else band.strip() for band in chosen)


def parse_bands(text: str | None) -> tuple[BandRef, ...] | None:
    """``--bands`` text ("4,3,2" or "B04,B03,B02") as a band choice; None keeps the default."""
    if text is None or not text.strip():
        return None
    return band_choice(text.split(","))


def _number_if_written_as_one(band: Any) -> Any:
    """"4" or " -1 " as the integer it writes (checked as a number); other values as they are."""
    if isinstance(band, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", band):
        return int(band)
    return band


def sensor_rgb(named: Mapping[str, Sequence[int]]) -> tuple[int, int, int] | None:
    """Red, green and blue of a stack whose bands carry Sentinel-2 or Landsat 8/9 names, by the
    names' ``band_key``: B4, B3, B2 on both sensors. Landsat 4-7 keep blue in B1 and red in B3, and
    other files number their bands B1, B2, ... too, so the stack must show whose it is: Sentinel-2's
    B8A, B11 or B12 (Landsat 8/9 has a B11 as well), B2, B3 and B4 named without a product prefix
    and without B1 (Sentinel-2's 10 m bands; Landsat 4-7 stacks come as SR_ products), or a Landsat
    Collection 2 product of 8/9 (SR_B6 is their SWIR band, where 4-7 have the thermal ST_B6;
    ST_B10). None when it does not, or when a name repeats (two dates)."""
    by_number: dict[str, list[int]] = {}
    spelled: set[tuple[str, str]] = set()
    for key, bands in named.items():
        match = SENSOR_BAND.fullmatch(key)
        if match:
            prefix, number = match.group(1) or "", match.group(2)
            spelled.add((prefix, number))
            by_number.setdefault(number, []).extend(bands)
    rgb = [by_number.get(number, []) for number in ("4", "3", "2")]
    if any(len(bands) != 1 for bands in rgb):
        return None
    ten_metre_bands = {("", "2"), ("", "3"), ("", "4")} <= spelled and ("", "1") not in spelled
    sentinel2 = not {"8a", "11", "12"}.isdisjoint(by_number) or ten_metre_bands
    landsat8 = not {("sr_", "6"), ("st_", "10")}.isdisjoint(spelled)
    return (rgb[0][0], rgb[1][0], rgb[2][0]) if sentinel2 or landsat8 else None
