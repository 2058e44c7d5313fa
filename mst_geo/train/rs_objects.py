"""Remote-sensing datasets (torchgeo layouts, ``mst_geo.data.rs``) as training objects.

Every connected component of an object class is one object, served as a crop around it whose
side grows with the object (1.5x its box, at least the training crop), so the sample recipe's
scale and crop then show huge regions (fields, water) whole and small ones (cars, houses) near
their ground size, as the scene workflow's windows show them. Tiles, not objects, are held out,
by the same ``dataset/tile`` hash or ``val.txt`` as the photo sets' images; held-out objects are
served as the bench serves them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mst_geo.data.instance import Instance
from mst_geo.data.rs import RSInstances, load_rs_dataset
from mst_geo.train.augment import Sample
from mst_geo.train.config import DataSection
from mst_geo.train.instances import hashed_holdout, listed_for, warn_about_split
from mst_geo.train.samples import MIN_TARGET_PIXELS


class RSObjects:
    """Some objects (``picks``) of one remote-sensing dataset as an ``ObjectSource``: the other
    objects in an object's crop are its negatives (components are never merged: they do not touch).
    Crops are at least ``min_side`` (the training crop), so a small object is seen near its
    ground size, as the scene workflow's windows show it, not enlarged."""

    def __init__(self, instances: RSInstances, picks: Sequence[int], min_side: int | None = None):
        self.instances = instances
        self.picks = list(picks)
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.picks)

    def load(self, position: int, rng: np.random.Generator, merge_prob: float) -> Sample:
        return Sample(*self.instances.parts(self.picks[position], self.min_side))

    def keeps_scale(self, position: int) -> bool:
        return True

    def instance(self, position: int) -> Instance:
        return self.instances[self.picks[position]]

    def where(self, position: int) -> str:
        index = self.picks[position]
        return f"{self.instances.tile_path(self.instances.refs[index].tile)} ({self.instances.name_of(index)})"

    def describe(self) -> dict[str, int]:
        """Tiles and objects, as the photo sets' ``images``/``instances`` counts."""
        tiles = {self.instances.refs[index].tile for index in self.picks}
        return {"images": len(tiles), "instances": len(self.picks)}


def tile_key(instances: RSInstances, tile: int) -> str:
    """``dataset/tile stem``: the held-out key of a tile (as ``dataset/image_id`` for photos)."""
    return f"{instances.name}/{Path(instances.tile_path(tile)).stem}"


def rs_split(name: str, folder: Path, data: DataSection, held_out: set[str] | None) -> tuple[RSObjects, RSObjects]:
    """Training and held-out objects of remote-sensing set ``name`` in ``folder`` (its training
    split): a tile is held out when ``held_out`` lists its key, else by the hash rule
    (``listed_for``). Objects too small to keep ``MIN_TARGET_PIXELS`` at the recipe's smallest
    scale are not trained on; held-out tiles keep all their objects, as the bench scores them."""
    instances = load_rs_dataset(name, folder, split="train", max_tiles=data.max_images)
    listed = listed_for(name, held_out)
    smallest = math.ceil(MIN_TARGET_PIXELS / min(1.0, float(data.scale_range[0])) ** 2)
    tiles = sorted({ref.tile for ref in instances.refs})
    keys = [tile_key(instances, tile) for tile in tiles]
    held = [key in listed if listed is not None else hashed_holdout(key, data.val_fraction) for key in keys]
    every_key = [tile_key(instances, tile) for tile in range(len(instances.dataset))]  # beyond max_images too
    misses = listed is not None and not any(key in listed for key in every_key)
    warn_about_split(name, held, misses, f"{name}/<tile file stem>, e.g. {keys[0]}")
    held_tiles = {tile for tile, in_val in zip(tiles, held) if in_val}
    train: list[int] = []
    val: list[int] = []
    for index, ref in enumerate(instances.refs):
        if ref.tile in held_tiles:
            val.append(index)  # all of them, as the bench scores them
        elif ref.area >= smallest:
            train.append(index)
    return RSObjects(instances, train, data.crop_size), RSObjects(instances, val)
