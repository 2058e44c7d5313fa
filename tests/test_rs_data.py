"""Remote-sensing instances from torchgeo datasets: tiny LoveDA / Inria / DeepGlobe trees written
in their real on-disk layouts (pixels cut from the real NAIP scene, hand-drawn masks), turned into
objects with size classes, and benched with the size breakdown."""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from mst_geo.bench.suite import run_noc_benchmark
from mst_geo.data.rs import load_rs_dataset, object_window, size_class
from mst_geo.errors import MSTGeoError

TILE = 300


@pytest.fixture(scope="module")
def naip_rgb(shared_data: Path) -> np.ndarray:
    """A 300x300 RGB cut of the real NAIP scene."""
    with rasterio.open(shared_data / "rs" / "naip_m_4709963_se_14_1_20200831.tif") as scene:
        return scene.read((1, 2, 3), window=((200, 200 + TILE), (300, 300 + TILE))).transpose(1, 2, 0)


def _classes_with_three_sizes(background: int, small: int, medium: int, large: int) -> np.ndarray:
    """A label map with one small (10x10), one medium (40x40) and one large (260x260) object and
    a 2-pixel speck that is too small to count."""
    labels = np.full((TILE, TILE), background, dtype=np.uint8)
    labels[20:280, 20:280] = large  # 67 600 px > 256²
    labels[30:70, 30:70] = medium  # 1 600 px
    labels[100:110, 100:110] = small  # 100 px < 32²
    labels[200, 200:202] = small  # speck, below min_area
    return labels


def test_size_classes_follow_the_thresholds():
    assert [size_class(a) for a in (1, 1023, 1024, 65536, 65537)] == ["small", "small", "medium", "medium", "large"]


def test_object_window_holds_the_object_with_context():
    top, left, height, width = object_window((100, 100, 10, 10), (1000, 1000), 256, 1.5)
    assert (height, width) == (256, 256) and top <= 100 and top + height >= 110
    top, left, height, width = object_window((0, 900, 400, 100), (1000, 1000), 256, 1.5)
    assert (height, width) == (600, 600) and top == 0 and left == 400  # shifted inside the image
    assert object_window((0, 0, 50, 50), (120, 80), 256, 1.5) == (0, 0, 120, 80)  # cut to the image


def _write_loveda(root: Path, rgb: np.ndarray, split: str = "Val", tiles: tuple[str, ...] = ("1366",)) -> None:
    labels = _classes_with_three_sizes(background=1, small=2, medium=4, large=7)  # building, water, agriculture
    labels[:, :5] = 0  # a strip of no-data
    for scene in ("Urban", "Rural"):
        (root / split / scene / "images_png").mkdir(parents=True)
        (root / split / scene / "masks_png").mkdir(parents=True)
    for k, tile in enumerate(tiles):
        Image.fromarray(np.roll(rgb, 40 * k, axis=1)).save(root / split / "Urban" / "images_png" / f"{tile}.png")
        Image.fromarray(labels).save(root / split / "Urban" / "masks_png" / f"{tile}.png")


def test_loveda_objects_are_components_per_class(naip_rgb, tmp_path):
    _write_loveda(tmp_path / "LoveDA", naip_rgb)
    instances = load_rs_dataset("loveda", tmp_path / "LoveDA")
    names = [instances.name_of(i) for i in range(len(instances))]
    assert names == ["1366_building_1", "1366_water_1", "1366_agriculture_1"]  # speck dropped
    areas = [ref.area for ref in instances.refs]
    assert areas == [100, 1600, 260 * 260 - 1600 - 100 - 2]
    assert [size_class(a) for a in areas] == ["small", "medium", "large"]
    building = instances[0]
    assert building.image.shape == (256, 256, 3) and building.mask.shape == (256, 256)
    assert np.count_nonzero(building.mask == 1) == 100
    assert (building.mask == 255).any()  # LoveDA no-data is ignored
    large = instances[2]
    assert large.image.shape[:2] == (TILE, TILE)  # context for 260 px exceeds the tile: whole tile
    assert np.count_nonzero(large.mask == 1) == areas[2]
    assert np.array_equal(large.image, naip_rgb)


