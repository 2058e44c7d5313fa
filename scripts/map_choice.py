"""A learned choice, per click, of one map among those the predictor's views and mirrors give.

Measured, not shipped (docs/training.md, "A learned choice among the views"). The card's
predictor runs every view (288 and 416 px, each also mirrored) and averages the maps; keeping the
best of them per click instead would save about one click of NoC@90 on held-out objects
("How much a choice among the views could save"). Here each candidate is scored from what the
predictor sees without ground truth (its probabilities, the clicks, the previous mask, its
agreement with the mean) by a linear model that ``fit_map_choice.py`` fits on click states of
held-out objects and ``view_choice_oracle.py learned`` runs in the click loop.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mst_geo.clicks.click import Click
from mst_geo.clicks.session import mask_iou
from mst_geo.clicks.simulator import PRED_THRESHOLD

MEAN_OF_ALL = "mean of all"

FEATURES = (
    "is mean of all", "is a view mean", "is mirrored", "is the largest view",
    "area fraction", "log area / mean's area", "IoU with the mean", "IoU with the previous mask",
    "confidence", "stability", "uncertain / area", "last click agrees", "clicks agreeing",
    "worst click",
)
"""What a candidate is scored on. A choice within one window only compares candidates, so
nothing that is the same for all of them (a bias, the click count) can count."""
STABILITY_CUTS = (0.4, 0.6)


def candidate_maps(mirrors: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
    """Every map a choice may keep: each view's maps (plain, mirrored), each view's mean, the mean
    of all (what ``Predictor._predict_window`` returns), last. ``mirrors`` holds each side's 1 or 2
    maps, as ``Predictor._predict_mirrors`` gives them."""
    maps: dict[str, np.ndarray] = {}
    for side, side_maps in mirrors.items():
        if len(side_maps) > 1:
            maps |= {f"{side} px{' mirrored' if k else ''}": m for k, m in enumerate(side_maps)}
        maps[f"{side} px mean"] = side_maps.mean(axis=0)
    maps[MEAN_OF_ALL] = np.mean([maps[f"{side} px mean"] for side in mirrors], axis=0, dtype=np.float32)
    return maps


def choice_features(maps: dict[str, np.ndarray], clicks: Sequence[Click], prev_window: np.ndarray,
                    offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """One row of ``FEATURES`` per candidate map of one window; ``clicks`` in image pixels,
    ``offset`` the window's (top, left) in the image, ``prev_window`` the previous mask over it."""
    mean_mask = maps[MEAN_OF_ALL] > PRED_THRESHOLD
    previous = prev_window > PRED_THRESHOLD
    largest = max(int(name.split(" ")[0]) for name in maps if name != MEAN_OF_ALL)
    height, width = mean_mask.shape
    inside = [c for c in clicks if 0 <= c.y - offset[0] < height and 0 <= c.x - offset[1] < width]
    rows = []
    for name, probabilities in maps.items():
        mask = probabilities > PRED_THRESHOLD
        area = np.count_nonzero(mask)
        agreement = [
            probabilities[int(c.y - offset[0]), int(c.x - offset[1])] if c.positive
            else 1 - probabilities[int(c.y - offset[0]), int(c.x - offset[1])]
            for c in inside
        ]
        last_agrees = agreement[-1] if inside and inside[-1] is clicks[-1] else 0.5
        low, high = (np.count_nonzero(probabilities > cut) for cut in STABILITY_CUTS)
        rows.append([
            name == MEAN_OF_ALL,
            name.endswith("px mean"),
            name.endswith("mirrored"),
            name != MEAN_OF_ALL and int(name.split(" ")[0]) == largest,
            area / mask.size,
            np.log((area + 1) / (np.count_nonzero(mean_mask) + 1)),
            mask_iou(mask, mean_mask),
            mask_iou(mask, previous),
            float(np.abs(2 * probabilities - 1).mean()),
            (high + 1) / (low + 1),  # smoothed: an empty map is stable, not undefined
            np.count_nonzero((probabilities > 0.3) & (probabilities < 0.7)) / (area + 1),
            last_agrees,
            float(np.mean([a > 0.5 for a in agreement])) if agreement else 1.0,
            float(min(agreement)) if agreement else 1.0,
        ])
    return np.asarray(rows, dtype=np.float64)


def chosen_map(maps: dict[str, np.ndarray], features: np.ndarray, weights: Sequence[float]) -> str:
    """The name of the candidate with the best linear score (``weights`` over ``FEATURES``); a tie
    keeps the mean of all, as the other rules do."""
    scores = dict(zip(maps, features @ np.asarray(weights, dtype=np.float64)))
    return max(maps, key=lambda name: (scores[name], name == MEAN_OF_ALL))


def read_weights(path: Path) -> list[float]:
    """Weights ``fit_map_choice.py fit --save`` wrote, refused when they score other features."""
    try:
        saved = json.loads(path.read_text())
        features, weights = tuple(saved["features"]), [float(w) for w in saved["weights"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        sys.exit(f"{path}: not weights written by fit_map_choice.py fit --save ({error})")
    if features != FEATURES or len(weights) != len(FEATURES):
        sys.exit(f"{path}: weights of other features than map_choice.py's {len(FEATURES)}: refit them")
    return weights
