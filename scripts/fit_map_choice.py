"""Fit the learned map choice (``map_choice.py``) on click states of held-out training objects.

``collect`` runs the card's predictor (the mean of its maps, as shipped) with the bench's clicker
on held-out training objects that are not among the ``--count`` objects ``heldout_noc.py`` and
``view_choice_oracle.py`` score (never GrabCut or Berkeley), and saves, per click, every candidate
map's features and its IoU against the ground truth. ``fit`` fits the linear scores on those
states, checks them on a part of the objects left out of the fit (cross-validated over the
objects: the IoU of the kept map against the mean's), prints the weights and saves them for
``view_choice_oracle.py learned --weights``.

    python scripts/fit_map_choice.py collect --part 0 --parts 2 --limit 90 --save states0.npz
    python scripts/fit_map_choice.py fit states0.npz states1.npz --save weights.json

Not a test: a measurement, like ``view_choice_oracle.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from heldout_noc import DATASETS, ROOT
from map_choice import FEATURES, MEAN_OF_ALL, candidate_maps, choice_features
from tqdm import tqdm

from mst_geo.clicks.click import Click
from mst_geo.clicks.predictor import Box, Predictor
from mst_geo.clicks.session import evaluate_instance, mask_iou
from mst_geo.clicks.simulator import PRED_THRESHOLD, split_mask
from mst_geo.model import resolve_model
from mst_geo.train.datamodule import HeldOutInstances
from mst_geo.train.instances import build_split
from mst_geo.train.samples import IsegObjects


class RecordingPredictor(Predictor):
    """The card's predictor, recording every window's candidate features and their true IoU."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.truth: tuple[np.ndarray, np.ndarray] | None = None
        self.states: list[tuple[np.ndarray, np.ndarray]] = []

    def _predict_window(self, clicks: list[Click], prev_mask: np.ndarray, box: Box) -> np.ndarray:
        top, left, bottom, right = box
        maps = candidate_maps({side: self._predict_mirrors(clicks, prev_mask, box, side) for side in self.view_sizes})
        features = choice_features(maps, clicks, prev_mask[top:bottom, left:right], (top, left))
        truth, ignore = self.truth
        ious = []
        for probabilities in maps.values():
            mask = np.zeros(truth.shape, dtype=bool)
            mask[top:bottom, left:right] = probabilities > PRED_THRESHOLD
            ious.append(mask_iou(truth, mask, ignore))
        self.states.append((features, np.asarray(ious)))
        return maps[MEAN_OF_ALL]


def collect(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    _, val = build_split(args.data_root, DATASETS, 0.05, val_list=None)
    source = IsegObjects(val)
    scored = set(HeldOutInstances(source, args.count).picks)
    mine = [i for i in range(len(source)) if i not in scored][args.part::args.parts][: args.limit]
    predictor = RecordingPredictor(resolve_model(args.model)[0])
    features, ious, objects = [], [], []
    for index in tqdm(mine, desc=f"part {args.part}"):
        instance = source.instance(index)
        predictor.truth = split_mask(instance.mask)
        predictor.states = []
        evaluate_instance(predictor, instance, args.max_clicks)
        for state_features, state_ious in predictor.states:
            features.append(state_features)
            ious.append(state_ious)
            objects.append(index)
        np.savez(args.save, features=np.stack(features), ious=np.stack(ious), objects=np.array(objects))


def read_states(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, ious, objects) of every state in the files ``collect`` saved."""
    parts = [np.load(path) for path in paths]
    return tuple(np.concatenate([part[key] for part in parts]) for key in ("features", "ious", "objects"))


def fit_weights(features: np.ndarray, ious: np.ndarray, l2: float, temperature: float) -> np.ndarray:
    """Linear scores whose softmax over each state's candidates maximises the expected IoU."""
    x = torch.from_numpy(features).float()
    y = torch.from_numpy(ious).float()
    scale = x.reshape(-1, x.shape[-1]).std(dim=0).clamp_min(1e-6)
    scale[0] = 1.0
    weights = torch.zeros(x.shape[-1], requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=500, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        chosen = torch.softmax((x / scale) @ weights / temperature, dim=1)
        value = -(chosen * y).sum(dim=1).mean() + l2 * weights[1:].square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    return (weights / scale).detach().numpy()


def chosen_ious(features: np.ndarray, ious: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each state's IoU when the best-scoring candidate is kept."""
    return ious[np.arange(len(ious)), np.argmax(features @ weights, axis=1)]


def fit(args: argparse.Namespace) -> None:
    features, ious, objects = read_states(args.states)
    mean = ious[:, -1]
    print(f"{len(ious)} states of {len(set(objects.tolist()))} objects; mean IoU {mean.mean():.4f}, "
          f"oracle {ious.max(axis=1).mean():.4f}")
    folds = np.unique(objects) % args.folds
    fold_of = dict(zip(np.unique(objects).tolist(), folds.tolist()))
    state_fold = np.array([fold_of[o] for o in objects.tolist()])
    for l2 in args.l2:
        for temperature in args.temperature:
            kept = np.empty(len(ious))
            for fold in range(args.folds):
                train, test = state_fold != fold, state_fold == fold
                weights = fit_weights(features[train], ious[train], l2, temperature)
                kept[test] = chosen_ious(features[test], ious[test], weights)
            gain = kept - mean
            print(f"l2 {l2:g} T {temperature:g}: held-out fold IoU {kept.mean():.4f} ({gain.mean():+.4f}); "
                  f"better in {(gain > 0.005).mean():.1%} of states, worse in {(gain < -0.005).mean():.1%}")
    weights = fit_weights(features, ious, args.l2[0], args.temperature[0])
    print("weights (all states, first l2 and T):")
    for name, weight in zip(FEATURES, weights):
        print(f"  {name:>28}: {weight:+.4f}")
    if args.save:
        args.save.write_text(json.dumps([float(f"{w:.4g}") for w in weights]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    gather = commands.add_parser("collect")
    gather.add_argument("--model", default="default")
    gather.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data" / "iseg")
    gather.add_argument("--count", type=int, default=100, help="The scored objects (heldout_noc.py --count): skipped.")
    gather.add_argument("--part", type=int, default=0)
    gather.add_argument("--parts", type=int, default=1)
    gather.add_argument("--limit", type=int, default=None, help="At most this many objects of the part.")
    gather.add_argument("--max-clicks", type=int, default=20)
    gather.add_argument("--save", type=Path, required=True)
    score = commands.add_parser("fit")
    score.add_argument("states", type=Path, nargs="+")
    score.add_argument("--folds", type=int, default=4)
    score.add_argument("--l2", type=float, nargs="+", default=[1e-3])
    score.add_argument("--temperature", type=float, nargs="+", default=[0.05])
    score.add_argument("--save", type=Path, help="Write the weights (JSON list) for view_choice_oracle.py --weights.")
    args = parser.parse_args()
    (collect if args.command == "collect" else fit)(args)


if __name__ == "__main__":
    main()
