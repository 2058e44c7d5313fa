"""Training recipes: YAML files (``configs/train/*.yaml``) checked into typed dataclasses.

A recipe is validated before anything heavy starts, so a typo (an unknown key, a string where a
number belongs, a missing data folder) stops with one line naming the file and the key instead of
failing an hour into a run. Command-line overrides use dotted keys (``trainer.max_steps``) and go
through the same checks. A recipe may hold ``extends: other.yaml`` (relative to itself) and then
only what differs from that recipe, so a training phase reads as its changes; it must set its own
``out``. Paths inside a recipe (``data.root``, ``out``, ``model.init``) stay relative to the
current directory.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mst_geo.clicks.sampler import MultiPointSampler
from mst_geo.data.iseg import DEFAULT_DATA_ROOT
from mst_geo.errors import MSTGeoError
from mst_geo.geo.bands import band_choice
from mst_geo.model.config import PRESETS, check_fields, preset_config


@dataclass
class ModelSection:
    """Which network to train and where its first weights come from."""

    preset: str = "mst_tiny"
    overrides: dict = field(default_factory=dict)  # MSTConfig fields passed to create_model
    init: str | None = None  # checkpoint (path or "default") whose weights start the run
    # deepen the ``init`` MST checkpoint to this many blocks, new ones starting as the identity
    # (model/grow.py): more capacity without losing what the init learnt
    grow_depth: int | None = None


@dataclass
class DataSection:
    """Where the samples come from and how each one is augmented (see ``train/samples.py``)."""

    root: str = DEFAULT_DATA_ROOT  # RITM-layout folder or a pack from make_train_pack.py
    datasets: list = field(default_factory=lambda: ["COCO_MVal", "DUTS_TR", "CCP"])
    val_list: str | None = None  # file of held-out "dataset/instance" names; default: root/val.txt
    val_fraction: float = 0.05  # held out when no list exists (seeded, by image)
    max_images: int | None = None  # per dataset, for smoke runs
    scene: str | None = None  # a user's GeoTIFF (with ``labels``) instead of the datasets
    labels: str | None = None  # vector labels for ``scene`` (any CRS)
    scene_bands: list | None = None  # the scene's R,G,B (or one grey) band numbers or descriptions; default: by colour or satellite band names
    crop_size: int = 320
    scale_range: list = field(default_factory=lambda: [0.5, 1.5])  # x the fit-into-crop scale
    flip_prob: float = 0.5
    jitter_prob: float = 0.75  # probability of each colour change below
    brightness: float = 0.3  # added, as a fraction of 255
    contrast: list = field(default_factory=lambda: [-0.2, 0.5])  # gain - 1
    rgb_shift: float = 20.0  # per-channel shift, 0..255 units
    saturation: float = 0.0  # gain - 1 amplitude
    hue: float = 0.0  # degrees
    copy_paste_prob: float = 0.0  # paste an object of another image into the crop
    merge_objects_prob: float = 0.15  # target = union of two objects of the image (RITM)
    pseudo_object_prob: float = 0.0  # target = a region of the image's over-segmentation (train/pseudo_objects.py)
    min_object_area: int = 1000  # pixels the object must keep inside the crop
    workers: int = 4


@dataclass
class ClicksSection:
    """RITM click simulation: the first-click sampler and the iterative correction rounds.
    The sampler's defaults live in ``MultiPointSampler`` alone; a recipe may override them."""

    max_points: int = MultiPointSampler.max_points
    gamma: float = MultiPointSampler.gamma
    erode_prob: float = MultiPointSampler.erode_prob
    negative_bg_prob: float = MultiPointSampler.negative_bg_prob
    negative_other_prob: float = MultiPointSampler.negative_other_prob
    negative_border_prob: float = MultiPointSampler.negative_border_prob
    first_click_prob: float = MultiPointSampler.first_click_prob  # start from one core positive click
    max_next_clicks: int = 3  # no-grad rounds per batch: uniform in 0..max_next_clicks
    bare_first_click: bool = False  # samples of one positive click skip the rounds: trained on that state itself


@dataclass
class LossSection:
    """Weights handed to ``MSTLoss``."""

    focal_weight: float = 1.0
    contrastive_weight: float = 0.1


@dataclass
class OptimSection:
    """AdamW with step decay expressed in epochs of ``samples_per_epoch`` samples."""

    lr: float = 5e-6
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.01
    samples_per_epoch: int = 30000
    lr_drop_epochs: list = field(default_factory=lambda: [50, 70])
    lr_drop_factor: float = 0.1
    warmup_steps: int = 0


