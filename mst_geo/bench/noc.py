"""NoC summaries of the RITM protocol over many objects (one object's IoUs and NoC: ``clicks.session``).

NoC@k is the first click whose IoU reaches k, or ``max_clicks`` when it is never reached.
NoF@k counts the objects that never reach k (DESIGN.md "Metrics"); note that RITM's own ">=20"
column also counts objects that reach k exactly at the last click.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mst_geo.clicks.session import clicks_to_reach, threshold_key
from mst_geo.errors import MSTGeoError


def check_thresholds(thresholds: Sequence[float]) -> None:
    """Refuse IoU thresholds outside (0, 1], given twice (one column each in the tables), or none."""
    if not thresholds:
        raise MSTGeoError("--iou names no threshold (give e.g. 0.85,0.9,0.95)")
    if any(not 0 < t <= 1 for t in thresholds):
        raise MSTGeoError(f"--iou values must be in (0, 1], got {list(thresholds)}")
    keys = [threshold_key(t) for t in thresholds]
    if len(set(keys)) < len(keys):
        raise MSTGeoError(f"--iou gives a threshold twice: {', '.join(keys)} (percent)")


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
