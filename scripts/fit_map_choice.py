"""Fit the learned map choice (``map_choice.py``) on click states of held-out training objects.

``collect`` runs the card's predictor (the mean of its maps, as shipped) with the bench's clicker
on held-out training objects that are not among the ``--count`` objects ``heldout_noc.py`` and
``view_choice_oracle.py`` score (never GrabCut or Berkeley), and saves, per model pass (a click, or
one of the first click's passes), every candidate map's features and its IoU against the ground
truth, with the clicks so far, the pass, the object and its image. ``fit`` fits the linear scores on those
states, checks them on images left out of the fit (cross-validated: the IoU of the kept map
against the mean's), prints the weights and saves them for ``view_choice_oracle.py learned
--weights``.

    python scripts/fit_map_choice.py collect --part 0 --parts 2 --limit 90 --save states0.npz
    python scripts/fit_map_choice.py fit states0.npz states1.npz --save weights.json

Not a test: a measurement, like ``view_choice_oracle.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from heldout_noc import ROOT, at_least_one, held_out_objects
from map_choice import FEATURES
from tqdm import tqdm
from view_choice_oracle import ChoosingPredictor

from mst_geo.atomic import write_atomic, write_text_atomic
from mst_geo.clicks.click import Click
from mst_geo.clicks.predictor import Box
from mst_geo.clicks.session import evaluate_instance
from mst_geo.clicks.simulator import split_mask
from mst_geo.model import resolve_model

FOLD_SEED = 0


class RecordingPredictor(ChoosingPredictor):
    """The card's predictor (the mean), recording every model pass's candidate features, their
    true IoU and the clicks so far."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, rule="mean", **kwargs)
        self.states: list[tuple[np.ndarray, np.ndarray, int]] = []

    def _pick(self, maps: dict[str, np.ndarray], clicks: Sequence[Click], prev_mask: np.ndarray, box: Box) -> str:
        ious = np.array([self.truth_iou(probabilities, box) for probabilities in maps.values()])
        self.states.append((self.features(maps, clicks, prev_mask, box), ious, len(clicks)))
        return super()._pick(maps, clicks, prev_mask, box)


def collect(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    scored = held_out_objects(args.data_root, args.val_list, args.count)
    source = scored.source
    skipped = set(scored.picks)
    mine = [i for i in range(len(source)) if i not in skipped][args.part::args.parts][: args.limit]
    if not mine:
        sys.exit(f"fit_map_choice.py: no objects in part {args.part} of {args.parts} (held-out objects: "
                 f"{len(source)}, {len(scored)} of them scored)")
    predictor = RecordingPredictor(resolve_model(args.model)[0])
    columns: dict[str, list] = {key: [] for key in ("features", "ious", "clicks", "passes", "objects", "images")}
    for index in tqdm(mine, desc=f"part {args.part}"):
        instance = source.instance(index)
        predictor.truth = split_mask(instance.mask)
        predictor.states = []
        evaluate_instance(predictor, instance, args.max_clicks)
        counts = [clicks for _, _, clicks in predictor.states]
        for position, (features, ious, clicks) in enumerate(predictor.states):
            columns["features"].append(features)
            columns["ious"].append(ious)
            columns["clicks"].append(clicks)
            columns["passes"].append(counts[:position].count(clicks) + 1)  # the first click's passes
            columns["objects"].append(index)
            columns["images"].append(source.index.items[index][0])
        # rewritten (atomically) after every object: an interrupted run keeps what it collected
        write_atomic(args.save, lambda path: _save_columns(path, columns))


def _save_columns(path: Path, columns: dict[str, list]) -> None:
    with path.open("wb") as file:  # a file, not a name: np.savez would add ".npz" to a name without it
        np.savez(file, **{key: np.stack(values) for key, values in columns.items()})


def read_states(paths: list[Path]) -> dict[str, np.ndarray]:
    """Every state in the files ``collect`` saved, the files' columns joined."""
    parts = [np.load(path) for path in paths]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0].files}


