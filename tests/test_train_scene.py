"""Fine-tuning data from a real GeoTIFF (NAIP, EPSG:26914) and labels stored in another CRS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from rasterio.features import shapes
from scipy import ndimage
from shapely.geometry import shape

from mst_geo.clicks.sampler import MultiPointSampler
from mst_geo.errors import MSTGeoError, MSTGeoWarning
from mst_geo.model import load_checkpoint
from mst_geo.train.config import DataSection
from mst_geo.train.samples import ClickSampleSet, SampleRecipe
from mst_geo.train.scene_dataset import scene_split

REPO = Path(__file__).parents[1]
SCENE = REPO / "examples" / "naip_scene.tif"


@pytest.fixture(scope="module")
def ponds(tmp_path_factory):
    """Water bodies of the scene (dark NIR, 200+ px) as polygons, saved in WGS84 (EPSG:4326)."""
    with rasterio.open(SCENE) as ds:
        water = ds.read(4) < 50
        transform, crs = ds.transform, ds.crs
    labels, count = ndimage.label(water)
    sizes = np.bincount(labels.ravel())
    keep = np.isin(labels, [i for i in range(1, count + 1) if sizes[i] >= 200])
    polygons = [shape(geom) for geom, value in shapes(labels.astype(np.int32), mask=keep,
                                                     transform=transform)]
    frame = gpd.GeoDataFrame({"kind": ["water"] * len(polygons)}, geometry=polygons, crs=crs)
    path = tmp_path_factory.mktemp("labels") / "ponds.gpkg"
    frame.to_crs("EPSG:4326").to_file(path)
    return path, keep, transform


def test_labels_in_another_crs_land_on_the_right_pixels(ponds):
    path, water, transform = ponds
    train, val = scene_split(DataSection(scene=str(SCENE), labels=str(path), val_fraction=0.2,
                                         crop_size=96))
    assert len(train) > 5 and len(val) >= 1
    checked = 0
    for position in range(8):
        row = train.rows[position]
        window = train.window_around(row, 1.5, (0.5, 0.5))
        image, valid, target, _, _, _ = train.read(row, window)
        assert image.dtype == np.uint8 and image.shape[:2] == target.shape
        clipped = window.intersection(rasterio.windows.Window(0, 0, 934, 723))
        if target.shape != (clipped.height, clipped.width):
            continue  # a decimated read of a large lake; the pixel check needs native size
        truth = water[clipped.row_off:clipped.row_off + clipped.height,
                      clipped.col_off:clipped.col_off + clipped.width]
        assert (target & truth).sum() / target.sum() > 0.97  # WGS84 round trip costs < 1 px
        checked += 1
    assert checked >= 3


def test_scene_samples_are_windows_with_clicks(ponds):
    path, _, _ = ponds
    data = DataSection(scene=str(SCENE), labels=str(path), val_fraction=0.2, crop_size=96,
                       min_object_area=50, copy_paste_prob=0.5)
    train, val = scene_split(data)
    dataset = ClickSampleSet(train, SampleRecipe.from_config(data), MultiPointSampler(), seed=0)
    for index in range(6):
        item = dataset[index]
        target = item["target"][0].numpy() > 0
        clicks = item["clicks"].numpy()
        positives = clicks[clicks[:, 2] == 1]
        assert item["image"].shape == (3, 96, 96) and target.sum() >= 16
        assert target[positives[:, 0].astype(int), positives[:, 1].astype(int)].all()
    def area(position):
        row0, col0, row1, col1 = train.pixel_box(train.rows[position])
        return (row1 - row0) * (col1 - col0)

    big = max(range(len(train)), key=area)
    assert area(big) > (2 * 96) ** 2
    sample = train.load(big, np.random.default_rng(0), 0.0)
    assert max(sample.image.shape[:2]) <= 2 * 96  # a big lake is read decimated, not whole
    held = val.instance(0)
    assert set(np.unique(held.mask)) <= {0, 1, 255} and (held.mask == 1).any()


def test_bad_labels_are_clear_errors(tmp_path, ponds):
    path, _, _ = ponds
    with pytest.raises(MSTGeoError, match="labels file not found"):
        scene_split(DataSection(scene=str(SCENE), labels=str(tmp_path / "none.gpkg")))
    far = gpd.read_file(path).to_crs("EPSG:4326")
    far["geometry"] = far.geometry.translate(40, 0)
    far.to_file(tmp_path / "far.gpkg")
    with pytest.raises(MSTGeoError, match="no label polygon overlaps"):
        scene_split(DataSection(scene=str(SCENE), labels=str(tmp_path / "far.gpkg")))
    half = gpd.read_file(path)
    half.loc[::2, "geometry"] = far.geometry[::2]  # every other polygon 40 degrees east
    half.to_file(tmp_path / "half.gpkg")
    outside = (len(half) + 1) // 2
    with pytest.warns(MSTGeoWarning, match=f"half.gpkg: {outside} of {len(half)} label polygons lie outside the scene "
                                           r"and are left out \(features 0, 2, 4"):
        train, val = scene_split(DataSection(scene=str(SCENE), labels=str(tmp_path / "half.gpkg")))
    assert len(train) + len(val) == len(half) - outside


def test_cli_fine_tunes_on_a_scene(ponds, tmp_path):
    path, _, _ = ponds
    script = Path(sys.executable).parent / "mst-geo"
    result = subprocess.run(
        [str(script), "train", "--config", str(REPO / "configs" / "train" / "smoke.yaml"),
         "--scene", str(SCENE), "--labels", str(path), "--bands", "3,2,1", "--max-steps", "3",
         "--set", "data.val_fraction=0.2", "--set", "trainer.val_every_steps=3",
         "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": str(script.parent)})
    assert result.returncode == 0, result.stderr[-3000:]
    card = load_checkpoint(tmp_path / "run" / "model.safetensors")[1]["training"]
    assert card["data"]["scene"] == str(SCENE) and card["data"]["train_objects"] > 5
    assert card["recipe"]["data"]["scene_bands"] == [3, 2, 1]  # --bands reached the recipe
    assert card["data"]["bands"] == [3, 2, 1]  # the bands it read (also when guessed or named)
    assert card["recipe"]["data"]["datasets"] == []  # not the recipe's COCO_MVal: the scene alone trained it
    assert card["recipe"]["data"]["labels"] == str(path.resolve())  # the bench finds it from any folder
    assert card["steps"] == 3

    mixed = subprocess.run(
        [str(script), "train", "--config", str(REPO / "configs" / "train" / "smoke.yaml"),
         "--scene", str(SCENE), "--labels", str(path), "--datasets", "COCO_MVal", "--out", str(tmp_path / "mixed")],
        capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": str(script.parent)})
    assert mixed.returncode == 2 and "leave out --datasets" in mixed.stderr.strip().splitlines()[-1], mixed.stderr
    assert not (tmp_path / "mixed").exists()


def test_a_held_out_object_with_no_pixel_writes_no_nan_into_the_card(tmp_path):
    """A held-out polygon smaller than a pixel (no pixel centre inside it) has nothing to score: the
    run says so in one warning and its card holds no NaN (it is JSON, read by other tools)."""
    from shapely.geometry import box

    ponds = gpd.read_file(REPO / "examples" / "water_labels.geojson").drop(columns="split").iloc[:4]
    x, y = ponds.geometry.iloc[0].representative_point().coords[0]
    x, y = 485899.0 + 5 * np.floor((x - 485899.0) / 5) + 0.5, 5209246.0 - 5 * np.floor((5209246.0 - y) / 5) - 0.5
    speck = gpd.GeoDataFrame(geometry=[box(x, y - 1, x + 1, y)], crs=ponds.crs)  # 1 m² in a pixel's corner
    labels = pd.concat([ponds.assign(split="train"), speck.assign(split="held_out")], ignore_index=True)
    labels.to_file(tmp_path / "speck.gpkg")
    script = Path(sys.executable).parent / "mst-geo"
    result = subprocess.run(
        [str(script), "train", "--config", str(REPO / "configs" / "train" / "smoke.yaml"), "--scene", str(SCENE),
         "--labels", str(tmp_path / "speck.gpkg"), "--max-steps", "2", "--set", "trainer.val_every_steps=2",
         "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": str(script.parent)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no held-out object had a pixel to score" in result.stderr
    card = (tmp_path / "run" / "model.safetensors").read_bytes()
    assert b"NaN" not in card and b"Infinity" not in card
    assert load_checkpoint(tmp_path / "run" / "model.safetensors")[1]["metrics"]["held_out"] == {"step": 2}


def test_a_few_polygons_still_hold_one_out(tmp_path):
    """16 ponds at the default 5 % would hold none out (no validation, no best checkpoint): one is."""
    labels = gpd.read_file(REPO / "examples" / "water_labels.geojson").drop(columns="split")
    labels.to_file(tmp_path / "ponds.gpkg")
    data = DataSection(scene=str(SCENE), labels=str(tmp_path / "ponds.gpkg"))
    train_set, held_out = scene_split(data)
    assert (len(train_set), len(held_out)) == (15, 1)
    train_set, held_out = scene_split(data, validates=False)  # a run without validation trains on all 16
    assert (len(train_set), len(held_out)) == (16, 0)


def test_polygons_with_no_pixel_to_learn_are_left_out_and_nodata_is_ignored(tmp_path, write_geotiff):
    """A polygon that only touches the scene's edge, or lies on nodata alone, is left out with a
    warning naming it (it used to give NaN held-out scores, written into the card); object pixels
    on nodata are ignored, never trained as the object."""
    from rasterio.features import geometry_mask
    from shapely.geometry import box

    ponds = gpd.read_file(REPO / "examples" / "water_labels.geojson").drop(columns="split").iloc[:3]
    with rasterio.open(SCENE) as src:
        pixels, transform, bounds = src.read(), src.transform, src.bounds
    hole = ~geometry_mask([ponds.geometry.iloc[1].buffer(20)], pixels.shape[1:], transform)
    minx, miny, maxx, maxy = ponds.geometry.iloc[2].bounds
    half = ~geometry_mask([box(minx, miny, (minx + maxx) / 2, maxy)], pixels.shape[1:], transform)
    pixels[:, hole | half] = 0
    scene = write_geotiff("holes.tif", pixels, nodata=0)
    edge = box(bounds.left - 100, bounds.bottom + 100, bounds.left, bounds.bottom + 300)  # shares the west edge
    labels = gpd.GeoDataFrame({"name": ["a", "b", "c", "edge"]}, geometry=[*ponds.geometry, edge], crs=ponds.crs)
    labels.to_file(tmp_path / "labels.gpkg")
    with pytest.warns(MSTGeoWarning) as caught:
        train_set, held_out = scene_split(DataSection(scene=str(scene), labels=str(tmp_path / "labels.gpkg")),
                                          validates=False)
    notes = [str(w.message) for w in caught if issubclass(w.category, MSTGeoWarning)]
    assert any("1 of 4 label polygons lie outside the scene and are left out (features 3)" in n for n in notes)
    assert any("1 of 4 label polygons cover nodata pixels of the scene only and are left out (features 1)" in n
               for n in notes)
    assert [train_set.feature(k) for k in range(len(train_set))] == [0, 2] and len(held_out) == 0
    sample = train_set.load(1, np.random.default_rng(0), 0.0)  # the pond half on nodata
    nodata = sample.ignore
    assert nodata.any() and sample.target.any() and not (sample.target & nodata).any()
    assert (sample.image[nodata] == 0).all()
    on_nodata = gpd.GeoDataFrame(geometry=[ponds.geometry.iloc[1]], crs=ponds.crs)
    on_nodata.to_file(tmp_path / "on_nodata.gpkg")
    with pytest.raises(MSTGeoError, match="on_nodata.gpkg: every label polygon inside the scene .* covers nodata"):
        scene_split(DataSection(scene=str(scene), labels=str(tmp_path / "on_nodata.gpkg")))
    labels.iloc[[3]].to_file(tmp_path / "edge.gpkg")
    with pytest.raises(MSTGeoError, match="edge.gpkg: every label polygon that meets the scene .* only touches its edge"):
        scene_split(DataSection(scene=str(scene), labels=str(tmp_path / "edge.gpkg")))
    strip = np.zeros_like(pixels)
    strip[:, :, 500:502] = pixels[:, :, 500:502]  # data in a 2 px column alone: a quick decimated look misses it
    strip_scene = write_geotiff("strip.tif", strip, nodata=0)
    whole = gpd.GeoDataFrame(geometry=[box(*bounds).buffer(-50)], crs=ponds.crs)
    whole.to_file(tmp_path / "whole.gpkg")
    kept, _ = scene_split(DataSection(scene=str(strip_scene), labels=str(tmp_path / "whole.gpkg")), validates=False)
    assert len(kept) == 1


def test_a_split_column_keeps_its_held_out_polygons_out_of_training(tmp_path):
    """The example's ponds marked ``split = held_out`` (the file notebook 03 splits) are never trained
    on, also in a run that does not validate; a value that is neither is named."""
    path = REPO / "examples" / "water_labels.geojson"
    marked = gpd.read_file(path)
    held = {feature for feature, split in enumerate(marked["split"]) if split == "held_out"}
    data = DataSection(scene=str(SCENE), labels=str(path))
    for validates, validated in ((True, held), (False, set())):
        train_set, held_out = scene_split(data, validates=validates)
        assert {train_set.feature(k) for k in range(len(train_set))} == set(range(16)) - held
        assert {held_out.feature(k) for k in range(len(held_out))} == validated
    marked["SPLIT"] = marked.pop("split").replace({"held_out": "Val"})  # ArcGIS capitals, another spelling
    marked.loc[0, "SPLIT"] = "maybe"
    marked.to_file(tmp_path / "ponds.gpkg")
    with pytest.raises(MSTGeoError, match="ponds.gpkg: feature 0: split 'maybe' is neither train \\(or blank\\) nor "
                                          "held_out"):
        scene_split(DataSection(scene=str(SCENE), labels=str(tmp_path / "ponds.gpkg")))
    marked.loc[0, "SPLIT"] = None  # a blank cell trains
    marked.loc[1, "SPLIT"] = "Held out"  # spelled as people write it
    marked.to_file(tmp_path / "ponds.gpkg")
    assert len(scene_split(DataSection(scene=str(SCENE), labels=str(tmp_path / "ponds.gpkg")))[1]) == len(held | {1})
    marked["SPLIT"] = "train"  # a column that holds nothing out (notebook 03's training file): the hash rule
    marked.to_file(tmp_path / "ponds.gpkg")
    assert len(scene_split(DataSection(scene=str(SCENE), labels=str(tmp_path / "ponds.gpkg")))[1]) == 1


def test_held_out_polygons_are_never_a_training_label(tmp_path):
    """A training window that reaches a held-out pond neither merges it into the object nor calls it
    background: its pixels are ignored, so the held-out ponds stay unseen labels."""
    from mst_geo.train.scene_dataset import SceneObjects

    path = REPO / "examples" / "water_labels.geojson"
    train_set, _ = scene_split(DataSection(scene=str(SCENE), labels=str(path)))
    assert train_set.unseen  # the example marks some ponds held_out
    blind = SceneObjects(train_set.scene, train_set.labels, train_set.rows, path, train_set.read_max_side)
    reached = 0
    for position, row in enumerate(train_set.rows):
        window = train_set.window_around(row, 4.0, (0.5, 0.5))
        seen, everything = train_set.read(row, window), blind.read(row, window)
        held = [mask for mask in everything.neighbours if not any(np.array_equal(mask, n) for n in seen.neighbours)]
        assert len(seen.neighbours) + len(held) == len(everything.neighbours)
        assert np.array_equal(seen.unseen, np.any(held, axis=0) if held else np.zeros_like(seen.target))
        for seed in range(3):  # the same draws: only the held-out ponds' labels differ
            sample, leaky = (source.load(position, np.random.default_rng(seed), 0.0) for source in (train_set, blind))
            hidden = sample.ignore & ~leaky.ignore
            assert not (hidden & (sample.target | sample.others)).any()
            assert np.array_equal(hidden, leaky.others & ~sample.others)  # what used to be trained as background
            reached += bool(hidden.any())
    assert reached  # some training windows do reach a held-out pond


def test_a_scene_run_resumes_only_on_the_labels_it_started_with(tmp_path):
    """Polygons appended to the labels file between two parts of a run (the held-out ones could
    move onto trained-on ground, the samples change): the resume is refused, naming both contents."""
    from mst_geo.train.config import load_train_config
    from mst_geo.train.run import train

    labels = tmp_path / "ponds.geojson"
    frame = gpd.read_file(REPO / "examples" / "water_labels.geojson")
    frame.to_file(labels)
    config = {"out": str(tmp_path / "run"), "data.scene": str(SCENE), "data.labels": str(labels),
              "data.datasets": [], "trainer.val_every_steps": 0, "trainer.batch_size": 2}
    smoke = REPO / "configs" / "train" / "smoke.yaml"
    train(load_train_config(smoke, {**config, "trainer.max_steps": 1}))
    grown = pd.concat([frame, frame.iloc[:1]], ignore_index=True)
    gpd.GeoDataFrame(grown, crs=frame.crs).to_file(labels)
    with pytest.raises(MSTGeoError, match=r"the run trained on .*ponds.geojson \(features sha256 [0-9a-f]+\), "
                                          r"this command names .*ponds.geojson \(features sha256 [0-9a-f]+\)"):
        train(load_train_config(smoke, {**config, "trainer.max_steps": 2}), resume="auto")
    frame.to_file(labels)  # the file as it was: the run goes on
    assert train(load_train_config(smoke, {**config, "trainer.max_steps": 2}), resume="auto").is_file()
    moved = tmp_path / "elsewhere" / "ponds.geojson"  # the same features in another folder: the same labels
    moved.parent.mkdir()
    moved.write_bytes(labels.read_bytes())
    assert train(load_train_config(smoke, {**config, "data.labels": str(moved), "trainer.max_steps": 3}),
                 resume="auto").is_file()
    with pytest.raises(MSTGeoError, match=r"\(data.holds_out False -> True\)"):  # it trained on every polygon
        train(load_train_config(smoke, {**config, "trainer.val_every_steps": 2, "trainer.max_steps": 4}), resume="auto")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    older = torch.load(last, weights_only=False)  # as checkpoints recorded labels before: the file's bytes
    older["mst_geo"]["data"]["labels_digest"] = "sha256 0123456789abcdef"
    torch.save(older, tmp_path / "older.ckpt")
    assert train(load_train_config(smoke, {**config, "data.labels": str(moved), "trainer.max_steps": 4}),
                 resume=str(tmp_path / "older.ckpt")).is_file()


def test_the_labels_digest_follows_the_features_not_the_files_bytes(tmp_path):
    """A GeoPackage saved again with the same polygons (a notebook cell run twice, a re-export) is
    the same labels; a moved polygon, a changed attribute or another CRS is not."""
    from mst_geo.geo.labels import labels_digest

    frame = gpd.read_file(REPO / "examples" / "water_labels.geojson")
    first, again = tmp_path / "first.gpkg", tmp_path / "again.gpkg"
    frame.to_file(first)
    frame.to_file(again)
    assert first.read_bytes() != again.read_bytes()  # GeoPackages carry their write time
    assert labels_digest(first) == labels_digest(again)
    moved = frame.copy()
    moved.loc[0, "geometry"] = moved.geometry.iloc[0].buffer(1)
    renamed = frame.copy()
    renamed.iloc[0, 0] = "something else"
    for index, changed in enumerate([moved, renamed, frame.to_crs("EPSG:3857")]):
        changed.to_file(tmp_path / f"changed{index}.gpkg")
        assert labels_digest(tmp_path / f"changed{index}.gpkg") != labels_digest(first), index
