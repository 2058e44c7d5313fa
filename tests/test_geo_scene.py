"""geo.scene: adaptive windows on the real NAIP scene.

Window growth is checked with a classical magic wand (OpenCV flood fill of similar colour, the
tool every image editor has) behind the Predictor interface, because a wand's answer on real
imagery is known: the whole pond, the whole roof. The MST predictor (random weights) checks the
bookkeeping that must hold for any model: one call per click, replay equals incremental.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import Point

from mst_geo.clicks.click import Click
from mst_geo.clicks.predictor import Predictor
from mst_geo.geo.prompts import PixelMapper
from mst_geo.geo.raster import SceneRaster, WindowImage
from mst_geo.geo.scene import ObjectMask, ObjectSegmenter, resample_probability
from mst_geo.geo.vectorize import mask_to_polygon
from mst_geo.model import load_checkpoint


class MagicWand:
    """Flood fill of colours within ``tolerance`` of each positive click's pixel (negatives ignored)."""

    def __init__(self, tolerance: int = 25):
        self.tolerance = (tolerance,) * 3
        self.calls = 0

    def set_image(self, image: np.ndarray) -> None:
        self.image = np.ascontiguousarray((image * 255).astype(np.uint8))

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None) -> np.ndarray:
        self.calls += 1
        height, width = self.image.shape[:2]
        filled = np.zeros((height + 2, width + 2), np.uint8)
        flags = 4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (255 << 8)
        for click in clicks:
            if click.positive and 0 <= click.y < height and 0 <= click.x < width:  # as the Predictor: clicks in view
                cv2.floodFill(self.image, filled, (int(click.x), int(click.y)), 0, self.tolerance, self.tolerance, flags)
        return (filled[1:-1, 1:-1] > 0).astype(np.float32)


class ShortSightedWand(MagicWand):
    """A magic wand that sees only ``reach`` of its view's side around each positive click.

    This is how a learned model fails on a first click in open water: where its view holds no
    edge of the object it draws a blob of a fixed size in input pixels, which grows with the view,
    and that blob fades out from the click (probability 1 there, 0.5 at its rim: it changes with
    the threshold), while a region it saw whole is sharp (``sure`` throughout).
    """

    def __init__(self, reach: float = 0.15, sure: float = 1.0):
        super().__init__()
        self.reach, self.sure = reach, sure

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None) -> np.ndarray:
        filled = super().predict(clicks, prev_mask) > 0
        rows, cols = np.ogrid[: filled.shape[0], : filled.shape[1]]
        radius = self.reach * max(filled.shape)
        distance = np.full(filled.shape, np.inf)  # to the nearest positive click
        for click in clicks:
            if click.positive:
                distance = np.minimum(distance, np.sqrt((rows - click.y) ** 2 + (cols - click.x) ** 2))
        near = distance <= radius
        if not (filled & ~near).any():
            return filled * np.float32(self.sure)
        return np.where(filled & near, 1.0 - 0.5 * distance / radius, 0.0).astype(np.float32)


class BrightFill:
    """Pixels brighter than 0.6 (stretched) connected to a positive click: bare soil, gravel roads."""

    def set_image(self, image: np.ndarray) -> None:
        self.bright = image.mean(axis=-1) > 0.6

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None) -> np.ndarray:
        labels, _ = ndimage.label(self.bright)
        picked = {labels[int(c.y), int(c.x)] for c in clicks if c.positive} - {0}
        return np.isin(labels, list(picked)).astype(np.float32)


@pytest.fixture
def raster(naip_scene):
    with SceneRaster(naip_scene) as opened:
        yield opened


def scene_clicks(raster: SceneRaster, *pixels: tuple[float, float, bool]):
    """SceneClicks at scene pixels (row, col, positive), through the same mapper the API uses."""
    mapper = PixelMapper(raster.crs, raster.transform, raster.width, raster.height, raster.is_valid)
    return [mapper.click(*(raster.transform @ (col, row)), positive, None) for row, col, positive in pixels]


def scene_truth(naip_scene, component: np.ndarray, row: int, col: int):
    """The connected ``component`` (boolean scene array) holding pixel (row, col), as a map polygon."""
    labels, _ = ndimage.label(component)
    assert labels[row, col] > 0
    with rasterio.open(naip_scene) as src:
        return mask_to_polygon(labels == labels[row, col], src.transform)


