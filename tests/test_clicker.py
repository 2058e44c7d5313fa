"""Where the RITM evaluation clicker puts its clicks, on small hand-made masks and a real one."""

from __future__ import annotations

import cv2
import numpy as np

from mst_geo.clicks import Click
from mst_geo.clicks.simulator import next_click


def _square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_first_click_is_the_centre_of_an_odd_square():
    gt = _square(11, 2, 3, 5)  # rows 2..6, cols 3..7: centre (4, 5)
    click = next_click(gt, np.zeros_like(gt))
    assert click == Click(4, 5, True)


def test_ties_go_to_the_first_pixel_in_row_major_order():
    gt = _square(10, 2, 2, 4)  # even side: four equally deep centre pixels (3..4, 3..4)
    assert next_click(gt, np.zeros_like(gt)) == Click(3, 3, True)


def test_image_border_counts_as_boundary():
    # Object touching the left border: without the 1 px padding the interior-most point would
    # hug the border; with it, column 1 of a 3-wide band is as deep as it gets.
    gt = np.zeros((9, 12), dtype=bool)
    gt[:, :3] = True
    click = next_click(gt, np.zeros_like(gt))
    # unpadded, column 0 would be 3 px from the nearest background; padded, rows 1..7 of
    # column 1 are the deepest (2 px) and row 1 comes first
    assert click == Click(1, 1, True)


def test_false_positive_larger_gives_negative_click():
    gt = _square(20, 2, 2, 4)
    pred = gt | _square(20, 10, 10, 7)  # object found, plus a 7x7 false blob centred at (13, 13)
    click = next_click(gt, pred)
    assert click == Click(13, 13, False)


def test_false_negative_larger_gives_positive_click():
    gt = _square(20, 2, 2, 9)  # 9x9 object, prediction covers only its top-left corner
    pred = np.zeros_like(gt)
    pred[2:4, 2:4] = True
    pred[15:18, 15:18] = True  # small false positive
    click = next_click(gt, pred)
    assert click.positive and gt[click.y, click.x] and not pred[click.y, click.x]


def test_tie_between_errors_gives_negative_click():
    gt = _square(20, 1, 1, 3)
    pred = _square(20, 10, 10, 3)  # same-size miss and false blob: equal depths
    assert next_click(gt, pred) == Click(11, 11, False)


def test_probabilities_are_thresholded_at_0_49():
    gt = _square(9, 2, 2, 5)
    pred = np.full(gt.shape, 0.45, dtype=np.float32)  # below 0.49: nothing predicted
    assert next_click(gt, pred).positive
    pred[:] = 0.5  # everything predicted: the background is one big false positive
    assert not next_click(gt, pred).positive


def test_clicked_pixels_are_never_chosen_again():
    gt = _square(11, 2, 3, 5)
    first = next_click(gt, np.zeros_like(gt))
    second = next_click(gt, np.zeros_like(gt), clicked=[first])
    # the next deepest pixels form the ring around the centre; the first in row-major order wins
    assert second == Click(3, 4, True)


def test_ignore_band_is_never_clicked_and_255_means_ignore():
    mask = np.zeros((12, 12), dtype=np.uint8)
    mask[2:10, 2:10] = 255  # ignore ring around the object
    mask[4:8, 4:8] = 1
    click = next_click(mask, np.zeros(mask.shape, dtype=bool))
    assert mask[click.y, click.x] == 1
    # An all-wrong prediction outside the object: errors inside the ignore band do not count,
    # so the false positive region is only the true background ring (2 px wide at most).
    pred = np.ones(mask.shape, dtype=bool)
    pred[4:8, 4:8] = False
    click = next_click(mask, pred)
    assert mask[click.y, click.x] == 1 and click.positive


def test_first_click_lands_inside_a_real_grabcut_object(iseg_root):
    raw = cv2.imread(str(iseg_root / "GrabCut" / "boundary_GT" / "106024.bmp"), cv2.IMREAD_GRAYSCALE)
    gt = raw > 128
    click = next_click(gt, np.zeros_like(gt), ignore=raw == 128)
    depth = cv2.distanceTransform(np.pad(gt.astype(np.uint8), 1), cv2.DIST_L2, 0)[1:-1, 1:-1]
    assert gt[click.y, click.x] and depth[click.y, click.x] == depth.max()
