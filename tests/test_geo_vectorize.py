"""geo.vectorize on a real water mask from the NAIP scene (near-infrared threshold) and on exact shapes."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
import shapely
from pyproj import CRS, Transformer
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon, box

from mst_geo.geo.ground import ground_area
from mst_geo.geo.vectorize import mask_to_polygon, polygon_to_mask

UTM = Affine(5.0, 0, 485899.0, 0, -5.0, 5209246.0)


@pytest.fixture(scope="module")
def pond(naip_scene) -> tuple[np.ndarray, Affine]:
    """The pond around scene pixel (row 45, col 860): open water is dark in near infrared."""
    window = Window(780, 0, 154, 140)
    with rasterio.open(naip_scene) as src:
        nir = src.read(4, window=window)
        transform = src.window_transform(window)
    water, _ = ndimage.label(nir < 60)
    return water == water[45, 860 - 780], transform


def test_real_pond_area_matches_its_pixels(pond):
    mask, transform = pond
    geometry = mask_to_polygon(mask, transform)
    assert geometry.is_valid and not geometry.is_empty
    assert geometry.area == pytest.approx(mask.sum() * 25.0)
    assert geometry.bounds[0] >= transform.c and geometry.bounds[3] <= transform.f


def test_simplify_reduces_vertices_and_stays_valid(pond):
    mask, transform = pond
    raw = mask_to_polygon(mask, transform)
    simple = mask_to_polygon(mask, transform, simplify=5.0)
    assert simple.is_valid
    assert len(simple.exterior.coords) < len(raw.exterior.coords) / 2
    assert simple.area == pytest.approx(raw.area, rel=0.05)


def test_holes_kept_and_small_parts_dropped():
    mask = np.zeros((40, 60), bool)
    mask[5:35, 5:35] = True
    mask[15:25, 15:25] = False  # a 100 px hole (an island in a lake)
    mask[2:4, 50:52] = True  # a 4 px speck
    geometry = mask_to_polygon(mask, UTM)
    assert isinstance(geometry, MultiPolygon) and len(geometry.geoms) == 2
    assert geometry.area == pytest.approx((900 - 100 + 4) * 25)
    kept = mask_to_polygon(mask, UTM, min_area=4 * 25 + 1)
    assert isinstance(kept, Polygon) and len(kept.interiors) == 1
    filled = mask_to_polygon(mask, UTM, min_area=100 * 25 + 1)
    assert isinstance(filled, Polygon) and len(filled.interiors) == 0
    assert filled.area == pytest.approx(900 * 25)


def test_diagonal_pixels_give_a_valid_geometry():
    mask = np.eye(6, dtype=bool) | np.eye(6, dtype=bool)[::-1]
    geometry = mask_to_polygon(mask, UTM)
    assert geometry.is_valid and geometry.area == pytest.approx(mask.sum() * 25)


def test_empty_mask_gives_an_empty_geometry():
    assert mask_to_polygon(np.zeros((8, 8), bool), UTM).is_empty


def test_area_is_ground_area_in_any_crs():
    """One field near Jamestown, North Dakota, in UTM, Web Mercator and degrees: one ground area.
    State-plane feet convert too; a local CRS without datum has none."""
    utm = box(485899.0, 5209000.0, 486899.0, 5209500.0)  # 1 000 m x 500 m, near UTM 14N's central meridian
    ground = ground_area(utm, CRS.from_epsg(26914))
    assert ground == pytest.approx(500_000, rel=0.002)  # UTM's scale factor 0.9996: planar within 0.1 %
    for crs in ("EPSG:3857", "EPSG:4326"):
        projected = shapely.transform(utm, lambda xy: np.column_stack(
            Transformer.from_crs("EPSG:26914", crs, always_xy=True).transform(xy[:, 0], xy[:, 1])))
        assert ground_area(projected, CRS.from_user_input(crs)) == pytest.approx(ground, rel=0.001), crs
        if crs == "EPSG:3857":
            assert projected.area / ground == pytest.approx(2.15, rel=0.01)  # Mercator's own area is not ground area
    feet = box(2_000_000, 700_000, 2_001_000, 701_000)  # NC state plane, US survey feet, near its origin
    assert ground_area(feet, CRS.from_epsg(2264)) == pytest.approx(1_000_000 * 0.3048006096**2, rel=0.001)
    assert ground_area(box(0, 0, 100, 100), CRS.from_wkt('LOCAL_CS["plan",UNIT["metre",1]]')) is None


def test_holes_that_simplify_shrinks_below_min_area_are_filled():
    """A 2-pixel hole (50 m²) is kept by min_area 50, but simplification shrinks it to 25 m²:
    what comes out must still have no hole smaller than min_area."""
    mask = np.ones((20, 20), bool)
    mask[9, 9:11] = False
    assert len(mask_to_polygon(mask, UTM, min_area=50).interiors) == 1
    simplified = mask_to_polygon(mask, UTM, simplify=5, min_area=50)
    assert all(Polygon(ring).area >= 50 for ring in simplified.interiors)


def test_simplify_drops_parts_no_larger_than_its_square():
    """GEOS keeps a ring from collapsing, so a one-pixel speck became a half-pixel triangle at a
    one-pixel tolerance (a checkerboard lost half its area): parts up to tolerance² are dropped."""
    mask = np.zeros((40, 60), bool)
    mask[5:35, 5:35] = True
    mask[2, 50] = True  # a one-pixel speck, 25 m²
    simplified = mask_to_polygon(mask, UTM, simplify=5.0)
    assert isinstance(simplified, Polygon) and simplified.area == pytest.approx(900 * 25)
    assert isinstance(mask_to_polygon(mask, UTM, simplify=4.9), MultiPolygon)  # 24 m² < 25 m²: kept


def test_polygon_to_mask_inverts_mask_to_polygon(pond):
    mask, transform = pond
    mask = mask.copy()
    mask[60:70, 60:70] = ~mask[60:70, 60:70]  # holes and islands too
    assert np.array_equal(polygon_to_mask(mask_to_polygon(mask, transform), mask.shape, transform), mask)
    assert not polygon_to_mask(MultiPolygon(), (4, 4), transform).any()
