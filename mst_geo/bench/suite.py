"""One NoC benchmark run end to end: datasets and methods by name -> rows -> report files.

The library call behind ``mst-geo bench noc``; the CLI only parses flags into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mst_geo.geo.bands import BandRef
from mst_geo.bench.loop import ROWS_FILE, SETTINGS_FILE, InstanceSource, load_rows, read_run_record, run_noc
from mst_geo.bench.methods import (InferenceOptions, method_identity, method_labels, resolve_method,
                                   warn_if_trained_on)
from mst_geo.bench.noc import check_thresholds
from mst_geo.bench.report import common_rows, write_report
from mst_geo.data.iseg import DEFAULT_DATA_ROOT, dataset_location, load_iseg_dataset, named_folder
from mst_geo.data.rs import RS_LAYOUTS, load_rs_dataset, locate_rs_dataset
from mst_geo.errors import MSTGeoError, warn
from mst_geo.views import views_json


def load_bench_dataset(name: str, data_root: Path, limit: int | None = None) -> tuple[str, InstanceSource, str]:
    """``(canonical name, instances, the folder they come from)``: an interactive-segmentation set
    (by name under ``data_root``, or by path; any set in RITM's images-folder layout), or a
    remote-sensing one (torchgeo layout in ``data_root/<name>``, or by path), the latter scanned
    only as far as ``limit``."""
    root, folder_name = dataset_location(name, data_root)
    if root != Path(data_root) and not (root.is_dir() and named_folder(root, folder_name)):  # a path, not a name
        raise MSTGeoError("dataset folder not found", root / folder_name)
    if not root.is_dir():
        raise MSTGeoError("data root is not a folder (set --data-root)", root)
    remote = locate_rs_dataset(name, data_root)
    if remote is not None:
        rs_name, folder = remote
        return rs_name, load_rs_dataset(rs_name, folder, max_instances=limit), str(folder.resolve())
    dataset = load_iseg_dataset(name, data_root, also_known=list(RS_LAYOUTS))
    return dataset.name, dataset, str(dataset.folder.resolve() if dataset.folder else data_root.resolve())


def scene_table_names(scenes: Sequence[tuple[str | Path, str | Path]]) -> list[str]:
    """Each labelled scene's row name in the tables: the scene's file stem, with the labels' stem
    after a ``/`` when the same scene comes with several labels files (ponds and buildings, say).
    Two scenes of one stem in different folders keep one name, which the caller refuses."""
    from mst_geo.geo.raster import scene_location, scene_stem

    locations = [scene_location(scene) for scene, _ in scenes]
    return [f"{scene_stem(scene)}/{Path(labels).stem}" if locations.count(location) > 1 else scene_stem(scene)
            for location, (scene, labels) in zip(locations, scenes, strict=True)]


def run_noc_benchmark(
    models: Sequence[str],
    datasets: Sequence[str],
    out_dir: str | Path,
    data_root: str | Path | None = None,
    max_clicks: int = 20,
    thresholds: Sequence[float] = (0.85, 0.9, 0.95),
    device: str = "cpu",
    limit: int | None = None,
    inference: InferenceOptions = InferenceOptions(),
    progress: bool = True,
    shard: tuple[int, int] = (1, 1),
    scenes: Sequence[tuple[str | Path, str | Path]] = (),
    scene_bands: Sequence[BandRef] | None = None,
) -> dict:
    """Evaluate each model/baseline on each dataset (resumable in ``out_dir``) and write the report.

    ``data_root`` defaults to ``../shared/data/iseg`` (the project's shared data). ``scenes`` adds
    ``(GeoTIFF, polygons)`` pairs, each a dataset named after the GeoTIFF, read with
    ``scene_bands`` (R,G,B or one grey band; default: by colour names or satellite band names, else the first three). Returns
    ``{method: {dataset: summary}}`` as in results.json.
    """
    out_dir = Path(out_dir)
    if not models:
        raise MSTGeoError("no --model given")
    if not datasets and not scenes:
        raise MSTGeoError("no --datasets (or --scene) given")
    if max_clicks < 1:
        raise MSTGeoError(f"--max-clicks must be at least 1, got {max_clicks}")
    if not 1 <= shard[0] <= shard[1]:
        raise MSTGeoError(f"--shard must be K/N with 1 <= K <= N, got {shard[0]}/{shard[1]}")
    check_thresholds(thresholds)
    # a wrong --model or --device fails before any data is scanned
    model_names = method_labels(models, inference)
    methods = {label: resolve_method(name, device, inference)
               for label, name in model_names.items()}
    identities = {label: method_identity(name) for label, name in model_names.items()}
    data_root = Path(DEFAULT_DATA_ROOT if data_root is None else data_root)
    loaded: dict[str, InstanceSource] = {}
    origins: dict[str, str] = {}
    for name in datasets:
        table_name, instances, origins[table_name] = load_bench_dataset(name, data_root, limit)
        if table_name in loaded:
            raise MSTGeoError(f"--datasets names {table_name!r} twice (a folder's name is its row in the tables)")
        loaded[table_name] = instances
    labels_files = [labels_file for _, labels_file in scenes]
    for label, name in model_names.items():
        warn_if_trained_on(name, label, labels_files, list(loaded))
    scene_records = []  # as the settings record them (a URL without its query)
    scene_files: dict[str, str] = {}
    if scenes:
        from mst_geo.bench.scene_set import LabelledScene  # rasterio/geopandas only for scenes
        from mst_geo.geo.journal import files_digest
        from mst_geo.geo.labels import labels_digest
        from mst_geo.geo.raster import public_source, scene_location

        scene_records = [[public_source(scene), str(labels)] for scene, labels in scenes]
        names = list(loaded)
        table_names = scene_table_names(scenes)
        for (scene, _), table_name in zip(scenes, table_names):  # before any scene is read: each is a row name
            if table_name in names:
                raise MSTGeoError(f"another scene or dataset is also named {table_name!r} in the tables; "
                                  "rename one file", scene)
            names.append(table_name)
        for (scene, labels), table_name in zip(scenes, table_names):
            labelled = LabelledScene(scene, labels, bands=scene_bands, name=table_name)
            loaded[labelled.name] = labelled
            origins[labelled.name] = (f"{scene_location(scene)} with {Path(labels).resolve()} ({labels_digest(labels)}), "
                                      f"bands {list(labelled.objects.bands)}")
            scene_files[labelled.name] = files_digest(labelled.objects.raster.files)
    rows = run_noc(methods, loaded, out_dir, max_clicks=max_clicks, limit=limit, progress=progress, shard=shard,
                   identities=identities, origins=origins, scene_files=scene_files)
    settings = {
        "data_root": str(data_root),
        "scenes": scene_records,
        "scene_bands": None if scene_bands is None else list(scene_bands),
        "datasets": list(loaded),
        "methods": list(methods),
        # each model's view (--view, else its card's inference_size, else its input_size): a fine-tune
        # exported at its training size and the shipped model at its larger view are not compared
        # like for like unless --view (and --first-click-passes, --flip/--no-flip) set one for both
        "views_px": {label: views_json(method.view_sizes) for label, method in methods.items()
                     if hasattr(method, "view_sizes")},
        "first_click_passes": {label: method.first_click_passes for label, method in methods.items()
                               if hasattr(method, "first_click_passes")},
        "flip": {label: method.flip for label, method in methods.items() if hasattr(method, "flip")},
        "max_clicks": max_clicks,
        "limit": limit,
        **inference.settings(),
        "device": device,
    }
    earlier = sorted({row.method for row in load_rows(out_dir, max_clicks)} - set(methods))
    if earlier:
        warn(f"{out_dir}: rows of {', '.join(earlier)} from earlier runs stay in {ROWS_FILE} but not in "
             f"these tables (`mst-geo bench report {out_dir}` tables every method)")
    return write_report(rows, out_dir, thresholds, max_clicks, settings)


def rewrite_report(
    out_dir: str | Path,
    report_dir: str | Path | None = None,
    thresholds: Sequence[float] = (0.85, 0.9, 0.95),
    common: bool = False,
) -> dict:
    """Rebuild the report from the rows already in ``out_dir`` without computing anything
    (e.g. while a long run is still going); ``common`` keeps only instances every method finished.
    """
    out_dir = Path(out_dir)
    check_thresholds(thresholds)
    settings_path = out_dir / SETTINGS_FILE
    if not settings_path.is_file():
        raise MSTGeoError("no benchmark run here (run.json missing)", out_dir)
    record = read_run_record(settings_path)
    max_clicks = record.get("max_clicks") if isinstance(record, dict) else None
    if not isinstance(max_clicks, int):
        raise MSTGeoError("holds no max_clicks: not the run.json of `mst-geo bench noc`", settings_path)
    rows = load_rows(out_dir, max_clicks)
    if common:
        rows = common_rows(rows)
    if not rows:
        raise MSTGeoError("no finished instances to report" + (" that every method shares" if common else ""), out_dir)
    report_dir = Path(report_dir or out_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "rows": str(out_dir / ROWS_FILE),
        "datasets": sorted({r.dataset for r in rows}),
        "methods": sorted({r.method for r in rows}),
        "max_clicks": max_clicks,
        "common_instances_only": common,
    }
    return write_report(rows, report_dir, thresholds, max_clicks, settings)
