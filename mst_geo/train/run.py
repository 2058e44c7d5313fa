"""``train(config)``: build the model, the data and a Lightning Trainer, fit, export the weights.

One GPU, many GPUs and many nodes all go through Lightning's strategies (DDP when more than one
device); bf16-mixed on GPU, fp32 on CPU. Checkpoints are written every N steps, every M minutes
and when the run is interrupted (Ctrl-C included), all into ``<out>/checkpoints``; ``resume``
continues one of them exactly. The finished weights are exported with ``save_checkpoint`` as
``<out>/model.safetensors``, whose card records what was done (data, recipe, steps, samples,
wall time, hardware, held-out NoC); a pretraining run (``task: mae``) exports its encoder as
``<out>/encoder.safetensors`` instead, the same record in its metadata.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import logging
import os
import pickle
import platform
import signal
import threading
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    Checkpoint,
    LearningRateMonitor,
    ModelCheckpoint,
    OnExceptionCheckpoint,
    TQDMProgressBar,
)
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.profilers import SimpleProfiler
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mst_geo.data.rs import dataset_name
from mst_geo.errors import MSTGeoError, Terminated, warn
from mst_geo.model import MSTModel, create_model, resolve_model, save_checkpoint
from mst_geo.model.checkpoint import CheckpointError, checkpoint_path, read_card, read_pretraining_record
from mst_geo.model.grow import deepen
from mst_geo.model.pretrained import load_vit_weights
from mst_geo.train.config import TrainConfig, config_to_dict
from mst_geo.train.datamodule import ClickDataModule
from mst_geo.train.module import SELECTION_METRIC, ClickTrainingModule, start_weights

CHECKPOINT_DIR = "checkpoints"
EXPORT_NAME = "model.safetensors"
BEST_NAME = "best"


def on_gpu(config: TrainConfig) -> bool:
    """Whether the run will use CUDA devices (``accelerator: auto`` picks them when present)."""
    accelerator = config.trainer.accelerator
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(config: TrainConfig) -> str:
    """``auto``: bf16-mixed on GPU, 32-true elsewhere; anything else is passed to Lightning."""
    if config.trainer.precision != "auto":
        return config.trainer.precision
    return "bf16-mixed" if on_gpu(config) else "32-true"


def build_model(config: TrainConfig) -> MSTModel:
    """The recipe's network, started from ``model.init`` when given.

    An MST checkpoint (``default`` or a ``.safetensors`` with a card) brings its own architecture,
    so ``--init default`` works with any recipe (a different preset is reported, and the exported
    card records the real one), deepened first when the recipe sets ``model.grow_depth``; any
    other weights file is read as plain ViT/MAE weights into the recipe's network
    (``model.pretrained.load_vit_weights``).
    """
    init = config.model.init
    if init is None:
        return create_model(config.model.preset, **config.model.overrides)
    if mst_init_path(init) is not None:
        model, _ = resolve_model(init)
        if model.config.preset != config.model.preset:
            warn(f"--init {init}: training its {model.config.preset} network, not the "
                 f"recipe's {config.model.preset}")
        # the init's inference settings were chosen for its own weights: validate and export at its
        # input_size, one pass a click, no mirror, until the new weights get theirs (scripts/ship_model.py)
        model.config = dataclasses.replace(model.config, inference_size=None, first_click_passes=1, flip=False)
        model.card = None  # its weights are about to change: the init's card no longer describes them
        grow_depth = config.model.grow_depth
        if grow_depth is not None:
            if grow_depth <= model.config.depth:
                raise MSTGeoError(f"'model.grow_depth' is {grow_depth}, but --init {init} already has "
                                  f"{model.config.depth} blocks", config.source)
            model = deepen(model, grow_depth)
        return model.train()
    if config.model.grow_depth is not None:
        raise MSTGeoError(f"'model.grow_depth' deepens an MST checkpoint, but --init {init} is plain "
                          "ViT weights", config.source)
    model = create_model(config.model.preset, **config.model.overrides)
    load_vit_weights(model, Path(init).expanduser())
    return model


def is_mst_checkpoint(path: Path) -> bool:
    """A ``.safetensors`` file carrying an mst-geo model card (else: plain ViT weights, or none)."""
    try:
        read_card(path)
    except CheckpointError:
        return False
    return True


def mst_init_path(init: str | None) -> Path | None:
    """The MST checkpoint file ``--init`` names (``default`` is the packaged one), or None when it
    names no MST checkpoint (nothing, or plain ViT/MAE weights)."""
    if init is None:
        return None
    path = checkpoint_path(init)
    return path if is_mst_checkpoint(path) else None


def init_lineage(init: str | None) -> dict | None:
    """What an MST checkpoint given as ``--init`` had been through (its file, digest when it was
    shipped, and training record), so a continued run's card tells the whole history; for an
    encoder of a pretraining run (``task: mae``) its file and record; None for other starts."""
    path = mst_init_path(init)
    if path is None:
        pretraining = None if init is None else read_pretraining_record(Path(init).expanduser())
        return None if pretraining is None else {"path": str(Path(init).expanduser()), "pretraining": pretraining}
    card = read_card(path)
    return {"path": str(path), "weights_sha256": card.get("weights_sha256"),
            "training": card.get("training")}


def total_samples(samples_seen: int, lineage: dict | None) -> int:
    """Samples seen by this run plus every run its ``--init`` weights came from."""
    earlier = ((lineage or {}).get("training") or {})
    return samples_seen + int(earlier.get("total_samples_seen", earlier.get("samples_seen", 0)))


def find_resume_checkpoint(resume: str, out: Path) -> Path:
    """``resume`` as a ``.ckpt`` file, or a run folder / ``auto`` (= ``out``): its newest checkpoint
    (the best-NoC one is skipped: it may be older than the others)."""
    candidate = out if resume == "auto" else Path(resume).expanduser()
    if not candidate.exists():
        problem = "--resume auto: no run there yet (start it without --resume)" if resume == "auto" else "--resume: not found"
        raise MSTGeoError(problem, candidate)
    if candidate.is_file():
        return candidate
    folder = candidate / CHECKPOINT_DIR if (candidate / CHECKPOINT_DIR).is_dir() else candidate
    # a dangling link (last.ckpt to a step checkpoint deleted since) names no checkpoint
    checkpoints = sorted((p for p in folder.glob("*.ckpt") if not p.stem.startswith(BEST_NAME) and p.exists()),
                         key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    if not checkpoints:
        raise MSTGeoError("no Lightning checkpoint (*.ckpt) to resume from", candidate)
    for newest in reversed(checkpoints[1:]):  # one cut short (a kill during its write): the one before it
        try:
            read_training_checkpoint(newest)
            return newest
        except MSTGeoError as error:
            warn(f"{error}; resuming from an older checkpoint")
    return checkpoints[0]


def read_training_checkpoint(path: Path) -> dict:
    """A Lightning checkpoint's contents (tensors memory-mapped, not read); ``MSTGeoError`` for a
    file that is none (cut short, another kind of file)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError, OSError,
            zipfile.BadZipFile) as error:
        raise MSTGeoError(f"--resume: not a Lightning checkpoint ({type(error).__name__})", path) from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise MSTGeoError("--resume: not a Lightning checkpoint of `mst-geo train` (no state_dict)", path)
    return checkpoint


