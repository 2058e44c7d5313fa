"""The LightningModule: RITM iterative click training of an ``MSTModel`` and the validation NoC.

Each batch starts from the multi-point sampler's clicks, then runs 0..``max_next_clicks``
no-grad rounds (network in eval mode, as in RITM) where the model's own error places one more
click per sample and its prediction is fed back as the previous mask; the last pass carries the
gradient. The number of rounds and the click positions come from a generator seeded by
``(seed, global step, rank)`` (one child generator per sample, so ``trainer.click_threads`` may
place a batch's clicks in parallel), and a resumed run repeats them exactly.

Validation walks held-out instances with the bench's own session (``clicks.session.evaluate_instance``:
RITM clicker + ``clicks.predictor.Predictor``), so the NoC logged here is the one ``mst-geo bench``
would report for the same weights and instances.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from mst_geo.clicks.click import Click
from mst_geo.clicks.predictor import Predictor
from mst_geo.clicks.session import clicks_to_reach, evaluate_instance, threshold_key
from mst_geo.clicks.sampler import next_training_click
from mst_geo.data.instance import Instance
from mst_geo.data.rs import dataset_name
from mst_geo.errors import warn
from mst_geo.model import MSTLoss, MSTModel
from mst_geo.train.config import DataSection, TrainConfig, TrainerSection, config_to_dict
from mst_geo.train.instances import held_out_keys

MIOU_AT_CLICKS = (1, 3, 5)
"""Clicks after which the validation mIoU is logged."""


def noc_metric(trainer: TrainerSection) -> str:
    """Name of the logged held-out NoC, e.g. ``val/noc85``."""
    return f"val/noc{threshold_key(trainer.val_iou)}"


SELECTION_METRIC = "val/select"
"""What ``best.ckpt`` tracks: the held-out NoC, ties broken by the mean IoU over all clicks."""


def tie_weight(trainer: TrainerSection) -> float:
    """Weight of the mean IoU (0..1) in the selection: under half of what one instance's NoC step
    moves the mean NoC (1/val_instances), so it only orders checkpoints whose NoC ties (with few
    held-out objects, often all at the cap), never outweighs a real NoC difference."""
    return 0.5 / (trainer.val_instances + 1)


def training_data(data: DataSection, validates: bool) -> dict[str, Any]:
    """What a run trains on and holds out, as a resumed run must match it: a scene and its labels
    file (resolved path and features) and whether any of its polygons are held out (only when the
    run validates), else the dataset names (a data root may move: a pack copied to a GPU box) and
    what picks their held-out images and samples (fraction, image cap, held-out list): other
    values would score images trained on so far, or change the held-out set and the samples."""
    split = {"val_fraction": data.val_fraction}
    if data.scene is not None:
        from mst_geo.geo.labels import labels_digest  # rasterio: scene runs only
        from mst_geo.geo.raster import scene_location

        labels = Path(str(data.labels)).expanduser().resolve()
        # the content too: polygons appended to the file would move the held-out ones onto trained-on ground
        return {"scene": scene_location(data.scene), "labels": str(labels), "labels_digest": labels_digest(labels),
                **split, "holds_out": validates}
    held_out = held_out_keys(Path(data.root), data.val_list, data.datasets)
    listed = None if held_out is None else hashlib.sha256("\n".join(sorted(held_out)).encode()).hexdigest()[:16]
    return {"datasets": sorted(dataset_name(name) for name in data.datasets), **split,
            "max_images": data.max_images, "held_out_list": listed}


def start_weights(config: TrainConfig) -> dict[str, Any]:
    """Where a run's first weights came from, as a resumed run must name it too (its card records
    that lineage): a file by its resolved path (``./x`` and ``x``, or a run resumed from another
    folder, are one file), "default" or a timm name as given."""
    init = config.model.init
    if init is not None and init != "default" and Path(init).expanduser().is_file():
        init = str(Path(init).expanduser().resolve())
    return {"init": init, "grow_depth": config.model.grow_depth}


NOT_RECIPE_CHANGES = {"source", "out"}
"""Recipe keys that name where it was read from or writes to, not how the run trains."""


def recipe_changes(recorded: dict[str, Any], config: TrainConfig) -> dict[str, list]:
    """``{"data.crop_size": [320, 448]}``: each recipe key whose value a resumed run changed from
    the ``recorded`` recipe (the card records them, as it records only the last recipe in full)."""
    def flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        items: dict[str, Any] = {}
        for key, value in values.items():
            items |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
        return items

    before = flat({k: v for k, v in recorded.items() if k not in NOT_RECIPE_CHANGES})
    after = flat({k: v for k, v in config_to_dict(config).items() if k not in NOT_RECIPE_CHANGES})
    return {key: [before.get(key), after.get(key)] for key in sorted(before.keys() | after.keys())
            if before.get(key) != after.get(key)}


def step_decay(step: int, milestones: list[int], factor: float, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up, then ``factor`` per milestone passed."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return warm * factor ** sum(step >= m for m in milestones)


def one_positive_click(clicks: torch.Tensor) -> torch.Tensor:
    """Which samples of a ``[B, N, 3]`` click batch (label -1: padding) hold one positive click and
    nothing else: a first click, as every benchmark object and every analyst's object starts."""
    labels = clicks[:, :, 2]
    return ((labels >= 0).sum(1) == 1) & ((labels == 1).sum(1) == 1)


