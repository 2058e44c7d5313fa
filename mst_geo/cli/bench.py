"""``mst-geo bench``: NoC evaluation beside classical baselines, and the model speed benchmark."""

from __future__ import annotations

from pathlib import Path

import typer

from mst_geo.cli import BANDS_HELP, app
from mst_geo.cli.interrupts import resume_hint_on_interrupt

bench_app = typer.Typer(help="Benchmarks: NoC@85/90/95 with baselines, and model speed.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _numbers(text: str, kind: type[float] | type[int], expected: str) -> list:
    """``"0.85,0.9"`` -> [0.85, 0.9] (``kind`` float; int for whole numbers); anything else is a
    user error saying what was ``expected``."""
    from mst_geo.bench.methods import split_names
    from mst_geo.errors import MSTGeoError

    try:
        return [kind(value) for value in split_names([text])]
    except ValueError:
        raise MSTGeoError(f"{expected}, got {text!r}") from None


def _thresholds(iou: str) -> list[float]:
    return _numbers(iou, float, "--iou must be comma-separated numbers")


def _views(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    return tuple(_numbers(text, int, "--view must be a side in px or comma-separated sides")) or None


def _shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> (2, 4)."""
    from mst_geo.errors import MSTGeoError

    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise MSTGeoError(f"--shard must look like K/N (e.g. 1/2), got {text!r}") from None
    return index, count


def _check_out_dir(path: Path, flag: str) -> None:
    """Refuse an output folder that is a file, before any work."""
    from mst_geo.errors import MSTGeoError

    if path.exists() and not path.is_dir():
        raise MSTGeoError(f"{flag} must be a folder, this is a file", path)


@bench_app.command("noc")
def noc_command(
    model: list[str] = typer.Option(
        ..., "--model", "-m",
        help="Checkpoint path, preset, 'default', or a baseline: grabcut, random-walker, watershed, disk. "
        "Repeat or comma-separate to compare methods side by side.",
    ),
    datasets: list[str] | None = typer.Option(
        None, "--datasets", "-d",
        help="GrabCut, Berkeley, DAVIS, PascalVOC, SBD, COCO_MVal, COCO_LVIS, DUTS_TR, CCP, ssTEM, OAIZIB, DAVIS585, "
        "any other set in RITM's images-folder layout (DATA_ROOT/<name> or a folder's path holding img/ and gt/, "
        "or images/ and masks/), or remote sensing LoveDA, Inria, DeepGlobe, LandCoverAI, Potsdam, Vaihingen "
        "(torchgeo layout in DATA_ROOT/<name>, or a folder's path). Repeat or comma-separate. "
        "Default: GrabCut,Berkeley, or none when --scene is given.",
    ),
    scene: list[str] = typer.Option(
        [], "--scene", help="Also benchmark on your own GeoTIFF (a file or a COG's URL): every polygon of --labels is one "
        "object. Repeat --scene/--labels for several scenes, paired in order.",
    ),
    labels: list[Path] = typer.Option(
        [], "--labels", help="Vector labels for --scene (GeoPackage/GeoJSON/Shapefile, any CRS), one polygon per object."
    ),
    bands: str | None = typer.Option(
        None, "--bands", help=BANDS_HELP
    ),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Folder holding one folder per dataset (default: ../shared/data/iseg)."
    ),
    max_clicks: int = typer.Option(20, "--max-clicks", help="Clicks simulated per object (NoC is capped here)."),
    iou: str = typer.Option("0.85,0.9,0.95", "--iou", help="Comma-separated IoU targets for NoC/NoF."),
    device: str = typer.Option("cpu", "--device", help="Torch device for model methods, e.g. cpu or cuda."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N objects of each dataset."),
    out: Path = typer.Option(Path("bench_out"), "--out", help="Output folder; rerunning into it resumes."),
    zoom_in: bool = typer.Option(True, "--zoom-in/--no-zoom-in", help="RITM-style zoom-in after the first click."),
    flip: bool | None = typer.Option(
        None, "--flip/--no-flip", help="Average each model prediction with its mirror image (RITM's evaluation mirrors too; "
        "2x slower), or not (default: each card's own)."),
    view: str | None = typer.Option(
        None, "--view", help="Run every model on an N px view of each image or zoom-in crop (default: each card's "
        "own view, its inference_size or input_size), e.g. to compare a fine-tune with the model it started from "
        "like for like (with --first-click-passes 1 --no-flip, as segment runs both); N,M,... averages the views "
        "(multi-scale test-time augmentation)."),
    first_click_passes: int | None = typer.Option(
        None, "--first-click-passes", min=1, help="Model passes at each object's first click, each fed the one before's "
        "mask (default: each card's own; 1 is a plain pass)."),
    shard: str = typer.Option("1/1", "--shard", help="K/N: only every N-th object from the K-th, to run N processes into one --out."),
) -> None:
    """Clicks to reach 85/90/95 % IoU (RITM protocol) for models and baselines on the same clicks.

    Writes results.json, results.csv, results.md, sizes.csv, instances.jsonl/.csv and
    miou_vs_clicks.png / miou_by_size.png to --out; an interrupted run resumes on rerun.

    Example:

        mst-geo bench noc --model default,grabcut --datasets GrabCut,Berkeley --out bench_out
        mst-geo bench noc --model default,grabcut --scene scene.tif --labels ponds.gpkg --out bench_scene
    """
    from mst_geo.bench.methods import InferenceOptions, split_names
    from mst_geo.bench.suite import run_noc_benchmark
    from mst_geo.errors import MSTGeoError

    if len(scene) != len(labels):
        raise MSTGeoError("--scene and --labels go together (a GeoTIFF and its polygons), one --labels per --scene")
    scene_bands = None
    if bands is not None:
        from mst_geo.geo.bands import parse_bands

        if not scene:
            raise MSTGeoError("--bands chooses --scene's bands: give --scene and --labels too")
        scene_bands = parse_bands(bands)
    if not datasets:
        from mst_geo.data.iseg import BENCHMARK_SETS

        datasets = [] if scene else list(BENCHMARK_SETS)
    _check_out_dir(out, "--out")
    with resume_hint_on_interrupt(f"rerun the same command to resume with the objects already in {out}"):
        results = run_noc_benchmark(
            split_names(model), split_names(datasets), out,
            scenes=list(zip(scene, labels)), data_root=data_root, max_clicks=max_clicks,
            thresholds=_thresholds(iou), device=device, limit=limit, shard=_shard(shard), scene_bands=scene_bands,
            inference=InferenceOptions(zoom_in=zoom_in, flip=flip, view=_views(view),
                                       first_click_passes=first_click_passes),
        )
    typer.echo((out / "results.md").read_text())
    typer.echo(f"wrote {out}/results.json, results.csv, results.md, sizes.csv, instances.csv, miou_vs_clicks.png, "
               f"miou_by_size.png ({len(results)} methods)")


@bench_app.command("report")
def report_command(
    out: Path = typer.Argument(..., help="Output folder of a `bench noc` run (holds instances.jsonl)."),
    to: Path | None = typer.Option(None, "--to", help="Write the report here instead of into OUT."),
    iou: str = typer.Option("0.85,0.9,0.95", "--iou", help="Comma-separated IoU targets for NoC/NoF."),
    common: bool = typer.Option(False, "--common", help="Only objects that every method has finished (fair table of a partial run)."),
) -> None:
    """Rebuild the tables and plots from the finished rows, computing nothing (e.g. mid-run).

    Example:

        mst-geo bench report bench_out --common --to bench_out/common
    """
    from mst_geo.bench.suite import rewrite_report

    if to is not None:
        _check_out_dir(to, "--to")
    rewrite_report(out, to, _thresholds(iou), common=common)
    typer.echo(((to or out) / "results.md").read_text())


@bench_app.command("speed")
def speed_command(
    presets: str = typer.Option("mst_tiny,mst_base", "--presets", help="Comma-separated model presets to time."),
    size: int = typer.Option(448, "--size", help="Square input size in pixels (multiple of 16)."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed forward passes per model."),
    device: str = typer.Option("cpu", "--device", help="Torch device, e.g. cpu or cuda."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="Torch CPU threads (default: torch's choice)."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the result as JSON here."),
) -> None:
    """Forward latency, FLOPs and tokens of plain ViT vs MST top-k vs all multi-scale tokens.

    Example:

        mst-geo bench speed --presets mst_tiny --size 448 --repeats 3
    """
    import json

    from mst_geo.atomic import check_output, write_text_atomic
    from mst_geo.bench.methods import split_names
    from mst_geo.bench.speed import format_table, run_speed_benchmark
    from mst_geo.devices import torch_device
    from mst_geo.errors import MSTGeoError
    from mst_geo.model import list_presets

    names = split_names([presets])
    if not names:
        raise MSTGeoError(f"--presets names no preset (known: {', '.join(list_presets())})")
    unknown = [name for name in names if name not in list_presets()]
    if unknown:
        raise MSTGeoError(f"unknown preset(s) {', '.join(unknown)}; known: {', '.join(list_presets())}")
    if size <= 0 or size % 16:
        raise MSTGeoError(f"--size must be a positive multiple of 16, got {size}")
    if json_path is not None:
        check_output(json_path, overwrite=True)
    result = run_speed_benchmark(tuple(names), size, repeats, device=str(torch_device(device)), threads=threads)
    typer.echo(format_table(result))
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(result, indent=2))