def check_resumable(path: Path, module: L.LightningModule, max_steps: int, world_size: int) -> None:
    """Refuse, before anything runs, a ``--resume`` file that Lightning would fail on halfway: not
    a checkpoint of ``mst-geo train``, one of another network (a run started with another
    ``--init``/preset), of other data, optimiser settings or samples per step (``world_size``
    processes of this recipe's batch), or one already past ``--max-steps`` (one at it is exported
    as it is)."""
    if Path(path).suffix == ".safetensors":
        raise MSTGeoError("--resume takes a training checkpoint (.ckpt in the run's checkpoints/); exported "
                          "weights start a new run with --init", path)
    checkpoint = read_training_checkpoint(path)  # shapes only: no tensor read
    state = checkpoint["state_dict"]
    expected = module.state_dict()
    differ = [key for key, value in expected.items()
              if key not in state or tuple(state[key].shape) != tuple(value.shape)]
    differ += [key for key in state if key not in expected]  # a deeper network's extra blocks
    if differ:
        raise MSTGeoError(f"--resume: holds another network than this recipe builds ({len(differ)} "
                          f"weights missing, extra or of another shape, e.g. {differ[0]}); resume with "
                          "the recipe and --init the run started with", path)
    recorded = checkpoint.get("mst_geo") or {}
    started, asked_start = recorded.get("model"), start_weights(module.config)
    changed = _changed_since(started, asked_start)
    if changed:
        differences = ", ".join(f"model.{key} {started[key]} -> {asked_start.get(key)}" for key in changed)
        raise MSTGeoError(f"--resume: the run started from other weights ({differences}); resume with the "
                          "--init it started from (its card records the lineage)", path)
    trained_on, asked = recorded.get("data"), module.data_record
    if trained_on is not None and "datasets" in trained_on:  # recorded as given before names were normalised
        trained_on = {**trained_on, "datasets": sorted(dataset_name(name) for name in trained_on["datasets"])}
    changed = _changed_since(trained_on, asked)
    if "labels" in changed and trained_on.get("labels_digest") == asked.get("labels_digest"):
        changed.remove("labels")  # the same features in a file moved or copied elsewhere
    if "labels_digest" in changed and not str(trained_on["labels_digest"]).startswith("features "):
        changed.remove("labels_digest")  # recorded as the file's bytes (before 2026-11-28): not comparable
    if changed:
        split = ", ".join(f"data.{key} {trained_on[key]} -> {asked.get(key)}" for key in changed if key in SPLIT_KEYS)
        raise MSTGeoError(f"--resume: the run trained on {_data_words(trained_on)}, this command names "
                          f"{_data_words(asked)}{f' ({split})' if split else ''}; resume with the same data, or "
                          "start a new run in another --out", path)
    trained_with, asked_optim = recorded.get("optim"), dataclasses.asdict(module.config.optim)
    changed = _changed_since(trained_with, asked_optim)
    if changed:  # Lightning restores the optimiser and its schedule: new values would be recorded, never used
        differences = ", ".join(f"optim.{key} {trained_with[key]} -> {asked_optim.get(key)}" for key in changed)
        raise MSTGeoError(f"--resume: the run's optimiser settings differ ({differences}); a resumed run keeps the "
                          "checkpoint's optimiser: resume with the run's settings, or start a new run from its "
                          "weights with --init", path)
    _check_same_batch(recorded.get("batch"), module.config.trainer.batch_size, world_size, path)
    step = int(checkpoint.get("global_step", 0))
    if step > max_steps:
        raise MSTGeoError(f"--resume: already at step {step}, past --max-steps {max_steps}; raise --max-steps "
                          f"above it to continue, or set it to {step} to export these weights", path)


