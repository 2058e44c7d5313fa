"""Benchmark of ``mst-geo app``: tile latency and memory while panning a huge scene, seconds per click.

Not a test: run it by hand and copy the figures into the README.

    python scripts/bench_app.py --model default            # 40 000² px scene, the shipped model
    python scripts/bench_app.py --side 8000 --model ckpt.safetensors

The large scene is the example NAIP image (a 723 px square around its biggest pond) resampled
to ``--side`` px, written as a tiled JPEG GeoTIFF with overviews (a COG layout), in EPSG:26914
with the pixel size shrunk to match. At 40 000 px the pond spans about 20 000 px, so the
"lake" click measures the adaptive window at its largest; the "house" click is a pond of
about 40 px in the example scene itself. Requests go through the real FastAPI app (in-process
ASGI client), so the timings include routing and PNG encoding.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import psutil
from fastapi.testclient import TestClient
from rasterio.windows import Window

from mst_geo.api import Segmenter
from mst_geo.app.server import create_app
from upsample import write_upsampled  # scripts/upsample.py

EXAMPLE = Path(__file__).parents[1] / "examples" / "naip_scene.tif"
CROP = Window(211, 0, 723, 723)  # holds the scene's largest pond (rows 68..446, cols 565..813)
LAKE_PIXEL = (280, 699 - 211)  # a pixel inside that pond, in crop coordinates (row, col)
HOUSE_PIXEL = (351.5, 364.5)  # inside a pond of 42 x 44 px in the example scene
VIEWPORT = (1280, 800)  # browser map size in px


def pan(client: TestClient, scene: dict, zoom: int, views: int) -> tuple[list[float], list[float], float]:
    """Pan diagonally across the scene at ``zoom``, fetching every tile in view.

    Returns the latency of each tile (s), the RSS after each view (MiB) and the process CPU
    seconds per tile (less sensitive than wall time to other jobs on a shared machine).
    """
    size = scene["tile_size"]
    span = size * 2 ** (scene["max_zoom"] - zoom)  # scene px per tile
    n_x = -(-scene["width"] // span)
    n_y = -(-scene["height"] // span)
    view_x, view_y = -(-VIEWPORT[0] // size) + 1, -(-VIEWPORT[1] // size) + 1
    latencies, rss = [], []
    process = psutil.Process()
    cpu_start = time.process_time()
    for step in range(views):
        left = round(step * max(0, n_x - view_x) / max(1, views - 1))
        top = round(step * max(0, n_y - view_y) / max(1, views - 1))
        for x in range(left, min(n_x, left + view_x)):
            for y in range(top, min(n_y, top + view_y)):
                start = time.perf_counter()
                response = client.get(f"/tiles/{zoom}/{x}/{y}.png")
                latencies.append(time.perf_counter() - start)
                response.raise_for_status()
        rss.append(process.memory_info().rss / 2**20)
    return latencies, rss, (time.process_time() - cpu_start) / len(latencies)


def click_seconds(client: TestClient, segmenter: Segmenter, pixel: tuple[float, float], clicks: int) -> dict:
    """Server seconds per click for ``clicks`` positive clicks at one pixel of a new object."""
    x, y = segmenter.transform * (pixel[1], pixel[0])
    object_id = client.post("/api/objects").json()["object"]
    seconds, cpu_seconds = [], []
    for _ in range(clicks):
        cpu_start = time.process_time()
        response = client.post("/api/click", json={"x": x, "y": y, "space": "scene", "object": object_id})
        response.raise_for_status()
        cpu_seconds.append(time.process_time() - cpu_start)
        seconds.append(response.json()["seconds"])
    result = segmenter.mask(object_id)
    rows, cols = np.nonzero(result.mask) if result.mask.any() else (np.array([0]), np.array([0]))
    scale_rows, scale_cols = result.scale
    return {
        "seconds_per_click": seconds,
        "cpu_seconds_per_click": cpu_seconds,
        "window_px": [int(result.window.height), int(result.window.width)],
        "mask_extent_px": [round((np.ptp(rows) + 1) * scale_rows), round((np.ptp(cols) + 1) * scale_cols)],
    }


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "n": len(values),
        "median_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
        "max_ms": 1000 * ordered[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=40_000, help="Side of the large scene in px.")
    parser.add_argument("--model", default="default", help="Checkpoint path or preset name.")
    parser.add_argument("--workdir", type=Path, default=Path("bench_out/app"), help="Where the scene and results go.")
    parser.add_argument("--views", type=int, default=20, help="Viewport positions per zoom while panning.")
    parser.add_argument("--clicks", type=int, default=3, help="Clicks per object for the timing.")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    scene_path = args.workdir / f"scene_{args.side}.tif"
    # written in a child process, so GDAL's cache and freed arrays do not inflate the RSS measured here
    writer = multiprocessing.get_context("spawn").Process(
        target=write_upsampled, args=(EXAMPLE, scene_path, args.side / CROP.width, CROP)
    )
    writer.start()
    writer.join()
    if writer.exitcode != 0:
        raise SystemExit(f"writing {scene_path} failed")

    results: dict = {"side": args.side, "model": args.model, "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    segmenter = Segmenter(scene_path, model=args.model)
    client = TestClient(create_app(segmenter))
    scene = client.get("/api/scene").json()
    rss_start = psutil.Process().memory_info().rss / 2**20
    zooms = sorted({scene["max_zoom"], scene["max_zoom"] - 2, max(0, scene["max_zoom"] // 2), 0})
    results["pan"] = {}
    for zoom in zooms:
        latencies, rss, cpu_per_tile = pan(client, scene, zoom, args.views)
        results["pan"][zoom] = {
            **summary(latencies), "cpu_ms_per_tile": 1000 * cpu_per_tile,
            "rss_mib_first_view": rss[0], "rss_mib_last_view": rss[-1],
        }
        print(f"zoom {zoom}: {results['pan'][zoom]}", flush=True)
    results["rss_mib_before_panning"] = rss_start
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    scale = args.side / CROP.width
    results["warmup_click"] = click_seconds(client, segmenter, HOUSE_PIXEL, 1)  # torch's first call is slow
    results["lake_click"] = click_seconds(
        client, segmenter, ((LAKE_PIXEL[0] + 0.5) * scale, (LAKE_PIXEL[1] + 0.5) * scale), args.clicks
    )
    print(f"lake: {results['lake_click']}", flush=True)

    small = Segmenter(EXAMPLE, model=args.model)
    small_client = TestClient(create_app(small))
    click_seconds(small_client, small, (100.5, 100.5), 1)  # warm-up on another object
    results["house_click"] = click_seconds(small_client, small, HOUSE_PIXEL, args.clicks)
    print(f"house: {results['house_click']}", flush=True)
    out = args.workdir / f"bench_app_{args.side}.json"
    results["load_average_end"] = os.getloadavg()
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
