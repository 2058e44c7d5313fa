"""One simulated user session on one object, as the RITM protocol runs it: the clicker places
each click from the current error, the method predicts from all clicks so far with its previous
output fed back, and the IoU after each click is recorded; and how many clicks reached an IoU.

Both the benchmark (``bench.loop``) and validation during training (``train.module``) run it, so
the NoC a training run logs is the one ``mst-geo bench`` reports for the same weights and objects.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from mst_geo.clicks.click import Click
from mst_geo.clicks.simulator import binarize, next_click, split_mask
from mst_geo.data.instance import Instance


class ClickMethod(Protocol):
    """Anything that segments from clicks: ``clicks.predictor.Predictor`` or a baseline."""

    def set_image(self, image: np.ndarray) -> None: ...

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None) -> np.ndarray: ...


def mask_iou(gt: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """IoU of two boolean maps, leaving out ``ignore`` pixels; 1.0 when both are empty."""
    if ignore is not None:
        gt, pred = gt & ~ignore, pred & ~ignore
    union = np.count_nonzero(gt | pred)
    return 1.0 if union == 0 else float(np.count_nonzero(gt & pred) / union)


def evaluate_instance(method: ClickMethod, instance: Instance, max_clicks: int) -> tuple[list[float], list[float], list[Click]]:
    """Run ``max_clicks`` simulated clicks on one instance: (IoU per click, seconds per click, clicks)."""
    gt, ignore = split_mask(instance.mask)
    method.set_image(instance.image)
    clicks: list[Click] = []
    ious: list[float] = []
    seconds: list[float] = []
    prediction = np.zeros(gt.shape, dtype=bool)
    prev_mask: np.ndarray | None = None
    for _ in range(max_clicks):
        clicks.append(next_click(gt, prediction, ignore, clicks))
        start = time.perf_counter()
        prev_mask = method.predict(clicks, prev_mask)
        seconds.append(time.perf_counter() - start)
        prediction = binarize(prev_mask)
        ious.append(mask_iou(gt, prediction, ignore))
    return ious, seconds, clicks


def clicks_to_reach(ious: Sequence[float], threshold: float, max_clicks: int) -> int:
    """NoC: the 1-based index of the first IoU >= ``threshold`` within ``max_clicks``, else ``max_clicks``."""
    for index, iou in enumerate(ious[:max_clicks]):
        if iou >= threshold:
            return index + 1
    return max_clicks


def threshold_key(threshold: float) -> str:
    """``0.85`` -> ``"85"``, ``0.855`` -> ``"85.5"``: the column suffix used in tables and JSON
    (NoC@85); six significant digits, not a whole percent, so only thresholds equal to that
    share a column (``bench.noc.check_thresholds`` refuses them)."""
    return f"{round(threshold * 100, 6):g}"