def _check_same_batch(recorded: dict | None, batch_size: int, world_size: int, path: Path) -> None:
    """Refuse a resume with other samples per step: the sampler places a step's samples and the LR
    drops fall at steps, both counted in the run's global batch (another would replay samples and
    move the drops). A checkpoint from before this record passes."""
    if not recorded or recorded["batch_size"] * recorded["world_size"] == batch_size * world_size:
        return
    raise MSTGeoError(f"--resume: the run took {recorded['batch_size'] * recorded['world_size']} samples a step "
                      f"(batch size {recorded['batch_size']} x {recorded['world_size']} process(es)), this command "
                      f"{batch_size * world_size} (batch size {batch_size} x {world_size}); resume with the run's batch "
                      "size and devices (--batch-size, --devices; trainer.batch_size, trainer.devices), or start "
                      "a new run from its weights with --init", path)


def _changed_since(recorded: dict | None, asked: dict) -> list[str]:
    """The keys a checkpoint recorded with another value than this command asks for. Only what it
    recorded counts: a checkpoint written before a key was (the labels' content, a later optimiser
    setting, the record itself) is not checked on it."""
    return [key for key in recorded or {} if recorded[key] != asked.get(key)]


SPLIT_KEYS = ("val_fraction", "max_images", "held_out_list", "holds_out")
"""What picks a run's held-out images, beside its data (``training_data``)."""


def _data_words(data: dict) -> str:
    """A run's training data in a few words (scene and labels, or dataset names)."""
    if "scene" in data:
        return f"{data['scene']} with {data['labels']} ({data.get('labels_digest', 'content not recorded')})"
    return "the datasets " + ", ".join(data.get("datasets", []))


class InterruptCheckpoint(OnExceptionCheckpoint):
    """``interrupted.ckpt`` on Ctrl-C or SIGTERM only: a run that failed (bad data, a bug) must not
    leave a checkpoint that ``--resume auto`` would pick over the good ones."""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):  # resumable: optimiser and loops too
            trainer.save_checkpoint(self.ckpt_path, weights_only=False)  # said, Lightning prints no default note


