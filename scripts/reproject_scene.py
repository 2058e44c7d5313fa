"""A scene reprojected into another CRS, for measuring the tool on the same imagery in other CRSs.

    python scripts/reproject_scene.py examples/naip_scene.tif EPSG:4326 naip_4326.tif

GDAL's default output grid for the CRS (``calculate_default_transform``: about the source's
resolution, square pixels in the new CRS's units, so degrees on a geographic one), bilinear, the
source's nodata kept. The README's EPSG:4326 ponds numbers come from this scene.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject


def reproject_scene(source: Path, crs: str, path: Path) -> None:
    """Write ``source`` warped into ``crs`` at ``path`` (all bands, their names kept)."""
    with rasterio.open(source) as src:
        transform, width, height = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds)
        nodata = src.nodata if src.nodata is not None else 0
        out = np.zeros((src.count, height, width), src.dtypes[0])
        for band in range(src.count):
            reproject(src.read(band + 1), out[band], src_transform=src.transform, src_crs=src.crs,
                      dst_transform=transform, dst_crs=crs, resampling=Resampling.bilinear,
                      src_nodata=nodata, dst_nodata=nodata)
        profile = {**src.profile, "driver": "GTiff", "crs": crs, "transform": transform, "width": width,
                   "height": height, "nodata": nodata, "photometric": "MINISBLACK"}  # band 4 is no alpha
        colours = src.colorinterp
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(out)
        dst.colorinterp = colours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("crs", help="target CRS, e.g. EPSG:4326")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    reproject_scene(args.source, args.crs, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