def test_inria_buildings_from_geotiffs(naip_rgb, tmp_path):
    """Tiles 1-5 of a town are val, the rest train, read from the file name even under a folder
    with digits (torchgeo 0.8 reads the first letters-then-digits run of the whole path)."""
    data = tmp_path / "disk2" / "Inria"
    root = data / "AerialImageDataset" / "train"
    (root / "images").mkdir(parents=True)
    (root / "gt").mkdir()
    profile = dict(driver="GTiff", width=TILE, height=TILE, crs="EPSG:26914",
                   transform=from_origin(500000, 5200000, 0.3, 0.3), dtype="uint8")
    buildings = (_classes_with_three_sizes(0, 255, 255, 0) > 0).astype(np.uint8) * 255  # Inria gt is 0/255
    for tile in ("austin1", "austin7", "tyrol-w3"):
        with rasterio.open(root / "images" / f"{tile}.tif", "w", count=3, **profile) as image:
            image.write(naip_rgb.transpose(2, 0, 1))
        with rasterio.open(root / "gt" / f"{tile}.tif", "w", count=1, **profile) as gt:
            gt.write(buildings[None])
    instances = load_rs_dataset("Inria", data)
    assert {instances.name_of(i).split("_building_")[0] for i in range(len(instances))} == {"austin1", "tyrol-w3"}
    assert set(np.unique(instances[0].mask)) == {0, 1}
    train = load_rs_dataset("Inria", data, split="train", max_instances=1)
    assert train.name_of(0).startswith("austin7_building_")


def test_deepglobe_colour_masks(naip_rgb, tmp_path):
    root = tmp_path / "DeepGlobe" / "data" / "test_data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(naip_rgb).save(root / "images" / "10452_sat.jpg", quality=95)
    colours = np.array([(0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)], np.uint8)
    labels = _classes_with_three_sizes(background=2, small=0, medium=4, large=1)  # rangeland bg
    labels[290:, :] = 6  # unknown
    mask = colours[labels]
    mask[mask == 255] = 250  # the real masks are not pure 0/255 (binarise at 128, the dataset's notes say)
    mask[mask == 0] = 3
    mask[150:152, 150:152] = (255, 0, 0)  # a colour outside the palette: unknown, not an urban speck
    Image.fromarray(mask).save(root / "masks" / "10452_mask.png")
    instances = load_rs_dataset("DeepGlobeLandCover", tmp_path / "DeepGlobe")
    names = [instances.name_of(i) for i in range(len(instances))]
    assert sorted(name.split("_")[2] for name in names) == ["agriculture", "rangeland", "urban", "water"]
    rangeland = next(instances[i] for i in range(len(instances)) if "rangeland" in instances.name_of(i))
    assert (rangeland.mask == 255).any()  # unknown is ignored


ISPRS_COLOURS = np.array([(255, 0, 0), (255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0)], np.uint8)


def _isprs_label(background: int, small: int, medium: int, large: int) -> np.ndarray:
    """A colour label tile (ISPRS palette) with a black boundary band as in the eroded label files
    and colours a little off pure, as a resampled or re-saved label would be."""
    label = ISPRS_COLOURS[_classes_with_three_sizes(background, small, medium, large)]
    label[label == 255] = 252
    label[:, 295:] = 0  # eroded boundary: ignored
    return label