class StopTogether(Callback):
    """With several processes, Ctrl-C and SIGTERM stop every rank at the same step, then take
    Lightning's interrupt path (``interrupted.ckpt``, saved by all ranks together). An exception
    raised from a signal handler lands wherever each rank happens to be, and Lightning's own SIGTERM
    handler even broadcasts from inside it: a stop signalled to every rank (a scheduler, Ctrl-C in
    the terminal) left them in mismatched collectives, a gloo error and exit 1 or a hang, measured
    on 2 CPU processes. Here the handler only notes the signal and the ranks agree on it after each
    batch (one small all-reduce), so a signal to rank 0 alone stops them all; a second Ctrl-C
    interrupts at once. Installed when training starts, after Lightning's handlers (its teardown
    puts the caller's back)."""

    def __init__(self) -> None:
        self.signalled: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1 and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._note)
            signal.signal(signal.SIGINT, self._note)

    def _note(self, signum: int, frame: object) -> None:
        if signum == signal.SIGINT and self.signalled is not None:
            raise KeyboardInterrupt  # asked twice: stop now, wherever this rank is
        self.signalled = signum

    def _stop_if_any_rank_was_signalled(self, trainer: L.Trainer) -> None:
        if trainer.world_size > 1 and trainer.strategy.reduce_boolean_decision(self.signalled is not None, all=False):
            raise KeyboardInterrupt

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._stop_if_any_rank_was_signalled(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._stop_if_any_rank_was_signalled(trainer)  # a long validation: ranks hold equal shares


class FinalStepCheckpoint(Checkpoint):
    """The finished step as the run's step checkpoint and ``last.ckpt`` (periodic saves stop short
    of it), so ``--resume auto`` extends a finished run from where it ended. Runs in the training
    processes (a spawned launcher's main process never learns the final step), after the
    ModelCheckpoints (a Checkpoint, listed after them), so ``last.ckpt`` stays a link."""

    def __init__(self, checkpoints: Path):
        self.checkpoints = checkpoints

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        final = self.checkpoints / f"step{trainer.global_step:07d}.ckpt"
        if not trainer.strategy.broadcast(final.exists(), src=0):  # every rank decides alike: saving is collective
            trainer.save_checkpoint(final, weights_only=False)  # resumable: optimiser and loops too
        if trainer.is_global_zero:
            for older in self.checkpoints.glob("step*.ckpt"):
                if older != final:
                    older.unlink()
            last = self.checkpoints / "last.ckpt"
            last.unlink(missing_ok=True)
            last.symlink_to(final.name)


class _StartupChatter(logging.Filter):
    """Drops Lightning's start-up lines that tell a user nothing (the card records the hardware;
    an advert; our validation setting echoed back)."""

    NOISE = ("GPU available", "TPU available", "💡 Tip", "`Trainer(limit_val_batches")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.NOISE)


def build_loggers(out: Path) -> list[Logger]:
    """CSV always; TensorBoard as well when it is installed."""
    loggers: list[Logger] = [CSVLogger(out, name="logs")]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(TensorBoardLogger(out, name="tensorboard"))
    return loggers


