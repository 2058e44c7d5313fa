"""The page's map coordinates: the scene's own pixel grid, scaled for Leaflet's ``L.CRS.Simple``.

At the deepest tile zoom one screen pixel is one scene pixel, so a page coordinate is the
scene pixel position divided by ``2**max_zoom`` (x to the right, y upward, i.e. negative rows).
Pixels that are not square on the ground (a scene in degrees) are stretched along their longer
side (``aspect``, as ``SceneRaster.read`` does for the model), so the map is not distorted.
Keeping this in one place lets the tile renderer, the click endpoint and the polygon layer agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine

from mst_geo.geo.raster import pixel_stretch

TILE_SIZE = 256


@dataclass(frozen=True)
class PageGrid:
    """Maps between scene CRS coordinates, scene pixels and page (Leaflet) coordinates."""

    transform: Affine
    width: int
    height: int
    tile_size: int = TILE_SIZE
    aspect: float = 1.0
    """Ground width over ground height of a scene pixel (``SceneRaster.pixel_aspect``)."""

    @property
    def stretch(self) -> tuple[float, float]:
        """Screen pixels per scene pixel at the deepest zoom along (columns, rows), as the model's reads."""
        return pixel_stretch(self.aspect)

    @property
    def max_zoom(self) -> int:
        """The zoom at which tiles show native pixels; zoom 0 fits the scene in one tile."""
        across, down = self.stretch
        return max(0, math.ceil(math.log2(max(self.width * across, self.height * down) / self.tile_size)))

    @property
    def scale(self) -> float:
        """Scene pixels per page unit."""
        return float(2**self.max_zoom)

    @property
    def page_bounds(self) -> list[list[float]]:
        """The scene's extent as Leaflet ``[[south, west], [north, east]]``."""
        across, down = self.stretch
        return [[-self.height * down / self.scale, 0.0], [0.0, self.width * across / self.scale]]

    def page_to_scene(self, x: float, y: float) -> tuple[float, float]:
        """A page coordinate (lng, lat) to the scene CRS."""
        across, down = self.stretch
        return self.transform @ (x * self.scale / across, -y * self.scale / down)

    def scene_to_page_coords(self, coords: np.ndarray) -> np.ndarray:
        """An ``(N, 2)`` array of scene CRS coordinates to page coordinates."""
        across, down = self.stretch
        cols, rows = ~self.transform @ (coords[:, 0], coords[:, 1])
        return np.column_stack([np.asarray(cols) * across / self.scale, -np.asarray(rows) * down / self.scale])

    def scene_to_page(self, geometry: shapely.Geometry) -> shapely.Geometry:
        """A shapely geometry in the scene CRS to page coordinates."""
        return shapely.transform(geometry, self.scene_to_page_coords)

    def tile_window(self, z: int, x: int, y: int) -> tuple[float, float, float, float]:
        """Scene pixel window ``(col_off, row_off, width, height)`` covered by tile z/x/y."""
        span = self.tile_size * 2 ** (self.max_zoom - z)
        across, down = self.stretch
        return (x * span / across, y * span / down, span / across, span / down)

    def has_tile(self, z: int, x: int, y: int) -> bool:
        """Whether tile z/x/y exists (intersects the scene at a zoom we serve)."""
        if not 0 <= z <= self.max_zoom or x < 0 or y < 0:
            return False
        try:
            col, row, _, _ = self.tile_window(z, x, y)
        except OverflowError:  # x or y past what a float holds: far outside any scene
            return False
        return col < self.width and row < self.height
