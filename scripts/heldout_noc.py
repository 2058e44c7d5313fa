"""NoC of checkpoints on the held-out slice of the training sets: how a training phase is chosen.

GrabCut and Berkeley are never used to pick weights (issue 6); this script scores candidates on
objects of COCO_MVal/DUTS_TR/CCP that training never saw, at their original resolution, with the
bench's clicker and predictor. Not a test: run it by hand and copy the numbers into the recipe.

    python scripts/heldout_noc.py runs/shipped_cpu4/model.safetensors runs/shipped_cpu5/model.safetensors
    python scripts/heldout_noc.py default --count 100 --val-list packs/cpu320/val.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from mst_geo.clicks.session import clicks_to_reach, evaluate_instance
from mst_geo.clicks.predictor import Predictor
from mst_geo.errors import MSTGeoError
from mst_geo.model import resolve_model
from mst_geo.train.datamodule import HeldOutInstances
from mst_geo.train.instances import build_split
from mst_geo.train.samples import IsegObjects
from mst_geo.views import describe_passes, describe_views

ROOT = Path(__file__).parents[1]
DATASETS = ["COCO_MVal", "DUTS_TR", "CCP"]
MIOU_AT = (1, 3, 5, 10)


def held_out_objects(data_root: Path, val_list: Path, count: int) -> HeldOutInstances:
    """``count`` objects spread over the held-out slice (``val_list`` as the pack wrote it, else the hash rule)."""
    if not val_list.is_file():
        print(f"{val_list} not found: holding out 5 % of the images by the hash rule, as packs write it", flush=True)
    _, val = build_split(data_root, DATASETS, 0.05, val_list=val_list if val_list.is_file() else None)
    return HeldOutInstances(IsegObjects(val), count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="Checkpoint paths or 'default'.")
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data" / "iseg")
    parser.add_argument("--val-list", type=Path, default=ROOT / "packs" / "cpu320" / "val.txt",
                        help="Held-out names, as the training pack wrote them (missing: the hash rule).")
    parser.add_argument("--count", type=int, default=100, help="Held-out objects, spread over the slice.")
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--flip", action="store_true", help="Average each prediction with its mirror image.")
    parser.add_argument("--zoom-min-crop", type=int, default=200, help="Smallest zoom-in crop side, px.")
    parser.add_argument("--zoom-expansion", type=float, default=1.4, help="Zoom-in crop around the mask, x.")
    parser.add_argument("--input-size", type=int, nargs="+", default=None,
                        help="Side the model sees, px (default: the card's inference_size, else its training size); "
                             "several sides: their predictions are averaged.")
    parser.add_argument("--first-click-passes", type=int, default=None,
                        help="Model passes at the first click, each fed the one before's mask (default: the card's).")
    args = parser.parse_args()

    torch.set_num_threads(1)
    try:  # every model first: a path mistyped after the first one fails now, not an hour later
        models = {name: resolve_model(name)[0] for name in args.models}
    except MSTGeoError as error:
        sys.exit(f"heldout_noc.py: {error}")
    held_out = held_out_objects(args.data_root, args.val_list, args.count)
    for name, model in models.items():
        predictor = Predictor(model, flip=args.flip, zoom_min_crop=args.zoom_min_crop,
                              zoom_expansion=args.zoom_expansion, input_size=args.input_size,
                              first_click_passes=args.first_click_passes)
        rows = np.array([evaluate_instance(predictor, held_out[i], args.max_clicks)[0]
                         for i in range(len(held_out))])
        noc = {t: np.mean([clicks_to_reach(r, t, args.max_clicks) for r in rows]) for t in (0.85, 0.9)}
        reported = [k for k in MIOU_AT if k <= args.max_clicks]
        miou = " ".join(f"{rows[:, k - 1].mean():.3f}" for k in reported)
        print(f"{name} at {describe_views(predictor.view_sizes)}, {describe_passes(predictor.first_click_passes)}: n={len(rows)} NoC@85 {noc[0.85]:.2f} NoC@90 {noc[0.9]:.2f} "
              f"mIoU@{','.join(map(str, reported))} {miou}", flush=True)


if __name__ == "__main__":
    main()