def build_trainer(config: TrainConfig, out: Path,
                  extra_callbacks: Sequence[Callback] = ()) -> L.Trainer:
    """The Lightning Trainer for the recipe (callbacks, loggers, devices, precision)."""
    trainer = config.trainer
    checkpoints = out / CHECKPOINT_DIR
    callbacks = [*extra_callbacks,
        ModelCheckpoint(dirpath=checkpoints, filename="step{step:07d}", auto_insert_metric_name=False,
                        every_n_train_steps=trainer.checkpoint_every_steps, save_top_k=1,
                        save_last="link", enable_version_counter=False),
        ModelCheckpoint(dirpath=checkpoints, filename="timed", save_top_k=1, enable_version_counter=False,
                        train_time_interval=dt.timedelta(minutes=trainer.checkpoint_every_minutes)),
        InterruptCheckpoint(dirpath=checkpoints, filename="interrupted"),
        StopTogether(),
        LearningRateMonitor(logging_interval="step"),
        TQDMProgressBar(refresh_rate=max(1, min(trainer.log_every_steps, 20))),
    ]
    validate = trainer.validates
    if validate:  # model selection on the held-out NoC (lower is better; ties: the better IoU curve)
        callbacks.append(ModelCheckpoint(dirpath=checkpoints, filename=BEST_NAME, save_top_k=1,
                                         monitor=SELECTION_METRIC, mode="min",
                                         enable_version_counter=False))
    callbacks.append(FinalStepCheckpoint(checkpoints))
    if on_gpu(config):
        torch.set_float32_matmul_precision("high")
    precision, loggers = resolve_precision(config), build_loggers(out)
    try:
        return L.Trainer(
            accelerator=trainer.accelerator,
            devices=trainer.devices,
            num_nodes=trainer.num_nodes,
            strategy=trainer.strategy,
            precision=precision,
            max_steps=trainer.max_steps,
            max_time=None if trainer.max_minutes is None else dt.timedelta(minutes=trainer.max_minutes),
            max_epochs=-1,
            val_check_interval=trainer.val_every_steps if validate else None,
            check_val_every_n_epoch=None,
            limit_val_batches=1.0 if validate else 0,
            num_sanity_val_steps=0,
            log_every_n_steps=trainer.log_every_steps,
            gradient_clip_val=trainer.grad_clip,
            use_distributed_sampler=False,
            callbacks=callbacks,
            logger=loggers,
            default_root_dir=out,
            enable_model_summary=False,
            profiler=SimpleProfiler(dirpath=out, filename="profile") if trainer.profile else None,
        )
    except (ValueError, TypeError, ImportError, MisconfigurationException) as error:  # "bf17", no GPU, --devices abc
        raise MSTGeoError(f"trainer settings: {str(error).splitlines()[0]}", config.source) from None


def warn_if_waiting_for_nodes(trainer: L.Trainer) -> None:
    """Several machines without a launcher (Slurm, torchrun, …) rendezvous through environment
    variables; unset, every machine is node 0 and waits at 127.0.0.1 for ever without a word."""
    if trainer.num_nodes < 2 or not isinstance(trainer.strategy.cluster_environment, LightningEnvironment):
        return
    if all(name in os.environ for name in ("NODE_RANK", "MASTER_ADDR", "MASTER_PORT")):
        return
    environment = trainer.strategy.cluster_environment
    warn(f"trainer.num_nodes is {trainer.num_nodes} but no cluster launcher was found: this machine "
         f"will wait as node {trainer.node_rank} at {environment.main_address}:{environment.main_port}; "
         "run the same command on every machine with NODE_RANK (0, 1, …), MASTER_ADDR (node 0's "
         "address) and MASTER_PORT set, or start it with srun or torchrun")


def hardware(trainer: L.Trainer) -> str:
    """What the run ran on, in words, for the card."""
    if trainer.strategy.root_device.type == "cuda":
        name = torch.cuda.get_device_name(trainer.strategy.root_device)
        return f"{trainer.world_size} x {name}"
    return f"{trainer.world_size} process(es) on {os.cpu_count()} CPU cores ({platform.machine()})"


