"""Benchmark of the scene workflow across object scales: IoU after each click, as `segment` runs it.

Not a test: run it by hand and copy the figures into the README.

    python scripts/bench_first_click.py                                  # example scene, 1x/4x/8x/16x
    python scripts/bench_first_click.py --scene s.tif --labels l.gpkg --factors 1,8 --model ckpt.safetensors
    python scripts/bench_first_click.py --heldout 80 --factors 1,4 --clicks 5   # natural images

`mst-geo bench noc --scene` measures the model on a crop twice each object's size; this measures
what an analyst gets from `mst-geo segment` and the app, where the model only sees the adaptive
window around the clicks (``mst_geo.geo.scene``). Each labelled polygon is clicked by the RITM
simulated user (the first click at the object's most interior point, each next one in the largest
error) on the scene and on copies upsampled ``--factors`` times (same georeferencing, so the
labels still fit and a 40 px pond becomes a 640 px lake). IoU is measured on the polygons in
map units, so a mask that leaks far outside the object counts in full. ``--heldout N`` measures
another kind of imagery the same way: N objects of the training sets' held-out slice (the
photos ``scripts/heldout_noc.py`` scores, never trained on), each image written as a GeoTIFF
(1 m pixels, UTM) with its object's polygon.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio.features
import torch
from affine import Affine
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union
from tqdm import tqdm

from heldout_noc import held_out_objects  # scripts/heldout_noc.py
from mst_geo.api import Segmenter
from mst_geo.clicks.simulator import next_click, split_mask
from upsample import write_upsampled  # scripts/upsample.py

ROOT = Path(__file__).parents[1]
HELDOUT_CRS = "EPSG:32633"
"""Any metric CRS: the held-out photos have no georeference of their own."""
GRID = 256
"""Side of the raster on which the simulated user looks for the largest error (2x the object's box)."""


def object_grid(geometry: BaseGeometry) -> tuple[np.ndarray, Affine]:
    """The object rasterised on a GRID² square twice its bounding box, and that square's transform."""
    left, bottom, right, top = geometry.bounds
    side = 2 * max(right - left, top - bottom)
    transform = Affine(side / GRID, 0, (left + right - side) / 2, 0, -side / GRID, (bottom + top + side) / 2)
    return rasterio.features.rasterize([geometry], (GRID, GRID), transform=transform).astype(bool), transform


def polygon_iou(shape: BaseGeometry, other: BaseGeometry) -> float:
    """IoU of two polygons in map units (0 when either is empty)."""
    return 0.0 if shape.is_empty or other.is_empty else shape.intersection(other).area / shape.union(other).area


def click_object(segmenter: Segmenter, geometry: BaseGeometry, clicks: int) -> tuple[list[float], list[float]]:
    """IoU and seconds after each of ``clicks`` simulated clicks on one object."""
    truth, transform = object_grid(geometry)
    predicted = np.zeros_like(truth)
    clicked, ious, seconds, object_id = [], [], [], None
    for _ in range(clicks):
        click = next_click(truth, predicted, clicked=clicked)
        clicked.append(click)
        x, y = transform * (click.x + 0.5, click.y + 0.5)
        start = time.perf_counter()
        object_id = segmenter.add_click(x, y, positive=click.positive, object=object_id)
        seconds.append(time.perf_counter() - start)
        polygons = segmenter.polygons()
        shape = polygons.loc[polygons["object"] == object_id, "geometry"].iloc[0]
        if shape is None or shape.is_empty:
            ious.append(0.0)
            predicted = np.zeros_like(truth)
        else:
            ious.append(polygon_iou(shape, geometry))
            predicted = rasterio.features.rasterize([shape], truth.shape, transform=transform).astype(bool)
    return ious, seconds


def measure(scenes: list[tuple[Path, gpd.GeoDataFrame]], model: str, clicks: int) -> dict:
    """Per-object IoU/seconds per click over every labelled polygon of ``scenes``, and their summary."""
    rows, sizes = [], []
    for scene, labels in tqdm(scenes, desc="scenes", unit="scene", disable=len(scenes) == 1):
        with Segmenter(scene, model=model) as segmenter:
            pixel_area = abs(segmenter.transform.a * segmenter.transform.e)
            polygons = labels.to_crs(segmenter.crs).geometry
            rows += [click_object(segmenter, geometry, clicks)
                     for geometry in tqdm(polygons, desc=scene.name, unit="object", disable=len(scenes) > 1)]
            sizes += np.sqrt(polygons.area / pixel_area).tolist()
    ious = np.array([iou for iou, _ in rows])
    first = [seconds[0] for _, seconds in rows]
    later = [s for _, seconds in rows for s in seconds[1:]]
    return {
        "scenes": [str(scene) for scene, _ in scenes],
        "objects": len(rows),
        "median_object_px": float(np.median(sizes)),
        "miou_per_click": ious.mean(axis=0).round(3).tolist(),
        "iou_at_1": ious[:, 0].round(3).tolist(),
        "median_s_first_click": statistics.median(first),
        "median_s_later_clicks": statistics.median(later) if later else None,
    }


def heldout_scenes(count: int, data_root: Path, val_list: Path, workdir: Path) -> list[tuple[Path, gpd.GeoDataFrame]]:
    """``count`` held-out objects spread over the slice, as GeoTIFF scenes (written once) with their polygons."""
    objects = held_out_objects(data_root, val_list, count)
    scenes = []
    for index in range(len(objects)):  # the picks depend on count: so do the names
        scene, labels = workdir / f"heldout{count}_{index}.tif", workdir / f"heldout{count}_{index}.geojson"
        if not labels.exists():
            instance = objects[index]
            truth, _ = split_mask(instance.mask)
            height, width = truth.shape
            transform = Affine(1, 0, 500_000, 0, -1, 4_000_000 + height)
            with rasterio.open(scene, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8",
                               crs=HELDOUT_CRS, transform=transform) as out:
                out.write(np.moveaxis(instance.image, 2, 0))
            parts = [shape(part) for part, value in rasterio.features.shapes(truth.astype(np.uint8), mask=truth,
                                                                               transform=transform) if value]
            gpd.GeoDataFrame(geometry=[unary_union(parts)], crs=HELDOUT_CRS).to_file(labels)
        scenes.append((scene, gpd.read_file(labels)))
    return scenes


def add_scene_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that name the objects (a labelled scene or held-out photos, upsampled) and the model."""
    parser.add_argument("--scene", type=Path, default=ROOT / "examples" / "naip_scene.tif")
    parser.add_argument("--labels", type=Path, default=ROOT / "examples" / "water_labels.geojson")
    parser.add_argument("--factors", default="1,4,8,16", help="Upsampling factors, comma-separated (1: the scene itself).")
    parser.add_argument("--model", default="default", help="Checkpoint path or preset name.")
    parser.add_argument("--threads", type=int, default=1, help="Torch CPU threads.")
    parser.add_argument("--workdir", type=Path, default=Path("bench_out/first_click"), help="Upsampled scenes and JSON.")
    parser.add_argument("--heldout", type=int, default=0, help="Measure N held-out photos instead of --scene/--labels.")
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data" / "iseg",
                        help="RITM-layout training sets (--heldout).")
    parser.add_argument("--val-list", type=Path, default=ROOT / "packs" / "cpu320" / "val.txt",
                        help="Held-out names as the training pack wrote them (missing: the hash rule).")


def scenes_by_factor(args: argparse.Namespace) -> Iterator[tuple[int, list[tuple[Path, gpd.GeoDataFrame]]]]:
    """Each of ``--factors`` with its scenes and labels (upsampled copies written once, in --workdir);
    torch runs on ``--threads``."""
    torch.set_num_threads(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.heldout:
        originals = heldout_scenes(args.heldout, args.data_root, args.val_list, args.workdir)
    else:
        originals = [(args.scene, gpd.read_file(args.labels))]
    for factor in (int(text) for text in args.factors.split(",")):
        scenes = originals
        if factor != 1:
            scenes = [(args.workdir / f"{scene.stem}_x{factor}.tif", labels) for scene, labels in originals]
            for (original, _), (upsampled, _) in zip(originals, scenes):
                write_upsampled(original, upsampled, factor)
        yield factor, scenes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scene_arguments(parser)
    parser.add_argument("--clicks", type=int, default=3, help="Simulated clicks per object.")
    args = parser.parse_args()
    results = []
    for factor, scenes in scenes_by_factor(args):
        result = {"factor": factor, **measure(scenes, args.model, args.clicks)}
        results.append(result)
        print(f"x{factor}: objects {result['objects']}, median {result['median_object_px']:.0f} px across, "
              f"mIoU per click {result['miou_per_click']}, s/click first {result['median_s_first_click']:.2f} "
              f"later {result['median_s_later_clicks'] or 0:.2f}", flush=True)
    out = args.workdir / "first_click.json"
    out.write_text(json.dumps({"model": args.model, "clicks": args.clicks, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