def keep_first_clicks_bare(start: torch.Tensor, clicks: torch.Tensor,
                           prev_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Undo the correction rounds for the samples that started from one positive click: they train
    on the state every object starts from (that click, no previous mask). Returns the clicks, the
    previous masks and which samples were kept bare."""
    bare = one_positive_click(start)
    clicks = torch.where(bare[:, None, None], start, clicks)
    prev_mask = torch.where(bare[:, None, None, None], torch.zeros_like(prev_mask), prev_mask)
    return clicks, prev_mask, bare


class ClickTrainingModule(L.LightningModule):
    """Owns the network, the loss, the optimiser recipe and the training bookkeeping for the card."""

    def __init__(self, model: MSTModel, config: TrainConfig):
        super().__init__()
        self.model = model
        self.config = config
        self.loss = MSTLoss(config.loss.focal_weight, config.loss.contrastive_weight)
        self._counted_from = (0, 0)  # (samples seen, optimiser steps) where this process's part of the run began
        self.wall_seconds = 0.0
        self.last_val: dict[str, float] = {}
        self.resume_changes: list[dict[str, Any]] = []  # {"step", "changed"} at each resume that changed the recipe
        self._started = time.monotonic()
        self._click_pool: ThreadPoolExecutor | None = None  # made on first use: spawned DDP pickles the module

    # ---- training --------------------------------------------------------------------------

    def seed_torch_for_step(self) -> None:
        """Seed torch's generators from (seed, step, rank): the perturbed top-k's noise then follows
        the step like the clicks do, so a resumed run continues exactly (checkpoints hold no
        generator state)."""
        key = [self.config.trainer.seed, self.global_step, self.global_rank, 0x70C]
        torch.manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))

    def click_rounds_rng(self) -> np.random.Generator:
        """This step's generator for the no-grad rounds (count and clicks): a pure function of
        (seed, step, rank), so a resumed run places the same correction clicks."""
        return np.random.default_rng([self.config.trainer.seed, self.global_step,
                                      self.global_rank, 0x17E8])

    def click_mapper(self) -> Callable:
        """``map`` over a batch's samples, on ``trainer.click_threads`` threads when more than one.

        OpenCV's distance transform releases the GIL. One sample's click took 1.2 ms on one core
        of the 2-core dev machine at 288 px, so a batch of 64 costs ~80 ms per round if serial.
        (Whether threads raise a GPU run's samples/s has not been measured.)
        """
        threads = self.config.trainer.click_threads
        if threads <= 1:
            return map
        if self._click_pool is None:
            self._click_pool = ThreadPoolExecutor(threads)
        return self._click_pool.map

    def profiled(self, action: str) -> AbstractContextManager:
        """Time ``action`` in the run's profiler (``trainer.profile``); nothing without a trainer."""
        return self.trainer.profiler.profile(action) if self._trainer is not None else nullcontext()

    @torch.no_grad()
    def add_error_clicks(self, image: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor,
                         clicks: torch.Tensor, rounds: int,
                         rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``rounds`` no-grad passes, each adding a click where the model is wrong.

        Returns the clicks (new rows filled into the -1 padding) and the last prediction as the
        previous mask for the pass with gradient.
        """
        prev_mask = torch.zeros_like(target)
        if rounds == 0:
            return clicks, prev_mask
        was_training = self.model.training
        self.model.eval()
        gt = target[:, 0].bool().cpu().numpy()
        ignored = ignore[:, 0].cpu().numpy()
        mapper = self.click_mapper()
        for _ in range(rounds):
            with self.profiled("no_grad_pass"):  # ends at the copy to the host, which waits for the GPU
                prev_mask = torch.sigmoid(self.model(image, clicks, prev_mask).logits.float())
                probs = prev_mask[:, 0].cpu().numpy()
            generators = rng.spawn(len(probs))

            def place(b: int) -> Click | None:
                return next_training_click(gt[b], probs[b], generators[b], ignored[b])

            with self.profiled("click_placement"):
                rows = clicks.float().cpu().numpy().copy()  # filled on the host, sent back in one copy
                for b, click in enumerate(mapper(place, range(len(probs)))):
                    free = np.flatnonzero(rows[b, :, 2] < 0)
                    if click is not None and len(free):
                        rows[b, free[0]] = (click.y, click.x, float(click.positive))
                clicks = torch.from_numpy(rows).to(clicks.device, clicks.dtype)
        self.model.train(was_training)
        return clicks, prev_mask

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Keep Lightning's counters on the optimiser steps. Restored from a checkpoint saved before
        a batch's step ran (``interrupted.ckpt`` after a Ctrl-C between a batch's fetch and its
        step), Lightning restarts its logging step and its count of batches (which times
        validation) one ahead, as if it had been saved at a batch's end; with one optimiser step a
        batch both are known here, so metrics and validations fall where an uninterrupted run has
        them. In an uninterrupted run this changes nothing."""
        loop = self.trainer.fit_loop.epoch_loop
        loop._batches_that_stepped = self.global_step
        total = loop.batch_progress.total
        total.ready = total.completed + 1  # this batch, fetched and not yet started

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.config.trainer.profile and batch["image"].is_cuda:
            with self.profiled("gpu_wait"):  # the previous step's queued kernels: CUDA runs ahead of the host
                torch.cuda.synchronize()
        image = batch["image"].float() / 255.0
        target, ignore = batch["target"], batch["ignore"]
        extra = self.config.clicks.max_next_clicks
        clicks = torch.cat([batch["clicks"], batch["clicks"].new_full(
            (len(image), extra, 3), -1.0)], dim=1)
        self.seed_torch_for_step()
        rng = self.click_rounds_rng()
        rounds = int(rng.integers(0, extra + 1))
        start = clicks
        clicks, prev_mask = self.add_error_clicks(image, target, ignore, clicks, rounds, rng)
        if self.config.clicks.bare_first_click:
            clicks, prev_mask, bare = keep_first_clicks_bare(start, clicks, prev_mask)
            self.log("train/bare_first_click", bare.float().mean(), batch_size=len(image))
        output = self.model(image, clicks, prev_mask)
        loss, parts = self.loss(output, target, clicks, ignore)
        batch_size = len(image)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        self.log("train/click_rounds", float(rounds), batch_size=batch_size)
        self.log_samples_seen(batch_size)
        return loss

    @property
    def samples_seen(self) -> int:
        """Samples of the optimiser steps taken, over every resumed part of the run. Counted from the
        step count (the global batch cannot change on resume), so a batch that a Ctrl-C stops before
        its step is not counted, as its resume runs it again."""
        samples, steps = self._counted_from
        return samples + (self.global_step - steps) * self.config.trainer.batch_size * self.trainer.world_size

    def log_samples_seen(self, batch_size: int) -> None:
        """``train/samples_seen`` as it will be once this step is taken."""
        this_step = batch_size * self.trainer.world_size
        self.log("train/samples_seen", float(self.samples_seen + this_step), batch_size=batch_size)

    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.config.optim
        trained = [parameter for parameter in self.parameters() if parameter.requires_grad]
        optimizer = torch.optim.AdamW(trained, lr=optim.lr,
                                      betas=tuple(optim.betas), weight_decay=optim.weight_decay)
        global_batch = self.config.trainer.batch_size * self.trainer.world_size
        milestones = [round(epoch * optim.samples_per_epoch / global_batch)
                      for epoch in optim.lr_drop_epochs]
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: step_decay(step, milestones, optim.lr_drop_factor,
                                               optim.warmup_steps))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1}}

    # ---- validation (the bench's loop on held-out instances) -------------------------------

    def validation_step(self, instance: Instance | None, batch_idx: int) -> None:
        """Log one held-out instance's NoC and IoUs; a rank's padding (``None``) logs the same keys
        with weight 0, so the synced means count each instance once and the ranks' syncs pair up."""
        trainer = self.config.trainer
        if instance is not None and not np.any(instance.mask == 1):
            instance = None  # nothing to find (a polygon over nodata): every click would score a perfect 1.0
        weight = 0 if instance is None else 1
        if instance is None:
            ious = [0.0] * trainer.val_max_clicks
        else:
            ious, _, _ = evaluate_instance(Predictor(self.model, device=self.device), instance, trainer.val_max_clicks)
        noc = float(clicks_to_reach(ious, trainer.val_iou, trainer.val_max_clicks))
        self.log(noc_metric(trainer), noc, prog_bar=True, batch_size=weight, sync_dist=True)
        self.log(SELECTION_METRIC, noc - tie_weight(trainer) * float(np.mean(ious)), batch_size=weight, sync_dist=True)
        for k in MIOU_AT_CLICKS:
            if k <= len(ious):
                self.log(f"val/miou@{k}", float(ious[k - 1]), batch_size=weight, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        scores = {name: float(value) for name, value in self.trainer.callback_metrics.items() if name.startswith("val/")}
        if scores and not all(math.isfinite(value) for value in scores.values()):
            warn("no held-out object had a pixel to score (each lies on nodata or is smaller than a "
                 "pixel): this validation records no held-out score")
        self.last_val = {name: value for name, value in scores.items() if math.isfinite(value)}  # the card is JSON
        self.last_val["step"] = self.trainer.global_step  # an interrupted validation is not rerun: say which one this is

    # ---- bookkeeping that survives --resume -------------------------------------------------

    def elapsed_seconds(self) -> float:
        """Training wall time over every resumed part of the run (the card's ``wall_time_s``)."""
        return self.wall_seconds + time.monotonic() - self._started

    @functools.cached_property
    def data_record(self) -> dict[str, Any]:
        """``training_data`` of this run, read once (a labels file is read to digest it): before
        training, so an edit to the labels during the run does not go into the record."""
        return training_data(self.config.data, self.config.trainer.validates)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mst_geo"] = {"samples_seen": self.samples_seen,
                                 "wall_seconds": self.elapsed_seconds(),
                                 "last_val": self.last_val,
                                 "data": self.data_record,
                                 "optim": dataclasses.asdict(self.config.optim),
                                 "batch": {"batch_size": self.config.trainer.batch_size,
                                           "world_size": self.trainer.world_size},
                                 "model": start_weights(self.config),
                                 "recipe": config_to_dict(self.config),
                                 "resume_changes": self.resume_changes}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("mst_geo", {})
        self._counted_from = (int(state.get("samples_seen", 0)), int(checkpoint.get("global_step", 0)))
        self.wall_seconds = float(state.get("wall_seconds", 0.0))
        self.last_val = dict(state.get("last_val", {}))
        self.resume_changes = list(state.get("resume_changes", []))
        changed = recipe_changes(state["recipe"], self.config) if "recipe" in state else {}
        if changed:
            self.resume_changes.append({"step": int(checkpoint.get("global_step", 0)), "changed": changed})
        self._started = time.monotonic()
