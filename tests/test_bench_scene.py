"""`mst-geo bench noc --scene --labels`: an analyst's own labelled GeoTIFF as a benchmark set."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from mst_geo.bench.scene_set import LabelledScene
from mst_geo.cli import app
from mst_geo.errors import MSTGeoError, MSTGeoWarning
from mst_geo.geo.labels import read_labels

PONDS = Path(__file__).parents[1] / "examples" / "water_labels.geojson"
PIXEL_AREA = 25.0  # the NAIP example has 5 m pixels


@pytest.fixture(scope="module")
def ponds_in_wgs84(tmp_path_factory) -> Path:
    """The example's pond polygons in longitude/latitude, not the scene's UTM CRS."""
    path = tmp_path_factory.mktemp("labels") / "ponds_wgs84.gpkg"
    gpd.read_file(PONDS).to_crs("EPSG:4326").to_file(path)
    return path


def test_every_polygon_becomes_an_object_on_the_right_pixels(naip_scene, ponds_in_wgs84):
    scene = LabelledScene(naip_scene, ponds_in_wgs84)
    polygons = gpd.read_file(PONDS)
    assert scene.name == "naip_scene" and len(scene) == len(polygons) == 16
    for index in (0, 3, 10):
        instance = scene[index]
        assert instance.image.dtype == np.uint8 and instance.image.shape[:2] == instance.mask.shape
        assert scene.name_of(index) == instance.name == polygons["name"].iloc[index]
        pixels = np.count_nonzero(instance.mask == 1)
        expected = polygons.geometry.iloc[index].area / PIXEL_AREA
        perimeter = polygons.geometry.iloc[index].length / 5.0
        assert abs(pixels - expected) < 0.5 * perimeter + 4, (index, pixels, expected)
        # the object sits in the middle of a window twice its size
        rows, cols = np.nonzero(instance.mask == 1)
        height, width = instance.mask.shape
        assert 0.25 < rows.mean() / height < 0.75 and 0.25 < cols.mean() / width < 0.75


def test_a_scene_at_a_url_gives_the_same_objects(naip_scene, serve_file, tmp_path):
    copy = tmp_path / naip_scene.name
    copy.write_bytes(naip_scene.read_bytes())
    local, remote = LabelledScene(naip_scene, PONDS), LabelledScene(serve_file(copy), PONDS)
    assert remote.name == local.name == "naip_scene" and len(remote) == len(local)
    for index in (0, 7):
        assert np.array_equal(remote[index].image, local[index].image)
        assert np.array_equal(remote[index].mask, local[index].mask)


def test_cli_benchmarks_methods_on_the_scene(naip_scene, ponds_in_wgs84, tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, [
        "bench", "noc", "--model", "watershed,disk", "--scene", str(naip_scene), "--labels",
        str(ponds_in_wgs84), "--limit", "3", "--max-clicks", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "results.json").read_text())
    assert set(report["results"]) == {"watershed", "disk"}
    for method in ("watershed", "disk"):
        summary = report["results"][method]
        assert list(summary) == ["naip_scene"]  # no GrabCut/Berkeley unless asked for
        assert summary["naip_scene"]["n"] == 3 and len(summary["naip_scene"]["miou"]) == 3
    assert report["settings"]["scenes"] == [[str(naip_scene), str(ponds_in_wgs84)]]
    rows = [json.loads(line) for line in (out / "instances.jsonl").read_text().splitlines()]
    assert sorted({row["name"] for row in rows}) == sorted(gpd.read_file(PONDS)["name"][:3])


def test_objects_over_nodata_are_left_out_not_scored_perfect(naip_scene, write_geotiff, tmp_path):
    """A pond whose pixels are all nodata has nothing to find: every method used to score it IoU
    1.0 at the first click. It is left out with one warning, naming its feature, before any
    method runs; the other ponds are scored."""
    import rasterio
    from rasterio.features import geometry_mask

    ponds = gpd.read_file(PONDS).iloc[:3]
    with rasterio.open(naip_scene) as src:
        pixels, transform = src.read(), src.transform
    hole = ~geometry_mask([ponds.geometry.iloc[1].buffer(20)], pixels.shape[1:], transform)
    pixels[:, hole] = 0
    scene = write_geotiff("hole.tif", pixels, nodata=0)
    labels = tmp_path / "three.gpkg"
    ponds.to_file(labels)
    out = tmp_path / "bench"
    with pytest.warns(MSTGeoWarning, match=r"three.gpkg: 1 of 3 label polygons cover nodata pixels of the scene "
                                           r"only and are left out \(features 1\)"):
        result = CliRunner().invoke(app, ["bench", "noc", "--model", "disk", "--scene", str(scene), "--labels",
                                          str(labels), "--max-clicks", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "instances.jsonl").read_text().splitlines()]
    assert sorted(row["name"] for row in rows) == sorted(ponds["name"].iloc[[0, 2]])
    assert json.loads((out / "results.json").read_text())["results"]["disk"]["hole"]["n"] == 2


def test_scene_bands_are_chosen_for_the_objects(naip_scene, tmp_path):
    """--bands reads the objects from the bands asked for (here near infrared as red) and the
    run's settings record it; it needs --scene."""
    default, asked = LabelledScene(naip_scene, PONDS), LabelledScene(naip_scene, PONDS, bands=(4, 1, 2))
    assert np.array_equal(asked[0].image[..., 1:], default[0].image[..., :2])
    assert np.abs(asked[0].image[..., 0].astype(int) - default[0].image[..., 2]).mean() > 5  # NIR is not blue
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, [
        "bench", "noc", "--model", "disk", "--scene", str(naip_scene), "--labels", str(PONDS), "--bands", "4,1,2",
        "--limit", "1", "--max-clicks", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "results.json").read_text())["settings"]["scene_bands"] == [4, 1, 2]
    result = CliRunner().invoke(app, ["bench", "noc", "--model", "disk", "--bands", "4,1,2", "--out", str(out)])
    assert isinstance(result.exception, MSTGeoError) and "give --scene and --labels" in str(result.exception)


