"""How many clicks a better choice among the predictions the card's settings already make could save.

At every click the card's predictor runs each view (288 and 416 px) on the image and on its mirror
image and averages the four maps. This script runs the same model calls on held-out training
objects (never GrabCut or Berkeley) and keeps, per click, one of the seven maps those calls give
(each view, plain or mirrored; each view's mirror mean; the mean of all) by a rule:

- ``mean``: the mean of all, the card's own choice (the baseline);
- ``oracle``: the map with the best IoU against the ground truth, an upper bound for a learned
  quality head (SAM's predicted IoU) choosing among them;
- ``oracle-views``: the same among the two views' means and the mean of all;
- ``stable``: no ground truth, the map whose mask changes least between p > 0.4 and p > 0.6;
- ``learned``: no ground truth, the best linear score (``map_choice.py``) with the weights that
  ``fit_map_choice.py`` fitted on other held-out objects.

With ``--until-click N`` a rule chooses at the first N clicks only, later clicks keep the mean.

    python scripts/view_choice_oracle.py mean --count 100 --save-rows mean.json
    python scripts/view_choice_oracle.py oracle --count 100 --against mean.json
    python scripts/view_choice_oracle.py learned --weights weights.json --count 100 --against mean.json

Not a test: a measurement for docs/training.md ("How much a choice among the views could save",
"A learned choice among the views").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from heldout_noc import ROOT, at_least_one, held_out_objects, paired_report, read_rows, summary
from map_choice import MEAN_OF_ALL, STABILITY_CUTS, candidate_maps, choice_features, chosen_map, read_weights

from mst_geo.clicks.click import Click
from mst_geo.clicks.predictor import Box, Predictor
from mst_geo.clicks.session import evaluate_instance, mask_iou
from mst_geo.clicks.simulator import binarize, split_mask
from mst_geo.model import resolve_model

RULES = ("mean", "oracle", "oracle-views", "stable", "learned")


class ChoosingPredictor(Predictor):
    """The card's predictor keeping, per click, the map ``rule`` picks among its views and mirrors
    (the mean after ``until_click`` clicks, where given)."""

    def __init__(self, *args, rule: str, weights: list[float] | None = None, until_click: int | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.rule = rule
        self.weights = weights
        self.until_click = until_click
        self.truth: tuple[np.ndarray, np.ndarray] | None = None  # (object, ignore) of the current image
        self.picks: dict[str, int] = {}

    def _predict_window(self, clicks: Sequence[Click], prev_mask: np.ndarray, box: Box) -> np.ndarray:
        maps = candidate_maps({side: self._predict_mirrors(clicks, prev_mask, box, side) for side in self.view_sizes})
        if self.rule == "oracle-views":
            maps = {name: m for name, m in maps.items() if "mean" in name}
        pick = self._pick(maps, clicks, prev_mask, box)
        self.picks[pick] = self.picks.get(pick, 0) + 1
        return maps[pick]

    def _pick(self, maps: dict[str, np.ndarray], clicks: Sequence[Click], prev_mask: np.ndarray, box: Box) -> str:
        if self.rule == "mean" or (self.until_click is not None and len(clicks) > self.until_click):
            return MEAN_OF_ALL
        if self.rule == "learned":
            return chosen_map(maps, self.features(maps, clicks, prev_mask, box), self.weights)
        return max(maps, key=lambda name: (self._score(maps[name], box), name == MEAN_OF_ALL))  # a tie: the mean

    def features(self, maps: dict[str, np.ndarray], clicks: Sequence[Click], prev_mask: np.ndarray,
                 box: Box) -> np.ndarray:
        """``map_choice.choice_features`` of the window ``box``."""
        top, left, bottom, right = box
        return choice_features(maps, clicks, prev_mask[top:bottom, left:right], (top, left))

    def truth_iou(self, probabilities: np.ndarray, box: Box) -> float:
        """IoU against the ground truth of the window's map pasted into an otherwise empty image."""
        top, left, bottom, right = box
        truth, ignore = self.truth
        mask = np.zeros(truth.shape, dtype=bool)
        mask[top:bottom, left:right] = binarize(probabilities)
        return mask_iou(truth, mask, ignore)

    def _score(self, probabilities: np.ndarray, box: Box) -> float:
        if self.rule == "stable":
            low, high = (int((probabilities > cut).sum()) for cut in STABILITY_CUTS)
            return high / max(low, 1)
        return self.truth_iou(probabilities, box)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rule", choices=RULES)
    parser.add_argument("--model", default="default")
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data" / "iseg")
    parser.add_argument("--val-list", type=Path, default=ROOT / "packs" / "cpu320" / "val.txt")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--weights", type=Path, help="learned: the weights fit_map_choice.py fit --save wrote")
    parser.add_argument("--until-click", type=at_least_one, help="choose at the first N clicks only, then the mean")
    parser.add_argument("--save-rows", type=Path)
    parser.add_argument("--against", type=Path, help="rows saved with --save-rows on the same objects")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if (args.rule == "learned") != (args.weights is not None):
        sys.exit("view_choice_oracle.py: --weights goes with the rule 'learned', and it needs them")
    weights = read_weights(args.weights) if args.weights else None
    predictor = ChoosingPredictor(resolve_model(args.model)[0], rule=args.rule, weights=weights,
                                  until_click=args.until_click)
    held_out = held_out_objects(args.data_root, args.val_list, args.count)
    names = [held_out.source.where(pick) for pick in held_out.picks]
    other = read_rows(args.against) if args.against else None
    if other is not None and (other["objects"], other["max_clicks"]) != (names, args.max_clicks):
        sys.exit(f"view_choice_oracle.py: {args.against}: its rows are of other objects or another --max-clicks")
    rows = []
    for index in range(len(held_out)):
        instance = held_out[index]
        predictor.truth = split_mask(instance.mask)
        rows.append(evaluate_instance(predictor, instance, args.max_clicks)[0])
    rows = np.array(rows)
    print(f"{args.rule}: {summary(rows, args.max_clicks)}; picks {predictor.picks}", flush=True)
    if other is not None:
        for label, other_rows in other["runs"].items():
            print(f"  against {label}: {paired_report(rows, np.array(other_rows), args.max_clicks)}")
    if args.save_rows:
        args.save_rows.write_text(json.dumps({"objects": names, "max_clicks": args.max_clicks,
                                              "runs": {args.rule: rows.tolist()}}))


if __name__ == "__main__":
    main()