@dataclass
class MAESection:
    """Masked-autoencoder pretraining (``task: mae``, ``train/mae.py``); MAE's own defaults."""

    mask_ratio: float = 0.75  # share of each image's patches hidden from the encoder
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    norm_pix_loss: bool = True  # rebuild each patch normalised by its own mean and variance


TASKS = ("clicks", "mae")
"""``clicks``: iterative click training (the segmenter); ``mae``: encoder pretraining on images alone."""


@dataclass
class TrainerSection:
    """Lightning Trainer settings, checkpoints, logging and the validation NoC."""

    max_steps: int = 1000
    max_minutes: float | None = None  # also stop (and export) after this wall time: lent GPU slices
    batch_size: int = 8  # per device
    accelerator: str = "auto"
    devices: Any = "auto"  # int, list of ids or "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp" for many GPUs; "auto" picks it when devices > 1
    precision: str = "auto"  # "auto": bf16-mixed on GPU, 32-true on CPU
    seed: int = 0
    log_every_steps: int = 10
    checkpoint_every_steps: int = 500
    checkpoint_every_minutes: float = 10.0
    val_every_steps: int = 1000  # 0 disables validation
    val_instances: int = 50
    val_max_clicks: int = 20
    val_iou: float = 0.85
    grad_clip: float | None = None
    cpu_threads: int | None = None  # torch threads on CPU runs (None: torch's default)
    click_threads: int = 1  # threads placing the no-grad rounds' clicks (for GPU runs; CPU: 1)
    profile: bool = False  # seconds per training phase (loading, clicks, passes) to fit-profile[-rank].txt

    @property
    def validates(self) -> bool:
        """Whether the run scores held-out objects (and keeps best.ckpt). Not tied to ``max_steps``:
        a resumed run that extends a short one must keep the same objects held out."""
        return self.val_every_steps > 0 and self.val_instances > 0


