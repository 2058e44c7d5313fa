"""scripts/fit_map_choice.py and the ``learned`` rule of scripts/view_choice_oracle.py on real
held-out objects with a tiny checkpoint: the states it saves, the weights it fits, the rule that
runs them in the click loop."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from mst_geo.train.datamodule import HeldOutInstances
from mst_geo.train.instances import build_split
from mst_geo.train.samples import IsegObjects

REPO = Path(__file__).parents[1]


def _script(name: str, *args) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / name), *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_states_are_fitted_and_the_learned_rule_runs_them(tiny_checkpoint, iseg_root, tmp_path):
    states = tmp_path / "states.npz"
    _script("fit_map_choice.py", "collect", "--model", tiny_checkpoint, "--data-root", iseg_root,
            "--count", 3, "--limit", 2, "--max-clicks", 3, "--save", states)
    saved = np.load(states)
    # the tiny card runs one view without the mirror, one pass a click: its view's map and the mean of all
    assert saved["features"].shape == (6, 2, 14) and saved["ious"].shape == (6, 2)
    assert saved["clicks"].tolist() == [1, 2, 3] * 2 and saved["passes"].tolist() == [1] * 6
    assert len(set(saved["objects"].tolist())) == 2 and np.all((saved["ious"] >= 0) & (saved["ious"] <= 1))
    np.testing.assert_array_equal(saved["ious"][:, 0], saved["ious"][:, 1])  # one view: its map is the mean
    _, held_out = build_split(Path(iseg_root), ["COCO_MVal", "DUTS_TR", "CCP"], 0.05)  # the scripts' hash rule
    scored = HeldOutInstances(IsegObjects(held_out), 3).picks  # what view_choice_oracle.py --count 3 scores
    assert sorted(set(saved["objects"].tolist())) == [i for i in range(len(held_out)) if i not in scored][:2]

    weights = tmp_path / "weights.json"
    images = len(set(saved["images"].tolist()))
    refused = subprocess.run([sys.executable, str(REPO / "scripts" / "fit_map_choice.py"), "fit", str(states),
                              "--folds", str(images + 1)], capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and f"--folds must be between 2 and the {images} images" in refused.stderr
    fitted = _script("fit_map_choice.py", "fit", states, "--folds", 2, "--save", weights)
    assert "6 states (model passes) of 2 objects" in fitted.stdout
    assert len(json.loads(weights.read_text())["weights"]) == 14

    learned = _script("view_choice_oracle.py", "learned", "--weights", weights, "--model", tiny_checkpoint,
                      "--data-root", iseg_root, "--count", 1, "--max-clicks", 2)
    line = next(text for text in learned.stdout.splitlines() if text.startswith("learned: "))
    assert line.startswith("learned: n=1 NoC@85 ")
    picks = ast.literal_eval(line.split("; picks ")[1])
    assert sum(picks.values()) == 2  # one pick a click
