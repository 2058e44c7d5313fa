"""The training click sampler and the iterative training click, on real COCO_MVal / CCP masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mst_geo.clicks.sampler import MultiPointSampler, decaying_probs, next_training_click
from mst_geo.clicks.simulator import interior_distance


def _read_mask(path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert mask is not None, path
    return mask > 0


@pytest.fixture(scope="module")
def coco_masks(iseg_root):
    paths = sorted((iseg_root / "COCO_MVal" / "gt").glob("*.png"))[:6]
    return [_read_mask(p) for p in paths]


@pytest.fixture(scope="module")
def ccp_person_and_parts(iseg_root):
    """A CCP person (mask 0) and the union of its garments (the other objects)."""
    paths = sorted((iseg_root / "CCP" / "gt").glob("0005_*.png"))
    masks = [_read_mask(p) for p in paths]
    return masks[1], masks[0] & ~masks[1] | np.any(masks[2:], axis=0)


def test_decaying_probs_follow_gamma():
    probs = decaying_probs(24, 0.8)
    assert probs.sum() == pytest.approx(1.0)
    assert probs[1] / probs[0] == pytest.approx(0.8)
    assert len(probs) == 24


def test_positives_inside_negatives_outside_counts_bounded(coco_masks):
    sampler = MultiPointSampler()
    rng = np.random.default_rng(0)
    n_pos_seen, n_neg_seen = [], []
    for mask in coco_masks:
        for _ in range(30):
            points = sampler.sample(mask, rng)
            assert 1 <= len(points) <= 24
            ys, xs, labels = points[:, 0].astype(int), points[:, 1].astype(int), points[:, 2]
            assert (labels == 1).sum() >= 1
            assert mask[ys[labels == 1], xs[labels == 1]].all()
            assert not mask[ys[labels == 0], xs[labels == 0]].any()
            n_pos_seen.append(int((labels == 1).sum()))
            n_neg_seen.append(int((labels == 0).sum()))
    # geometric counts: one positive is the most common, many positives happen but are rare
    assert np.mean(np.array(n_pos_seen) == 1) > 0.15
    assert max(n_pos_seen) > 3 and np.mean(n_pos_seen) < 8
    assert np.mean(np.array(n_neg_seen) == 0) > 0.1 and max(n_neg_seen) > 2


def test_negatives_prefer_other_objects_and_border(ccp_person_and_parts):
    target, others = ccp_person_and_parts
    sampler = MultiPointSampler(negative_bg_prob=0.0, negative_border_prob=0.0)
    rng = np.random.default_rng(1)
    negatives = np.concatenate([p[p[:, 2] == 0] for p in (sampler.sample(target, rng, others)
                                                          for _ in range(200))])
    assert len(negatives) > 50
    assert others[negatives[:, 0].astype(int), negatives[:, 1].astype(int)].all()

    border_only = MultiPointSampler(negative_bg_prob=0.0, negative_other_prob=0.0)
    ring = border_only.border_ring(target)
    negatives = np.concatenate([p[p[:, 2] == 0] for p in (border_only.sample(target, rng)
                                                          for _ in range(200))])
    assert ring[negatives[:, 0].astype(int), negatives[:, 1].astype(int)].all()
    assert not (ring & target).any()


def _core_single_share(sampler: MultiPointSampler, masks: list[np.ndarray], draws: int) -> float:
    """Share of samples that are one positive click deeper than half the object's maximum depth."""
    rng = np.random.default_rng(4)
    core = 0
    for mask in masks:
        depth = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 0)[1:-1, 1:-1]
        for _ in range(draws):
            points = sampler.sample(mask, rng)
            y, x = points[0, :2].astype(int)
            core += len(points) == 1 and points[0, 2] == 1 and depth[y, x] >= depth.max() / 2
    return core / (len(masks) * draws)