@dataclass
class TrainConfig:
    """A whole recipe; ``source`` is the YAML it came from (for messages and the model card)."""

    name: str = "recipe"
    out: str = "runs/train"
    task: str = "clicks"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    clicks: ClicksSection = field(default_factory=ClicksSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    mae: MAESection = field(default_factory=MAESection)
    source: str | None = None


def _accepts(hint: Any, value: Any) -> bool:
    """Whether ``value`` (from YAML) fits the annotation ``hint`` (ints are valid floats)."""
    if hint is Any:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_accepts(option, value) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _number_text(hint: Any, value: Any) -> Any:
    """YAML 1.1 reads ``5e-6`` (no dot) as a string: turn it into the float the key expects."""
    if isinstance(value, str) and _accepts(hint, 1.5) and not _accepts(hint, value):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _fill(section: Any, values: dict, where: str, source: str | None) -> None:
    """Set ``values`` on a dataclass instance, recursing into sub-sections, checking every key."""
    if not isinstance(values, dict):
        raise MSTGeoError(f"'{where or 'top level'}' must be a mapping, got {values!r}", source)
    hints = typing.get_type_hints(type(section))
    names = {f.name for f in dataclasses.fields(section)} - {"source"}
    for key, value in values.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise MSTGeoError(f"unknown key '{dotted}' (known: {', '.join(sorted(names))})", source)
        current = getattr(section, key)
        value = _number_text(hints[key], value)
        if dataclasses.is_dataclass(current):
            _fill(current, value, dotted, source)
        elif isinstance(current, dict) and isinstance(value, dict):  # model.overrides: key by key, as extends
            merged = _merge(current, value)
            setattr(section, key, {name: item for name, item in merged.items() if item is not None})  # null resets
        elif _accepts(hints[key], value):
            setattr(section, key, value)
        else:
            expected = getattr(hints[key], "__name__", str(hints[key])).replace("NoneType", "None")
            hint = " (a YAML list: --set key=[a,b])" if isinstance(current, list) and isinstance(value, str) else ""
            raise MSTGeoError(f"'{dotted}' must be {expected}, got {value!r}{hint}", source)


def _check_ranges(config: TrainConfig) -> None:
    """Values that parse but cannot work (a zero batch, a probability of 3)."""
    source = config.source
    positive = {
        "trainer.max_steps": config.trainer.max_steps,
        "trainer.batch_size": config.trainer.batch_size,
        "data.crop_size": config.data.crop_size,
        "clicks.max_points": config.clicks.max_points,
        "optim.samples_per_epoch": config.optim.samples_per_epoch,
        "optim.lr": config.optim.lr,
        "trainer.click_threads": config.trainer.click_threads,
        "mae.decoder_dim": config.mae.decoder_dim,
        "mae.decoder_depth": config.mae.decoder_depth,
        "mae.decoder_heads": config.mae.decoder_heads,
        "clicks.gamma": config.clicks.gamma,
        "optim.lr_drop_factor": config.optim.lr_drop_factor,
        "trainer.log_every_steps": config.trainer.log_every_steps,
        "trainer.checkpoint_every_steps": config.trainer.checkpoint_every_steps,
        "trainer.checkpoint_every_minutes": config.trainer.checkpoint_every_minutes,
        "trainer.val_max_clicks": config.trainer.val_max_clicks,
        "trainer.num_nodes": config.trainer.num_nodes,
    }
    unset_or_positive = {
        "trainer.max_minutes": config.trainer.max_minutes,
        "trainer.cpu_threads": config.trainer.cpu_threads,
    }
    positive |= {key: value for key, value in unset_or_positive.items() if value is not None}
    for key, value in positive.items():
        if not value > 0:  # NaN too
            raise MSTGeoError(f"'{key}' must be > 0, got {value}", source)
    not_negative = {
        "clicks.max_next_clicks": config.clicks.max_next_clicks,
        "data.workers": config.data.workers,
        "data.min_object_area": config.data.min_object_area,
        "optim.weight_decay": config.optim.weight_decay,
        "optim.warmup_steps": config.optim.warmup_steps,
        "trainer.val_every_steps": config.trainer.val_every_steps,
        "trainer.val_instances": config.trainer.val_instances,
        "trainer.grad_clip": 0 if config.trainer.grad_clip is None else config.trainer.grad_clip,  # 0: off
    }
    for key, value in not_negative.items():
        if not value >= 0:
            raise MSTGeoError(f"'{key}' must be 0 or more, got {value}", source)
    if not 0 <= config.trainer.seed < 2**32:
        raise MSTGeoError(f"'trainer.seed' must be in 0..{2**32 - 1}, got {config.trainer.seed}", source)
    if not 0 < config.trainer.val_iou <= 1:
        raise MSTGeoError(f"'trainer.val_iou' is an IoU in (0, 1], got {config.trainer.val_iou}", source)
    if config.task not in TASKS:
        raise MSTGeoError(f"'task' is {config.task!r}; known: {', '.join(TASKS)}", source)
    if config.task == "mae" and config.trainer.validates:
        raise MSTGeoError("'task: mae' pretrains the encoder and scores no held-out NoC: set "
                          "trainer.val_every_steps: 0", source)
    if config.task == "mae" and config.data.scene is not None:
        raise MSTGeoError("'task: mae' pretrains on the datasets' images; a scene run fine-tunes the "
                          "segmenter: leave out data.scene", source)
    if not 0 < config.mae.mask_ratio < 1:
        raise MSTGeoError(f"'mae.mask_ratio' must be in (0, 1), got {config.mae.mask_ratio}", source)
    if config.mae.decoder_dim % config.mae.decoder_heads:
        raise MSTGeoError(f"'mae.decoder_dim' {config.mae.decoder_dim} is not divisible by 'mae.decoder_heads' "
                          f"{config.mae.decoder_heads}", source)
    if config.data.crop_size % 16:
        raise MSTGeoError(f"'data.crop_size' must be a multiple of 16, got {config.data.crop_size}",
                          source)
    probabilities = {f"data.{key}": getattr(config.data, key)
                     for key in ("flip_prob", "jitter_prob", "copy_paste_prob", "merge_objects_prob",
                                 "pseudo_object_prob")}
    probabilities |= {f"clicks.{key}": getattr(config.clicks, key)
                      for key in ("first_click_prob", "erode_prob", "negative_bg_prob", "negative_other_prob",
                                  "negative_border_prob")}
    for key, value in probabilities.items():
        if not 0 <= value <= 1:
            raise MSTGeoError(f"'{key}' is a probability, got {value}", source)
    if not 0 < config.data.val_fraction < 1:
        raise MSTGeoError(f"'data.val_fraction' must be in (0, 1), got {config.data.val_fraction}",
                          source)
    lists = {
        "data.datasets": (config.data.datasets, str, None),
        "data.scale_range": (config.data.scale_range, float, 2),
        "data.contrast": (config.data.contrast, float, 2),
        "optim.betas": (config.optim.betas, float, 2),
        "optim.lr_drop_epochs": (config.optim.lr_drop_epochs, float, None),
    }
    for key, (values, kind, length) in lists.items():
        _check_list(key, values, kind, length, source)
    if not all(0 <= beta < 1 for beta in config.optim.betas):
        raise MSTGeoError(f"'optim.betas' must each be in [0, 1), got {config.optim.betas}", source)
    low, high = config.data.scale_range
    if not 0 < low <= high:
        raise MSTGeoError("'data.scale_range' must be [low, high] with 0 < low <= high", source)
    if (config.data.scene is None) != (config.data.labels is None):
        raise MSTGeoError("'data.scene' and 'data.labels' go together (a GeoTIFF and its labels)",
                          source)
    if config.data.scene_bands is not None:
        if config.data.scene is None:
            raise MSTGeoError("'data.scene_bands' chooses 'data.scene''s bands: set the scene too", source)
        try:
            band_choice(config.data.scene_bands)
        except MSTGeoError as error:
            raise MSTGeoError(f"'data.scene_bands': {error}", source) from None
    if config.model.grow_depth is not None and config.model.init is None:
        raise MSTGeoError("'model.grow_depth' deepens the MST checkpoint that 'model.init' names: "
                          "set one", source)
    if config.model.preset not in PRESETS:
        raise MSTGeoError(f"'model.preset' is {config.model.preset!r}; known: {', '.join(PRESETS)}", source)
    try:
        check_fields(config.model.overrides)
    except KeyError as error:
        raise MSTGeoError(f"'model.overrides' has {error.args[0]}", source) from None
    try:
        preset_config(config.model.preset, **config.model.overrides)
    except (ValueError, TypeError) as error:
        raise MSTGeoError(f"'model.overrides' do not make a valid {config.model.preset}: {error}", source) from None


def _check_list(key: str, values: list, kind: type, length: int | None, source: str | None) -> None:
    """A list key holds ``length`` items (any number when None) of ``kind`` (ints count as floats)."""
    wrong_kind = any(not _accepts(kind, value) for value in values)
    if wrong_kind or (length is not None and len(values) != length):
        what = f"{length} " if length is not None else ""
        raise MSTGeoError(f"'{key}' must be a list of {what}{kind.__name__}s, got {values!r}", source)


def parse_override(item: str) -> tuple[str, Any]:
    """``"optim.lr=1e-4"`` -> ``("optim.lr", 0.0001)``; the value is read as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise MSTGeoError(f"override '{item}' must look like section.key=value")
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise MSTGeoError(f"override '{item}': the value is not valid YAML ({str(error).splitlines()[0]})") from None


def _nest(overrides: dict[str, Any]) -> dict:
    """Dotted keys to nested mappings: {"a.b": 1} -> {"a": {"b": 1}}."""
    nested: dict = {}
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise MSTGeoError(f"override '{dotted}' conflicts with another override that sets '{part}' itself")
        node[leaf] = value
    return nested


def _merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` laid over it: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_recipe(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The recipe's values with its ``extends`` chain resolved (each file checked as it is read)."""
    if not path.is_file():
        raise MSTGeoError("training config not found" + (f" (extended by {seen[-1]})" if seen else ""), path)
    if path.resolve() in seen:
        raise MSTGeoError("extends itself through " + " -> ".join(str(p) for p in seen), path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise MSTGeoError("not a text (UTF-8 YAML) file", path) from None
    except yaml.YAMLError as error:
        raise MSTGeoError(f"not valid YAML ({error.__class__.__name__}: "
                          f"{str(error).splitlines()[0]})", path) from None
    if not isinstance(values, dict):
        raise MSTGeoError(f"'top level' must be a mapping, got {values!r}", path)
    parent = values.pop("extends", None)
    _fill(TrainConfig(), values, "", str(path))  # a bad key is named with the file that holds it
    if parent is None:
        return values
    if not isinstance(parent, str):
        raise MSTGeoError(f"'extends' must be a file name, got {parent!r}", path)
    if "out" not in values:
        raise MSTGeoError(f"extends {parent} but sets no 'out' of its own: it would write into "
                          "that recipe's run folder", path)
    return _merge(_read_recipe(path.parent / parent, (*seen, path.resolve())), values)


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a recipe (and what it extends), apply dotted ``overrides`` (a None value sets the key to
    null, e.g. ``model.init`` to train from scratch) and validate the result."""
    path = Path(path)
    values = _read_recipe(path)
    config = TrainConfig(source=str(path))
    _fill(config, values, "", str(path))
    _fill(config, _nest(dict(overrides or {})), "", f"{path} (command-line override)")
    _check_ranges(config)
    return config


def config_to_dict(config: TrainConfig) -> dict:
    """Plain-data view of the recipe (for the checkpoint card and ``hparams.yaml``)."""
    return dataclasses.asdict(config)