def test_potsdam_rgbir_tiles_and_colour_labels(shared_data, tmp_path):
    """Potsdam as unpacked from its zips: 4-band RGBIR GeoTIFFs (the real NAIP R,G,B,NIR pixels)
    in 4_Ortho_RGBIR/ and colour labels beside them; cars, trees, buildings, low vegetation are
    objects, impervious surfaces and clutter background."""
    root = tmp_path / "Potsdam"
    (root / "4_Ortho_RGBIR").mkdir(parents=True)
    with rasterio.open(shared_data / "rs" / "naip_m_4709963_se_14_1_20200831.tif") as scene:
        rgbir = scene.read(window=((200, 200 + TILE), (300, 300 + TILE)))
    profile = dict(driver="GTiff", width=TILE, height=TILE, dtype="uint8", crs="EPSG:32633",
                   transform=from_origin(366000, 5808000, 0.05, 0.05))
    with rasterio.open(root / "4_Ortho_RGBIR" / "top_potsdam_2_13_RGBIR.tif", "w", count=4, **profile) as image:
        image.write(rgbir)
    label = _isprs_label(background=1, small=5, medium=4, large=2)  # impervious; car, tree, building
    with rasterio.open(root / "top_potsdam_2_13_label.tif", "w", count=3, **profile) as out:
        out.write(label.transpose(2, 0, 1))
    instances = load_rs_dataset("Potsdam2D", root)
    names = [instances.name_of(i) for i in range(len(instances))]
    assert names == ["top_potsdam_2_13_RGBIR_building_1", "top_potsdam_2_13_RGBIR_tree_1",
                     "top_potsdam_2_13_RGBIR_car_1"]
    car = instances[2]
    assert np.count_nonzero(car.mask == 1) == 100
    building = instances[0]
    assert np.array_equal(building.image, rgbir[:3].transpose(1, 2, 0))  # R,G,B of the RGBIR tile
    assert np.array_equal(building.mask == 255, np.pad(np.ones((TILE, 5), bool), ((0, 0), (295, 0))))
    assert np.count_nonzero(building.mask == 1) == 260 * 260 - 1600 - 100 - 2


def test_vaihingen_irrg_tiles(naip_rgb, tmp_path):
    root = tmp_path / "Vaihingen"
    (root / "top").mkdir(parents=True)
    Image.fromarray(naip_rgb).save(root / "top" / "top_mosaic_09cm_area6.tif")
    Image.fromarray(_isprs_label(background=0, small=5, medium=2, large=3)).save(root / "top_mosaic_09cm_area6.tif")
    instances = load_rs_dataset("ISPRS-Vaihingen", root)
    assert [instances.name_of(i) for i in range(len(instances))] == [
        "top_mosaic_09cm_area6_building_1", "top_mosaic_09cm_area6_low_vegetation_1", "top_mosaic_09cm_area6_car_1"]
    assert np.array_equal(instances[2].image, naip_rgb[:256, :256])  # the IRRG bands as they are
    with pytest.raises(MSTGeoError, match="not a Vaihingen dataset"):
        load_rs_dataset("Vaihingen", tmp_path)


def test_rs_errors_name_the_folder(tmp_path):
    with pytest.raises(MSTGeoError, match="not a LoveDA dataset with its val split"):
        load_rs_dataset("LoveDA", tmp_path)
    with pytest.raises(MSTGeoError, match="unknown remote-sensing dataset"):
        load_rs_dataset("Potsdam2", tmp_path)
    inria = tmp_path / "Inria"  # a download cut short: torchgeo finds the zip and unpacks it
    inria.mkdir()
    (inria / "NEW2-AerialImageDataset.zip").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(MSTGeoError, match="archive of Inria here is damaged or partly downloaded") as error:
        load_rs_dataset("Inria", inria)
    assert str(error.value).startswith(str(inria))
    archive = inria / "NEW2-AerialImageDataset.zip"  # a whole zip whose member is damaged (zlib's error)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as packed:
        packed.writestr("AerialImageDataset/train/images/austin1.tif", b"some tile bytes " * 20000)
    damaged = bytearray(archive.read_bytes())
    damaged[100:500] = np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8).tobytes()
    archive.write_bytes(bytes(damaged))
    with pytest.raises(MSTGeoError, match="damaged or partly downloaded .Error -3 while decompressing"):
        load_rs_dataset("Inria", inria)


