"""Large test scenes for the benchmark scripts: a real scene (or a window of it) upsampled.

Upsampling keeps the georeferencing (the pixel size shrinks by the same factor), so the scene's
labels still lie on their objects and an object of 40 px becomes one of 40 x factor px: the
only way to get real imagery with objects of known outline at every size. Written block by block
as a tiled JPEG GeoTIFF with overviews (a COG layout), atomically, once per path.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window
from tqdm import tqdm

BLOCK = 1024


def write_upsampled(source: Path, path: Path, factor: float, window: Window | None = None) -> None:
    """``window`` of ``source`` (default: all of it; RGB bands 1-3) upsampled ``factor`` times into ``path``."""
    if path.exists():
        return
    with rasterio.open(source) as src:
        window = window or Window(0, 0, src.width, src.height)
        crop = np.moveaxis(src.read((1, 2, 3), window=window), 0, -1)
        transform = src.window_transform(window) * Affine.scale(1 / factor)
        crs = src.crs
    height, width = round(window.height * factor), round(window.width * factor)
    profile = dict(
        driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs=crs, transform=transform,
        tiled=True, blockxsize=512, blockysize=512, compress="JPEG", photometric="YCBCR", jpeg_quality=85,
        BIGTIFF="YES",
    )
    partial = path.with_suffix(".partial.tif")
    with rasterio.open(partial, "w", **profile) as dst:
        blocks = [(row, col) for row in range(0, height, BLOCK) for col in range(0, width, BLOCK)]
        for row, col in tqdm(blocks, desc=f"writing {path.name} ({width} x {height} px)", unit="block"):
            rows, cols = min(BLOCK, height - row), min(BLOCK, width - col)
            # map each output pixel centre back into the crop (bilinear upsampling of one block)
            map_x = ((np.arange(col, col + cols) + 0.5) / factor - 0.5).astype(np.float32)
            map_y = ((np.arange(row, row + rows) + 0.5) / factor - 0.5).astype(np.float32)
            grid_x, grid_y = np.meshgrid(map_x, map_y)
            block = cv2.remap(crop, grid_x, grid_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            dst.write(np.moveaxis(block, -1, 0), window=Window(col, row, cols, rows))
        levels = [2**i for i in range(1, 12) if min(width, height) / 2**i >= 256]
        print(f"building overviews {levels} ...", flush=True)
        dst.build_overviews(levels, Resampling.average)
    partial.rename(path)
