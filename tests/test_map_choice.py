"""The per-click map choice: candidates, their features on a real mask, the chooser in the
predictor, the card's weights (config, checkpoint, ship_model) and the bench's switch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mst_geo.clicks import Click
from mst_geo.clicks.map_choice import FEATURES, MEAN_OF_ALL, MapChooser, candidate_maps, choice_features
from mst_geo.clicks.predictor import Predictor
from mst_geo.clicks.simulator import split_mask
from mst_geo.data.iseg import load_iseg_dataset
from mst_geo.model import create_model
from mst_geo.model.checkpoint import load_checkpoint, save_checkpoint

REPO = Path(__file__).parents[1]
MIRRORED_LARGEST = [1.0 if name in ("is mirrored", "is the largest view") else 0.0 for name in FEATURES]


@pytest.fixture(scope="module")
def grabcut(iseg_root):
    instance = load_iseg_dataset("GrabCut", iseg_root)[0]
    return instance, split_mask(instance.mask)[0]


def _feature(rows: np.ndarray, name: str) -> np.ndarray:
    return rows[:, FEATURES.index(name)]


def test_candidates_are_each_view_and_mirror_their_means_and_the_mean_of_all():
    rng = np.random.default_rng(0)
    mirrors = {288: rng.random((2, 5, 7)).astype(np.float32), 416: rng.random((2, 5, 7)).astype(np.float32)}
    maps = candidate_maps(mirrors)
    assert list(maps) == ["288 px", "288 px mirrored", "288 px mean", "416 px", "416 px mirrored", "416 px mean",
                          MEAN_OF_ALL]
    np.testing.assert_allclose(maps[MEAN_OF_ALL], np.concatenate(list(mirrors.values())).mean(axis=0), rtol=1e-6)
    unmirrored = candidate_maps({288: mirrors[288][:1], 416: mirrors[416][:1]})
    assert list(unmirrored) == ["288 px mean", "416 px mean", MEAN_OF_ALL]


def test_features_read_the_clicks_and_the_agreement_on_a_real_mask(grabcut):
    _, truth = grabcut
    rows, cols = np.nonzero(truth)
    inside = Click(float(rows[len(rows) // 2]), float(cols[len(cols) // 2]), True)
    outside = Click(0.0, 0.0, False)
    good = truth.astype(np.float32)
    empty = np.zeros_like(good)
    maps = candidate_maps({288: np.stack([good, empty]), 416: np.stack([good, good])})
    features = choice_features(maps, [outside, inside], prev_window=empty)
    assert features.shape == (7, len(FEATURES))
    names = list(maps)
    agrees = dict(zip(names, _feature(features, "last click agrees")))
    assert agrees["288 px"] == agrees["416 px"] == 1.0 and agrees["288 px mirrored"] == 0.0
    clicks_agreeing = dict(zip(names, _feature(features, "clicks agreeing")))
    assert clicks_agreeing["288 px"] == 1.0 and clicks_agreeing["288 px mirrored"] == 0.5  # the negative only
    area = dict(zip(names, _feature(features, "area fraction")))
    assert area["288 px"] == pytest.approx(truth.mean()) and area["288 px mirrored"] == 0.0
    with_mean = dict(zip(names, _feature(features, "IoU with the mean")))
    assert with_mean[MEAN_OF_ALL] == 1.0 and with_mean["416 px"] == 1.0  # the mean (3/4 of a mask) cuts as the mask
    assert set(_feature(features, "IoU with the previous mask")) == {0.0, 1.0}  # the empty map matches the empty mask
    # a window at an offset: the same clicks, given in image pixels, read the same pixels
    shifted = choice_features(maps, [Click(inside.y + 10, inside.x + 20, True)], prev_window=empty, offset=(10, 20))
    np.testing.assert_array_equal(_feature(shifted, "last click agrees"), _feature(features, "last click agrees"))


def test_the_chooser_keeps_the_best_scored_map_and_no_weights_keep_the_mean():
    rng = np.random.default_rng(1)
    mirrors = {288: rng.random((2, 6, 6)).astype(np.float32), 416: rng.random((2, 6, 6)).astype(np.float32)}
    clicks = [Click(2.0, 3.0, True)]
    previous = np.zeros((6, 6), dtype=np.float32)
    np.testing.assert_array_equal(MapChooser(MIRRORED_LARGEST).choose(mirrors, clicks, previous, (0, 0)),
                                  mirrors[416][1])
    assert not MapChooser(None)
    np.testing.assert_array_equal(MapChooser(None).choose(mirrors, clicks, previous, (0, 0)),
                                  candidate_maps(mirrors)[MEAN_OF_ALL])


def test_the_predictor_chooses_with_the_cards_weights_unless_told_not_to(grabcut):
    instance, _ = grabcut
    torch.manual_seed(0)
    model = create_model("mst_tiny", depth=2, input_size=96, inference_size=(64, 96), flip=True,
                         map_choice=MIRRORED_LARGEST).eval()
    clicks = [Click(160.0, 240.0, True)]
    choosing, averaging = Predictor(model), Predictor(model, choose_map=False)
    assert choosing.chooses_map and not averaging.chooses_map
    for predictor in (choosing, averaging):
        predictor.set_image(instance.image)
    height, width = instance.mask.shape
    previous = np.zeros((height, width), dtype=np.float32)
    mirrored_largest = choosing._predict_mirrors(clicks, previous, (0, 0, height, width), 96)[1]
    np.testing.assert_array_equal(choosing.predict(clicks), mirrored_largest)
    box = (0, 0, height, width)
    mean = candidate_maps({side: averaging._predict_mirrors(clicks, previous, box, side) for side in (64, 96)})
    np.testing.assert_allclose(averaging.predict(clicks), mean[MEAN_OF_ALL], atol=1e-6)
    assert not Predictor(model, flip=False, input_size=96).chooses_map  # one map: nothing to choose
    with pytest.raises(ValueError, match="choose_map needs a card with map_choice weights"):
        Predictor(create_model("mst_tiny", depth=2, input_size=96, flip=True), choose_map=True)


def test_the_cards_weights_are_checked_and_survive_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match=f"map_choice needs {len(FEATURES)} finite weights"):
        create_model("mst_tiny", depth=2, input_size=96, map_choice=[1.0, 2.0])
    with pytest.raises(ValueError, match=f"map_choice needs {len(FEATURES)} finite weights"):
        create_model("mst_tiny", depth=2, input_size=96, map_choice=[float("nan")] * len(FEATURES))
    model = create_model("mst_tiny", depth=2, input_size=96, flip=True, map_choice=MIRRORED_LARGEST)
    save_checkpoint(model, tmp_path / "chooser.safetensors", {"training": None})
    loaded, _ = load_checkpoint(tmp_path / "chooser.safetensors")
    assert loaded.config.map_choice == tuple(MIRRORED_LARGEST)


def test_ship_model_writes_the_fitted_weights_into_the_card(tiny_checkpoint, tmp_path):
    weights = tmp_path / "weights.json"
    shipped = tmp_path / "shipped.safetensors"
    ship = [sys.executable, str(REPO / "scripts" / "ship_model.py"), str(tiny_checkpoint), "--out", str(shipped),
            "--flip", "--map-choice", str(weights)]
    weights.write_text(json.dumps(MIRRORED_LARGEST[:3]))
    done = subprocess.run(ship, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and f"map_choice needs {len(FEATURES)} finite weights" in done.stderr
    assert not shipped.exists()
    weights.write_text(json.dumps(MIRRORED_LARGEST))
    done = subprocess.run(ship, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    model, _ = load_checkpoint(shipped)
    assert model.config.map_choice == tuple(MIRRORED_LARGEST) and model.config.flip is True


def test_bench_refuses_map_choice_for_a_card_without_weights(cli, tiny_checkpoint, iseg_root, tmp_path):
    code, _, err = cli("bench", "noc", "--model", tiny_checkpoint, "--datasets", "GrabCut", "--limit", "1",
                       "--max-clicks", "1", "--data-root", iseg_root, "--out", tmp_path / "bench", "--map-choice")
    assert code != 0 and f"--map-choice: model '{tiny_checkpoint}' has no map_choice weights in its card" in err