def assert_in_place(polygon, truth, raster, row: float, col: float, min_iou: float) -> None:
    """``polygon`` (from a window's transform) lies where ``truth`` lies on the map, around the click."""
    iou = polygon.intersection(truth).area / polygon.union(truth).area
    assert iou > min_iou, iou
    assert polygon.contains(Point(*(raster.transform @ (col, row))))
    assert polygon.centroid.distance(truth.centroid) < 2 * raster.transform.a  # within 2 px


def test_pond_larger_than_the_first_window_comes_out_whole(raster, naip_scene):
    """With a 64 px model input the first window is 32 px: the pond (about 100 x 50 px) must grow it."""
    wand = MagicWand()
    segmenter = ObjectSegmenter(raster, wand, input_size=64)
    result = segmenter.segment(scene_clicks(raster, (40.5, 860.5, True)))

    assert result.window.width > 100 and result.scale[0] > 1  # grown, and read decimated
    assert max(result.probability.shape) <= 64
    with rasterio.open(naip_scene) as src:
        nir = src.read(4)
    water, _ = ndimage.label(nir < 60)  # ground truth: the pond's dark near-infrared component
    truth = (water == water[40, 860]).sum() * 25.0
    area = mask_to_polygon(result.mask, result.transform).area
    assert area == pytest.approx(truth, rel=0.25)
    assert not segmenter._touches_border(result)
    pond = scene_truth(naip_scene, nir < 60, 40, 860)
    assert_in_place(mask_to_polygon(result.mask, result.transform), pond, raster, 40.5, 860.5, min_iou=0.85)


def test_stability_is_high_for_a_sharp_object_and_low_for_a_fading_blob(raster):
    """SAM's stability score: the object (the part holding the click) cut above and below the
    threshold. A sharp disc keeps its shape (1.0); a disc that fades out from the click shrinks
    from radius 24.4 to 16.4 px between the cuts (IoU 0.45); a sharp speck elsewhere is no part
    of the object and costs nothing."""
    segmenter = ObjectSegmenter(raster, MagicWand(), input_size=64)
    window = Window(0, 0, 64, 64)
    transform = rasterio.windows.transform(window, raster.transform)
    rows, cols = np.ogrid[:64, :64]
    distance = np.sqrt((rows - 32) ** 2 + (cols - 32) ** 2)
    speck = np.zeros((64, 64), np.float32)
    speck[2:6, 2:6] = 0.45  # in the mask only at the lower cut

    def stability(probability: np.ndarray) -> float:
        result = ObjectMask(probability.astype(np.float32), np.ones((64, 64), bool), window, transform,
                            tuple(scene_clicks(raster, (32.5, 32.5, True))))
        return segmenter.stability(result)

    assert stability(np.where(distance < 20, 0.95, 0.02) + speck) == 1.0
    assert stability(np.clip(1 - distance / 40, 0, 1)) == pytest.approx((16.4 / 24.4) ** 2, abs=0.05)
    assert stability(np.zeros((64, 64))) == 0.0  # nothing at the click: no object to be sure of


def test_first_click_finds_the_scale_of_an_object_larger_than_the_view(raster):
    """A wand that sees 20 % of its view around the click never reaches the border of any window,
    so border growth alone keeps a 124 px blob of the pond (42 x 44 px) and its shore. The scale
    search tries larger views (the blob grows with them until the whole region is in reach) and
    keeps the most stable one, the closest that holds the whole region: what a wand
    with unlimited sight finds. The wand is less sure of that region (0.65) than of its blobs
    (0.67 on average), so the most confident view would have been a blob."""
    segmenter = ObjectSegmenter(raster, ShortSightedWand(reach=0.2, sure=0.65), input_size=64)
    clicks = scene_clicks(raster, (351.5, 364.5, True))
    views = segmenter.scale_views(clicks)
    assert [view.window.width for view in views] == sorted(view.window.width for view in views)  # closest first
    assert not any(segmenter._touches_border(view) for view in views)
    blobs = [view for view in views if view.probability.max() > 0.65]
    assert blobs and max(view.score for view in blobs) > max(view.score for view in views) - 0.01
    result = segmenter.add(None, clicks)
    assert result.probability.max() == pytest.approx(0.65)  # the region, not a blob
    with pytest.raises(ValueError, match="needs a positive click"):
        segmenter.scale_views(scene_clicks(raster, (351.5, 364.5, False)))
    whole = ObjectSegmenter(raster, MagicWand(), input_size=64).segment(clicks)
    found, expected = (mask_to_polygon(r.mask, r.transform) for r in (result, whole))
    assert found.intersection(expected).area / found.union(expected).area > 0.65  # seen 4x decimated: blockier
    assert found.area > 8 * 124 * 25  # the blob border growth alone keeps is 124 px (of 25 m²)
    assert found.contains(Point(*(raster.transform @ (364.5, 351.5))))
    assert result.window.width == 256 and result.scale == (4.0, 4.0)  # the closest view with the region in reach

    second = segmenter.add(result, [*clicks, *scene_clicks(raster, (345.5, 360.5, True))])
    assert second.scale[0] < 1.1 and second.window.width < result.window.width  # zoomed in to about native pixels
    left, bottom, right, top = found.bounds  # ... on a square that holds all the first click found
    window_left, window_top = second.transform * (0, 0)
    window_right, window_bottom = second.transform * second.probability.shape[::-1]
    assert window_left <= left and right <= window_right and window_bottom <= bottom and top <= window_top