def test_first_click_starts_are_one_core_positive(coco_masks):
    """With first_click_prob a share of samples starts as the benchmark does, one positive in the
    object's core; RITM's multi-point draws alone rarely do."""
    assert _core_single_share(MultiPointSampler(), coco_masks, 40) < 0.05
    assert 0.4 < _core_single_share(MultiPointSampler(first_click_prob=0.5), coco_masks, 40) < 0.6


def test_ignore_pixels_never_clicked(coco_masks):
    mask = coco_masks[0]
    ignore = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    ignore &= ~(cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0)
    rng = np.random.default_rng(2)
    for _ in range(50):
        points = MultiPointSampler().sample(mask, rng, ignore=ignore)
        assert not ignore[points[:, 0].astype(int), points[:, 1].astype(int)].any()


def test_same_seed_same_clicks(coco_masks):
    first = MultiPointSampler().sample(coco_masks[1], np.random.default_rng(7))
    again = MultiPointSampler().sample(coco_masks[1], np.random.default_rng(7))
    np.testing.assert_array_equal(first, again)


def test_next_training_click_corrects_the_larger_error(coco_masks):
    mask = coco_masks[2]
    rng = np.random.default_rng(3)
    # an empty prediction misses the object: a positive click deep inside it
    click = next_training_click(mask, np.zeros(mask.shape, np.float32), rng)
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 0)[1:-1, 1:-1]
    assert click.positive and mask[int(click.y), int(click.x)]
    assert dist[int(click.y), int(click.x)] > 0.98 * dist.max() / 2  # 5x5-mask distances: within 2 %
    # a prediction covering far too much: a negative click in the false-positive area
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(np.float32)
    click = next_training_click(mask, grown, rng)
    assert not click.positive and not mask[int(click.y), int(click.x)]
    assert grown[int(click.y), int(click.x)] == 1
    # a perfect prediction leaves nothing to correct
    assert next_training_click(mask, mask.astype(np.float32), rng) is None


def test_training_distances_approximate_the_exact_ones(coco_masks):
    """Training clicks use OpenCV's 5x5-mask distances (3-4x faster): within 2 % of the exact ones,
    which the bench's clicker keeps, and zero exactly where the exact ones are."""
    for mask in coco_masks:
        exact, approx = interior_distance(mask), interior_distance(mask, exact=False)
        inside = exact > 0
        np.testing.assert_array_equal(approx > 0, inside)
        assert np.max(np.abs(approx[inside] - exact[inside]) / exact[inside]) < 0.02
        assert not np.array_equal(approx, exact)


def test_the_bench_clicks_on_exact_distances_and_training_on_the_approximation(coco_masks, monkeypatch):
    """RITM's protocol: the eval clicker's first click is the exact distance transform's first
    maximum (on masks 2, 3 and 5 the 5x5 mask's maximum lies one to six pixels away); only the
    training clicks take the approximation."""
    from mst_geo.clicks import sampler
    from mst_geo.clicks.simulator import error_distances, next_click

    for index in (2, 3, 5):
        mask = coco_masks[index]
        exact, approx = interior_distance(mask), interior_distance(mask, exact=False)
        first = np.unravel_index(np.argmax(exact), exact.shape)
        assert first != np.unravel_index(np.argmax(approx), approx.shape)
        click = next_click(mask, np.zeros(mask.shape, np.float32))
        assert (click.y, click.x) == first
    asked = []
    monkeypatch.setattr(sampler, "error_distances", lambda *args, **kwargs: asked.append(kwargs) or error_distances(*args, **kwargs))
    next_training_click(coco_masks[2], np.zeros(coco_masks[2].shape, np.float32), np.random.default_rng(0))
    assert asked == [{"exact": False}]


def test_next_training_click_is_random_among_deep_error_pixels(coco_masks):
    mask = coco_masks[3]
    empty = np.zeros(mask.shape, np.float32)
    picks = {(c.y, c.x) for c in (next_training_click(mask, empty, np.random.default_rng(s))
                                  for s in range(20))}
    assert len(picks) > 5
