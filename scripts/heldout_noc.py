"""NoC of checkpoints on the held-out slice of the training sets: how a training phase is chosen.

GrabCut and Berkeley are never used to pick weights (issue 6); this script scores candidates on
objects of COCO_MVal/DUTS_TR/CCP that training never saw, at their original resolution, with the
bench's clicker and predictor. Not a test: run it by hand and copy the numbers into the recipe.

    python scripts/heldout_noc.py runs/shipped_cpu4/model.safetensors runs/shipped_cpu5/model.safetensors
    python scripts/heldout_noc.py default --count 100 --val-list packs/cpu320/val.txt
    python scripts/heldout_noc.py default --count 200 --first-click-passes 1 --save-rows one.json
    python scripts/heldout_noc.py default --count 200 --against one.json   # paired over the objects

Two settings of 200 objects often differ by less than their noise: ``--against`` scores the
difference object by object against rows saved with ``--save-rows`` (the same objects), with a
95 % bootstrap interval, so a choice is not made on noise.
"""

from __future__ import annotations

import argparse
import json
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
from mst_geo.views import describe_inference

ROOT = Path(__file__).parents[1]
DATASETS = ["COCO_MVal", "DUTS_TR", "CCP"]
MIOU_AT = (1, 3, 5, 10)
BOOTSTRAP_SAMPLES = 5000


def at_least_one(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction,
                        help="Average each prediction with its mirror image, or not (default: the card's).")
    parser.add_argument("--zoom-min-crop", type=int, default=200, help="Smallest zoom-in crop side, px.")
    parser.add_argument("--zoom-expansion", type=float, default=1.4, help="Zoom-in crop around the mask, x.")
    parser.add_argument("--input-size", type=int, nargs="+", default=None,
                        help="Side the model sees, px (default: the card's inference_size, else its training size); "
                             "several sides: their predictions are averaged.")
    parser.add_argument("--first-click-passes", type=at_least_one, default=None,
                        help="Model passes at the first click, each fed the one before's mask (default: the card's).")
    parser.add_argument("--save-rows", type=Path, help="Write every object's IoU per click here (JSON), for --against.")
    parser.add_argument("--against", type=Path, nargs="+", default=[],
                        help="Rows saved with --save-rows on the same objects: print each model's paired difference.")
    args = parser.parse_args()
    saved = {path: read_rows(path) for path in args.against}

    torch.set_num_threads(1)
    try:  # every model first: a path mistyped after the first one fails now, not an hour later
        models = {name: resolve_model(name)[0] for name in args.models}
    except MSTGeoError as error:
        sys.exit(f"heldout_noc.py: {error}")
    held_out = held_out_objects(args.data_root, args.val_list, args.count)
    names = [held_out.source.where(pick) for pick in held_out.picks]  # each object's mask file: no image read
    for path, rows_file in saved.items():
        if (rows_file["objects"], rows_file["max_clicks"]) != (names, args.max_clicks):
            sys.exit(f"heldout_noc.py: {path}: its rows are of other objects or another --max-clicks "
                     "(another --count, --val-list or data)")
    runs = {}
    for name, model in models.items():
        predictor = Predictor(model, flip=args.flip, zoom_min_crop=args.zoom_min_crop,
                              zoom_expansion=args.zoom_expansion, input_size=args.input_size,
                              first_click_passes=args.first_click_passes)
        rows = np.array([evaluate_instance(predictor, held_out[i], args.max_clicks)[0]
                         for i in range(len(held_out))])
        label = f"{name} at {describe_inference(predictor.view_sizes, predictor.first_click_passes, predictor.flip)}"
        print(f"{label}: {summary(rows, args.max_clicks)}", flush=True)
        runs[label] = rows.tolist()
        for rows_file in saved.values():
            for other, other_rows in rows_file["runs"].items():
                print(f"  against {other}: {paired_report(rows, np.array(other_rows), args.max_clicks)}", flush=True)
    if args.save_rows:
        args.save_rows.write_text(json.dumps({"objects": names, "max_clicks": args.max_clicks, "runs": runs}))


def read_rows(path: Path) -> dict:
    """Rows written by --save-rows."""
    try:
        saved = json.loads(path.read_text())
        return {"objects": list(saved["objects"]), "max_clicks": int(saved["max_clicks"]), "runs": dict(saved["runs"])}
    except (OSError, ValueError, KeyError, TypeError) as error:
        sys.exit(f"heldout_noc.py: {path}: not rows written by --save-rows ({error})")


def summary(rows: np.ndarray, max_clicks: int) -> str:
    """``n=100 NoC@85 4.26 NoC@90 6.60 NoC@95 13.00 mIoU@1,3,5,10 0.539 ...``: one run's line."""
    noc = " ".join(f"NoC@{round(t * 100)} {object_nocs(rows, t, max_clicks).mean():.2f}" for t in (0.85, 0.9, 0.95))
    reported = [k for k in MIOU_AT if k <= max_clicks]
    miou = " ".join(f"{rows[:, k - 1].mean():.3f}" for k in reported)
    return f"n={len(rows)} {noc} mIoU@{','.join(map(str, reported))} {miou}"


def object_nocs(rows: np.ndarray, threshold: float, max_clicks: int) -> np.ndarray:
    """Each object's clicks to reach ``threshold`` (``max_clicks`` when it never does)."""
    return np.array([clicks_to_reach(r, threshold, max_clicks) for r in rows], dtype=float)


def paired_report(rows: np.ndarray, other: np.ndarray, max_clicks: int) -> str:
    """NoC@85/90 and mIoU@1 of ``rows`` minus ``other``, object by object, each with a 95 %
    bootstrap interval over the objects, and how many objects needed fewer / more clicks for 90 %."""
    differences = {f"NoC@{round(t * 100)}": object_nocs(rows, t, max_clicks) - object_nocs(other, t, max_clicks)
                   for t in (0.85, 0.9)}
    differences["mIoU@1"] = rows[:, 0] - other[:, 0]
    picks = np.random.default_rng(0).integers(0, len(rows), (BOOTSTRAP_SAMPLES, len(rows)))
    parts = []
    for text, values in differences.items():
        low, high = np.percentile(values[picks].mean(axis=1), [2.5, 97.5])
        parts.append(f"{text} {values.mean():+.3f} ({low:+.3f} to {high:+.3f})")
    noc90 = differences["NoC@90"]
    per_click = " ".join(f"{d:+.3f}" for d in (rows - other).mean(axis=0))
    return (", ".join(parts) + f"; NoC@90 fewer on {int((noc90 < 0).sum())} objects, more on {int((noc90 > 0).sum())}"
            + f"; mIoU per click {per_click}")


if __name__ == "__main__":
    main()
