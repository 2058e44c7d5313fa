"""Classical click-to-mask methods, run in the same bench on the same clicks as the model.

Each exposes the Predictor's two methods (``set_image``, ``predict(clicks, prev_mask)``), so the
bench loop treats every method alike. Clicks become small seed disks (radius 5 px, as the
model's click disks); methods that need background seeds and have no negative click yet take
the image border as background (most benchmark objects do not touch it; the first negative
click replaces that guess).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from skimage.filters import sobel
from skimage.segmentation import random_walker, watershed

from mst_geo.clicks.click import Click
from mst_geo.clicks.simulator import PRED_THRESHOLD
from mst_geo.errors import MSTGeoError

SEED_RADIUS = 5
FOREGROUND, BACKGROUND = 1, 2


def as_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 from uint8 or float (0..1) RGB, the two forms the predictor contract allows."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def seed_map(shape: tuple[int, int], clicks: Sequence[Click], radius: int = SEED_RADIUS) -> np.ndarray:
    """int32 HxW: FOREGROUND / BACKGROUND disks around positive / negative clicks, 0 elsewhere.

    Later clicks are drawn over earlier ones, so a correction wins where disks overlap.
    """
    seeds = np.zeros(shape, dtype=np.int32)
    for click in clicks:
        label = FOREGROUND if click.positive else BACKGROUND
        cv2.circle(seeds, (int(click.x), int(click.y)), radius, label, thickness=-1)
    return seeds


def with_border_background(seeds: np.ndarray) -> np.ndarray:
    """Seeds with the one-pixel image border as background while no negative click exists."""
    if (seeds == BACKGROUND).any():
        return seeds
    seeded = seeds.copy()
    border = np.ones(seeds.shape, dtype=bool)
    border[1:-1, 1:-1] = False
    seeded[border & (seeds == 0)] = BACKGROUND
    return seeded


class ClickBaseline:
    """Holds the image; subclasses turn clicks (and the previous mask) into a probability map."""

    name = "baseline"

    def __init__(self) -> None:
        self.image: np.ndarray | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Keep the RGB image the next ``predict`` calls refer to."""
        self.image = as_uint8_rgb(image)

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None) -> np.ndarray:
        """float32 HxW foreground probability for the clicks so far."""
        if self.image is None:
            raise RuntimeError("call set_image() before predict()")
        if not clicks:
            return np.zeros(self.image.shape[:2], dtype=np.float32)
        return self._predict(self.image, list(clicks), prev_mask).astype(np.float32)

    def _predict(self, image: np.ndarray, clicks: list[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError


GRABCUT_SEED = 0


class GrabCutBaseline(ClickBaseline):
    """OpenCV GrabCut (colour GMMs + graph cut) with click disks as hard seeds.

    The "probably object" prior is the previous mask plus a disk of 1/8 of the shorter image side
    around each positive click (so a click far from the current mask can grow it); the rest is
    "probably background", and the border is background until a negative click arrives.
    OpenCV's global RNG (the GMMs' k-means start) is reseeded before every call, so an answer
    depends on its inputs only: a resumed or sharded bench gives the numbers of one whole run.
    """

    name = "grabcut"

    def __init__(self, iterations: int = 5, prior_fraction: float = 0.125) -> None:
        super().__init__()
        self.iterations = iterations
        self.prior_fraction = prior_fraction

    def _predict(self, image: np.ndarray, clicks: list[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        height, width = image.shape[:2]
        labels = np.full((height, width), cv2.GC_PR_BGD, dtype=np.uint8)
        radius = max(SEED_RADIUS, int(self.prior_fraction * min(height, width)))
        labels[seed_map((height, width), [c for c in clicks if c.positive], radius) == FOREGROUND] = cv2.GC_PR_FGD
        if prev_mask is not None:
            labels[prev_mask > PRED_THRESHOLD] = cv2.GC_PR_FGD
        seeds = with_border_background(seed_map((height, width), clicks))
        labels[seeds == FOREGROUND] = cv2.GC_FGD
        labels[seeds == BACKGROUND] = cv2.GC_BGD
        if not np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).any():
            return np.zeros((height, width))
        if not np.isin(labels, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():  # a tiny image the seeds cover: no
            return np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD))  # background to model (OpenCV would refuse)
        background_model = np.zeros((1, 65), np.float64)
        foreground_model = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(GRABCUT_SEED)
        cv2.grabCut(
            cv2.cvtColor(image, cv2.COLOR_RGB2BGR), labels, None,
            background_model, foreground_model, self.iterations, cv2.GC_INIT_WITH_MASK,
        )
        return np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD))