def test_several_scenes_in_one_run(naip_scene, tmp_path):
    """--scene/--labels repeat, paired in order; two scenes of one name would share a table row."""
    other = tmp_path / "other_scene.tif"
    other.write_bytes(naip_scene.read_bytes())
    out = tmp_path / "bench"
    args = ["bench", "noc", "--model", "disk", "--limit", "1", "--max-clicks", "1", "--out", str(out),
            "--scene", str(naip_scene), "--labels", str(PONDS), "--scene", str(other), "--labels", str(PONDS)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert set(json.loads((out / "results.json").read_text())["results"]["disk"]) == {"naip_scene", "other_scene"}
    same_name = tmp_path / "copy" / naip_scene.name
    same_name.parent.mkdir()
    same_name.write_bytes(naip_scene.read_bytes())
    result = CliRunner().invoke(app, [*args[:10], "--scene", str(naip_scene), "--labels", str(PONDS),
                                      "--scene", str(same_name), "--labels", str(PONDS)])
    assert isinstance(result.exception, MSTGeoError) and "also named 'naip_scene'" in str(result.exception)
    result = CliRunner().invoke(app, [*args[:10], "--scene", str(naip_scene)])
    assert isinstance(result.exception, MSTGeoError) and "one --labels per --scene" in str(result.exception)


def test_one_scene_with_two_labels_files_and_labels_edited_in_place(naip_scene, tmp_path):
    """Ponds and their first three as another file on one scene are two rows of the tables; a
    labels file edited in place is another dataset: its old rows are refused, not reused."""
    three = tmp_path / "three.gpkg"
    gpd.read_file(PONDS).iloc[:3].to_file(three)
    out = tmp_path / "bench"
    args = ["bench", "noc", "--model", "disk", "--limit", "1", "--max-clicks", "1", "--out", str(out),
            "--scene", str(naip_scene), "--labels", str(PONDS), "--scene", str(naip_scene), "--labels", str(three)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert set(json.loads((out / "results.json").read_text())["results"]["disk"]) == {
        "naip_scene/water_labels", "naip_scene/three"}
    (tmp_path / "three.backup.gpkg").write_bytes(three.read_bytes())  # files beside it are not the labels
    (tmp_path / "three.tif.aux.xml").write_text("<PAMDataset/>")
    assert CliRunner().invoke(app, args).exit_code == 0
    gpd.read_file(PONDS).iloc[1:4].to_file(three)  # the same path, other polygons: feature0 is another pond
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, MSTGeoError) and "holds rows of another dataset" in str(result.exception)


def test_a_scene_rewritten_in_place_is_another_dataset(naip_scene, tmp_path):
    """Rows of a scene whose pixels changed under the same path are refused, not mixed with new ones."""
    scene = tmp_path / "scene.tif"
    scene.write_bytes(naip_scene.read_bytes())
    args = ["bench", "noc", "--model", "disk", "--limit", "1", "--max-clicks", "1", "--out", str(tmp_path / "bench"),
            "--scene", str(scene), "--labels", str(PONDS)]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert CliRunner().invoke(app, args).exit_code == 0  # untouched: resumed
    (tmp_path / "bench" / "scene_files.json").unlink()  # a folder from before the record: resumes, recorded now
    assert CliRunner().invoke(app, args).exit_code == 0 and (tmp_path / "bench" / "scene_files.json").is_file()
    with rasterio.open(scene, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dataset:  # the same file, other pixels
        dataset.write(np.roll(dataset.read(), 15, axis=2))
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, MSTGeoError)
    assert "holds rows of another version of the scene's files (size or date) labelled 'scene'" in str(result.exception)


def test_objects_without_distinct_names_are_numbered(naip_scene, tmp_path):
    unnamed = tmp_path / "unnamed.gpkg"
    polygons = gpd.read_file(PONDS)
    polygons["name"] = "pond"  # not distinct: useless as a key
    polygons.to_file(unnamed)
    scene = LabelledScene(naip_scene, unnamed)
    assert [scene.name_of(i) for i in range(3)] == ["feature0", "feature1", "feature2"]
    assert scene[2].name == "feature2"


def test_a_blank_name_numbers_every_object_and_a_rerun_adds_no_row(naip_scene, tmp_path):
    """One blank cell in the name column named that object NaN (not JSON), and a rerun scored it
    again (NaN never equals NaN); a null geometry beside them is left out with our warning only."""
    labels = tmp_path / "blank.gpkg"
    polygons = gpd.read_file(PONDS).iloc[:3].copy()
    polygons.loc[1, "name"] = None
    polygons.loc[len(polygons)] = {"name": "nothing", "geometry": None}
    polygons.to_file(labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = LabelledScene(naip_scene, labels)
    assert [type(w.message) for w in caught] == [MSTGeoWarning]  # geopandas' notna() note printed 6 lines
    assert [scene.name_of(i) for i in range(len(scene))] == ["feature0", "feature1", "feature2"]
    out = tmp_path / "bench"
    for _ in range(2):
        args = ["bench", "noc", "--model", "disk", "--scene", str(naip_scene), "--labels", str(labels),
                "--max-clicks", "1", "--out", str(out)]
        assert CliRunner().invoke(app, args).exit_code == 0
    rows = [json.loads(line) for line in (out / "instances.jsonl").read_text().splitlines()]
    assert [row["name"] for row in rows] == ["feature0", "feature1", "feature2"]


def test_objects_keep_their_feature_numbers_when_others_are_dropped(naip_scene, tmp_path):
    """A point first and a polygon off the scene in the middle: the rest keep their numbers in the file."""
    from shapely.geometry import Point, box

    polygons = gpd.read_file(PONDS).iloc[:3]
    far = box(0, 0, 10, 10)  # far from the scene in its UTM CRS
    mixed = gpd.GeoDataFrame(geometry=[Point(polygons.geometry.iloc[0].centroid), polygons.geometry.iloc[0], far,
                                       *polygons.geometry.iloc[1:]], crs=polygons.crs)
    path = tmp_path / "mixed.gpkg"
    mixed.to_file(path)
    scene = LabelledScene(naip_scene, path)
    assert [scene.name_of(i) for i in range(len(scene))] == ["feature1", "feature3", "feature4"]
    assert scene.objects.where(1) == f"{path} (feature 3)"
    pond = polygons.geometry.iloc[1]  # feature 3 of the mixed file: its pixels, not another pond's
    assert abs(np.count_nonzero(scene[1].mask == 1) - pond.area / PIXEL_AREA) < 0.5 * pond.length / 5.0 + 4


@pytest.mark.parametrize(("extra", "message"), [
    (["--labels", str(PONDS)], "--scene and --labels go together"),
    (["--scene", "{scene}"], "--scene and --labels go together"),
    (["--scene", "{scene}", "--labels", "{far}"], "no label polygon overlaps the scene"),
    (["--scene", "{scene}", "--labels", "{missing}"], "labels file not found"),
    (["--scene", "{scene}", "--labels", "{folder}"], "is a folder, not a labels file"),
    (["--scene", "{scene}", "--labels", "{no_dbf}"], "the Shapefile's .dbf (its attribute table) is missing"),
])
def test_scene_user_errors_are_one_clear_line(naip_scene, tmp_path, extra, message):
    far = tmp_path / "far.geojson"
    moved = gpd.read_file(PONDS)
    moved["geometry"] = moved.translate(xoff=1e6)
    moved.to_file(far)
    shapefile = tmp_path / "shp" / "ponds.shp"  # read without its .dbf, its name and split marks were lost
    shapefile.parent.mkdir()
    gpd.read_file(PONDS).to_file(shapefile)
    shapefile.with_suffix(".dbf").unlink()
    paths = {"scene": naip_scene, "far": far, "missing": tmp_path / "none.gpkg", "folder": shapefile.parent,
             "no_dbf": shapefile}
    args = [item.format(**paths) for item in extra]
    result = CliRunner().invoke(app, ["bench", "noc", "--model", "disk", *args, "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, MSTGeoError), result.output
    assert message in str(result.exception)
    if "{far}" in extra:  # 1e6 m east of the scene: the two extents show it
        assert "(the labels span x 1485" in str(result.exception) and "the scene x 485899..490569" in str(result.exception)


def test_benching_a_model_on_the_polygons_it_was_fine_tuned_on_warns(naip_scene, ponds_in_wgs84, tmp_path):
    """Its rows would measure objects it trained on: said once, and the bench still runs."""
    import torch

    from mst_geo.bench.suite import run_noc_benchmark
    from mst_geo.errors import MSTGeoWarning
    from mst_geo.model import create_model, save_checkpoint

    torch.manual_seed(0)
    model = create_model("mst_tiny", depth=2, embed_dim=96, num_heads=2, head_dim=32, input_size=128)
    card = {"training": {"recipe": {"data": {"scene": str(naip_scene), "labels": str(ponds_in_wgs84)}}}}
    tuned = save_checkpoint(model, tmp_path / "tuned.safetensors", card)
    with pytest.warns(MSTGeoWarning, match="tuned was fine-tuned on .*ponds_wgs84.gpkg"):
        run_noc_benchmark([str(tuned)], [], tmp_path / "bench", scenes=[(naip_scene, ponds_in_wgs84)],
                          max_clicks=1, limit=1, progress=False)
    held_out = tmp_path / "held_out.gpkg"
    gpd.read_file(ponds_in_wgs84).iloc[:2].to_file(held_out)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MSTGeoWarning)  # another polygons file: no warning
        run_noc_benchmark([str(tuned)], [], tmp_path / "bench2", scenes=[(naip_scene, held_out)],
                          max_clicks=1, limit=1, progress=False)


def test_a_name_field_in_capitals_names_the_objects(naip_scene, tmp_path):
    """A Shapefile from ArcGIS says NAME: its distinct values name the rows, as `name` does."""
    polygons = gpd.read_file(PONDS).iloc[:3].rename(columns={"name": "NAME"})
    polygons.to_file(tmp_path / "ponds.shp")
    scene = LabelledScene(naip_scene, tmp_path / "ponds.shp")
    assert [scene.name_of(i) for i in range(3)] == polygons["NAME"].tolist()


def test_labels_in_metres_tagged_as_degrees_and_mixed_geometries(naip_scene, tmp_path):
    """UTM coordinates saved as EPSG:4326 cannot be reprojected (infinite bounds): one line says
    what is likely wrong. Points and lines among the polygons are left out with a warning."""
    from shapely.geometry import LineString, Point

    ponds = gpd.read_file(PONDS).iloc[:2]
    wrong = tmp_path / "wrong.gpkg"
    ponds.set_crs("EPSG:4326", allow_override=True).to_file(wrong)
    with pytest.raises(MSTGeoError, match=r"wrong.gpkg: the labels' coordinates do not fit their CRS \(WGS 84\): "
                                          r"projected metres tagged as degrees\?"):
        LabelledScene(naip_scene, wrong)
    mixed = tmp_path / "mixed.gpkg"
    centre = ponds.geometry.iloc[0].centroid
    gpd.GeoDataFrame(geometry=[Point(centre), *ponds.geometry, LineString([centre, (centre.x + 50, centre.y)])],
                     crs=ponds.crs).to_file(mixed)
    with pytest.warns(MSTGeoWarning, match="mixed.gpkg: 2 of 4 features are not polygons .* left out"):
        scene = LabelledScene(naip_scene, mixed)
    assert len(scene) == 2


def test_a_large_object_read_decimated_keeps_its_native_size_class(write_geotiff, tmp_path):
    """A 2 000 x 40 px river (80 000 px: large) sits in a window wider than the 2 048 px a scene
    object is read at: its area (and so its size class) counts scene pixels, not read pixels."""
    from shapely.geometry import box

    rng = np.random.default_rng(0)
    pixels = rng.integers(60, 90, (3, 200, 3000), dtype=np.uint8)
    pixels[:, 80:120, 500:2500] = 200
    scene = write_geotiff("river.tif", pixels)
    left, top = 485899.0, 5209246.0
    river = box(left + 500 * 5, top - 120 * 5, left + 2500 * 5, top - 80 * 5)
    labels = tmp_path / "river.gpkg"
    gpd.GeoDataFrame({"name": ["river"]}, geometry=[river], crs="EPSG:26914").to_file(labels)
    assert LabelledScene(scene, labels)[0].mask.shape[1] == 2048  # read decimated
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["bench", "noc", "--model", "disk", "--scene", str(scene), "--labels",
                                      str(labels), "--max-clicks", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    row = json.loads((out / "instances.jsonl").read_text())
    assert abs(row["area"] - 80_000) < 2_000  # rasterised on the read grid: edges within 2.5 %
    sizes = json.loads((out / "results.json").read_text())["results"]["disk"]["river"]["by_size"]
    assert set(sizes) == {"large"}


def test_self_crossing_label_polygons_are_repaired_with_a_warning(naip_scene, tmp_path):
    """A bow tie (a ring drawn crossing itself) has a signed area of 0: it is made valid, named in a
    warning, and its object covers both loops; a ring with no area at all (collinear points) is
    repaired to nothing and left out; valid polygons are left as they are."""
    from shapely.geometry import Polygon

    ponds = gpd.read_file(PONDS).iloc[:2]
    centre, half = ponds.geometry.iloc[0].centroid, 100.0
    x, y = centre.x, centre.y
    bow_tie = Polygon([(x - half, y - half), (x + half, y + half), (x + half, y - half), (x - half, y + half)])
    assert not bow_tie.is_valid and bow_tie.area == 0
    flat = Polygon([(x, y), (x + half, y + half), (x + 2 * half, y + 2 * half)])
    labels = tmp_path / "bow_tie.gpkg"
    gpd.GeoDataFrame(geometry=[ponds.geometry.iloc[1], bow_tie, flat], crs=ponds.crs).to_file(labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = LabelledScene(naip_scene, labels)
    messages = [str(warning.message) for warning in caught if warning.category is MSTGeoWarning]
    assert any(re.search(r"bow_tie.gpkg: 2 label polygon\(s\) are invalid \(Self-intersection; features 1, 2\) "
                         r"and are repaired", message) for message in messages), messages
    assert any("1 of 3 features are not polygons" in message for message in messages), messages
    assert len(scene) == 2
    loops = 2 * half * half / PIXEL_AREA  # two triangles, 100 m high and 200 m wide
    with pytest.warns(MSTGeoWarning):
        repaired = read_labels(labels, ponds.crs).geometry
    assert repaired.iloc[1].area == pytest.approx(2 * half * half) and repaired.iloc[0].equals(ponds.geometry.iloc[1])
    assert abs(np.count_nonzero(scene[1].mask == 1) - loops) < 0.1 * loops
    untouched = np.count_nonzero(scene[0].mask == 1)
    assert abs(untouched - ponds.geometry.iloc[1].area / PIXEL_AREA) < 0.5 * ponds.geometry.iloc[1].length / 5.0 + 4
