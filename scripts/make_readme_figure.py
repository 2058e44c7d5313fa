"""Render the README's result picture: the example scene, its example clicks and the polygons the
model makes from them.

The picture is made by the same call as ``mst-geo segment`` (``mst_geo.api.segment_scene``) with the
shipped model, so regenerating it after the model changes shows what users will get:

    python scripts/make_readme_figure.py                      # -> docs/img/example_result.png
    python scripts/make_readme_figure.py --model runs/x/model.safetensors --out /tmp/x.png
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from mst_geo.api import segment_scene
from mst_geo.geo.prompts import ObjectId, PixelMapper, SceneClick, read_clicks
from mst_geo.geo.raster import SceneRaster

REPO = Path(__file__).resolve().parents[1]
Box = tuple[float, float, float, float]  # (left, bottom, right, top) in the scene CRS


def render(scene: Path, clicks: Path, model: str, out: Path, max_side: int = 1200) -> Path:
    """Segment ``scene`` from ``clicks`` with ``model`` and draw the whole scene beside one zoomed
    panel per object (scene, polygons, clicks) to ``out``."""
    with tempfile.TemporaryDirectory() as work:
        polygons = segment_scene(scene, clicks, Path(work) / "objects.gpkg", model=model, resume=False)
    with SceneRaster(scene) as raster:
        preview = raster.read(Window(0, 0, raster.width, raster.height), max_side=max_side)
        bounds = tuple(raster.bounds)
        mapper = PixelMapper(raster.crs, raster.transform, raster.width, raster.height, is_valid=raster.is_valid)
        objects = read_clicks(clicks, mapper)  # the clicks contract: labels, CRS, order
    colours = dict(zip(objects, matplotlib.colormaps["tab10"].colors))
    shapes = dict(zip(polygons["object"].astype(str), polygons.geometry))

    columns = -(-len(objects) // 2)
    figure = Figure(figsize=(7.5 + 3.6 * columns, 7.0))  # no pyplot: nothing global, no backend
    grid = figure.add_gridspec(2, 2 + columns, width_ratios=[1.05, 1.05] + [1] * columns)
    overview = figure.add_subplot(grid[:, :2])
    draw(overview, preview.image, bounds, objects, shapes, colours, bounds)
    overview.set_title(f"{scene.name}, model {polygons['model'].iloc[0] if len(polygons) else model}")
    for index, name in enumerate(objects):
        panel = figure.add_subplot(grid[index % 2, 2 + index // 2])
        draw(panel, preview.image, bounds, objects, shapes, colours, zoom_box(objects[name], shapes.get(str(name)), bounds))
        panel.set_title(f"{name}: {len(objects[name])} clicks", color=colours[name], fontweight="bold")
    figure.suptitle("clicks (green positive, red negative) -> polygons, made by mst_geo.api.segment_scene")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=out.suffix)
    os.close(handle)
    try:
        rendered = io.BytesIO()
        figure.savefig(rendered, dpi=80, format="png")
        # A 256-colour palette keeps the README light (about a quarter of the RGB size); the octree
        # quantiser keeps the small lime/red click markers their colour.
        palette = Image.open(rendered).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        palette.save(temp, format="PNG", optimize=True)
        os.chmod(temp, 0o644)  # mkstemp makes it private; the picture is for everyone
        os.replace(temp, out)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return out


def draw(ax: Axes, image: np.ndarray, bounds: Box, objects: dict[ObjectId, list[SceneClick]],
         shapes: dict[str, BaseGeometry], colours: dict, view: Box) -> None:
    """The scene image, every object's polygon (filled, in its colour) and clicks, limited to ``view``."""
    left, bottom, right, top = bounds
    ax.imshow(image, extent=(left, right, bottom, top))
    for name, object_clicks in objects.items():
        geometry = shapes.get(str(name))
        if geometry is not None and not geometry.is_empty:
            for part in getattr(geometry, "geoms", [geometry]):
                ax.fill(*part.exterior.xy, color=colours[name], alpha=0.3, linewidth=0)
                ax.plot(*part.exterior.xy, color=colours[name], linewidth=1.6)
        for click in object_clicks:
            ax.scatter(click.x, click.y, s=55, color="lime" if click.positive else "red", edgecolors="black", zorder=3)
    ax.set(xlim=(view[0], view[2]), ylim=(view[1], view[3]), xticks=[], yticks=[], aspect="equal")


def zoom_box(object_clicks: list[SceneClick], geometry: BaseGeometry | None, bounds: Box,
             margin: float = 0.2, min_side: float = 250.0) -> Box:
    """A square around an object's clicks and polygon, with a margin, inside the scene."""
    xs = [c.x for c in object_clicks]
    ys = [c.y for c in object_clicks]
    if geometry is not None and not geometry.is_empty:
        x0, y0, x1, y1 = geometry.bounds
        xs, ys = xs + [x0, x1], ys + [y0, y1]
    side = max(max(xs) - min(xs), max(ys) - min(ys), min_side) * (1 + 2 * margin)
    side = min(side, bounds[2] - bounds[0], bounds[3] - bounds[1])
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    x0 = min(max(cx - side / 2, bounds[0]), bounds[2] - side)
    y0 = min(max(cy - side / 2, bounds[1]), bounds[3] - side)
    return x0, y0, x0 + side, y0 + side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--scene", type=Path, default=REPO / "examples" / "naip_scene.tif", help="GeoTIFF scene")
    parser.add_argument("--clicks", type=Path, default=REPO / "examples" / "clicks.geojson", help="clicks GeoJSON")
    parser.add_argument("--model", default="default", help="'default' (shipped), a checkpoint path or a preset")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "example_result.png", help="PNG to write")
    args = parser.parse_args()
    print(render(args.scene, args.clicks, args.model, args.out))


if __name__ == "__main__":
    main()