def test_a_label_of_another_size_than_its_tile_is_one_clear_line(naip_rgb, tmp_path):
    """A label map larger than its image (another tile's, or cropped by hand) broke deep in the
    IoU with a numpy broadcast error; a smaller one was benched on the pixels that overlapped."""
    for rows in (TILE + 20, TILE - 20):
        root = tmp_path / f"rows{rows}" / "LoveDA"
        _write_loveda(root, naip_rgb)
        label = root / "Val" / "Urban" / "masks_png" / "1366.png"
        resized = np.zeros((rows, TILE), np.uint8)
        resized[:min(rows, TILE)] = np.asarray(Image.open(label))[:rows]
        Image.fromarray(resized).save(label)
        with pytest.raises(MSTGeoError, match=f"its label is {TILE}x{rows} px, the image {TILE}x{TILE}") as error:
            load_rs_dataset("LoveDA", root)[0]
        assert "1366.png" in str(error.value)


def test_rs_bench_reports_each_size_class(naip_rgb, tmp_path):
    _write_loveda(tmp_path / "data" / "LoveDA", naip_rgb)
    out = tmp_path / "out"
    results = run_noc_benchmark(["disk", "watershed"], ["LoveDA"], out, data_root=tmp_path / "data",
                                max_clicks=3, thresholds=(0.7, 0.8), progress=False)
    by_size = results["disk"]["LoveDA"]["by_size"]
    assert {size: part["n"] for size, part in by_size.items()} == {"small": 1, "medium": 1, "large": 1}
    assert set(by_size["small"]["noc"]) == {"70", "80"}
    sizes_csv = (out / "sizes.csv").read_text().splitlines()
    assert sizes_csv[0].startswith("dataset,size,method,n,NoC@70,NoC@80")
    assert len(sizes_csv) == 1 + 3 * 2
    assert (out / "miou_by_size.png").stat().st_size > 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"]["watershed"]["LoveDA"]["by_size"]["large"]["n"] == 1


def test_training_on_loveda_beside_photos(naip_rgb, iseg_root, tmp_path):
    """``data.datasets`` may name torchgeo sets (``root/<name>``, their training split): each
    component is an object with the other objects of its crop as negatives, tiles are held out
    by the ``dataset/tile`` hash, and photo sets join them in one source."""
    from mst_geo.train.config import DataSection
    from mst_geo.train.datamodule import dataset_sources
    from mst_geo.train.instances import hashed_holdout
    from mst_geo.train.samples import ConcatObjects

    root = tmp_path / "data"
    _write_loveda(root / "LoveDA", naip_rgb, split="Train", tiles=("10", "11", "12", "13"))
    (root / "COCO_MVal").symlink_to(iseg_root / "COCO_MVal")
    data = DataSection(root=str(root), datasets=["COCO_MVal", "loveda"], max_images=4, val_fraction=0.5, crop_size=128)
    train, val, description = dataset_sources(data)
    held = {tile for tile in ("10", "11", "12", "13") if hashed_holdout(f"LoveDA/{tile}", 0.5)}
    assert 0 < len(held) < 4  # the hash splits these four tiles (else the test would not test)
    assert description["train"]["LoveDA"] == {"images": 4 - len(held), "instances": 3 * (4 - len(held))}
    assert description["held_out"]["LoveDA"] == {"images": len(held), "instances": 3 * len(held)}
    assert isinstance(train, ConcatObjects) and [s.__class__.__name__ for s in train.sources] == ["IsegObjects", "RSObjects"]
    photos = len(train.sources[0])
    assert len(train) == photos + 3 * (4 - len(held))
    train = pickle.loads(pickle.dumps(train))  # as loader processes get it
    building = train.load(photos, np.random.default_rng(0), merge_prob=1.0)  # first LoveDA object: a building
    assert building.image.shape == (128, 128, 3) and building.target.sum() == 100  # the crop's side: ground size
    assert building.others.sum() > 0 and not (building.others & building.target).any()  # water, fields: negatives
    assert not building.ignore.any()  # the no-data strip lies outside this 128 px crop
    assert "LoveDA" in train.where(photos) and train.where(photos).endswith("_building_1)")
    held_building = val.instance(len(val.sources[0]))  # as the bench sees it: a 256 px crop
    assert held_building.name.endswith("_building_1") and (held_building.mask[:, :5] == 255).all()  # no-data
    assert train.keeps_scale(photos) and not train.keeps_scale(0)  # RS donors are not pasted at crop size
    from mst_geo.clicks.sampler import MultiPointSampler
    from mst_geo.train.samples import ClickSampleSet, SampleRecipe

    remote = train.sources[1]
    loads = []
    original_load = remote.load
    remote.load = lambda position, rng, merge: loads.append(position) or original_load(position, rng, merge)
    pasting = ClickSampleSet(remote, SampleRecipe.from_config(replace(data, copy_paste_prob=1.0)),
                             MultiPointSampler(), seed=0)
    for index in range(len(remote)):
        pasting.make_sample(index)
    assert len(loads) == len(remote)  # one load per sample: no donor was even read
    # an object that the smallest scale would shrink below 16 px is not trained on: 100 px x 0.2² = 4
    small_scales = replace(data, datasets=["LoveDA"], scale_range=[0.2, 1.0])
    assert dataset_sources(small_scales)[2]["train"]["LoveDA"]["instances"] == 2 * (4 - len(held))


