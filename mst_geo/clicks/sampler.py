"""Training clicks: RITM's multi-point sampler and the iterative "next click from the model's error".

Facts from RITM (``data/points_sampler.py``, ``engine/trainer.py``), written here anew: up to
24 points; the number of positives is 1 + a count drawn with probabilities decaying by γ = 0.8,
positives come from the object mask eroded 3 times (with p 0.9); negatives (0..24, same decay)
each come from one of three regions — the background (p 0.1), the other objects of the image
(p 0.4) or a ring around the object (p 0.5); regions that are empty are skipped. The iterative
training click is drawn at random among error pixels farther than half the maximum error distance
from the error-region boundary (the eval clicker instead takes the single farthest pixel).

Not from RITM: with ``first_click_prob`` a sample starts instead from the state every benchmark
and every analyst starts from, one positive click in the object's core (placed by that same
iterative rule on an empty prediction) and no negatives. The multi-point draw gives exactly one
positive and no negative click to only ~4 % of samples, and the no-grad rounds add clicks on top,
so without it the model rarely trains on its own first click.

Everything random takes a ``numpy.random.Generator`` so a training sample is a pure function of
its seed, which is what makes ``mst-geo train --resume`` reproduce the same next batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mst_geo.clicks.click import Click
from mst_geo.clicks.simulator import error_distances

_KERNEL3 = np.ones((3, 3), np.uint8)


def decaying_probs(count: int, gamma: float) -> np.ndarray:
    """Probabilities ∝ γ^k for k = 0..count-1 (RITM's count distribution)."""
    weights = gamma ** np.arange(count, dtype=np.float64)
    return weights / weights.sum()


def _random_pixels(region: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` pixel (y, x) positions drawn uniformly with replacement from a boolean region."""
    ys, xs = np.nonzero(region)
    picks = rng.integers(0, len(ys), size=count)
    return np.stack([ys[picks], xs[picks]], axis=1)


@dataclass(frozen=True)
class MultiPointSampler:
    """Samples the first clicks of a training sample (positives and negatives) from its masks."""

    max_points: int = 24
    gamma: float = 0.8
    erode_prob: float = 0.9
    erode_iters: int = 3
    negative_bg_prob: float = 0.1
    negative_other_prob: float = 0.4
    negative_border_prob: float = 0.5
    border_expand_ratio: float = 0.1
    first_click_prob: float = 0.0

    def border_ring(self, mask: np.ndarray) -> np.ndarray:
        """Pixels within ~10 % of the object's size around it (the 'border' negative region)."""
        radius = int(np.ceil(self.border_expand_ratio * np.sqrt(mask.sum())))
        grown = cv2.dilate(mask.astype(np.uint8), _KERNEL3, iterations=max(radius, 1)) > 0
        return grown & ~mask

    def positive_region(self, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The object, eroded with probability ``erode_prob`` unless erosion would empty it."""
        if rng.random() < self.erode_prob:
            eroded = cv2.erode(mask.astype(np.uint8), _KERNEL3, iterations=self.erode_iters) > 0
            if eroded.any():
                return eroded
        return mask

    def sample(
        self,
        mask: np.ndarray,
        rng: np.random.Generator,
        others: np.ndarray | None = None,
        ignore: np.ndarray | None = None,
    ) -> np.ndarray:
        """Clicks for one object as a float32 ``[n, 3]`` array of rows ``(y, x, label)``.

        ``mask``: the target object (bool/0-1, HxW, must be non-empty); ``others``: union of the
        other objects of the image (their pixels are candidate negatives); ``ignore``: pixels
        where no click may fall. Labels: 1 positive, 0 negative; 1 <= n <= ``max_points``.
        """
        target = np.asarray(mask).astype(bool)
        if not target.any():
            raise ValueError("MultiPointSampler.sample needs a non-empty mask")
        if self.first_click_prob > 0 and rng.random() < self.first_click_prob:
            return self.core_click(target, rng, ignore)
        allowed = np.ones_like(target) if ignore is None else ~np.asarray(ignore).astype(bool)
        positives = self.positive_region(target, rng) & allowed
        if not positives.any():
            positives = target
        n_pos = 1 + rng.choice(self.max_points, p=decaying_probs(self.max_points, self.gamma))
        n_pos = min(n_pos, self.max_points)
        n_neg = rng.choice(self.max_points + 1, p=decaying_probs(self.max_points + 1, self.gamma))
        n_neg = min(n_neg, self.max_points - n_pos)

        rows = [np.concatenate([_random_pixels(positives, n_pos, rng), np.ones((n_pos, 1))], 1)]
        regions, weights = self._negative_regions(target, others, allowed)
        if n_neg and regions:
            weights = np.asarray(weights) / np.sum(weights)
            chosen = rng.choice(len(regions), size=n_neg, p=weights)
            for which in np.unique(chosen):
                count = int((chosen == which).sum())
                pixels = _random_pixels(regions[which], count, rng)
                rows.append(np.concatenate([pixels, np.zeros((count, 1))], 1))
        points = np.concatenate(rows).astype(np.float32)
        return points[rng.permutation(len(points))] if len(points) > 1 else points

    def core_click(self, target: np.ndarray, rng: np.random.Generator,
                   ignore: np.ndarray | None = None) -> np.ndarray:
        """One positive click deep inside the object, as a ``[1, 3]`` array (a first click)."""
        nothing_predicted = np.zeros(target.shape, np.float32)
        click = next_training_click(target, nothing_predicted, rng, ignore)
        if click is None:  # the whole object is ignored: any of its pixels
            click = next_training_click(target, nothing_predicted, rng)
        return np.array([[click.y, click.x, 1.0]], np.float32)

    def _negative_regions(
        self, target: np.ndarray, others: np.ndarray | None, allowed: np.ndarray
    ) -> tuple[list[np.ndarray], list[float]]:
        """The non-empty negative regions with their probabilities (renormalised by the caller)."""
        candidates = [
            (~target, self.negative_bg_prob),
            (None if others is None else np.asarray(others).astype(bool) & ~target,
             self.negative_other_prob),
            (self.border_ring(target), self.negative_border_prob),
        ]
        regions, weights = [], []
        for region, weight in candidates:
            if region is None or weight <= 0:
                continue
            region = region & allowed
            if region.any():
                regions.append(region)
                weights.append(weight)
        return regions, weights


def next_training_click(
    gt: np.ndarray,
    prob: np.ndarray,
    rng: np.random.Generator,
    ignore: np.ndarray | None = None,
) -> Click | None:
    """RITM's iterative-training click: a random pixel of the larger error region, deeper than half
    its maximum distance to the region's edge; positive on a miss, negative on a false alarm.

    ``prob`` is binarised at the eval clicker's threshold (``PRED_THRESHOLD``). Returns None when
    the prediction has no error (nothing left to correct). Distances are OpenCV's 5x5-mask
    approximation (within 2 %), not RITM's exact ones: placing these clicks took 37 % of an H200
    training step (``trainer.profile``, 2026-11-28); with the approximation a round of 64 clicks
    took 37 ms instead of 48 and a step 180 ms instead of 186 (one 48 s run each, same machine).
    """
    fn_dist, fp_dist = error_distances(np.asarray(gt).astype(bool), np.asarray(prob),
                                       None if ignore is None else np.asarray(ignore).astype(bool),
                                       exact=False)
    fn_max, fp_max = float(fn_dist.max()), float(fp_dist.max())
    if max(fn_max, fp_max) <= 0:
        return None
    positive = fn_max > fp_max
    dist = fn_dist if positive else fp_dist
    ys, xs = np.nonzero(dist > max(fn_max, fp_max) / 2.0)
    pick = rng.integers(len(ys))
    return Click(y=float(ys[pick]), x=float(xs[pick]), positive=bool(positive))
