"""Scale benchmark: peak memory and seconds per object must not grow with the scene.

Writes tiled, compressed GeoTIFFs with overviews of 2k², 10k² and 40k² px (by default) whose
centre is the real NAIP example scene at its own map position, surrounded by mirrored copies of
it (real texture everywhere), so the example clicks land on the same objects in every scene.
Each scene is then segmented in a fresh process (``Segmenter`` + the clicks file), which
reports its own peak RSS and timings; the table compares the sizes.

    python scripts/bench_scale.py                       # 2k, 10k, 40k with the default model
    python scripts/bench_scale.py --sizes 2048,10240 --model mst_tiny
    python scripts/bench_scale.py --workdir /data/scale  # keep the scenes and reuse them next time

Scenes go to a temporary directory that is removed at the end, unless ``--workdir`` is given
(then an interrupted run resumes: finished scenes are reused).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_SCENE = ROOT / "examples" / "naip_scene.tif"
EXAMPLE_CLICKS = ROOT / "examples" / "clicks.geojson"
BLOCK = 512


def mirror_index(n: int, offset: int, period: int) -> np.ndarray:
    """Source index of each of ``n`` output pixels when the source (length ``period``) sits at
    ``offset`` and repeats mirrored on both sides (seamless, and the centre copy is exact)."""
    u = np.mod(np.arange(n) - offset, 2 * period)
    return np.where(u < period, u, 2 * period - 1 - u)


def write_scene(path: Path, size: int, compress: str) -> None:
    """A ``size``² tiled GeoTIFF with overviews, the example scene at its map position in the centre."""
    with rasterio.open(EXAMPLE_SCENE) as src:
        pixels = src.read()
        profile = src.profile
        transform = src.transform
    bands, height, width = pixels.shape
    off_r, off_c = (size - height) // 2, (size - width) // 2
    rows, cols = mirror_index(size, off_r, height), mirror_index(size, off_c, width)
    profile.update(
        width=size, height=size, tiled=True, blockxsize=BLOCK, blockysize=BLOCK, compress=compress,
        transform=transform @ rasterio.Affine.translation(-off_c, -off_r), BIGTIFF="IF_SAFER",
    )  # fmt: skip
    partial = path.with_suffix(".partial.tif")
    blocks = [(r, c) for r in range(0, size, BLOCK) for c in range(0, size, BLOCK)]
    with rasterio.open(partial, "w", **profile) as dst:
        for r, c in tqdm(blocks, desc=f"write {size}²", unit="block", leave=False):
            block = pixels[:, rows[r : r + BLOCK]][:, :, cols[c : c + BLOCK]]
            dst.write(block, window=Window(c, r, block.shape[2], block.shape[1]))
        factors = [2**k for k in range(1, 16) if size // 2**k >= BLOCK // 2]
        dst.build_overviews(factors, Resampling.average)
    partial.rename(path)


def peak_rss_mb() -> float:
    """This process's peak RSS. Linux: VmHWM, which starts afresh at exec; ``ru_maxrss`` would
    carry over the parent's peak at fork (the parent that just wrote a 40 000² scene)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(scene: Path, clicks: Path, model: str, device: str, out: Path, threads: int) -> dict:
    """Segment ``clicks`` on ``scene`` in this process; timings and this process's peak RSS."""
    import geopandas as gpd
    import torch

    from mst_geo.api import Segmenter

    torch.set_num_threads(threads)

    start = time.perf_counter()
    with Segmenter(scene, model=model, device=device) as seg:
        opened, opened_cpu = time.perf_counter(), time.process_time()
        rss_open = peak_rss_mb()
        objects = seg.load_clicks(clicks)
        segmented, segmented_cpu = time.perf_counter(), time.process_time()
        seg.save(out, overwrite=True)
    frame = gpd.read_file(out)
    return {
        "open_s": opened - start,
        "seconds_per_object": (segmented - opened) / len(objects),
        "cpu_seconds_per_object": (segmented_cpu - opened_cpu) / len(objects),
        "objects": len(objects),
        "peak_rss_open_mb": rss_open,
        "peak_rss_mb": peak_rss_mb(),
        "areas_m2": dict(zip(frame["object"].astype(str), frame["area_m2"].round(1))),
        "windows": {str(obj): int(max(seg.mask(obj).window.width, seg.mask(obj).window.height)) for obj in objects},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2048,10240,40960", help="Comma-separated scene sides in pixels.")
    parser.add_argument("--model", default="default", help="'default', a checkpoint path or a preset name.")
    parser.add_argument("--device", default="cpu", help="Torch device.")
    parser.add_argument("--clicks", type=Path, default=EXAMPLE_CLICKS, help="Clicks GeoJSON (example clicks).")
    parser.add_argument("--compress", default="deflate", help="GeoTIFF compression (deflate, zstd, jpeg, ...).")
    parser.add_argument("--workdir", type=Path, help="Keep scenes here and reuse them (default: a temp dir).")
    parser.add_argument("--threads", type=int, default=1, help="Torch CPU threads (1: steadier on shared machines).")
    parser.add_argument("--repeat", type=int, default=1, help="Rounds over the scenes; each scene's fastest run counts.")
    parser.add_argument("--json", type=Path, help="Also write the results as JSON here.")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child mode: one scene
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure:
        print(json.dumps(measure(args.measure, args.clicks, args.model, args.device, args.out, args.threads)))
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mst_geo_scale_"))
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    runs: dict[int, list[dict]] = {size: [] for size in sizes}
    try:
        for size in sizes:
            scene = workdir / f"scene_{size}.tif"
            if not scene.exists():
                started = time.perf_counter()
                write_scene(scene, size, args.compress)
                print(f"wrote {scene.name}: {scene.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - started:.0f} s")
        for round_ in range(args.repeat):  # sizes interleaved, so a busy spell on a shared machine hits them all
            for size in sizes:
                run = measure_in_child(workdir / f"scene_{size}.tif", workdir / f"objects_{size}.gpkg", args)
                runs[size].append(run)
                print(
                    f"round {round_ + 1}: {size:>6}²  peak RSS {run['peak_rss_mb']:7.0f} MB   "
                    f"{run['seconds_per_object']:6.2f} s/object ({run['cpu_seconds_per_object']:.2f} s CPU)   "
                    f"open {run['open_s']:5.2f} s   windows {run['windows']}"
                )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    results = {  # the fastest run's timings (least disturbed), the largest peak RSS seen
        size: {**min(size_runs, key=lambda run: run["seconds_per_object"]),
               "peak_rss_mb": max(run["peak_rss_mb"] for run in size_runs)}
        for size, size_runs in runs.items()
    }  # fmt: skip
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def measure_in_child(scene: Path, out: Path, args: argparse.Namespace) -> dict:
    """``measure`` in a fresh interpreter, so its peak RSS is this scene's alone."""
    child = subprocess.run(
        [sys.executable, __file__, "--measure", str(scene), "--out", str(out),
         "--clicks", str(args.clicks), "--model", args.model, "--device", args.device, "--threads", str(args.threads)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if child.returncode != 0:
        sys.exit(f"segmenting {scene.name} failed:\n{child.stderr.strip()}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def print_table(results: dict) -> None:
    """Markdown table, with the spread of peak RSS and seconds per object across sizes."""
    print("\n| scene | peak RSS (MB) | RSS after open (MB) | s / object | CPU s / object | open (s) |")
    print("|---|---|---|---|---|---|")
    for size, r in results.items():
        print(
            f"| {size}² px | {r['peak_rss_mb']:.0f} | {r['peak_rss_open_mb']:.0f} | {r['seconds_per_object']:.2f} "
            f"| {r['cpu_seconds_per_object']:.2f} | {r['open_s']:.2f} |"
        )
    if len(results) > 1:
        areas = [r["areas_m2"] for r in results.values()]
        same = all(a == areas[0] for a in areas)
        print(f"same polygons in every scene: {'yes' if same else 'no: ' + json.dumps(areas)}")
        for key in ("peak_rss_mb", "seconds_per_object", "cpu_seconds_per_object"):
            values = [r[key] for r in results.values()]
            print(f"{key}: spread {100 * (max(values) - min(values)) / min(values):.1f} % (max vs min)")


if __name__ == "__main__":
    main()
