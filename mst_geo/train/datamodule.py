"""The LightningDataModule: resumable training batches and the held-out validation instances.

Batch ``s`` on rank ``r`` of ``W`` always holds samples ``(s*W + r)*B .. (s*W + r)*B + B-1``;
the sampler reads the trainer's global step when an epoch's iterator starts, so after
``--resume`` the next batch is exactly the one the interrupted run would have drawn next.
Lightning's own distributed sampler is switched off (``use_distributed_sampler=False``) because
this one already splits by rank.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import lightning as L
from lightning.pytorch.utilities import rank_zero_only
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mst_geo.data.instance import Instance
from mst_geo.train.config import DataSection, TrainConfig
from mst_geo.data.rs import locate_rs_dataset
from mst_geo.errors import MSTGeoError, warn
from mst_geo.train.instances import build_split, held_out_keys
from mst_geo.train.rs_objects import rs_split
from mst_geo.train.samples import (
    ClickSampleSet,
    ConcatObjects,
    IsegObjects,
    ObjectSource,
    SampleRecipe,
    sampler_from_config,
)


class ResumableSampler(Sampler[int]):
    """Sample indices for this rank from the current global step up to ``max_steps``."""

    def __init__(self, current_step: Callable[[], int], max_steps: int, batch_size: int,
                 rank: int, world_size: int):
        self.current_step = current_step
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return self.max_steps * self.batch_size

    def __iter__(self) -> Iterator[int]:
        for step in range(self.current_step(), self.max_steps):
            first = (step * self.world_size + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)


class HeldOutInstances(Dataset):
    """``count`` held-out objects spread evenly over a source, as the bench sees them."""

    def __init__(self, source: ObjectSource, count: int):
        self.source = source
        picks = np.linspace(0, len(source) - 1, num=min(count, len(source))).round().astype(int)
        self.picks = sorted(set(picks.tolist())) if len(source) else []

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, position: int) -> Instance:
        return self.source.instance(self.picks[position])


class RankShare(Dataset):
    """Rank ``rank``'s share of the held-out instances (every ``world``-th), padded with ``None``
    to the longest share. Every rank runs as many validation steps (their synced logs pair up) and
    no instance is scored twice, as a ``DistributedSampler`` would score its padding repeats."""

    def __init__(self, instances: Dataset, rank: int, world: int):
        self.instances = instances
        own: list[int | None] = list(range(rank, len(instances), world))
        self.indices = own + [None] * (-(-len(instances) // world) - len(own))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Instance | None:
        index = self.indices[position]
        return None if index is None else self.instances[index]


def init_loader_worker(worker_id: int) -> None:
    """Loader workers decode with one OpenCV thread each (16 workers x all cores would thrash) and
    leave the job's process group: a scheduler's SIGTERM (or Ctrl-C) to the whole group then reaches
    the trainer alone, which saves ``interrupted.ckpt`` and stops them; killed first, they would end
    the run in a DataLoader error with nothing saved. They still exit with the trainer, and
    ``terminate()`` still reaches them."""
    cv2.setNumThreads(1)
    if hasattr(os, "setpgrp"):  # POSIX; Windows has no process groups to leave
        os.setpgrp()


def first_item(batch: list[Instance | None]) -> Instance | None:
    """Validation batches hold one instance (or a rank's padding), passed through as is."""
    return batch[0]


def dataset_sources(data: DataSection) -> tuple[ObjectSource, ObjectSource, dict]:
    """Training and held-out objects of ``data.datasets``: the photo sets' instance split and
    each remote-sensing set's objects (torchgeo layout in ``root/<name>``), joined, with their
    counts per dataset for the model card."""
    located = {name: locate_rs_dataset(name, data.root) for name in data.datasets}
    remote = [where for where in located.values() if where is not None]
    photos = [name for name, where in located.items() if where is None]
    train: list[ObjectSource] = []
    val: list[ObjectSource] = []
    description: dict = {"root": str(data.root), "train": {}, "held_out": {}}
    if photos or not remote:
        train_index, val_index = build_split(data.root, photos, data.val_fraction, data.val_list, data.max_images)
        train.append(IsegObjects(train_index))
        val.append(IsegObjects(val_index))
        description["train"].update(train_index.describe())
        description["held_out"].update(val_index.describe())
    held_out = held_out_keys(Path(data.root), data.val_list, data.datasets)
    for name, folder in remote:
        rs_train, rs_val = rs_split(name, folder, data, held_out)
        train.append(rs_train)
        val.append(rs_val)
        description["train"][rs_train.instances.name] = rs_train.describe()
        description["held_out"][rs_val.instances.name] = rs_val.describe()
    if not any(len(source) for source in train):
        raise MSTGeoError(f"no training objects in {', '.join(data.datasets)}", data.root)
    joined = [ConcatObjects(sources) if len(sources) > 1 else sources[0] for sources in (train, val)]
    return joined[0], joined[1], description


class ClickDataModule(L.LightningDataModule):
    """Builds the instance split (or a user's scene windows) and the two dataloaders."""

    def __init__(self, config: TrainConfig):
        super().__init__()
        self.config = config
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.description: dict = {}

    def setup(self, stage: str | None = None) -> None:
        """Index the data (cheap: no image is read); user errors surface here, before training."""
        if self.train_set is not None:
            return
        data, trainer = self.config.data, self.config.trainer
        recipe = SampleRecipe.from_config(data)
        sampler = sampler_from_config(self.config.clicks)
        if data.scene is not None:
            from mst_geo.geo.raster import public_source  # rasterio/geopandas only here
            from mst_geo.train.scene_dataset import scene_split

            train_source, val_source = scene_split(data, validates=trainer.validates)
            self.description = {"scene": public_source(data.scene), "labels": data.labels,
                                "bands": list(train_source.bands),  # as chosen, guessed or by name
                                "train_objects": len(train_source),
                                "held_out_objects": len(val_source)}
        else:
            train_source, val_source, self.description = dataset_sources(data)
        if trainer.validates and len(val_source) and trainer.val_every_steps > trainer.max_steps:
            rank_zero_only(warn)(f"trainer.val_every_steps ({trainer.val_every_steps}) is past --max-steps "
                                 f"({trainer.max_steps}): {len(val_source)} held-out object(s) are never scored in "
                                 "this run (lower trainer.val_every_steps, or extend the run with --resume)")
        if trainer.validates and not len(val_source):  # said once, by the first process
            rank_zero_only(warn)("no held-out object (too few images, tiles or polygons for data.val_fraction, or "
                                 "none named in data.val_list): the run scores nothing and writes no best.ckpt")
        self.train_set = ClickSampleSet(train_source, recipe, sampler, trainer.seed)
        self.val_set = HeldOutInstances(val_source, trainer.val_instances)

    def train_dataloader(self) -> DataLoader:
        trainer, workers = self.config.trainer, self.config.data.workers
        sampler = ResumableSampler(lambda: self.trainer.global_step, trainer.max_steps,
                                   trainer.batch_size, self.trainer.global_rank,
                                   self.trainer.world_size)
        return DataLoader(self.train_set, batch_size=trainer.batch_size, sampler=sampler,
                          num_workers=workers, persistent_workers=workers > 0,
                          worker_init_fn=init_loader_worker,
                          pin_memory=self.trainer.strategy.root_device.type == "cuda",
                          prefetch_factor=4 if workers > 0 else None)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Validation instances stay numpy on the host: the predictor moves what it needs."""
        if isinstance(batch, Instance):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def val_dataloader(self) -> DataLoader:
        share = RankShare(self.val_set, self.trainer.global_rank, self.trainer.world_size)
        return DataLoader(share, batch_size=1, collate_fn=first_item, num_workers=0)
