"""One object of a scene: an adaptive window around its clicks and the iterative predictor inside it.

The window starts at half the model input around the clicks, at native resolution. While the
predicted object touches the window border (on a side that is not the scene edge) the window
doubles around the object and, past the model input, is read decimated through the overviews.
A first click also looks for the object's scale. The model, like any interactive model, draws
a blob of a few input pixels where its view holds no edge of the object (a click in open water),
and that blob grows with the view while a framed object stays the same. So a first click is
re-run on views doubling from the first one that frames the object, up to ``VIEWS_PAST_STABLE``
doublings past the first view whose object stays the same in the next, and the most stable
framed view wins: SAM's stability score (Kirillov et al. 2023), the IoU of the object cut above
and below the threshold, high for a sharp framed object and low for a blob that fades out or a
leak into a neighbour (the closest of equally stable views). Until 2026-11-28 the most confident
view won (mean probability over the mask, as SAM ranks its masks by predicted IoU; the closest
within 0.01). Scored on every framed view the search tries (``scripts/first_click_views.py``), the most
stable view gives one-click mIoU 0.439/0.396/0.337 on 200 held-out photo objects at 1x/4x/8x
(``--heldout 200 --factors 1,4,8``) and 0.758/0.645/0.705/0.635 on the example's ponds at
1x/4x/8x/16x, against 0.413/0.353/0.300 and 0.759/0.631/0.674/0.631 for the most confident one
(0.504/0.500/0.444 and 0.769/0.732/0.762/0.714 for the best view in hindsight). It is hardly less
fragile: with every window one grey level brighter (``--shift 1``) it keeps a view of another
size for 55 of those 600 photo objects and 12 of the 64 pond clicks (16 ponds at 4 scales),
against 61 and 14. The other constants were chosen on the ponds (``scripts/bench_first_click.py``)
with older weights: one-click mIoU on the ponds was 0.62/0.16/0.02/0.01 with border growth alone
and 0.67/0.61/0.64/0.64 with the search (phase-6 weights), and stopping the search 3 views past
the stable one instead of 4 lost the 16x lakes (0.37 against 0.46, phase 8). So one click can
cut a 40 px house or a lake many model inputs across, from an input of the same size.

Later clicks zoom in, as RITM's evaluation does inside an image: each runs on a square
``ZOOM_EXPANSION`` times the box of the object and its positive clicks (at least half a model
input), with the previous probability resampled onto it as the prior mask, so boundaries are
refined at up to native resolution however large the first view was. The window stays while it
holds the expanded box and is at most ``ZOOM_KEEP`` times the square's side. With the zoom and
the longer search, mIoU after 1/2/3/5 clicks over the ponds at 1x/4x/8x/16x and 80 held-out
photos at 1x/4x (phase-8 weights) is
0.538/0.678/0.765/0.852, against 0.513/0.662/0.761/0.841 when later clicks kept the first view
(README, "Scale, speed and memory").

An object's result is a pure function of its clicks: ``ObjectSegmenter.add`` extends a result by
one click (one model call unless the window must grow), and replaying the clicks one by one gives
exactly the same result, which is what the CLI does and what ``undo`` relies on. The predictor's
zoom-in crop is carried in each result for that reason: objects share one predictor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage

from mst_geo.clicks.click import Click
from mst_geo.clicks.predictor import ZOOM_EXPANSION, Predictor
from mst_geo.clicks.simulator import PRED_THRESHOLD, binarize
from mst_geo.geo.prompts import SceneClick
from mst_geo.geo.raster import SceneRaster, WindowImage, window_scale

GROWTH = 2
"""Each growth doubles the window side."""

MAX_WINDOW_INPUTS = 64
"""The largest window spans this many model inputs (a decimation of 64 at most; 14 336 px at 224)."""

GROWS_WITH_VIEW = 0.75
"""An object whose area (in scene pixels) grows by at least this share of the view's area growth
grows with the view: a blob drawn where no edge is in sight grows like the view (4x per doubling),
a framed object stays the same."""

VIEWS_PAST_STABLE = 4
"""A first click tries views up to this many doublings past the first one whose object stays the
same (all views up to the largest when none does)."""

STABILITY_MARGIN = 0.1
"""The stability score compares the object cut this far above and below the clicker's threshold
(not tuned)."""

ZOOM_KEEP = 2.0
"""The current window stays for a later click while its side is at most this many zoom squares."""

MIN_VIEW_GROWTH = 2.0
"""Views whose areas differ less than this (clipped by the scene's edge) cannot tell the two apart."""


@dataclass(frozen=True)
class ObjectMask:
    """An object's prediction over one scene window (decimated when the window is large)."""

    probability: np.ndarray
    valid: np.ndarray
    window: Window
    transform: Affine
    clicks: tuple[SceneClick, ...] = field(repr=False)
    zoom: tuple[int, int, int, int] | None = None
    """The predictor's zoom-in crop after this prediction: part of the state the next click extends."""

    @cached_property
    def mask(self) -> np.ndarray:
        """Foreground pixels (probability above the clicker's threshold, never on nodata)."""
        return binarize(self.probability) & self.valid

    @property
    def score(self) -> float:
        """Mean foreground probability over the mask (0 for an empty mask)."""
        return self.mean_probability(self.mask)

    def mean_probability(self, pixels: np.ndarray) -> float:
        """Mean foreground probability over ``pixels`` (a boolean mask of this grid; 0 when empty)."""
        return float(self.probability[pixels].mean()) if pixels.any() else 0.0

    @property
    def scale(self) -> tuple[float, float]:
        """Scene pixels per mask pixel along (rows, cols)."""
        return window_scale(self.window, self.probability.shape)


class ObjectSegmenter:
    """Runs ``predictor`` over adaptive windows of ``raster``; keeps only the current window's image."""

    def __init__(self, raster: SceneRaster, predictor: Predictor, input_size: int, max_side: int | None = None):
        self.raster = raster
        self.predictor = predictor
        self.input_size = input_size
        self.max_side = max_side or input_size * MAX_WINDOW_INPUTS
        self._image_window: Window | None = None
        self._image = None

    def segment(self, clicks: Sequence[SceneClick]) -> ObjectMask:
        """The object for ``clicks``, given one at a time in order (as an analyst clicks)."""
        if not clicks:
            raise ValueError("an object needs at least one click")
        result = None
        for count in range(1, len(clicks) + 1):
            result = self.add(result, clicks[:count])
        return result

    def add(self, previous: ObjectMask | None, clicks: Sequence[SceneClick]) -> ObjectMask:
        """Extend ``previous`` (the result for ``clicks[:-1]``, None for the first) by the last click.

        Until an object has a positive click it is empty (no model call: from negatives alone the
        model would draw some neighbour); its first positive click runs as a first click does,
        the earlier negatives replayed with it.
        """
        clicks = tuple(clicks)
        if not any(click.positive for click in clicks):
            return self._nothing_yet(clicks)
        if previous is None or not any(click.positive for click in previous.clicks):
            return max(self.scale_views(clicks), key=self.stability)  # the closest of equally stable views: the sharpest
        return self._grow_past_border(self._predict(self._later_window(previous, clicks), clicks, previous))

    def _nothing_yet(self, clicks: tuple[SceneClick, ...]) -> ObjectMask:
        """An empty result around negative clicks alone (no pixels read, no model call)."""
        window = self._initial_window(clicks)
        shape, transform = self.raster.read_grid(window, self.input_size)  # the grid a read of it would have
        return ObjectMask(np.zeros(shape, np.float32), np.ones(shape, bool), window, transform, clicks)

    def scale_views(self, clicks: Sequence[SceneClick]) -> list[ObjectMask]:
        """The framed views (the object clear of their border) a first click's scale search tries,
        closest first: the first window grown past the object's border, then doubling views. The
        first view alone when none is framed. ``add`` keeps the most stable."""
        clicks = tuple(clicks)
        if not any(click.positive for click in clicks):
            raise ValueError("a scale search needs a positive click (from negatives alone the model draws a neighbour)")
        result = self._grow_past_border(self._replay(self._initial_window(clicks), clicks))
        views, stable_at = [result], None
        while self._can_grow(views[-1].window):
            if stable_at is not None and len(views) > stable_at + VIEWS_PAST_STABLE:
                break
            view = views[-1]
            larger = self._replay(self._grown_window(view), view.clicks)
            view_growth = _area(larger.window) / _area(view.window)
            if view_growth < MIN_VIEW_GROWTH or self._object_area(larger) == 0:
                break  # the scene's edge (too small a step to compare), or lost from further away (a thin road)
            if stable_at is None and self._stays_put(view, larger, view_growth):
                stable_at = len(views) - 1
            views.append(larger)
        return [view for view in views if not self._touches_border(view)] or [result]

    def stability(self, result: ObjectMask) -> float:
        """SAM's stability score: the IoU of the object cut ``STABILITY_MARGIN`` above and below the
        clicker's threshold. A framed object has a sharp edge and keeps its shape; a blob drawn where
        the view holds no edge, or a leak into a neighbour, fades out and changes with the cut. 0 when
        the clicked pixel itself lies between the cuts: the model is unsure right at the click."""
        high, low = (self._object_part(result, (result.probability > PRED_THRESHOLD + offset) & result.valid)
                     for offset in (STABILITY_MARGIN, -STABILITY_MARGIN))
        union = np.count_nonzero(high | low)
        return np.count_nonzero(high & low) / union if union else 0.0

    def _stays_put(self, view: ObjectMask, larger: ObjectMask, view_growth: float) -> bool:
        """Whether ``view`` frames the object and it grows much less than the view into ``larger``."""
        if self._touches_border(view):
            return False
        return self._object_area(larger) < GROWS_WITH_VIEW * view_growth * self._object_area(view)

    def _grow_past_border(self, result: ObjectMask) -> ObjectMask:
        """The result re-run on doubled windows while the object reaches the window's border."""
        while self._touches_border(result) and self._can_grow(result.window):
            window = self._grown_window(result)
            if len(result.clicks) == 1:  # a first click starts afresh: views are compared without a prior
                grown = self._replay(window, result.clicks)
            else:  # a later click keeps what the earlier ones drew
                grown = self._predict(window, result.clicks, result)
            if not self._object_part(grown).any():  # decimation lost the object (a thin road): keep the sharper view
                break
            result = grown
        return result

    # -- windows --------------------------------------------------------------------------------
    def _initial_window(self, clicks: Sequence[SceneClick]) -> Window:
        """A square around the clicks: half a model input, or twice their spread."""
        rows = [c.row for c in clicks]
        cols = [c.col for c in clicks]
        spread = max(max(rows) - min(rows), max(cols) - min(cols))
        side = max(self.input_size // 2, int(2 * spread) + 1)
        return self._square((min(rows) + max(rows)) / 2, (min(cols) + max(cols)) / 2, side)

    def _later_window(self, previous: ObjectMask, clicks: Sequence[SceneClick]) -> Window:
        """The window for a later click: RITM's zoom-in at scene level. A square ``ZOOM_EXPANSION``
        times the box of the object and the positive clicks (at least half a model input), so the
        model refines the boundary at up to native resolution; the current window stays while it
        holds that expanded box and is at most ``ZOOM_KEEP`` times the square's side."""
        current = previous.window
        positives = [c for c in clicks if c.positive]
        boxes = [(c.row, c.col, c.row + 1, c.col + 1) for c in positives]
        object_box = self._object_box(previous)
        if object_box is None and all(_holds(current, Window(c.col, c.row, 1, 1)) for c in positives):
            return current  # no object to zoom onto yet: the view the first click chose is the best guess
        if object_box is not None:
            boxes.append(object_box)
        top, left = min(b[0] for b in boxes), min(b[1] for b in boxes)
        bottom, right = max(b[2] for b in boxes), max(b[3] for b in boxes)
        centre_r, centre_c = (top + bottom) / 2, (left + right) / 2
        half_h, half_w = ZOOM_EXPANSION * (bottom - top) / 2, ZOOM_EXPANSION * (right - left) / 2
        side = max(2 * max(half_h, half_w), self.input_size // 2)
        if side > self.max_side:  # wider than the largest window: keep the newest positive click in sight
            side, centre_r, centre_c = self.max_side, positives[-1].row, positives[-1].col
        zoom = self._square(centre_r, centre_c, math.ceil(side))
        expanded_top, expanded_left = max(0.0, centre_r - half_h), max(0.0, centre_c - half_w)
        expanded = Window(expanded_left, expanded_top,
                          min(self.raster.width, centre_c + half_w) - expanded_left,
                          min(self.raster.height, centre_r + half_h) - expanded_top)
        if _holds(current, expanded) and max(current.width, current.height) <= ZOOM_KEEP * max(zoom.width, zoom.height):
            return current
        return zoom

    def _grown_window(self, result: ObjectMask) -> Window:
        """A window ``GROWTH`` times larger, centred on the object's part inside the old one (on the
        clicks while the object is empty)."""
        box = self._object_box(result)
        if box is not None:
            centre_r, centre_c = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        else:
            centre_r = np.mean([c.row for c in result.clicks])
            centre_c = np.mean([c.col for c in result.clicks])
        side = min(self.max_side, GROWTH * int(max(result.window.width, result.window.height)))
        return self._square(centre_r, centre_c, side)

    def _square(self, centre_row: float, centre_col: float, side: int) -> Window:
        """A ``side`` square window centred as asked, shifted (then clipped) to lie in the scene."""
        height, width = self.raster.height, self.raster.width
        row = int(np.clip(round(centre_row - side / 2), 0, max(0, height - side)))
        col = int(np.clip(round(centre_col - side / 2), 0, max(0, width - side)))
        return Window(col, row, min(side, width - col), min(side, height - row))

    def _can_grow(self, window: Window) -> bool:
        covers_scene = window.width >= self.raster.width and window.height >= self.raster.height
        return not covers_scene and max(window.width, window.height) < self.max_side

    def _object_part(self, result: ObjectMask, mask: np.ndarray | None = None) -> np.ndarray:
        """The connected parts of ``mask`` (the result's own by default) that hold a positive click
        (the object, not stray specks)."""
        labels, _ = ndimage.label(result.mask if mask is None else mask)
        rows, cols = self._positive_click_pixels(result)
        picked = {labels[r, c] for r, c in zip(rows, cols) if labels[r, c]}
        return np.isin(labels, list(picked))

    def _object_box(self, result: ObjectMask) -> tuple[float, float, float, float] | None:
        """(top, left, bottom, right) of the object's part in scene pixels; None when it is empty."""
        rows, cols = np.nonzero(self._object_part(result))
        if not rows.size:
            return None
        (scale_r, scale_c), window = result.scale, result.window
        return (window.row_off + rows.min() * scale_r, window.col_off + cols.min() * scale_c,
                window.row_off + (rows.max() + 1) * scale_r, window.col_off + (cols.max() + 1) * scale_c)

    def _object_area(self, result: ObjectMask) -> float:
        """The object's area in scene pixels (mask pixels times the decimation)."""
        scale_r, scale_c = result.scale
        return float(self._object_part(result).sum()) * scale_r * scale_c

    @staticmethod
    def _positive_click_pixels(result: ObjectMask) -> tuple[np.ndarray, np.ndarray]:
        """Mask (rows, cols) of the positive clicks that fall inside the result's window."""
        scale_r, scale_c = result.scale
        height, width = result.probability.shape
        pixels = [
            (math.floor((click.row - result.window.row_off) / scale_r), math.floor((click.col - result.window.col_off) / scale_c))
            for click in result.clicks
            if click.positive
        ]
        inside = [(r, c) for r, c in pixels if 0 <= r < height and 0 <= c < width]
        return np.array([r for r, _ in inside], int), np.array([c for _, c in inside], int)

    def _touches_border(self, result: ObjectMask) -> bool:
        """Whether the object reaches a window side that is not also the scene's edge."""
        part = self._object_part(result)
        if not part.any():
            return False
        window = result.window
        sides = [
            (part[0, :].any(), window.row_off > 0),
            (part[-1, :].any(), window.row_off + window.height < self.raster.height),
            (part[:, 0].any(), window.col_off > 0),
            (part[:, -1].any(), window.col_off + window.width < self.raster.width),
        ]
        return any(touches and inside for touches, inside in sides)

    # -- inference ------------------------------------------------------------------------------
    def _replay(self, window: Window, clicks: tuple[SceneClick, ...]) -> ObjectMask:
        """All clicks on a fresh window, one model call each, the previous mask fed back."""
        result = None
        for count in range(1, len(clicks) + 1):
            result = self._predict(window, clicks[:count], result)
        return result

    def _predict(self, window: Window, clicks: tuple[SceneClick, ...], previous: ObjectMask | None) -> ObjectMask:
        """One model call for ``clicks`` on ``window`` (previous probability as the prior mask)."""
        image = self._set_image(window)
        scale_r, scale_c = image.scale
        model_clicks = [
            Click(y=(c.row - window.row_off) / scale_r, x=(c.col - window.col_off) / scale_c, positive=c.positive)
            for c in clicks
        ]
        same_window = previous is not None and previous.window == window
        if previous is None:
            prior = None
        elif same_window:
            prior = previous.probability
        else:
            prior = resample_probability(previous, image)
        self.predictor.roi = previous.zoom if same_window else None  # this object's crop, not another's
        probability = self.predictor.predict(model_clicks, prior).astype(np.float32, copy=False)
        return ObjectMask(probability, image.valid, image.window, image.transform, clicks, self.predictor.roi)

    def _set_image(self, window: Window) -> WindowImage:
        """Read ``window`` and hand it to the predictor unless it already holds it."""
        if self._image_window != window:
            self._image = self.raster.read(window, max_side=self.input_size)
            self.predictor.set_image(self._image.image)
            self._image_window = window
        return self._image


def resample_probability(previous: ObjectMask, image: WindowImage) -> np.ndarray:
    """``previous``'s probability on ``image``'s pixel grid (bilinear, the nearest old pixel within
    half a pixel of its window's edge; 0 outside its window)."""
    (old_r, old_c), (new_r, new_c) = previous.scale, image.scale
    offset = ((image.window.row_off - previous.window.row_off + 0.5 * new_r) / old_r - 0.5,
              (image.window.col_off - previous.window.col_off + 0.5 * new_c) / old_c - 0.5)
    prior = ndimage.affine_transform(previous.probability, (new_r / old_r, new_c / old_c), offset,
                                     output_shape=image.valid.shape, order=1, mode="nearest")
    height, width = prior.shape
    centre_rows = image.window.row_off + (np.arange(height) + 0.5) * new_r  # scene rows of the pixel centres
    centre_cols = image.window.col_off + (np.arange(width) + 0.5) * new_c
    old = previous.window
    inside_rows = (centre_rows >= old.row_off) & (centre_rows < old.row_off + old.height)
    inside_cols = (centre_cols >= old.col_off) & (centre_cols < old.col_off + old.width)
    return prior * np.outer(inside_rows, inside_cols)  # edge pixels extend the border, the rest is unknown: 0


def _holds(outer: Window, inner: Window) -> bool:
    return (outer.row_off <= inner.row_off and outer.col_off <= inner.col_off
            and inner.row_off + inner.height <= outer.row_off + outer.height
            and inner.col_off + inner.width <= outer.col_off + outer.width)


def _area(window: Window) -> float:
    return float(window.width * window.height)
