"""Pseudo-objects from over-segmentation: they follow the image's edges, are connected, vary with
the generator and only with it, and enter training through ``data.pseudo_object_prob``."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from mst_geo.clicks.sampler import MultiPointSampler
from mst_geo.data.instance import read_rgb
from mst_geo.errors import MSTGeoError
from mst_geo.train.config import DataSection, load_train_config
from mst_geo.train.instances import build_split
from mst_geo.train.pseudo_objects import grow_region, over_segment, pseudo_object, segment_neighbours
from mst_geo.train.samples import ClickSampleSet, IsegObjects, SampleRecipe

COLOURS = np.array([[200, 40, 40], [40, 180, 60], [30, 60, 200], [230, 220, 60], [120, 120, 120], [20, 20, 20]],
                   np.uint8)


def patchwork(rows: int = 2, cols: int = 3, side: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An image of flat colour rectangles with mild noise, and the rectangle index of each pixel."""
    cells = np.arange(rows * cols).reshape(rows, cols)
    index = np.kron(cells, np.ones((side, side), np.int64))
    noise = np.random.default_rng(seed).normal(0, 3, index.shape + (3,))
    return np.clip(COLOURS[index] + noise, 0, 255).astype(np.uint8), index


def connected_parts(mask: np.ndarray) -> int:
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1  # as Felzenszwalb joins pixels


def test_neighbours_are_the_touching_segments():
    labels = np.array([[0, 0, 1, 1, 2],
                       [0, 0, 1, 1, 2],
                       [3, 3, 3, 3, 2]])
    assert [n.tolist() for n in segment_neighbours(labels)] == [[1, 3], [0, 2, 3], [1, 3], [0, 1, 2]]


def segment_purity(labels: np.ndarray, index: np.ndarray) -> float:
    """Share of pixels whose segment lies mostly in their own rectangle (1: no segment crosses an edge)."""
    majority = {k: np.bincount(index[labels == k]).argmax() for k in np.unique(labels)}
    return float(np.mean(np.vectorize(majority.get)(labels) == index))


def test_segments_follow_the_image_edges():
    image, index = patchwork()
    for seed in range(8):
        rng = np.random.default_rng(seed)
        assert segment_purity(over_segment(image, rng), index) > 0.99  # smoothing blurs a pixel or two
        target = pseudo_object(image, rng).target
        assert target.any() and connected_parts(target) == 1


def test_region_grows_to_the_share_asked_and_stays_connected():
    image, index = patchwork()
    rng = np.random.default_rng(0)
    small = grow_region(index, rng, share=0.01)
    large = grow_region(index, rng, share=0.6)
    assert small.sum() == 60 * 60  # one rectangle already covers 1 %
    assert large.mean() >= 0.6 and large.sum() % (60 * 60) == 0
    assert connected_parts(large) == 1
    assert grow_region(index, rng, share=1.0).all()


def test_pseudo_objects_on_a_real_photo(iseg_root):
    image = read_rgb(next((iseg_root / "COCO_MVal" / "img").glob("*.jpg")))
    masks = [pseudo_object(image, np.random.default_rng(seed)) for seed in range(8)]
    again = pseudo_object(image, np.random.default_rng(3))
    assert np.array_equal(again.target, masks[3].target)  # a function of the generator
    assert len({m.target.tobytes() for m in masks}) == len(masks)  # and varied
    for sample in masks:
        assert sample.target.shape == image.shape[:2] and sample.target.any() and not sample.target.all()
        assert not sample.others.any() and not sample.ignore.any()
        assert connected_parts(sample.target) == 1
    shares = [m.target.mean() for m in masks]
    assert min(shares) < 0.1 and max(shares) > 0.1  # small parts and large regions


def test_large_images_are_segmented_at_the_working_side():
    image, index = patchwork(side=400)  # 800 x 1200: segmented at 320 px, labels at full size
    labels = over_segment(image, np.random.default_rng(0))
    assert labels.shape == index.shape
    assert segment_purity(labels, index) > 0.97  # a working pixel or two along each edge, 3.75x larger here


def test_training_samples_take_pseudo_objects_at_the_recipe_rate(iseg_root):
    train, _ = build_split(iseg_root, ["COCO_MVal"], val_fraction=0.2, max_images=12)
    data = DataSection(crop_size=96, min_object_area=100)

    def targets(prob: float) -> list[np.ndarray]:
        recipe = SampleRecipe.from_config(replace(data, pseudo_object_prob=prob))
        samples = ClickSampleSet(IsegObjects(train), recipe, MultiPointSampler(), seed=5)
        return [samples.make_sample(i).target for i in range(16)]

    annotated, pseudo, again = targets(0.0), targets(1.0), targets(1.0)
    assert all(np.array_equal(a, b) for a, b in zip(pseudo, again))
    assert sum(not np.array_equal(a, b) for a, b in zip(annotated, pseudo)) >= 12
    assert all(t.sum() >= 16 for t in pseudo)


def test_recipe_refuses_a_rate_outside_zero_one(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("data:\n  pseudo_object_prob: 1.5\n")
    with pytest.raises(MSTGeoError, match="'data.pseudo_object_prob' is a probability"):
        load_train_config(recipe)
