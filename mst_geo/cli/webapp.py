"""``mst-geo app``: the interactive map in a browser, served from this machine (module not named
``app.py``: importing it would replace the Typer ``app`` attribute of ``mst_geo.cli``)."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import typer

from mst_geo.cli import BANDS_HELP, app
from mst_geo.cli.interrupts import sigterm_as_interrupt
from mst_geo.errors import Terminated


@app.command("app")
def app_command(
    scene: str = typer.Argument(
        ..., help="GeoTIFF scene to segment (any size; overviews make panning smooth), a local file or a COG's URL."
    ),
    model: str = typer.Option("default", "--model", "-m", help="'default' (shipped), a checkpoint path or a preset."),
    bands: str | None = typer.Option(
        None, "--bands", help=BANDS_HELP
    ),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to listen on; the default keeps the app private to this machine."
    ),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the default web browser."),
    device: str = typer.Option("cpu", "--device", help="Torch device, e.g. cpu, cuda, cuda:1, mps."),
    simplify: float = typer.Option(0.0, "--simplify", help="Simplification tolerance in scene CRS units (0: none)."),
    min_area: float = typer.Option(
        0.0, "--min-area", help="Drop polygon parts and fill holes smaller than this, in scene CRS units²."
    ),
    clicks: Path | None = typer.Option(
        None, "--clicks", "-c",
        help="Start from the objects of a clicks file (as `segment` reads it, e.g. the app's own Export clicks).",
    ),
    clicks_crs: str | None = typer.Option(
        None, "--clicks-crs", help="CRS of the --clicks coordinates, overriding the file's own. Default: the file's own, "
        "else WGS84; a CSV's x,y columns need it."
    ),
) -> None:
    """Click on a scene in your browser and watch each object's polygon appear.

    Left click: positive, right click or shift-click: negative; N: new object; Z: undo.

    Save writes the same GeoPackage/GeoJSON/FlatGeobuf as `mst-geo segment`; Export clicks writes a clicks file it reproduces.
    With --clicks the session starts from a clicks file's objects, to correct them or go on later.

    Example:

        mst-geo app examples/naip_scene.tif --open
        mst-geo app examples/naip_scene.tif --clicks examples/clicks.geojson
    """
    from mst_geo.app.server import LOOPBACK_NAMES, create_app, is_loopback, listen, serve, url_of
    from mst_geo.geo.bands import parse_bands

    sock = listen(host, port)  # before torch loads: a busy port fails at once
    private = is_loopback(host)
    try:
        from mst_geo.api import Segmenter

        segmenter = Segmenter(
            scene, model=model, bands=parse_bands(bands), device=device, simplify=simplify, min_area=min_area
        )
    except BaseException:
        sock.close()
        raise
    with segmenter:
        try:
            if clicks is not None:
                loaded = segmenter.load_clicks(clicks, clicks_crs, progress=True)
                typer.echo(f"mst-geo app: {len(loaded)} object(s) from {clicks}", err=True)
            web = create_app(segmenter, trusted_hosts=tuple(dict.fromkeys((*LOOPBACK_NAMES, host))) if private else None)
        except BaseException:
            sock.close()
            raise
        url = url_of(sock)
        if not private:
            typer.secho(f"warning: --host {host}: anyone who can reach this machine sees the scene and can save "
                        "files as you; use it on a trusted network only", err=True, fg=typer.colors.YELLOW)
        typer.echo(f"mst-geo app: open {url} (Ctrl-C stops)")
        if open_browser and not webbrowser.open(url):
            typer.echo(f"mst-geo app: no web browser found here; open {url} yourself", err=True)
        try:
            with sigterm_as_interrupt():  # a service manager's stop, too, announces unsaved clicks
                serve(web, sock)
        except Terminated:
            raise typer.Exit(143) from None
        finally:
            session = web.state.session
            if session.unsaved():
                typer.secho("warning: click changes made since the last Save or Export clicks (new clicks, undos, "
                            "deletions) were not kept (Save or Export clicks before stopping; --clicks restarts "
                            "from a clicks file)", err=True, fg=typer.colors.YELLOW)
            elif session.unexported():
                typer.secho("note: the polygons were saved, but their latest clicks were not exported: "
                            "--clicks can restart this session only from an exported clicks file", err=True)
