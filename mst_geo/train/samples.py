"""Training samples as a pure function of ``(seed, sample index)``.

Sample ``i`` picks its object from a seeded per-epoch permutation of all instances, then draws
everything else (merge or pseudo-object, scale, flip, crop, copy-paste donor, colour, clicks)
from a generator seeded with ``(seed, i)``. Nothing depends on worker ids, on how many samples
came before or on the process, so ``--resume`` and any number of loader workers or GPUs give the
same batches.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from mst_geo.clicks.sampler import MultiPointSampler
from mst_geo.clicks.simulator import split_mask
from mst_geo.data.instance import Instance
from mst_geo.errors import MSTGeoError
from mst_geo.train.augment import ColorJitter, Sample, paste_object, scale_flip_crop
from mst_geo.train.config import ClicksSection, DataSection
from mst_geo.train.instances import InstanceIndex
from mst_geo.train.pseudo_objects import pseudo_object

MIN_TARGET_PIXELS = 16
"""A crop whose object is smaller than this is drawn again (a few pixels teach nothing)."""

MAX_ATTEMPTS = 12
"""Crops tried (two per instance) before a sample gives up."""


@dataclass(frozen=True)
class SampleRecipe:
    """The augmentation knobs of ``DataSection`` that shape one sample."""

    crop_size: int
    scale_range: tuple[float, float]
    flip_prob: float
    min_object_area: int
    copy_paste_prob: float
    merge_objects_prob: float
    pseudo_object_prob: float
    jitter: ColorJitter

    @classmethod
    def from_config(cls, data: DataSection) -> SampleRecipe:
        """The recipe's ``data`` section as sampling settings (what loader workers receive)."""
        return cls(
            crop_size=data.crop_size,
            scale_range=(float(data.scale_range[0]), float(data.scale_range[1])),
            flip_prob=data.flip_prob,
            min_object_area=data.min_object_area,
            copy_paste_prob=data.copy_paste_prob,
            merge_objects_prob=data.merge_objects_prob,
            pseudo_object_prob=data.pseudo_object_prob,
            jitter=ColorJitter(prob=data.jitter_prob, brightness=data.brightness,
                               contrast=(float(data.contrast[0]), float(data.contrast[1])),
                               rgb_shift=data.rgb_shift, saturation=data.saturation, hue=data.hue),
        )


def sampler_from_config(clicks: ClicksSection) -> MultiPointSampler:
    """The RITM multi-point click sampler the recipe's ``clicks`` section describes."""
    return MultiPointSampler(max_points=clicks.max_points, gamma=clicks.gamma,
                             erode_prob=clicks.erode_prob, negative_bg_prob=clicks.negative_bg_prob,
                             negative_other_prob=clicks.negative_other_prob,
                             negative_border_prob=clicks.negative_border_prob,
                             first_click_prob=clicks.first_click_prob)


def pad_clicks(points: np.ndarray, rows: int) -> np.ndarray:
    """``[n, 3]`` clicks padded with ``(-1, -1, -1)`` rows to ``[rows, 3]`` (the model's padding)."""
    out = np.full((rows, 3), -1.0, np.float32)
    out[: len(points)] = points[:rows]
    return out


class ObjectSource(Protocol):
    """Objects to train on, each loadable as a full image around it with its masks."""

    def __len__(self) -> int: ...

    def load(self, position: int, rng: np.random.Generator, merge_prob: float) -> Sample:
        """Object ``position`` with its image (target maybe merged with a neighbour)."""

    def instance(self, position: int) -> Instance:
        """Object ``position`` as the bench sees it (native image, 1/0/255 mask)."""

    def where(self, position: int) -> str:
        """A file (and feature) naming the object, for error messages."""

    def keeps_scale(self, position: int) -> bool:
        """Whether the object has a ground scale to keep (remote sensing): copy-paste, which sizes
        its donor to the crop, would blow a car up to a field, so such donors are not pasted (nor
        read)."""


class IsegObjects:
    """The instances of an ``InstanceIndex`` as an ``ObjectSource``; other objects of the same
    image serve as negatives and merge partners."""

    def __init__(self, index: InstanceIndex):
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def load(self, position: int, rng: np.random.Generator, merge_prob: float) -> Sample:
        group_index, which = self.index.items[position]
        group = self.index.groups[group_index]
        masks = [split_mask(group.read_mask(k)) for k in range(len(group.refs))]
        target, ignore = masks[which]
        others = np.zeros_like(target)
        for k, (obj, _) in enumerate(masks):
            if k != which:
                others |= obj
        if len(masks) > 1 and rng.random() < merge_prob:
            partner = int(rng.choice([k for k in range(len(masks)) if k != which]))
            target = target | masks[partner][0]
        return Sample(group.read_image(), target, others & ~target, ignore & ~target)

    def instance(self, position: int) -> Instance:
        group_index, which = self.index.items[position]
        group = self.index.groups[group_index]
        return Instance(group.read_image(), group.read_mask(which), group.refs[which].name,
                        group.image_id)

    def where(self, position: int) -> str:
        group_index, which = self.index.items[position]
        return str(self.index.groups[group_index].refs[which].mask_path)

    def keeps_scale(self, position: int) -> bool:
        return False  # photos: objects at any size


