"""A user's own scene as training data (``mst-geo train --scene scene.tif --labels polygons.gpkg``):
the labelled objects of ``geo.labels``, each sample a window around one object whose size varies
at random (from snug to several times the object), so that the object fills anything from most
of the crop to a small part of it.

This is the only training module that imports rasterio/geopandas (the GPU box training on the
iseg sets does not need them).
"""

from __future__ import annotations

import numpy as np

from mst_geo.errors import MSTGeoError
from mst_geo.geo.labels import LabelledObjects, held_out_marks, scene_labels
from mst_geo.train.augment import Sample
from mst_geo.train.config import DataSection
from mst_geo.train.instances import hashed_holdout, holdout_rank

CONTEXT_RANGE = (1.2, 4.0)
"""Window side / object side, drawn uniformly per sample (the held-out view: ``HELD_OUT_CONTEXT``)."""


class SceneObjects(LabelledObjects):
    """The scene's labelled objects as an ``ObjectSource`` (see ``train/samples.py``)."""

    def load(self, position: int, rng: np.random.Generator, merge_prob: float) -> Sample:
        """One training sample: a window of random size and offset around the object, sometimes
        merged with a neighbour (``merge_prob``), the other polygons as other objects; the held-out
        polygons in the window are ignored (neither object nor background: never trained on)."""
        row = self.rows[position]
        window = self.window_around(row, rng.uniform(*CONTEXT_RANGE), tuple(rng.random(2)))
        image, valid, target, neighbours, unseen, _ = self.read(row, window)
        if neighbours and rng.random() < merge_prob:
            target = target | neighbours[int(rng.integers(len(neighbours)))]
        others = np.any(neighbours, axis=0) if neighbours else np.zeros_like(target)
        # nodata holds nothing to learn or click on: ignored, whichever polygon covers it
        ignore = ~valid | (unseen & ~target)
        return Sample(image, target & valid, others & ~ignore & ~target, ignore)

    def keeps_scale(self, position: int) -> bool:
        """Whether a pasted donor keeps its own scale: never here."""
        return False  # its windows already fit each object to the crop, so donors paste as photos do


def scene_split(data: DataSection, validates: bool = True) -> tuple[SceneObjects, SceneObjects]:
    """Training and held-out objects of ``data.scene`` / ``data.labels``: the polygons a ``split``
    column marks ``held_out`` (never trained on, validated on when the run validates; a column that
    marks none is as if absent), else held out by a fixed hash of the feature number, at least one
    when the fraction rounds to none and none at all when the run does not validate; polygons
    outside the scene, only touching its edge or on nodata alone are dropped (``scene_labels``)."""
    labels, bands = scene_labels(data.scene, data.labels, data.scene_bands)
    marked = held_out_marks(labels, data.labels)
    if marked is not None:
        held = marked
    else:
        keys = [f"feature/{feature}" for feature in labels.index]
        held = [validates and hashed_holdout(key, data.val_fraction) for key in keys]
        if validates and not any(held) and len(labels) > 1:  # a few polygons: the fraction rounds to none
            held[min(range(len(labels)), key=lambda row: holdout_rank(keys[row]))] = True
    train_rows = [row for row, out in enumerate(held) if not out]
    val_rows = [row for row, out in enumerate(held) if out and validates]
    if not train_rows:
        fix = "mark some polygons train in its split column" if marked is not None else "lower data.val_fraction"
        raise MSTGeoError(f"every label polygon is held out; {fix}", data.labels)
    read_max_side = 2 * data.crop_size
    unseen = [row for row, out in enumerate(held) if out]  # validated or not, never a training label
    return (SceneObjects(data.scene, labels, train_rows, data.labels, read_max_side, bands, unseen),
            SceneObjects(data.scene, labels, val_rows, data.labels, read_max_side, bands))