def test_small_roof_stays_in_a_native_window(raster, naip_scene):
    wand = MagicWand(tolerance=20)
    segmenter = ObjectSegmenter(raster, wand, input_size=64)
    result = segmenter.segment(scene_clicks(raster, (627.5, 10.5, True)))
    assert result.scale == (1.0, 1.0) and result.window.width == 32  # no growth needed
    roof = mask_to_polygon(result.mask, result.transform)
    assert 4 * 25 <= roof.area <= 40 * 25  # a roof of a few pixels, not the yard around it
    with rasterio.open(naip_scene) as src:
        bright = src.read((1, 2, 3)).mean(axis=0) > 150  # the white roof (30 px), apart from the yard
    assert_in_place(roof, scene_truth(naip_scene, bright, 627, 10), raster, 627.5, 10.5, min_iou=0.75)


def test_growth_never_loses_a_thin_object(raster):
    """The gravel road (1-2 px wide) crosses every window; read decimated it fades below the
    threshold, so growth stops at the last window that still shows it instead of returning nothing."""
    segmenter = ObjectSegmenter(raster, BrightFill(), input_size=64)
    result = segmenter.segment(scene_clicks(raster, (624.5, 300.5, True)))
    assert result.scale == (1.0, 1.0) and result.window.width == 64  # grew once, kept the native view
    assert result.mask[int(624.5 - result.window.row_off), int(300.5 - result.window.col_off)]
    road = mask_to_polygon(result.mask, result.transform)
    width, height = road.bounds[2] - road.bounds[0], road.bounds[3] - road.bounds[1]
    assert width == 64 * 5.0 and height < width / 4  # a long strip along the road (and a track joining it)
    assert road.contains(Point(*(raster.transform @ (300.5, 624.5))))  # placed on the map where clicked
    window_bounds = rasterio.windows.bounds(result.window, raster.transform)
    assert road.bounds[0] == window_bounds[0] and road.bounds[2] == window_bounds[2]  # crosses the window


def test_windows_stay_inside_the_scene(raster):
    segmenter = ObjectSegmenter(raster, MagicWand(), input_size=64)
    for row, col in [(0.5, 0.5), (722.5, 933.5), (300.5, 0.5)]:
        window = segmenter._initial_window(scene_clicks(raster, (row, col, True)))
        assert window.col_off >= 0 and window.row_off >= 0
        assert window.col_off + window.width <= raster.width and window.row_off + window.height <= raster.height
        assert (window.width, window.height) == (32, 32)


def test_growth_stops_at_the_largest_window(raster):
    """Water everywhere (a wand with a huge tolerance) would grow forever: the cap stops it."""
    segmenter = ObjectSegmenter(raster, MagicWand(tolerance=255), input_size=64, max_side=256)
    result = segmenter.segment(scene_clicks(raster, (360.5, 460.5, True)))
    assert max(result.window.width, result.window.height) == 256


def test_one_model_call_per_click_while_the_window_stays(raster, tiny_checkpoint):
    """Random MST weights: whatever the mask, replay and incremental must agree exactly."""
    model, _ = load_checkpoint(tiny_checkpoint)
    predictor = Predictor(model)
    calls = []
    predict = predictor.predict
    predictor.predict = lambda clicks, prev=None: calls.append(len(clicks)) or predict(clicks, prev)
    segmenter = ObjectSegmenter(raster, predictor, input_size=224, max_side=112)  # no growth, no scale search
    clicks = scene_clicks(raster, (360.5, 460.5, True), (380.5, 470.5, False), (350.5, 450.5, True))
    result = None
    for count in range(1, 4):
        result = segmenter.add(result, clicks[:count])
    assert calls == [1, 2, 3]
    window = result.window
    assert (window.width, window.height) == (112, 112)  # half the model input, around the clicks
    assert all(window.row_off <= c.row < window.row_off + 112 and window.col_off <= c.col < window.col_off + 112
               for c in clicks)

    other = segmenter.segment(scene_clicks(raster, (100.5, 100.5, True), (120.5, 110.5, True)))
    replayed = segmenter.segment(clicks)
    np.testing.assert_array_equal(replayed.probability, result.probability)
    assert replayed.zoom == result.zoom and other.window != result.window