class RandomWalkerBaseline(ClickBaseline):
    """scikit-image random walker (Grady 2006): probability that a walker from each pixel
    reaches an object seed first, with edge weights from colour differences. Solved by
    multigrid (pyamg), about 3x faster than the Jacobi-preconditioned default here."""

    name = "random-walker"

    def __init__(self, beta: float = 130.0) -> None:
        super().__init__()
        self.beta = beta

    def _predict(self, image: np.ndarray, clicks: list[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        seeds = with_border_background(seed_map(image.shape[:2], clicks))
        if not (seeds == FOREGROUND).any():
            return np.zeros(image.shape[:2])
        if (seeds != 0).all():  # a tiny image the seeds cover: nothing to walk (scikit-image returns another shape)
            return (seeds == FOREGROUND).astype(np.float32)
        with warnings.catch_warnings():  # the multigrid solve overshoots [0, 1] by ~1e-3; clipped below
            warnings.filterwarnings("ignore", message="The probability range is outside")
            probabilities = random_walker(
                image.astype(np.float32) / 255.0, seeds, beta=self.beta, mode="cg_mg",
                channel_axis=-1, return_full_prob=True,
            )
        return np.clip(probabilities[FOREGROUND - 1], 0.0, 1.0)


class WatershedBaseline(ClickBaseline):
    """Marker-controlled watershed on the colour gradient: seeds flood the image and the object
    is what the positive seeds reach before the background seeds do."""

    name = "watershed"

    def _predict(self, image: np.ndarray, clicks: list[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        seeds = with_border_background(seed_map(image.shape[:2], clicks))
        smooth = cv2.GaussianBlur(image, (5, 5), 0).astype(np.float32) / 255.0
        gradient = np.max([sobel(smooth[..., channel]) for channel in range(3)], axis=0)
        return watershed(gradient, seeds) == FOREGROUND


class DiskBaseline(ClickBaseline):
    """Sanity row that ignores the image: a pixel is object if its nearest click is positive and
    lies within 1/10 of the shorter image side. Any real method should beat it."""

    name = "disk"

    def __init__(self, radius_fraction: float = 0.1) -> None:
        super().__init__()
        self.radius_fraction = radius_fraction

    def _predict(self, image: np.ndarray, clicks: list[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        height, width = image.shape[:2]
        ys, xs = np.mgrid[:height, :width]
        distances = np.stack([np.hypot(ys - c.y, xs - c.x) for c in clicks])
        nearest = distances.argmin(axis=0)
        positive = np.array([c.positive for c in clicks])[nearest]
        return positive & (distances.min(axis=0) <= self.radius_fraction * min(height, width))


BASELINES: dict[str, Callable[[], ClickBaseline]] = {
    cls.name: cls for cls in (GrabCutBaseline, RandomWalkerBaseline, WatershedBaseline, DiskBaseline)
}
"""Baseline name (as given to ``mst-geo bench noc --model``) -> constructor."""


def make_baseline(name: str) -> ClickBaseline:
    """A fresh baseline by name (``grabcut``, ``random-walker``, ``watershed``, ``disk``)."""
    try:
        return BASELINES[name]()
    except KeyError:
        raise MSTGeoError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}") from None