def test_cli_trains_on_a_remote_sensing_set_with_loader_processes(naip_rgb, tmp_path):
    """Two loader processes forked after the tiles were indexed with OpenCV (they hung in their
    own OpenCV set-up, on the thread pool state they inherited); the card counts the objects."""
    import subprocess
    import sys

    from mst_geo.model import read_card

    _write_loveda(tmp_path / "data" / "LoveDA", naip_rgb, split="Train", tiles=("10", "11", "12", "13"))
    smoke = Path(__file__).parents[1] / "configs" / "train" / "smoke.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "mst_geo", "train", "--config", str(smoke), "--data-root", str(tmp_path / "data"),
         "--datasets", "LoveDA", "--max-steps", "2", "--out", str(tmp_path / "run"), "--workers", "2",
         "--set", "data.val_fraction=0.5"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    card = read_card(tmp_path / "run" / "model.safetensors")
    assert card["training"]["data"]["train"]["LoveDA"] == {"images": 2, "instances": 6}


def test_landcoverai_chips(naip_rgb, tmp_path):
    """LandCover.ai as torchgeo's pre-chipped release: output/<id>.jpg, <id>_m.png (class index)
    and the split lists."""
    root = tmp_path / "LandCoverAI"
    (root / "output").mkdir(parents=True)
    for split in ("train", "val", "test"):
        (root / f"{split}.txt").write_text("M-34-5-A-d-4-4_7\n" if split == "test" else "M-34-5-A-d-4-4_1\n")
    for chip in ("M-34-5-A-d-4-4_7", "M-34-5-A-d-4-4_1"):
        Image.fromarray(naip_rgb).save(root / "output" / f"{chip}.jpg", quality=95)
        Image.fromarray(_classes_with_three_sizes(background=0, small=1, medium=3, large=2)).save(
            root / "output" / f"{chip}_m.png")
    instances = load_rs_dataset("landcover.ai", root)
    assert [instances.name_of(i) for i in range(len(instances))] == [
        "M-34-5-A-d-4-4_7_building_1", "M-34-5-A-d-4-4_7_woodland_1", "M-34-5-A-d-4-4_7_water_1"]
    assert np.count_nonzero(instances[0].mask == 1) == 100
    assert len(load_rs_dataset("LandCoverAI", root, split="train")) == 3