def model_card(config: TrainConfig, module: ClickTrainingModule, data: ClickDataModule,
               trainer: L.Trainer, resumed_from: Path | None) -> dict:
    """The training record stored beside the weights."""
    lineage = init_lineage(config.model.init)
    recipe = config_to_dict(config)
    if config.data.scene is not None:  # the card travels with the weights: no URL signature in it
        from mst_geo.geo.raster import public_source  # rasterio only for scene runs

        recipe["data"]["scene"] = public_source(config.data.scene)
        labels = Path(str(config.data.labels)).expanduser()
        if labels.exists():  # a local file as an absolute path: the bench finds it from any folder
            recipe["data"]["labels"] = str(labels.resolve())
        recipe["data"]["datasets"] = []  # the scene's polygons alone trained it, whatever the recipe lists
    return {
        "name": config.name,
        "input_size": config.data.crop_size,
        "training": {
            "recipe": recipe,
            "data": data.description,
            "init": config.model.init,
            "steps": trainer.global_step,
            "samples_seen": module.samples_seen,
            "total_samples_seen": total_samples(module.samples_seen, lineage),
            "init_card": lineage,
            "wall_time_s": round(module.elapsed_seconds(), 1),
            "hardware": hardware(trainer),
            "precision": str(trainer.precision),
            "resumed_from": None if resumed_from is None else str(resumed_from),
            "resume_changes": module.resume_changes,
            "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "metrics": {"held_out": module.last_val},
    }


def train(config: TrainConfig, resume: str | None = None,
          callbacks: Sequence[Callback] = ()) -> Path:
    """Run the recipe to ``trainer.max_steps`` and return the exported checkpoint's path.

    A fresh run refuses a folder that already holds checkpoints (resume it or pick another
    ``out``), so nothing is silently continued or overwritten.
    """
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise MSTGeoError("the run folder (--out) is a file", out)
    if resume:
        resume_path = find_resume_checkpoint(resume, out)
    else:
        resume_path = None
        if any((out / CHECKPOINT_DIR).glob("*.ckpt")):
            raise MSTGeoError("run folder already holds checkpoints: pass --resume auto to continue "
                              "it, or choose another --out", out)
    chatter, lightning_log = _StartupChatter(), logging.getLogger("lightning.pytorch.utilities.rank_zero")
    lightning_log.addFilter(chatter)  # this run only: a notebook's own Trainers keep their lines
    # Processes forked during the run (loader workers, ddp_fork ranks) must not inherit a started
    # OpenCV thread pool (indexing remote-sensing tiles runs OpenCV here): their own
    # setNumThreads(1) hung on its inherited state. The caller gets its threads back, however the run ends.
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return _train(config, out, resume_path, callbacks)
    finally:
        cv2.setNumThreads(opencv_threads)
        lightning_log.removeFilter(chatter)


def _train(config: TrainConfig, out: Path, resume_path: Path | None, callbacks: Sequence[Callback]) -> Path:
    """The run itself (``train`` checked the folder): trainer, data, network, fit, export."""
    if config.trainer.cpu_threads and not on_gpu(config):
        torch.set_num_threads(config.trainer.cpu_threads)
    L.seed_everything(config.trainer.seed, workers=True, verbose=False)
    trainer = build_trainer(config, out, callbacks)  # first: a bad device/precision fails at once
    warn_if_waiting_for_nodes(trainer)
    data = ClickDataModule(config)
    data.setup("fit")
    module = training_module(config)
    module.data_record  # read the labels' features now, as training reads them (cached)
    if resume_path is not None:
        check_resumable(resume_path, module, config.trainer.max_steps, trainer.world_size)
    with warnings.catch_warnings():
        # With OnExceptionCheckpoint present Lightning turns ckpt_path=None into "last" and warns;
        # a fresh run was checked above to have no checkpoint, so there is nothing to warn about.
        warnings.filterwarnings("ignore", message=r".*(ckpt_path=None|no last checkpoint).*")
        # Lightning cannot see that ResumableSampler restarts at the restored global step.
        warnings.filterwarnings("ignore", message=r".*dataloader is not resumable.*")
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated")  # Lightning's own, on torch 2.10+
        # a fresh run into a folder with checkpoints was refused above: on resume they are expected
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        # a run shorter than trainer.log_every_steps (a short fine-tune) logs at its end anyway
        warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging interval")
        sigint = signal.getsignal(signal.SIGINT)
        try:
            trainer.fit(module, datamodule=data, ckpt_path=resume_path)
        except SystemExit:  # Lightning exits after saving interrupted.ckpt on Ctrl-C or SIGTERM
            if trainer.interrupted:
                by_term = trainer.received_sigterm or any(isinstance(c, StopTogether) and c.signalled == signal.SIGTERM
                                                          for c in trainer.callbacks)
                stopped = Terminated if by_term else KeyboardInterrupt
                raise stopped(f"at step {trainer.global_step}") from None
            raise
        finally:  # Lightning ignores Ctrl-C from its first one on: give it back (a notebook's interrupt)
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, sigint)
    if config.task == "mae":
        from mst_geo.train.mae import ENCODER_NAME, save_encoder

        export, save = out / ENCODER_NAME, save_encoder
    else:
        export, save = out / EXPORT_NAME, save_checkpoint
    if trainer.is_global_zero:
        save(module.model, export, model_card(config, module, data, trainer, resume_path))
    return export


def training_module(config: TrainConfig) -> ClickTrainingModule:
    """The LightningModule of the recipe's task: click training, or masked-autoencoder
    pretraining of the encoder (``task: mae``)."""
    if config.task == "mae":
        from mst_geo.train.mae import MAEPretrainingModule

        return MAEPretrainingModule(build_model(config), config)
    return ClickTrainingModule(build_model(config), config)
