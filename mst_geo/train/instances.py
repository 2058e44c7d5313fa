"""The training instances grouped by image, and the held-out validation split.

Training needs, for each instance, the other objects of the same image (negative clicks on other
objects, merged targets), so instances from ``data/iseg.py`` are grouped by image file. The split
is by image, never by instance, so a validation object's image is never seen in training. It is
read from a list file (``val.txt`` written by ``scripts/make_train_pack.py``) when there is one,
otherwise drawn by a stable hash of ``dataset/image_id`` (same split on every machine and run).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from mst_geo.data.instance import InstanceRef, MaskReader, read_rgb
from mst_geo.data.iseg import BENCHMARK_SETS, ISegDataset, dataset_location, load_iseg_dataset
from mst_geo.errors import MSTGeoError, warn

VAL_LIST_NAME = "val.txt"


@dataclass(frozen=True)
class ImageGroup:
    """One image file and every annotated instance in it."""

    dataset: str
    image_id: str
    refs: tuple[InstanceRef, ...]
    mask_rule: MaskReader
    """The dataset's rule from a stored mask to 1/0/255 (a module-level function: it pickles)."""

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.image_id}"

    def read_image(self) -> np.ndarray:
        return read_rgb(self.refs[0].image_path)

    def read_mask(self, which: int) -> np.ndarray:
        """Mask ``which`` of this image, uint8 1 object / 0 background / 255 ignore."""
        return self.mask_rule(self.refs[which])


@dataclass(frozen=True)
class InstanceIndex:
    """Image groups and a flat list of ``(group, instance)`` pairs, one per training object."""

    groups: tuple[ImageGroup, ...]

    @cached_property
    def items(self) -> list[tuple[int, int]]:
        return [(g, i) for g, group in enumerate(self.groups) for i in range(len(group.refs))]

    def __len__(self) -> int:
        return len(self.items)  # cached: samplers ask for it on every sample

    def describe(self) -> dict[str, dict[str, int]]:
        """Images and instances per dataset (for logs and the model card)."""
        counts: dict[str, dict[str, int]] = {}
        for group in self.groups:
            entry = counts.setdefault(group.dataset, {"images": 0, "instances": 0})
            entry["images"] += 1
            entry["instances"] += len(group.refs)
        return counts


SAME_PHOTO_KEYS = {"COCO_MVal": lambda image_id: image_id.rsplit("_", 1)[-1]}
"""Datasets that store one photo under several file names: COCO_MVal names each instance's copy
``<category><nn>_<coco id>``, so the COCO id identifies the photo."""


def group_by_image(dataset: ISegDataset) -> list[ImageGroup]:
    """Instances of the same photo become one group (first-seen order kept)."""
    photo_key = SAME_PHOTO_KEYS.get(dataset.name, lambda image_id: image_id)
    by_photo: dict[str, list[InstanceRef]] = {}
    for ref in dataset.refs:
        by_photo.setdefault(photo_key(ref.image_id), []).append(ref)
    return [ImageGroup(dataset.name, key, tuple(group), dataset.read_mask) for key, group in by_photo.items()]


def holdout_rank(key: str) -> int:
    """A stable pseudo-random rank in 0..9999 (crc32 of the key): the lowest ranks are held out."""
    return zlib.crc32(key.encode()) % 10_000


def hashed_holdout(key: str, fraction: float) -> bool:
    """Stable pseudo-random membership of the held-out slice."""
    return holdout_rank(key) < fraction * 10_000


def read_val_list(path: Path) -> set[str]:
    """``dataset/image_id`` keys, one per line (``#`` comments allowed)."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if line}


def held_out_keys(root: Path, val_list: str | Path | None, datasets: Sequence[str]) -> set[str] | None:
    """The held-out ``dataset/image_id`` keys of ``val_list``, else of ``root/val.txt``; None when
    neither exists (the hash rule decides). The root must exist unless every dataset is named by
    its path."""
    if not root.is_dir() and any(dataset_location(name, root)[0] == root for name in datasets):
        raise MSTGeoError("training data root not found (set data.root or --data-root)", root)
    list_path = Path(val_list) if val_list else root / VAL_LIST_NAME
    if val_list and not list_path.is_file():
        raise MSTGeoError("validation list not found", list_path)
    return read_val_list(list_path) if list_path.is_file() else None


def listed_for(dataset: str, held_out: set[str] | None) -> set[str] | None:
    """The held-out list for ``dataset``, or None (the hash rule) when the list names none of its
    images: a pack's list knows only the pack's sets, and a set added beside them must still
    hold some images out."""
    if held_out is None or not any(key.startswith(f"{dataset}/") for key in held_out):
        return None
    return held_out


def warn_about_split(dataset: str, held: Sequence[bool], list_misses: bool, key_form: str) -> None:
    """Say when a dataset adds nothing to training, or when the list that names some of its
    images matches none of them (``list_misses``: a misspelt key holds nothing out)."""
    if list_misses:
        warn(f"{dataset}: the validation list names {dataset} keys but none of its images (keys read "
             f"{key_form}); none is held out")
    if held and all(held):
        warn(f"{dataset}: every image is held out for validation; it adds nothing to training")


def build_split(root: str | Path, datasets: Sequence[str], val_fraction: float,
                val_list: str | Path | None = None,
                max_images: int | None = None) -> tuple[InstanceIndex, InstanceIndex]:
    """Training and held-out instance indexes of ``datasets`` under ``root``.

    ``max_images`` keeps the first images of each dataset (smoke runs); the held-out slice comes
    from ``val_list``, else ``root/val.txt``, else the hash rule.
    """
    root = Path(root)
    held_out = held_out_keys(root, val_list, datasets)
    if not datasets:
        raise MSTGeoError("no training datasets named (data.datasets / --datasets)", root)
    from mst_geo.data.rs import RS_LAYOUTS  # named in the error on an unknown name

    loaded = [load_iseg_dataset(name, root, split="train", also_known=list(RS_LAYOUTS)) for name in datasets]
    benchmarks = sorted({dataset.name for dataset in loaded} & set(BENCHMARK_SETS))
    if benchmarks:  # by name or as a copy in another folder
        raise MSTGeoError(f"{', '.join(benchmarks)}: benchmark set(s) the README reports, never trained on; "
                          "train on COCO_MVal, DUTS_TR, CCP or your own data", root)
    train: list[ImageGroup] = []
    val: list[ImageGroup] = []
    for dataset in loaded:
        listed = listed_for(dataset.name, held_out)
        every_group = group_by_image(dataset)
        groups = every_group[:max_images]
        in_val = [group.key in listed if listed is not None else hashed_holdout(group.key, val_fraction)
                  for group in groups]
        misses = listed is not None and not any(group.key in listed for group in every_group)
        warn_about_split(dataset.name, in_val, misses, f"{dataset.name}/<image file stem>")
        for group, held in zip(groups, in_val):
            (val if held else train).append(group)
    if not train:
        folders = [str(dataset.folder or root) for dataset in loaded]
        rule = "the validation list or " if held_out is not None else ""
        raise MSTGeoError(f"every image is held out for validation ({len(val)} by {rule}data.val_fraction "
                          f"{val_fraction}); add images, or lower data.val_fraction", ", ".join(folders))
    return InstanceIndex(tuple(train)), InstanceIndex(tuple(val))

