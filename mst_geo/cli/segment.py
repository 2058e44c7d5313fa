"""``mst-geo segment``: polygons of the objects clicked in a clicks GeoJSON, on a GeoTIFF of any size."""

from __future__ import annotations

from pathlib import Path

import typer

from mst_geo.cli import BANDS_HELP, app
from mst_geo.cli.interrupts import resume_hint_on_interrupt


@app.command()
def segment(
    scene: str = typer.Argument(
        ..., help="GeoTIFF scene (any size, any CRS; tiled with overviews reads fastest), a local file or the URL "
        "of a cloud-optimised GeoTIFF (https://, s3://, /vsicurl/...), read by windows.",
    ),
    clicks: Path = typer.Option(
        ..., "--clicks", "-c",
        help="Clicks GeoJSON (or any point layer OGR reads: GeoPackage, Shapefile, ...; or a CSV with lon,lat or x,y "
        "columns, x,y needing --clicks-crs): Point features with "
        "'label' (positive/negative, 1/0, true/false, fg/bg), 'object' (groups clicks) and optional 'order'.",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o",
        help="Polygons output: .gpkg (GeoPackage), .geojson or .fgb (FlatGeobuf). Default: <scene name>_objects.gpkg here.",
    ),
    mask_out: Path | None = typer.Option(
        None, "--mask-out", help="Also write a mask COG on the scene grid (0 background, k = k-th object; uint8, uint16 past 255 objects; "
        "a rotated or GCP scene's north-up warped grid)."
    ),
    clicks_crs: str | None = typer.Option(
        None, "--clicks-crs",
        help="CRS of the click coordinates (e.g. EPSG:3857), overriding the file's own. Default: the file's own (a layer's CRS, "
        "a GeoJSON 'crs' member), else WGS84; a CSV's x,y columns need it.",
    ),
    bands: str | None = typer.Option(
        None, "--bands", help=BANDS_HELP
    ),
    model: str = typer.Option("default", "--model", "-m", help="'default' (shipped), a checkpoint path or a preset."),
    device: str = typer.Option("cpu", "--device", help="Torch device, e.g. cpu, cuda, cuda:1, mps."),
    simplify: float = typer.Option(0.0, "--simplify", help="Simplification tolerance in scene CRS units (0: none); each object on its own, parts no larger than its square dropped."),
    min_area: float = typer.Option(
        0.0, "--min-area", help="Drop polygon parts and fill holes smaller than this, in scene CRS units²."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    resume: bool = typer.Option(
        True, "--resume/--no-resume", help="Reuse the objects an interrupted run of the same command finished."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Segment the clicked objects of SCENE and write one polygon per object.

    Example:

        mst-geo segment examples/naip_scene.tif --clicks examples/clicks.geojson -o objects.gpkg
    """
    from mst_geo.geo.bands import parse_bands
    from mst_geo.geo.io import check_outputs
    from mst_geo.geo.raster import scene_stem

    out = out or Path(f"{scene_stem(scene)}_objects.gpkg")
    scene_bands = parse_bands(bands)
    check_outputs(out, mask_out, overwrite)  # bad flags fail at once, before torch loads (segment_scene checks again)
    from mst_geo.api import segment_scene

    with resume_hint_on_interrupt("rerun the same command to resume with the objects already finished"):
        frame = segment_scene(
            scene, clicks, out, clicks_crs=clicks_crs, model=model, bands=scene_bands, device=device,
            simplify=simplify, min_area=min_area, mask_out=mask_out, overwrite=overwrite, progress=not quiet,
            resume=resume,
        )
    typer.echo(f"wrote {len(frame)} objects to {out}" + (f" and the mask to {mask_out}" if mask_out else ""))
