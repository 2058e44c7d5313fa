"""Write the training sets at a small size into a git-ignored pack folder for GPU machines.

The pack keeps the RITM layouts (so ``mst-geo train --data-root packs/iseg320`` reads it like the
originals), adds ``val.txt`` with the held-out images, and must fit the size budget (default
50 MiB, so it travels with the working tree).

Example:
    python scripts/make_train_pack.py --source ../shared/data/iseg --out packs/iseg320
"""

from __future__ import annotations

import argparse
import sys

from mst_geo.errors import MSTGeoError
from mst_geo.train.pack import make_pack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="../shared/data/iseg", help="folder holding the datasets")
    parser.add_argument("--datasets", default="COCO_MVal,DUTS_TR,CCP", help="comma-separated names")
    parser.add_argument("--out", default="packs/iseg320", help="pack folder to create")
    parser.add_argument("--max-side", type=int, default=320, help="longest image side in pixels")
    parser.add_argument("--budget-mib", type=float, default=50.0, help="size limit of the pack")
    parser.add_argument("--quality", type=int, default=None, help="JPEG quality (default: highest that fits)")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="held-out share of images")
    args = parser.parse_args()
    try:
        report = make_pack(args.source, [d.strip() for d in args.datasets.split(",")], args.out,
                           args.max_side, args.budget_mib, args.val_fraction, args.quality)
    except MSTGeoError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"{report.folder}: {report.bytes / 2**20:.1f} MiB, JPEG quality {report.quality}, "
          f"{report.images} images, {report.masks} masks, {report.held_out_images} held-out images")


if __name__ == "__main__":
    main()