def test_negative_clicks_alone_draw_nothing_until_a_positive_one(raster, tiny_checkpoint):
    """An object whose clicks so far are all negative is empty without a model call (a model shown
    negatives alone draws some neighbour); its first positive click then runs as a first click
    with the negatives replayed, the same result as a replay of the same clicks."""
    model, _ = load_checkpoint(tiny_checkpoint)
    predictor = Predictor(model)
    calls = []
    predict = predictor.predict
    predictor.predict = lambda clicks, prev=None: calls.append([c.positive for c in clicks]) or predict(clicks, prev)
    segmenter = ObjectSegmenter(raster, predictor, input_size=224, max_side=112)
    clicks = scene_clicks(raster, (380.5, 470.5, False), (370.5, 440.5, False), (360.5, 460.5, True))
    first = segmenter.add(None, clicks[:1])
    second = segmenter.add(first, clicks[:2])
    assert calls == [] and not first.mask.any() and not second.mask.any() and second.score == 0.0
    assert second.transform @ (0, 0) == raster.transform @ (second.window.col_off, second.window.row_off)
    third = segmenter.add(second, clicks)
    assert calls == [[False], [False, False], [False, False, True]]  # the negatives replayed with the positive
    replayed = segmenter.segment(clicks)
    np.testing.assert_array_equal(replayed.probability, third.probability)


def test_zoomed_window_gets_the_previous_mask_at_the_same_map_position(raster):
    """A later click's prior is the previous probability resampled onto the zoomed window: a
    linear ramp on a 2x decimated window must come back as the same ramp at each native pixel's
    centre (bilinear is exact on a ramp), and 0 outside the old window."""
    old = Window(100, 200, 128, 128)
    rows, cols = np.mgrid[0:64, 0:64].astype(np.float32)
    previous = ObjectMask(rows + 10 * cols, np.ones((64, 64), bool), old, raster.transform, clicks=())
    new = Window(140, 240, 32, 32)
    image = WindowImage(np.zeros((32, 32, 3), np.float32), np.ones((32, 32), bool), new, raster.transform)
    prior = resample_probability(previous, image)
    centre_rows, centre_cols = np.mgrid[0:32, 0:32] + 0.5
    expected_rows = (new.row_off + centre_rows - old.row_off) / 2 - 0.5  # the old mask's pixel at that spot
    expected_cols = (new.col_off + centre_cols - old.col_off) / 2 - 0.5
    np.testing.assert_allclose(prior, expected_rows + 10 * expected_cols, atol=1e-4)

    outside = WindowImage(np.zeros((8, 8, 3), np.float32), np.ones((8, 8), bool), Window(300, 400, 8, 8), raster.transform)
    assert not resample_probability(previous, outside).any()

    # a window that shares the old one's edges (the scene's edge clips both) keeps its prior up to them
    coarse = ObjectMask(np.ones((4, 4), np.float32), np.ones((4, 4), bool), Window(0, 0, 16, 16), raster.transform, clicks=())
    native = WindowImage(np.zeros((16, 16, 3), np.float32), np.ones((16, 16), bool), Window(0, 0, 16, 16), raster.transform)
    np.testing.assert_allclose(resample_probability(coarse, native), 1.0)


def test_later_click_far_beyond_the_largest_window_stays_in_sight(raster):
    """Positive clicks wider apart than the largest window: the zoomed square is capped, and it
    is centred on the newest positive click, which the model must see (the older one is cut)."""
    segmenter = ObjectSegmenter(raster, MagicWand(), input_size=64, max_side=128)
    clicks = scene_clicks(raster, (351.5, 364.5, True), (351.5, 600.5, True))
    first = segmenter.add(None, clicks[:1])
    second = segmenter.add(first, clicks)
    window = second.window
    assert max(window.width, window.height) <= 128
    assert window.row_off <= 351.5 < window.row_off + window.height and window.col_off <= 600.5 < window.col_off + window.width
