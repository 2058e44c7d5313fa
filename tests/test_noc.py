"""NoC / NoF / mIoU metrics: what the numbers count, including objects that never get there."""

from __future__ import annotations

import numpy as np
import pytest

from mst_geo.bench.noc import reached, summarize
from mst_geo.clicks.session import clicks_to_reach, mask_iou, threshold_key


def test_iou_leaves_out_the_ignore_band():
    gt = np.zeros((4, 4), dtype=bool)
    gt[1:3, 1:3] = True  # 4 object pixels
    pred = np.zeros_like(gt)
    pred[1:3, 1:4] = True  # 4 hits + 2 false positives in column 3
    assert mask_iou(gt, pred) == pytest.approx(4 / 6)
    ignore = np.zeros_like(gt)
    ignore[:, 3] = True  # column 3 is the unknown band: its false positives do not count
    assert mask_iou(gt, pred, ignore) == pytest.approx(1.0)
    assert mask_iou(np.zeros_like(gt), np.zeros_like(gt)) == 1.0


def test_noc_is_the_first_click_reaching_the_threshold():
    ious = [0.5, 0.84, 0.86, 0.83, 0.91, 0.96]
    assert clicks_to_reach(ious, 0.85, 20) == 3
    assert clicks_to_reach(ious, 0.90, 20) == 5
    assert clicks_to_reach(ious, 0.95, 20) == 6
    assert clicks_to_reach([0.9], 0.9, 20) == 1  # ">=" counts


def test_never_reached_counts_as_max_clicks():
    ious = [0.1 * i / 20 for i in range(20)]
    assert clicks_to_reach(ious, 0.85, 20) == 20
    assert not reached(ious, 0.85, 20)
    # reaching it exactly at the last click is also NoC 20, but it is reached
    assert clicks_to_reach([0.0] * 19 + [0.9], 0.85, 20) == 20
    assert reached([0.0] * 19 + [0.9], 0.85, 20)
    # clicks beyond max_clicks are not looked at
    assert clicks_to_reach([0.0] * 5 + [0.99], 0.85, 5) == 5


def test_summary_averages_noc_counts_nof_and_builds_the_miou_curve():
    curves = [
        [0.9, 0.95, 0.97],  # NoC@85 1, NoC@95 2
        [0.2, 0.6, 0.86],  # NoC@85 3, NoC@95 never -> 3
        [0.1, 0.2, 0.2],  # never reaches 85
    ]
    summary = summarize(curves, [0.85, 0.95], max_clicks=3)
    assert summary["n"] == 3
    assert summary["noc"] == {"85": pytest.approx((1 + 3 + 3) / 3), "95": pytest.approx((2 + 3 + 3) / 3)}
    assert summary["nof"] == {"85": 1, "95": 2}
    assert summary["miou"] == pytest.approx(
        [(0.9 + 0.2 + 0.1) / 3, (0.95 + 0.6 + 0.2) / 3, (0.97 + 0.86 + 0.2) / 3]
    )


def test_threshold_keys():
    assert [threshold_key(t) for t in (0.85, 0.9, 0.95, 0.7)] == ["85", "90", "95", "70"]