def test_rs_layout_errors_say_what_torchgeo_reads(naip_rgb, tmp_path):
    """Labels torchgeo does not find (Potsdam's labels left in their zip's folder) and a missing
    label tile are one line each, naming the expected files; folders match by name in any case."""
    root = tmp_path / "Potsdam"
    (root / "4_Ortho_RGBIR").mkdir(parents=True)
    (root / "5_Labels_all").mkdir()
    Image.fromarray(naip_rgb).save(root / "4_Ortho_RGBIR" / "top_potsdam_2_13_RGBIR.tif")
    Image.fromarray(_isprs_label(1, 5, 4, 2)).save(root / "5_Labels_all" / "top_potsdam_2_13_label.tif")
    with pytest.raises(MSTGeoError, match="no test tile of Potsdam with its label here; torchgeo reads "
                                          "4_Ortho_RGBIR/top_potsdam_<tile>_RGBIR.tif, and top_potsdam_<tile>_label.tif"):
        load_rs_dataset("Potsdam", root)

    data = tmp_path / "data" / "inria"  # any case
    tiles = data / "AerialImageDataset" / "train"
    (tiles / "images").mkdir(parents=True)
    (tiles / "gt").mkdir()
    profile = dict(driver="GTiff", width=TILE, height=TILE, dtype="uint8", crs="EPSG:26914",
                   transform=from_origin(500000, 5200000, 0.3, 0.3))
    with rasterio.open(tiles / "images" / "austin1.tif", "w", count=3, **profile) as image:
        image.write(naip_rgb.transpose(2, 0, 1))
    with pytest.raises(MSTGeoError, match="austin1.tif: cannot read this tile or its label .*gt/austin1.tif"):
        run_noc_benchmark(["disk"], ["Inria"], tmp_path / "out", data_root=tmp_path / "data", progress=False)


def test_training_finds_remote_sensing_sets_as_the_bench_does(naip_rgb, tmp_path):
    """By path or in a folder of another case, like the bench; a val.txt that names only photo
    images (a pack's) still leaves the remote-sensing set its hash-held-out tiles."""
    from mst_geo.train.config import DataSection
    from mst_geo.train.datamodule import dataset_sources

    root = tmp_path / "data"
    _write_loveda(root / "loveda", naip_rgb, split="Train", tiles=("10", "11", "12", "13"))
    (root / "val.txt").write_text("COCO_MVal/000000000139\n")
    for name in ("LoveDA", str(root / "loveda")):
        _, val, description = dataset_sources(DataSection(root=str(tmp_path / "elsewhere" if "/" in name else root),
                                                          datasets=[name], val_fraction=0.5))
        assert description["held_out"]["LoveDA"]["images"] == 2  # the hash rule: tiles 11 and 13
        assert len(val) == 6


def test_split_mistakes_are_said(naip_rgb, tmp_path):
    """A val.txt whose keys miss every tile (a file name instead of its stem) and a set held out
    whole each print a warning; a misspelt set name suggests the known one."""
    from mst_geo.errors import MSTGeoWarning
    from mst_geo.train.config import DataSection
    from mst_geo.train.datamodule import dataset_sources

    root = tmp_path / "data"
    _write_loveda(root / "LoveDA", naip_rgb, split="Train", tiles=("10", "11"))
    (root / "val.txt").write_text("LoveDA/10.png\n")
    with pytest.warns(MSTGeoWarning, match="LoveDA: the validation list names LoveDA keys but none of its images "
                                           "\\(keys read LoveDA/<tile file stem>, e.g. LoveDA/10\\)"):
        dataset_sources(DataSection(root=str(root), datasets=["LoveDA"]))
    (root / "val.txt").write_text("LoveDA/10\nLoveDA/11\nCOCO_MVal/x\n")
    with pytest.warns(MSTGeoWarning, match="LoveDA: every image is held out for validation"), \
            pytest.raises(MSTGeoError, match="no training objects in LoveDA"):
        dataset_sources(DataSection(root=str(root), datasets=["LoveDA"]))
    with pytest.raises(MSTGeoError, match="unknown dataset 'LoveDAA'.*Potsdam, Vaihingen; did you mean LoveDA\\?"):
        dataset_sources(DataSection(root=str(root), datasets=["LoveDAA"]))
