"""Turn a trained checkpoint into the packaged default model (fp16), then record its bench results.

The card records the weights' digest (so a test can check card and weights belong together) and
the NoC table that ``mst-geo bench noc`` measured for the shipped weights and the classical
baselines on the same instances and clicks. Numbers are copied from results.json, never typed.

    python scripts/ship_model.py runs/shipped_cpu/mst_model.safetensors --inference-size 288
    mst-geo bench noc --model default,grabcut,random-walker,watershed,disk \
        --datasets GrabCut,Berkeley --out bench_out/readme
    python scripts/ship_model.py mst_geo/weights/mst_default.safetensors --bench bench_out/readme
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from mst_geo.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, save_checkpoint, weights_digest
from mst_geo.views import views_json

MIOU_AT = (1, 3, 5, 10, 20)


def summarise(summary: dict) -> dict:
    """The card's copy of one bench summary: NoC/NoF per threshold, mIoU at a few clicks."""
    row = {f"noc@{k}": v for k, v in summary["noc"].items()}
    row.update({f"nof@{k}": v for k, v in summary["nof"].items()})
    row.update({f"miou@{c}": summary["miou"][c - 1] for c in MIOU_AT if c <= len(summary["miou"])})
    row["n"] = summary["n"]
    row["seconds_per_click"] = summary["seconds_per_click"]
    return row


def bench_metrics(results_json: Path, model_method: str) -> dict:
    """``{"noc": {dataset: row}, "noc_variants": {method: {dataset: row}}, "baselines": {...},
    "bench_settings": ...}``; variants are the model with other inference options ("default (flip)")."""
    report = json.loads(results_json.read_text())
    results = report["results"]
    if model_method not in results:
        raise SystemExit(f"{results_json}: no results for method {model_method!r}; has {sorted(results)}")
    table = lambda per: {dataset: summarise(s) for dataset, s in per.items()}  # noqa: E731
    variants = {method for method in results if method.startswith(f"{model_method} (")}
    return {
        "noc": table(results[model_method]),
        "noc_variants": {method: table(results[method]) for method in sorted(variants)},
        "baselines": {method: table(per) for method, per in results.items()
                      if method != model_method and method not in variants},
        "bench_settings": report["settings"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="trained checkpoint (.safetensors from mst-geo train)")
    parser.add_argument("--bench", type=Path, help="--out folder of mst-geo bench noc run on the shipped weights")
    parser.add_argument("--method", default="default", help="name of the model in the bench's results.json")
    parser.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT, help="where to write the shipped file")
    parser.add_argument("--inference-size", type=int, nargs="+",
                        help="side the predictor gives the model, px, as chosen with scripts/heldout_noc.py "
                             "--input-size; several sides: their predictions are averaged (default: keep the "
                             "checkpoint's)")
    parser.add_argument("--first-click-passes", type=int,
                        help="model passes at a first click, as chosen with scripts/heldout_noc.py "
                             "--first-click-passes (default: keep the checkpoint's)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction,
                        help="average every prediction with its mirror image, as chosen with scripts/heldout_noc.py "
                             "--flip (default: keep the checkpoint's)")
    args = parser.parse_args()

    model, card = load_checkpoint(args.checkpoint)
    settings = {"inference_size": None if args.inference_size is None else views_json(args.inference_size),
                "first_click_passes": args.first_click_passes, "flip": args.flip}
    try:  # the config checks them: a side that is no multiple of the patch, no pass at all
        model.config = dataclasses.replace(model.config, **{k: v for k, v in settings.items() if v is not None})
    except ValueError as error:
        sys.exit(f"ship_model.py: {error}")
    if args.bench is not None:
        card.setdefault("metrics", {}).update(bench_metrics(args.bench / "results.json", args.method))
    half = {name: t.half() if t.is_floating_point() else t for name, t in model.state_dict().items()}
    card["weights_sha256"] = weights_digest(half)
    card["weights_dtype"] = "float16"
    save_checkpoint(model, args.out, card, dtype=torch.float16)
    print(f"shipped {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB), weights {card['weights_sha256'][:12]}")


if __name__ == "__main__":
    main()