def fit_weights(features: np.ndarray, ious: np.ndarray, l2: float, temperature: float) -> np.ndarray:
    """Linear scores whose softmax over each state's candidates maximises the expected IoU."""
    x = torch.from_numpy(features).float()
    y = torch.from_numpy(ious).float()
    scale = x.reshape(-1, x.shape[-1]).std(dim=0).clamp_min(1e-6)  # L2 alike for every feature
    weights = torch.zeros(x.shape[-1], requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=500, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        chosen = torch.softmax((x / scale) @ weights / temperature, dim=1)
        value = -(chosen * y).sum(dim=1).mean() + l2 * weights.square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    return (weights / scale).detach().numpy()


def chosen_ious(features: np.ndarray, ious: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each state's IoU when the best-scoring candidate is kept."""
    return ious[np.arange(len(ious)), np.argmax(features @ weights, axis=1)]


def image_folds(images: np.ndarray, folds: int) -> np.ndarray:
    """Each state's fold: the images shuffled (seeded) into ``folds`` groups, so that no image's
    objects are on both sides of a fold."""
    unique = np.unique(images)
    if not 2 <= folds <= len(unique):
        sys.exit(f"fit_map_choice.py: --folds must be between 2 and the {len(unique)} images, got {folds}")
    order = np.random.default_rng(FOLD_SEED).permutation(len(unique))
    fold_of = dict(zip(unique[order].tolist(), (np.arange(len(unique)) % folds).tolist()))
    return np.array([fold_of[image] for image in images.tolist()])


def fit(args: argparse.Namespace) -> None:
    states = read_states(args.states)
    features, ious = states["features"], states["ious"]
    if features.shape[-1] != len(FEATURES):
        sys.exit(f"fit_map_choice.py: the states have {features.shape[-1]} features, map_choice.py scores "
                 f"{len(FEATURES)}: collect them again")
    mean = ious[features[..., FEATURES.index("is mean of all")] == 1]
    print(f"{len(ious)} states (model passes) of {len(np.unique(states['objects']))} objects in "
          f"{len(np.unique(states['images']))} images; the mean's IoU {mean.mean():.4f}, "
          f"the oracle's {ious.max(axis=1).mean():.4f}")
    state_fold = image_folds(states["images"], args.folds)
    for l2 in args.l2:
        for temperature in args.temperature:
            kept = np.empty(len(ious))
            for fold in range(args.folds):
                train, test = state_fold != fold, state_fold == fold
                kept[test] = chosen_ious(features[test], ious[test],
                                         fit_weights(features[train], ious[train], l2, temperature))
            gain = kept - mean
            by_click = " ".join(f"{gain[states['clicks'] == clicks].mean():+.4f}" for clicks in range(1, 6))
            print(f"l2 {l2:g} T {temperature:g}: cross-validated IoU {kept.mean():.4f} ({gain.mean():+.4f}); "
                  f"better in {(gain > 0.005).mean():.1%} of states, worse in {(gain < -0.005).mean():.1%}; "
                  f"at clicks 1-5 {by_click}")
    weights = fit_weights(features, ious, args.l2[0], args.temperature[0])
    print("weights (all states, the first --l2 and --temperature):")
    for name, weight in zip(FEATURES, weights):
        print(f"  {name:>28}: {weight:+.4f}")
    if args.save:  # 4 significant digits: what the measured runs used
        write_text_atomic(args.save, json.dumps({"features": FEATURES,
                                                 "weights": [float(f"{w:.4g}") for w in weights]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    gather = commands.add_parser("collect")
    gather.add_argument("--model", default="default")
    gather.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data" / "iseg")
    gather.add_argument("--val-list", type=Path, default=ROOT / "packs" / "cpu320" / "val.txt",
                        help="Held-out names, as for heldout_noc.py (missing: the hash rule).")
    gather.add_argument("--count", type=int, default=100, help="The scored objects (heldout_noc.py --count): skipped.")
    gather.add_argument("--part", type=int, default=0, help="Run part K (from 0) of --parts, every N-th object.")
    gather.add_argument("--parts", type=at_least_one, default=1)
    gather.add_argument("--limit", type=at_least_one, default=None, help="At most this many objects of the part.")
    gather.add_argument("--max-clicks", type=int, default=20)
    gather.add_argument("--save", type=Path, required=True)
    score = commands.add_parser("fit")
    score.add_argument("states", type=Path, nargs="+")
    score.add_argument("--folds", type=int, default=4, help="Cross-validation folds over the images.")
    score.add_argument("--l2", type=float, nargs="+", default=[1e-3], help="Each one cross-validated; the first "
                       "one fits the saved weights.")
    score.add_argument("--temperature", type=float, nargs="+", default=[0.05], help="As --l2.")
    score.add_argument("--save", type=Path, help="Write the weights for view_choice_oracle.py --weights.")
    args = parser.parse_args()
    (collect if args.command == "collect" else fit)(args)


if __name__ == "__main__":
    main()
