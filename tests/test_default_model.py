"""The model that ships inside the package: loads offline, its card describes these weights, and
its quality on a real benchmark image (GrabCut, never used for training)."""

from __future__ import annotations

import socket
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window, from_bounds
from safetensors.torch import load_file
from shapely.geometry.base import BaseGeometry
from shapely.ops import polylabel

from mst_geo.api import Segmenter
from mst_geo.clicks.session import evaluate_instance
from mst_geo.clicks.predictor import Predictor
from mst_geo.data.iseg import load_iseg_dataset
from mst_geo.model import resolve_model
from mst_geo.model.checkpoint import DEFAULT_CHECKPOINT, read_card, weights_digest
from mst_geo.views import describe_passes, describe_views


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test: the default model must need no download."""
    def refuse(*args, **kwargs):
        raise AssertionError("the default model tried to use the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_default_model_loads_offline(no_network):
    model, card = resolve_model("default")
    assert not model.training
    assert card["preset"] == model.config.preset == "mst_xtiny"
    assert DEFAULT_CHECKPOINT.stat().st_size < 25 * 2**20


def test_card_matches_the_shipped_weights():
    card = read_card(DEFAULT_CHECKPOINT)
    stored = load_file(str(DEFAULT_CHECKPOINT))
    assert card["weights_sha256"] == weights_digest(stored)
    assert card["weights_dtype"] == "float16"
    model, _ = resolve_model("default")
    assert set(stored) == set(model.state_dict())
    training = card["training"]
    assert training["samples_seen"] > 0 and training["steps"] > 0
    assert training.get("total_samples_seen", training["samples_seen"]) >= training["samples_seen"]
    assert set(training["recipe"]["data"]["datasets"]) == {"COCO_MVal", "DUTS_TR", "CCP"}


def test_models_lists_the_default_with_its_sizes(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "240")  # one table row per model
    config = read_card(DEFAULT_CHECKPOINT)["config"]
    code, out, _ = cli("models")
    default_row = next(line for line in out.splitlines() if "│ default" in line)
    assert code == 0 and f"{config['input_size']} px" in default_row and "mst_xtiny" in default_row
    if config.get("inference_size"):
        assert f"runs at {describe_views(config['inference_size'])}" in default_row
    assert (describe_passes(config.get("first_click_passes", 1)) in default_row) == (config.get("first_click_passes", 1) > 1)
    assert ("mirror-averaged" in default_row) == config.get("flip", False)
    code, _, err = cli("models", "--card", "mst_tiny")
    assert code == 2 and err.strip() == "error: mst_tiny is an untrained preset: only checkpoints have a card"


def test_default_model_beats_the_click_disk_on_real_images(iseg_root):
    """A quality floor that holds today: on the first five GrabCut images (never trained on) the
    shipped model's masks after 5 clicks reach a mean IoU of 0.85 (floor 0.70) and beat the
    trivial baseline (a disk around each click) on every image. A broken export, a wrong stretch
    or a mangled click encoding drops far below this."""
    from mst_geo.bench.baselines import make_baseline

    model, _ = resolve_model("default")
    dataset = load_iseg_dataset("GrabCut", iseg_root)
    model_ious, disk_ious = [], []
    for index in range(5):
        instance = dataset[index]
        model_ious.append(evaluate_instance(Predictor(model), instance, max_clicks=5)[0][4])
        disk_ious.append(evaluate_instance(make_baseline("disk"), instance, max_clicks=5)[0][4])
    assert sum(model_ious) / 5 >= 0.70, model_ious
    assert all(m > d for m, d in zip(model_ious, disk_ious)), (model_ious, disk_ious)


def test_default_model_segments_a_grabcut_image_with_three_clicks(iseg_root):
    """Issue 6's check: IoU >= 0.8 after 3 clicks on the first GrabCut image. With the card's
    settings (288+416 px, two first-click passes, mirror-averaged, chosen on held-out objects) it
    reaches 0.43, 0.62, 0.88; without the mirror 0.44, 0.60, 0.84; 320+384 px with one pass reached
    0.41, 0.68, 0.85, one 352 px view 0.55 after 3 clicks."""
    instance = load_iseg_dataset("GrabCut", iseg_root)[0]  # the first, not a chosen one
    model, _ = resolve_model("default")
    ious, _, clicks = evaluate_instance(Predictor(model), instance, max_clicks=3)
    assert len(clicks) == 3
    assert ious[2] >= 0.8


def upsampled_crop(scene: Path, around: BaseGeometry, factor: int, path: Path) -> Path:
    """A GeoTIFF of ``scene`` around ``around`` (with a margin of a quarter of its perimeter),
    upsampled ``factor`` times with the georeferencing kept, so labels still fit. (The benchmark's
    ``scripts/upsample.py`` does this block by block for huge scenes; tests cannot import scripts/,
    and a crop this small is one rasterio read.)"""
    with rasterio.open(scene) as src:
        window = from_bounds(*around.buffer(around.length / 4).bounds, src.transform)
        window = window.round_offsets().round_lengths().intersection(Window(0, 0, src.width, src.height))
        height, width = int(window.height) * factor, int(window.width) * factor
        image = src.read((1, 2, 3), window=window, out_shape=(3, height, width), resampling=Resampling.bilinear)
        profile = dict(driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs=src.crs,
                       transform=src.window_transform(window) * Affine.scale(1 / factor), tiled=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
        dst.build_overviews([2, 4, 8], Resampling.average)  # as `mst-geo segment` advises for large scenes
    return path


def test_default_model_cuts_a_pond_seen_8x_closer_with_one_click(naip_scene, tmp_path):
    """The scene workflow (adaptive windows), not a crop fitted to the object: the first four
    labelled ponds of the example scene upsampled 8x are 180-560 px across, several model inputs.
    One click at each pond's most interior point must give the pond (mean IoU 0.55 today, floor
    0.4), not the blob around the click that border growth alone returned (mean IoU 0.03)."""
    ponds = gpd.read_file(naip_scene.parent / "water_labels.geojson").geometry[:4]
    ious = []
    for index, pond in enumerate(ponds):
        scene = upsampled_crop(naip_scene, pond, 8, tmp_path / f"pond{index}.tif")
        with Segmenter(scene) as segmenter:
            inside = polylabel(pond, tolerance=1.0)
            segmenter.add_click(inside.x, inside.y)
            found = segmenter.polygons().geometry.iloc[0]
        ious.append(found.intersection(pond).area / found.union(pond).area if found is not None else 0.0)
    assert sum(ious) / len(ious) >= 0.4, ious
