"""Remote-sensing datasets (torchgeo layouts, ``mst_geo.data.rs``) as training objects.

Every connected component of an object class is one object, served as a crop around it whose
side grows with the object (1.5x its box, at least 256 px), so the sample recipe's scale and crop
then show huge regions (fields, water) whole and tiny ones (cars, houses) large. Tiles, not
objects, are held out, by the same ``dataset/tile`` hash or ``val.txt`` as the photo sets' images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mst_geo.data.iseg import Instance
from mst_geo.data.rs import RSInstances, load_rs_dataset
from mst_geo.train.augment import Sample
from mst_geo.train.instances import hashed_holdout, listed_for


class RSObjects:
    """Some objects (``picks``) of one remote-sensing dataset as an ``ObjectSource``: the other
    objects in an object's crop are its negatives (components are never merged: they do not touch)."""

    def __init__(self, instances: RSInstances, picks: Sequence[int]):
        self.instances = instances
        self.picks = list(picks)

    def __len__(self) -> int:
        return len(self.picks)

    def load(self, position: int, rng: np.random.Generator, merge_prob: float) -> Sample:
        return Sample(*self.instances.parts(self.picks[position]))

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


def rs_split(name: str, folder: Path, val_fraction: float, held_out: set[str] | None,
             max_tiles: int | None = None) -> tuple[RSObjects, RSObjects]:
    """Training and held-out objects of remote-sensing set ``name`` in ``folder`` (its training
    split): a tile is held out when ``held_out`` lists its key, else by the hash rule (also when
    the list names no tile of this set: a pack's list knows only its photo sets)."""
    instances = load_rs_dataset(name, folder, split="train", max_tiles=max_tiles)
    held_out = listed_for(name, held_out)
    train: list[int] = []
    val: list[int] = []
    for index, ref in enumerate(instances.refs):
        key = tile_key(instances, ref.tile)
        in_val = key in held_out if held_out is not None else hashed_holdout(key, val_fraction)
        (val if in_val else train).append(index)
    return RSObjects(instances, train), RSObjects(instances, val)
