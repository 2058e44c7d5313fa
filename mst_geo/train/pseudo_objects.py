"""Pseudo-objects: class-agnostic targets grown from an over-segmentation of a training image.

The labelled data holds about 7 300 objects in 4 400 images (shared/DESIGN.md), while every image
holds many more regions that a user might click: the sky, a wall, a shirt's sleeve, a field. A
pseudo-object is such a region: Felzenszwalb's graph-based over-segmentation (Felzenszwalb and
Huttenlocher, IJCV 2004; scikit-image's implementation) at a random granularity, then a random
connected union of neighbouring segments, grown from a random seed segment up to a random share of
the image. Its edges follow the image's own edges, which is what a click model must learn to
follow; SAM's data engine trains on automatic masks for the same reason (Kirillov et al., ICCV
2023). Each draw depends only on the image and the generator, so samples stay a pure function of
their seed. Measured here, a quarter of the samples on pseudo-objects made held-out NoC worse, from
scratch and from the shipped weights (docs/training.md "Pseudo-objects"): recipes leave it off.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.segmentation import felzenszwalb

from mst_geo.train.augment import Sample

WORKING_SIDE = 320
"""Longer side the image is over-segmented at: segments keep their share of the image whatever
the file's size, and a 320 px image takes about 50 ms."""

GRANULARITY = (100.0, 1000.0)
"""Felzenszwalb's ``scale`` range, drawn log-uniformly: small values cut parts, large ones objects."""

SHARE_OF_IMAGE = (0.01, 0.5)
"""The pseudo-object's target area as a share of the image, drawn log-uniformly."""

MIN_SEGMENT_SHARE = 1 / 400
"""Smallest segment, as a share of the image (Felzenszwalb's ``min_size``)."""


def over_segment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Segment labels (int, 0..n-1) of an HxWx3 image at a random granularity, at the image's size."""
    height, width = image.shape[:2]
    factor = min(1.0, WORKING_SIDE / max(height, width))
    small = image if factor == 1.0 else cv2.resize(
        image, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA)
    granularity = float(np.exp(rng.uniform(*np.log(GRANULARITY))))
    min_size = max(1, round(small.shape[0] * small.shape[1] * MIN_SEGMENT_SHARE))
    labels = felzenszwalb(small, scale=granularity, sigma=0.8, min_size=min_size).astype(np.int32)
    if factor == 1.0:
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


def segment_neighbours(labels: np.ndarray) -> list[np.ndarray]:
    """For each segment, the segments it touches (4-connected), sorted."""
    count = int(labels.max()) + 1
    pairs = [np.stack([a[a != b], b[a != b]], axis=1)
             for a, b in ((labels[:, 1:], labels[:, :-1]), (labels[1:], labels[:-1]))]
    touching = np.concatenate(pairs).astype(np.int64)
    codes = np.unique(np.concatenate([touching[:, 0] * count + touching[:, 1],
                                      touching[:, 1] * count + touching[:, 0]]))
    firsts, seconds = np.divmod(codes, count)
    bounds = np.searchsorted(firsts, np.arange(count + 1))
    return [seconds[bounds[k]:bounds[k + 1]] for k in range(count)]


def grow_region(labels: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """A connected union of segments: from the segment under a random pixel, random neighbours are
    added until the region covers ``share`` of the image (or nothing touches it any more)."""
    areas = np.bincount(labels.ravel())
    neighbours = segment_neighbours(labels)
    height, width = labels.shape
    seed = int(labels[rng.integers(height), rng.integers(width)])
    region, area, frontier = {seed}, int(areas[seed]), set(neighbours[seed].tolist())
    while area < share * labels.size and frontier:
        added = int(rng.choice(sorted(frontier)))
        region.add(added)
        area += int(areas[added])
        frontier |= set(neighbours[added].tolist())
        frontier -= region
    return np.isin(labels, np.fromiter(region, dtype=labels.dtype))


def pseudo_object(image: np.ndarray, rng: np.random.Generator) -> Sample:
    """The image with a pseudo-object as its target; no other objects, nothing ignored."""
    labels = over_segment(image, rng)
    share = float(np.exp(rng.uniform(*np.log(SHARE_OF_IMAGE))))
    target = grow_region(labels, rng, share)
    empty = np.zeros_like(target)
    return Sample(image, target, empty, empty.copy())