class ConcatObjects:
    """Several object sources as one ``ObjectSource``, in order (photo sets, then remote sensing)."""

    def __init__(self, sources: Sequence[ObjectSource]):
        self.sources = list(sources)
        self.starts = np.cumsum([0] + [len(source) for source in self.sources]).tolist()

    def __len__(self) -> int:
        return self.starts[-1]

    def _locate(self, position: int) -> tuple[ObjectSource, int]:
        which = bisect.bisect_right(self.starts, position) - 1
        return self.sources[which], position - self.starts[which]

    def load(self, position: int, rng: np.random.Generator, merge_prob: float) -> Sample:
        source, local = self._locate(position)
        return source.load(local, rng, merge_prob)

    def instance(self, position: int) -> Instance:
        source, local = self._locate(position)
        return source.instance(local)

    def where(self, position: int) -> str:
        source, local = self._locate(position)
        return source.where(local)

    def keeps_scale(self, position: int) -> bool:
        source, local = self._locate(position)
        return source.keeps_scale(local)


class ClickSampleSet(Dataset):
    """Map-style dataset whose index is the global sample number (see ``ResumableSampler``)."""

    def __init__(self, source: ObjectSource, recipe: SampleRecipe, sampler: MultiPointSampler,
                 seed: int):
        self.source = source
        self.recipe = recipe
        self.sampler = sampler
        self.seed = seed

    def __len__(self) -> int:
        """One epoch: every object once. Larger indices are valid and fall in later epochs."""
        return len(self.source)

    def object_for(self, sample_index: int) -> int:
        """The object of sample ``sample_index``: each epoch visits every object once."""
        epoch, position = divmod(sample_index, len(self.source))
        order = np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(len(self.source))
        return int(order[position])

    def make_sample(self, sample_index: int) -> Sample:
        """The augmented sample ``sample_index`` (before clicks).

        When the object does not survive the crop (a tiny object scaled down), another crop and
        then another object are drawn, still from the sample's own generator.
        """
        recipe = self.recipe
        rng = np.random.default_rng([self.seed, sample_index])
        position = self.object_for(sample_index)
        for attempt in range(MAX_ATTEMPTS):
            if attempt and attempt % 2 == 0:
                position = int(rng.integers(len(self.source)))
            full = self.source.load(position, rng, recipe.merge_objects_prob)
            if recipe.pseudo_object_prob and rng.random() < recipe.pseudo_object_prob:
                full = pseudo_object(full.image, rng)
            if not full.target.any():
                continue
            sample = scale_flip_crop(full, recipe.crop_size, recipe.scale_range, recipe.flip_prob,
                                     recipe.min_object_area, rng)
            if sample.target.sum() >= MIN_TARGET_PIXELS:
                break
        else:
            raise MSTGeoError(f"no object of at least {MIN_TARGET_PIXELS} px after "
                              f"{MAX_ATTEMPTS} crops (are the masks empty?)",
                              self.source.where(position))
        if rng.random() < recipe.copy_paste_prob:
            donor_position = int(rng.integers(len(self.source)))
            donor = None if self.source.keeps_scale(donor_position) else self.source.load(donor_position, rng, 0.0)
            if donor is not None and donor.target.any():
                as_target = rng.random() < 0.5
                pasted = paste_object(sample, donor.image, donor.target, rng, as_target)
                if pasted.target.sum() >= MIN_TARGET_PIXELS:
                    sample = pasted
        return Sample(recipe.jitter(sample.image, rng), sample.target, sample.others, sample.ignore)

    def __getitem__(self, sample_index: int) -> dict[str, torch.Tensor]:
        sample = self.make_sample(int(sample_index))
        rng = np.random.default_rng([self.seed, int(sample_index), 0xC11C])
        target = sample.target
        points = self.sampler.sample(target, rng, others=sample.others, ignore=sample.ignore)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1))),
            "target": torch.from_numpy(target[None].astype(np.float32)),
            "ignore": torch.from_numpy(sample.ignore[None]),
            "clicks": torch.from_numpy(pad_clicks(points, self.sampler.max_points)),
            "index": torch.tensor(int(sample_index)),
        }
