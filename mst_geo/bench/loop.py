"""The NoC evaluation loop, shared by the model's predictor and every baseline.

Per instance: the RITM clicker places a click from the current error, the method predicts from
all clicks so far with its previous output fed back, and the IoU after each click is recorded.
Finished instances are appended as JSON lines to ``instances.jsonl``; a rerun skips them, so an
interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np
from tqdm import tqdm

from mst_geo.atomic import write_text_atomic
from mst_geo.clicks.session import ClickMethod, evaluate_instance
from mst_geo.data.instance import Instance
from mst_geo.errors import MSTGeoError, a_few, warn

ROWS_FILE = "instances.jsonl"
PROTOCOL = 3
"""Raised when what a row means changes, so an older --out folder is refused, not mixed in
(2: the benchmark sets read as their published code reads them, GrabCut reseeded per call;
3: a scene object's ``area`` counts scene pixels, also where its window was read decimated)."""
SETTINGS_FILE = "run.json"
METHODS_FILE = "methods.json"
"""Which model each method label's rows come from (a checkpoint's SHA-256)."""
DATASETS_FILE = "datasets.json"
"""Which folder (or scene, labels and bands) each dataset's rows come from."""
SCENE_FILES_FILE = "scene_files.json"
"""Each scene dataset's files as they were (``files_digest``: sizes and dates): a scene rewritten in
place is refused, and a folder from before it was recorded still resumes."""


class InstanceSource(Protocol):
    """A dataset the bench can walk: indexable instances whose names are known without reading."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Instance: ...

    def name_of(self, index: int) -> str: ...


@dataclass
class InstanceResult:
    """One method on one instance: the IoU and the seconds of each click, and where it clicked."""

    method: str
    dataset: str
    name: str
    image_id: str
    area: int  # object pixels at native resolution (decides the size class)
    ious: list[float]
    seconds: list[float]
    clicks: list[tuple[int, int, bool]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.method, self.dataset, self.name


def load_rows(out_dir: Path, max_clicks: int | None = None) -> list[InstanceResult]:
    """The finished per-instance rows in ``out_dir`` (none if it is new); only reads the file.

    A line cut off by an interruption is not a finished row: it is skipped, and redone on resume.
    A row repeated (two processes on one ``--out``, rows files joined by hand) counts once, the
    last one read, as a resumed run keeps it. With ``max_clicks``, rows of another click count
    (rows files of two runs joined by hand) are refused: NoC and mean IoU over rows of different
    lengths mean nothing.
    """
    path = out_dir / ROWS_FILE
    if not path.exists():
        return []
    unique: dict[tuple[str, str, str], InstanceResult] = {}
    for line in path.read_text().splitlines():
        try:
            row = InstanceResult(**json.loads(line))
        except (json.JSONDecodeError, TypeError):
            continue
        unique[row.key] = row
    rows = list(unique.values())
    other = sorted({len(row.ious) for row in rows} - {max_clicks}) if max_clicks is not None else []
    if other:
        raise MSTGeoError(f"holds rows of {' and '.join(map(str, other))} clicks beside this run's {max_clicks} "
                          "(--max-clicks in run.json): rows of runs with another --max-clicks cannot share "
                          "one report", path)
    return rows


def _open_rows_for_append(out_dir: Path) -> TextIO:
    """The rows file opened for appending, starting on a fresh line after a cut-off one."""
    path = out_dir / ROWS_FILE
    cut = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    sink = open(path, "a")
    if cut:
        sink.write("\n")
    return sink


def read_run_record(path: Path) -> Any:
    """One of an --out folder's JSON records (run.json, methods.json, datasets.json); a damaged
    one (a full disk, a hand edit) is a one-line error that says how to start afresh."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MSTGeoError(f"is not valid JSON ({error}); remove it to start this --out afresh", path) from None


def check_settings(out_dir: Path, settings: dict) -> None:
    """Refuse to mix rows of runs with different protocol settings in one output folder."""
    path = out_dir / SETTINGS_FILE
    if path.exists():
        previous = read_run_record(path)
        if isinstance(previous, dict) and previous.get("protocol", 1) != settings.get("protocol", 1):
            raise MSTGeoError(f"holds rows of bench protocol {previous.get('protocol', 1)} (this version writes "
                              f"{settings.get('protocol', 1)}: dataset readers or baselines changed); use another "
                              "--out or remove it", out_dir)
        if previous != settings:
            raise MSTGeoError(
                f"holds a run with other settings {previous}; use another --out or remove it", out_dir
            )
    else:
        write_text_atomic(path, json.dumps(settings, indent=2) + "\n")


def check_identities(out_dir: Path, file_name: str, identities: dict[str, str], what: str) -> None:
    """Refuse to resume rows that another model or other data produced under the same label (two
    training runs both export ``model.safetensors``; ``GrabCut`` from another data root); record
    this run's labels beside the rows."""
    path = out_dir / file_name
    known = read_run_record(path) if path.exists() else {}
    for label, identity in identities.items():
        if known.get(label, identity) != identity:
            raise MSTGeoError(f"holds rows of another {what} labelled {label!r} ({known[label]}); use another --out "
                              "or remove its rows", out_dir)
    write_text_atomic(path, json.dumps({**known, **identities}, indent=2) + "\n")


def run_noc(
    methods: dict[str, ClickMethod],
    datasets: dict[str, InstanceSource],
    out_dir: str | Path,
    max_clicks: int = 20,
    limit: int | None = None,
    progress: bool = True,
    shard: tuple[int, int] = (1, 1),
    identities: dict[str, str] | None = None,
    origins: dict[str, str] | None = None,
    scene_files: dict[str, str] | None = None,
) -> list[InstanceResult]:
    """Evaluate every method on every instance (the first ``limit`` of each dataset), resumably.

    ``shard=(k, n)`` takes only every n-th instance starting at the k-th, so n processes can
    share one ``out_dir`` without doing the same work; a final rerun or report joins them.
    ``identities`` (label -> the weights it stands for) keeps one label's rows from another model,
    ``origins`` (dataset -> where it was read) one dataset's rows from another copy of it,
    ``scene_files`` (scene dataset -> ``files_digest``) a scene's rows from its pixels before a rewrite.

    Returns the rows of these methods on these instances, those of earlier runs included. An
    object without a pixel to find (a polygon over nodata, or outside a warped scene's footprint)
    is left out with a warning: every method would score it a perfect 1.0 at the first click.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        check_settings(out_dir, {"max_clicks": max_clicks, "protocol": PROTOCOL})
        if identities:
            check_identities(out_dir, METHODS_FILE, identities, "model")
        if origins:
            check_identities(out_dir, DATASETS_FILE, origins, "dataset")
        if scene_files:
            check_identities(out_dir, SCENE_FILES_FILE, scene_files, "version of the scene's files (size or date)")
    except MSTGeoError as error:
        if (out_dir / ROWS_FILE).exists() and not load_rows(out_dir):  # say so: "holds rows" is not all
            raise MSTGeoError(f"{error} (no finished row yet: if the run that started it has stopped, remove "
                              "the folder)") from None
        raise
    rows = {row.key: row for row in load_rows(out_dir, max_clicks)}
    todo = [
        (dataset_name, index, dataset.name_of(index))
        for dataset_name, dataset in datasets.items()
        for index in range(len(dataset) if limit is None else min(limit, len(dataset)))
        if index % shard[1] == shard[0] - 1
    ]
    nothing_to_find: list[str] = []
    with _open_rows_for_append(out_dir) as sink, tqdm(
        total=len(todo) * len(methods), disable=not progress, unit="run", desc="bench"
    ) as bar:
        for dataset_name, index, name in todo:
            missing = [m for m in methods if (m, dataset_name, name) not in rows]
            bar.update(len(methods) - len(missing))
            if not missing:
                continue
            instance = datasets[dataset_name][index]
            if not np.any(instance.mask == 1):
                nothing_to_find.append(f"{dataset_name}/{name}")
                bar.update(len(missing))
                continue
            for method_name in missing:
                bar.set_postfix_str(f"{dataset_name}/{name} {method_name}")
                ious, seconds, clicks = evaluate_instance(methods[method_name], instance, max_clicks)
                row = InstanceResult(
                    method=method_name, dataset=dataset_name, name=name, image_id=instance.image_id,
                    area=round(np.count_nonzero(instance.mask == 1) * instance.native_pixels), ious=ious, seconds=seconds,
                    clicks=[(int(c.y), int(c.x), bool(c.positive)) for c in clicks],
                )
                sink.write(json.dumps(asdict(row)) + "\n")
                sink.flush()
                rows[row.key] = row
                bar.update()
    if nothing_to_find:
        warn(f"{len(nothing_to_find)} object(s) have no valid pixel to find (all nodata, outside the "
             f"scene's footprint, or smaller than a pixel) and are left out: {a_few(nothing_to_find)}")
    return [rows[m, d, n] for d, _, n in todo for m in methods if (m, d, n) in rows]
