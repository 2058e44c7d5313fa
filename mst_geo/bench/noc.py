"""NoC metrics of the RITM protocol: IoU with an ignore band, clicks-to-IoU, and their summaries.

NoC@k is the first click whose IoU reaches k, or ``max_clicks`` when it is never reached.
NoF@k counts the objects that never reach k (DESIGN.md "Metrics"); note that RITM's own ">=20"
column also counts objects that reach k exactly at the last click.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mask_iou(gt: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """IoU of two boolean maps, leaving out ``ignore`` pixels; 1.0 when both are empty."""
    if ignore is not None:
        gt, pred = gt & ~ignore, pred & ~ignore
    union = np.count_nonzero(gt | pred)
    return 1.0 if union == 0 else float(np.count_nonzero(gt & pred) / union)


def clicks_to_reach(ious: Sequence[float], threshold: float, max_clicks: int) -> int:
    """NoC: the 1-based index of the first IoU >= ``threshold`` within ``max_clicks``, else ``max_clicks``."""
    for index, iou in enumerate(ious[:max_clicks]):
        if iou >= threshold:
            return index + 1
    return max_clicks


def reached(ious: Sequence[float], threshold: float, max_clicks: int) -> bool:
    """Whether any of the first ``max_clicks`` IoUs reaches ``threshold``."""
    return any(iou >= threshold for iou in ious[:max_clicks])


def summarize(
    iou_curves: Sequence[Sequence[float]], thresholds: Sequence[float], max_clicks: int
) -> dict:
    """Mean NoC and NoF per threshold, plus mIoU after each click, over the given instances.

    Every curve holds at least ``max_clicks`` IoUs. Keys: ``n``, ``noc`` and ``nof``
    ({"85": ...}), ``miou`` (list).
    """
    if not iou_curves:
        return {"n": 0, "noc": {}, "nof": {}, "miou": []}
    curves = np.array([list(curve[:max_clicks]) for curve in iou_curves])
    return {
        "n": len(iou_curves),
        "noc": {
            threshold_key(t): float(np.mean([clicks_to_reach(c, t, max_clicks) for c in iou_curves]))
            for t in thresholds
        },
        "nof": {
            threshold_key(t): int(sum(not reached(c, t, max_clicks) for c in iou_curves))
            for t in thresholds
        },
        "miou": curves.mean(axis=0).tolist(),
    }


def threshold_key(threshold: float) -> str:
    """``0.85`` -> ``"85"``: the column suffix used in tables and JSON (NoC@85)."""
    return f"{round(threshold * 100):d}"
