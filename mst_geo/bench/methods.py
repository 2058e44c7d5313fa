"""Method names of ``mst-geo bench noc --model`` -> objects with set_image/predict.

A baseline name (``grabcut``, ``random-walker``, ``watershed``, ``disk``) gives that baseline;
anything else goes through ``mst_geo.model.resolve_model`` (``default``, a preset, a checkpoint
path) and is wrapped in the shared ``Predictor``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mst_geo.bench.baselines import BASELINES, make_baseline
from mst_geo.clicks.session import ClickMethod
from mst_geo.errors import MSTGeoError, warn
from mst_geo.views import Sides, describe_passes, describe_views, view_sizes, views_json

MIN_VIEW = 16
"""The smallest --view: one patch of every preset."""


@dataclass(frozen=True)
class InferenceOptions:
    """How one bench run drives every model (baselines ignore it): zoom-in, and where given, mirror
    averaging, the view in px and the first-click passes; None keeps each card's own setting.
    Every option given is part of the models' labels, so such rows never mix with the card's own."""

    zoom_in: bool = True
    flip: bool | None = None
    view: Sides | None = None  # kept as a tuple of sides
    first_click_passes: int | None = None

    def __post_init__(self) -> None:
        if self.view is not None:
            object.__setattr__(self, "view", view_sizes(self.view))
            if min(self.view) < MIN_VIEW:
                raise MSTGeoError(f"--view must be at least {MIN_VIEW} px, got {describe_views(self.view)}")

    def describe(self) -> list[str]:
        """The options given, as labels name them: ``["no zoom", "flip", "288+416 px", ...]``."""
        options = [text for text, used in (("no zoom", not self.zoom_in), ("flip", self.flip is True),
                                           ("no flip", self.flip is False)) if used]
        if self.view is not None:
            options.append(describe_views(self.view))
        if self.first_click_passes is not None:
            options.append(describe_passes(self.first_click_passes))
        return options

    def settings(self) -> dict:
        """The run-wide part of a report's settings (each model's resolved values are recorded apart)."""
        return {"zoom_in": self.zoom_in, "view": None if self.view is None else views_json(self.view)}


def split_names(values: Iterable[str]) -> list[str]:
    """Flatten repeated and comma-separated option values, keeping order, dropping repeats."""
    names = [part.strip() for value in values for part in value.split(",") if part.strip()]
    return list(dict.fromkeys(names))


def method_label(name: str, options: InferenceOptions = InferenceOptions(), with_folder: bool = False) -> str:
    """The name a method has in tables: baselines as given, checkpoints by file stem (``folder/stem``
    with ``with_folder``), plus the inference options given instead of the card's."""
    if name in BASELINES:
        return name
    path = Path(name)
    label = (f"{path.parent.name}/{path.stem}" if with_folder else path.stem) if name.endswith(".safetensors") else name
    given = options.describe()
    return f"{label} ({', '.join(given)})" if given else label


def method_labels(names: Sequence[str], options: InferenceOptions = InferenceOptions()) -> dict[str, str]:
    """Table label -> method name for one run. Checkpoints whose file names clash (every training
    run exports ``model.safetensors``) are told apart by their folder (``run2/model``)."""
    plain = [method_label(name, options) for name in names]
    labels = [method_label(name, options, with_folder=plain.count(label) > 1) for name, label in zip(names, plain)]
    clashing = sorted({label for label in labels if labels.count(label) > 1})
    if clashing:
        raise MSTGeoError(f"--model entries share the label {clashing[0]!r} in the tables; copy one checkpoint "
                          "to another file name")
    return dict(zip(labels, names))


def checkpoint_file(name: str) -> Path | None:
    """The checkpoint file a --model name means (None: a baseline or a preset)."""
    if name in BASELINES:
        return None
    from mst_geo.model.checkpoint import checkpoint_path

    path = checkpoint_path(name)
    return path if path.is_file() else None


def warn_if_trained_on(name: str, label: str, labels_files: Sequence[str | Path], datasets: Sequence[str] = ()) -> None:
    """Warn when a checkpoint is benched on what its last run trained on: the same polygons file
    of a labelled scene, or a dataset its recipe names (only the run's held-out part was unseen)."""
    path = checkpoint_file(name)
    if path is None:
        return
    from mst_geo.model import read_card

    training = read_card(path).get("training")  # a card's training record; text for untrained weights
    if not (isinstance(training, dict) and isinstance(training.get("recipe"), dict)):
        return
    data = training["recipe"].get("data") or {}
    trained = data.get("labels")
    for labels in labels_files if trained is not None else ():
        if Path(trained).expanduser().resolve() == Path(labels).expanduser().resolve():
            warn(f"{label} was fine-tuned on {labels}: its rows measure polygons it trained on (bench "
                 "a file of held-out polygons to measure it on unseen objects)")
    trained_sets = {_set_key(dataset) for dataset in _lineage_datasets(training)}
    seen = [dataset for dataset in datasets if _set_key(dataset) in trained_sets]
    if seen:
        warn(f"{label} was trained on {', '.join(seen)}: its rows there measure images it trained on, "
             "all but its held-out slice")


def _lineage_datasets(training: dict) -> list[str]:
    """The datasets a card's run and every run its ``--init`` came from (``init_card``) trained on."""
    named: list[str] = []
    while isinstance(training, dict):
        recipe = training.get("recipe")
        data = (recipe.get("data") if isinstance(recipe, dict) else None) or {}
        named += [str(dataset) for dataset in data.get("datasets") or ()]
        training = (training.get("init_card") or {}).get("training")
    return named


def _set_key(dataset: str) -> str:
    """A dataset as a recipe or the bench may spell it (an alias, a path) reduced to one key."""
    from mst_geo.data.iseg import name_key
    from mst_geo.data.rs import dataset_name

    return name_key(dataset_name(dataset))


def method_identity(name: str) -> str:
    """What a label's rows were computed with: a baseline or preset by name, a checkpoint by the
    SHA-256 of its file (so a later run into the same --out cannot pass another file's rows off as
    its own)."""
    path = checkpoint_file(name)
    if path is None:
        return name  # a baseline or a preset
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def resolve_method(name: str, device: str = "cpu", options: InferenceOptions = InferenceOptions()) -> ClickMethod:
    """A baseline by name, or an MST checkpoint/preset wrapped in the iterative ``Predictor`` with
    ``options`` (each one not given: its card's)."""
    if name in BASELINES:
        return make_baseline(name)
    from mst_geo.clicks.predictor import Predictor
    from mst_geo.model import list_presets, resolve_model

    if name != "default" and name not in list_presets() and not Path(name).expanduser().exists():
        raise MSTGeoError(
            f"unknown model {name!r}: not a baseline ({', '.join(BASELINES)}), a preset "
            f"({', '.join(list_presets())}), 'default' or an existing checkpoint file"
        )
    model, _card = resolve_model(name)
    return Predictor(model, device=device, zoom_in=options.zoom_in, flip=options.flip, input_size=options.view,
                     first_click_passes=options.first_click_passes)
