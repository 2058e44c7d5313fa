"""The public API on the real NAIP scene with a small random MST checkpoint (pipeline mechanics)."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from pyproj import Transformer

import mst_geo
from mst_geo.api import Segmenter, segment_scene
from mst_geo.clicks.predictor import Predictor
from mst_geo.errors import MSTGeoError, MSTGeoWarning
from mst_geo.geo.journal import ObjectJournal
from mst_geo.geo.io import COLUMNS
from mst_geo.model import create_model
from mst_geo.model.checkpoint import resolve_model, save_checkpoint

TO_WGS84 = Transformer.from_crs("EPSG:26914", "EPSG:4326", always_xy=True)


def xy(row: float, col: float) -> tuple[float, float]:
    """UTM 14N coordinates of a NAIP scene pixel."""
    return 485899.0 + 5.0 * col, 5209246.0 - 5.0 * row


@pytest.fixture
def segmenter(naip_scene, tiny_checkpoint):
    with Segmenter(naip_scene, model=tiny_checkpoint) as seg:
        yield seg


@pytest.fixture
def local_segmenter(naip_scene, local_checkpoint):
    with Segmenter(naip_scene, model=local_checkpoint) as seg:
        yield seg


def mask_area(result) -> float:
    """Map area of an ObjectMask's foreground: pixel count x the (possibly decimated) pixel area."""
    return float(result.mask.sum()) * abs(result.transform.a * result.transform.e)


def test_the_scene_runs_at_the_training_size_not_the_cards_view(tmp_path, naip_scene):
    """The adaptive windows frame the object already; a larger view and a second first-click pass
    measured worse there (README), and mirror averaging would double every click's wait."""
    path = save_checkpoint(create_model("mst_tiny", depth=2, input_size=96, inference_size=160, first_click_passes=2,
                                        flip=True), tmp_path / "viewed.safetensors")
    with Segmenter(naip_scene, model=path) as seg:
        seg.add_click(*xy(300, 300))
        assert seg._segmenter.predictor.view_sizes == (seg._segmenter.input_size,) == (96,)
        assert seg._segmenter.predictor.first_click_passes == 1 and seg._segmenter.predictor.flip is False


def test_scene_properties(segmenter):
    assert segmenter.crs.to_epsg() == 26914
    assert (segmenter.width, segmenter.height) == (934, 723)
    assert segmenter.bands == (1, 2, 3)
    with pytest.raises(AttributeError):  # chosen when the scene opens: an assignment must not pass for a choice
        segmenter.bands = (4, 3, 2)
    assert segmenter.bounds == (485899.0, 5205631.0, 490569.0, 5209246.0)
    assert segmenter.transform.a == 5.0
    assert segmenter.model_name == "mst_tiny_seed0"  # the file name: the checkpoint has no card name


def test_clicks_make_objects_and_polygons(local_segmenter):
    segmenter = local_segmenter
    pond = segmenter.add_click(*xy(40.5, 860.5))
    assert pond == 1
    assert segmenter.add_click(*TO_WGS84.transform(*xy(60.5, 885.5)), positive=False, crs="EPSG:4326", object=pond) == 1
    road = segmenter.add_click(*xy(624.5, 260.5), object="road")
    assert segmenter.objects() == [1, "road"]
    assert segmenter.add_click(*xy(100.5, 100.5)) == 2  # a new object

    mask = segmenter.mask(pond)
    assert mask.mask.dtype == bool and mask.mask.shape == mask.probability.shape
    assert 0 <= mask.window.col_off and mask.window.col_off + mask.window.width <= 934
    assert mask.mask.any() and 0.49 < mask.score <= 1.0
    # the result holds both clicks, at the pixels clicked (the WGS84 one reprojected), inside its window
    assert [(c.row, c.col, c.positive) for c in mask.clicks] == [
        pytest.approx((40.5, 860.5, True)), pytest.approx((60.5, 885.5, False))
    ]
    window = mask.window
    assert all(window.row_off <= c.row < window.row_off + window.height and
               window.col_off <= c.col < window.col_off + window.width for c in mask.clicks)
    # its transform puts mask pixel (0, 0) at the window's corner, with pixels of 5 m x the decimation
    assert mask.transform @ (0, 0) == pytest.approx(segmenter.transform @ (window.col_off, window.row_off))
    assert mask.transform.a == pytest.approx(5.0 * mask.scale[1]) and mask.transform.e == pytest.approx(-5.0 * mask.scale[0])
    first_click_only = segmenter.mask(segmenter.add_click(*xy(40.5, 860.5), object="pond alone"))
    assert not np.array_equal(first_click_only.probability, mask.probability)  # the negative click changed it
    segmenter.delete("pond alone")

    frame = segmenter.polygons()
    assert list(frame.columns) == [*COLUMNS, "geometry"]
    assert frame["object"].tolist() == ["1", "road", "2"]
    assert frame["n_clicks"].tolist() == [2, 1, 1]
    assert (frame["model"] == "mst_tiny_seed3").all() and frame.crs.to_epsg() == 26914
    expected = [mask_area(segmenter.mask(obj)) for obj in (pond, road, 2)]
    assert min(expected) > 0 and not frame.geometry.is_empty.any()
    assert segmenter.mask(2).scale[0] > 1  # one object read decimated: its pixels are larger than 25 m2
    assert frame["area"].tolist() == pytest.approx(expected) and frame["area_m2"].tolist() == pytest.approx(expected, rel=0.002)  # ground area
    assert road in segmenter.objects()


def test_incremental_clicks_equal_a_fresh_replay(naip_scene, tiny_checkpoint, segmenter):
    """Interleaving objects (one shared predictor) must not change any object's result."""
    segmenter.add_click(*xy(40.5, 860.5), object="pond")
    segmenter.add_click(*xy(95.5, 120.5), object="field")
    segmenter.add_click(*xy(95.5, 843.5), object="pond")
    segmenter.add_click(*xy(80.5, 172.5), positive=False, object="field")
    segmenter.add_click(*xy(60.5, 885.5), positive=False, object="pond")
    with Segmenter(naip_scene, model=tiny_checkpoint) as fresh:
        for row, col, positive in [(40.5, 860.5, True), (95.5, 843.5, True), (60.5, 885.5, False)]:
            fresh.add_click(*xy(row, col), positive=positive, object="pond")
        np.testing.assert_array_equal(fresh.mask("pond").probability, segmenter.mask("pond").probability)
        assert fresh.mask("pond").window == segmenter.mask("pond").window


def test_undo_and_delete(naip_scene, tiny_checkpoint, segmenter):
    segmenter.add_click(*xy(40.5, 860.5), object="pond")
    first = segmenter.mask("pond").probability.copy()
    segmenter.add_click(*xy(624.5, 260.5), object="road")
    segmenter.add_click(*xy(95.5, 843.5), object="pond")
    segmenter.undo("pond")
    np.testing.assert_array_equal(segmenter.mask("pond").probability, first)
    segmenter.undo()  # the last click left is the road's only click: the road goes
    assert segmenter.objects() == ["pond"]
    segmenter.delete("pond")
    assert segmenter.objects() == []
    with pytest.raises(MSTGeoError, match="unknown object 'pond'"):
        segmenter.mask("pond")
    with pytest.raises(MSTGeoError, match="nothing to undo"):
        segmenter.undo()


def test_an_undo_that_fails_changes_nothing(segmenter, monkeypatch):
    """Ctrl-C while the model reruns: the click stays, so the polygon and the exported clicks agree."""
    segmenter.add_click(*xy(40.5, 860.5), object="pond")
    segmenter.add_click(*xy(95.5, 843.5), object="pond")
    before = segmenter.mask("pond").probability.copy()

    def interrupted(clicks):
        raise KeyboardInterrupt

    monkeypatch.setattr(segmenter._segmenter, "segment", interrupted)
    with pytest.raises(KeyboardInterrupt):
        segmenter.undo()
    assert len(segmenter.clicks_geojson()["features"]) == 2
    assert segmenter.polygons().n_clicks.tolist() == [2]
    np.testing.assert_array_equal(segmenter.mask("pond").probability, before)
    monkeypatch.undo()
    segmenter.undo()  # and the history still knows where the last click went
    assert segmenter.polygons().n_clicks.tolist() == [1]


def test_a_closed_segmenter_says_so(naip_scene, tiny_checkpoint, tmp_path):
    with Segmenter(naip_scene, model=tiny_checkpoint) as seg:
        pond = seg.add_click(*xy(40.5, 860.5))
        seg.add_click(*xy(95.5, 843.5), object=pond)
    for action in (lambda: seg.add_click(*xy(60.5, 885.5), object=pond), seg.undo,
                   lambda: seg.load_clicks(seg.clicks_geojson()), seg.run_key):
        with pytest.raises(MSTGeoError, match="this Segmenter is closed"):
            action()
    assert seg.polygons().n_clicks.tolist() == [2]  # what it made stays readable and savable
    assert seg.save(tmp_path / "after_close.gpkg").is_file()


def test_home_folder_paths_from_python(naip_scene, tiny_checkpoint, tmp_path, monkeypatch):
    """"~/..." in Python (no shell expands it): the scene, a clicks file and the outputs are the home folder's."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scene.tif").symlink_to(naip_scene)
    with Segmenter("~/scene.tif", model=tiny_checkpoint) as seg:
        seg.add_click(*xy(40.5, 860.5))
        (tmp_path / "clicks.geojson").write_text(json.dumps(seg.clicks_geojson()))
        seg.save("~/out/objects.gpkg", mask_path="~/out/mask.tif")
    assert (tmp_path / "out" / "objects.gpkg").is_file() and (tmp_path / "out" / "mask.tif").is_file()
    assert not (tmp_path / "~").exists()
    frame = segment_scene("~/scene.tif", "~/clicks.geojson", "~/again.geojson", model=tiny_checkpoint, progress=False)
    assert len(frame) == 1 and (tmp_path / "again.geojson").is_file()


def test_an_object_wholly_under_a_later_one_is_named(segmenter, tmp_path):
    """The mask holds one value a pixel: the later object wins, and one left with no pixel is named.
    The warning, found deep in the package, points at the caller's own line, as a notebook shows it."""
    for obj in ("first", "again", "road"):
        segmenter.add_click(*(xy(624.5, 260.5) if obj == "road" else xy(40.5, 860.5)), object=obj)
    with pytest.warns(MSTGeoWarning, match=r"mask.tif: 1 object\(s\) have no pixel in the mask \(under later objects.*\('first'\)") as notes:
        saving_line = inspect.currentframe().f_lineno + 1
        segmenter.save(tmp_path / "objects.gpkg", mask_path=tmp_path / "mask.tif")
    assert [(note.filename, note.lineno) for note in notes if note.category is MSTGeoWarning] == [(__file__, saving_line)]
    with rasterio.open(tmp_path / "mask.tif") as mask:
        values = set(np.unique(mask.read(1)).tolist())
    assert values == {0, 2, 3}
    assert len(gpd.read_file(tmp_path / "objects.gpkg")) == 3  # the polygons keep all three


def test_inputs_of_the_wrong_type_are_one_line(segmenter, naip_scene):
    for action, message in (
        (lambda: segmenter.add_click(None, 5209043.5), "x and y must be numbers (map coordinates), got None"),
        (lambda: segmenter.add_click("490201.5", 5209043.5), "x and y must be numbers"),
        (lambda: segmenter.load_clicks([(490201.5, 5209043.5)]), "clicks must be a clicks file's path, a GeoDataFrame"),
        (lambda: Segmenter(None), "the scene must be a GeoTIFF's path or URL, got NoneType"),
        (lambda: segmenter.add_click(float("nan"), 5209043.5), "x and y must be finite numbers (map coordinates), got nan"),
        (lambda: segmenter.add_click(490201.5, float("inf")), "x and y must be finite numbers"),
    ):
        with pytest.raises(MSTGeoError, match=re.escape(message)):
            action()
    assert segmenter.add_click(np.float32(490201.5), np.float64(5209043.5)) == 1  # numpy numbers are numbers
    for action, message in (  # with an object to act on
        (lambda: segmenter.undo([1]), "object id must be an integer or a string, got [1]"),
        (lambda: segmenter.mask({}), "object id must be an integer or a string, got {}"),
        (lambda: segmenter.delete([1]), "object id must be an integer or a string, got [1]"),
        (lambda: segmenter.save(None), "path must be a file path, got NoneType None"),
        (lambda: segmenter.save(5), "path must be a file path, got int 5"),
        (lambda: segmenter.save(naip_scene.with_suffix(".gpkg"), mask_path=5), "mask_path must be a file path, got int"),
        (lambda: segment_scene(naip_scene, naip_scene, out=5), "out (--out) must be a file path, got int 5"),
    ):
        with pytest.raises(MSTGeoError, match=re.escape(message)):
            action()
    assert segmenter.objects() == [1] and not naip_scene.with_suffix(".gpkg").exists()


def test_object_ids_from_numpy_and_blank_ones(segmenter):
    """An id from a GeoDataFrame column (numpy) is that number; a blank one names nothing, where it
    would silently start a new object."""
    segmenter.add_click(*xy(40.5, 860.5), object=3)
    assert segmenter.add_click(*xy(95.5, 843.5), object=np.int64(3)) == 3
    assert segmenter.objects() == [3] and segmenter.polygons().n_clicks.tolist() == [2]
    for blank in ("", "  "):
        with pytest.raises(MSTGeoError, match="object id must not be blank"):
            segmenter.add_click(*xy(95.5, 843.5), object=blank)
    assert segmenter.objects() == [3]


def test_an_id_that_differs_only_in_case_warns_that_it_starts_a_new_object(segmenter):
    segmenter.add_click(*xy(40.5, 860.5), object="pond")
    with pytest.warns(MSTGeoWarning, match=r"object 'Pond ' is a new object beside 'pond' .*object='pond'"):
        segmenter.add_click(*xy(60.5, 885.5), positive=False, object="Pond ")
    assert segmenter.objects() == ["pond", "Pond "]
    with warnings.catch_warnings():
        warnings.simplefilter("error", MSTGeoWarning)  # clicks on the same object, or a new unlike one, say nothing
        segmenter.add_click(*xy(95.5, 843.5), object="pond")
        segmenter.add_click(*xy(95.5, 120.5), object="field")


def test_bad_clicks(naip_scene, tiny_checkpoint, write_geotiff, segmenter):
    with pytest.raises(MSTGeoError, match="naip_scene.tif: click at .* lies outside the scene"):
        segmenter.add_click(*xy(-10, 100))
    with pytest.raises(MSTGeoError, match=r"as longitude and latitude they fall on the scene: name the clicks' CRS "
                                          r"\(--clicks-crs; crs= in add_click"):
        segmenter.add_click(-99.13, 47.03)  # lon/lat given without crs= on a UTM scene
    with pytest.raises(MSTGeoError, match=r"as longitude and latitude \(EPSG:4326\) they fall on the scene, not as "
                                          r"EPSG:3857"):
        segmenter.add_click(-99.13, 47.03, crs="EPSG:3857")  # lon/lat said to be Web Mercator metres
    with pytest.raises(MSTGeoError, match="unknown CRS"):
        segmenter.add_click(0, 0, crs="EPSG:0")
    with pytest.raises(MSTGeoError, match="object id must be an integer or a string"):
        segmenter.add_click(*xy(100.5, 100.5), object=1.5)
    with pytest.raises(MSTGeoError, match="positive must be True or False: unknown label 'no'"):
        segmenter.add_click(*xy(100.5, 100.5), positive="no")
    assert segmenter.objects() == []
    with rasterio.open(naip_scene) as src:
        data = src.read()
    data[:, :, :100] = 0
    with Segmenter(write_geotiff("strip.tif", data, nodata=0), model=tiny_checkpoint) as seg:
        with pytest.raises(MSTGeoError, match="strip.tif: click at .* falls on nodata"):
            seg.add_click(*xy(10.5, 50.5))
        assert seg.objects() == []


def test_exported_clicks_reproduce_the_polygons_through_segment_scene(tmp_path, naip_scene, local_checkpoint, local_segmenter):
    segmenter = local_segmenter
    segmenter.add_click(*xy(40.5, 860.5), object="pond")
    segmenter.add_click(*xy(60.5, 885.5), positive=False, object="pond")
    segmenter.add_click(*xy(627.5, 10.5), object=7)
    clicks = tmp_path / "clicks.geojson"
    clicks.write_text(json.dumps(segmenter.clicks_geojson()))
    saved = gpd.read_file(segmenter.save(tmp_path / "app.gpkg"))

    frame = segment_scene(naip_scene, clicks, tmp_path / "cli.gpkg", model=local_checkpoint, progress=False)
    written = gpd.read_file(tmp_path / "cli.gpkg")
    assert written["object"].tolist() == saved["object"].tolist() == ["pond", "7"]
    for ours, theirs in zip(written.geometry, saved.geometry):
        assert not ours.is_empty and ours.equals(theirs)
    assert written["score"].tolist() == pytest.approx(saved["score"].tolist())
    assert len(frame) == 2


def test_save_refuses_to_overwrite_and_writes_the_mask(tmp_path, local_segmenter):
    segmenter = local_segmenter
    with pytest.raises(MSTGeoError, match="no objects to save"):
        segmenter.save(tmp_path / "x.gpkg")
    segmenter.add_click(*xy(627.5, 10.5))
    segmenter.save(tmp_path / "x.geojson", mask_path=tmp_path / "x_mask.tif")
    with pytest.raises(MSTGeoError, match="output exists"):
        segmenter.save(tmp_path / "x.geojson")
    with rasterio.open(tmp_path / "x_mask.tif") as mask:
        assert (mask.width, mask.height, mask.crs.to_epsg()) == (934, 723, 26914)
        pixels = mask.read(1)
    area = segmenter.polygons()["area"].iloc[0]
    assert set(np.unique(pixels)) == {0, 1} and area > 0
    assert (pixels == 1).sum() == pytest.approx(area / 25, rel=0.02)
    assert area == pytest.approx(mask_area(segmenter.mask(1)))


def test_save_never_replaces_the_scene_or_the_loaded_clicks(tmp_path, naip_scene, local_checkpoint):
    """The app's Save goes through Segmenter.save: with overwrite it still refuses the files the
    session reads (its scene, a clicks file it loaded), which would be lost to polygons."""
    scene, clicks = tmp_path / "scene.tif", tmp_path / "clicks.geojson"
    scene.write_bytes(naip_scene.read_bytes())
    with Segmenter(scene, model=local_checkpoint) as segmenter:
        segmenter.add_click(*xy(627.5, 10.5), object="pond")
        clicks.write_text(json.dumps(segmenter.clicks_geojson()))
    with Segmenter(scene, model=local_checkpoint) as segmenter:
        segmenter.load_clicks(clicks)
        before = clicks.read_bytes()
        with pytest.raises(MSTGeoError, match="is the clicks file"):
            segmenter.save(clicks, overwrite=True)
        with pytest.raises(MSTGeoError, match="is the scene"):
            segmenter.save(tmp_path / "x.gpkg", overwrite=True, mask_path=scene)
        assert clicks.read_bytes() == before and scene.read_bytes() == naip_scene.read_bytes()
        later = tmp_path / "later.geojson"
        later.write_text(json.dumps(segmenter.clicks_geojson()).replace('"pond"', '"pond 2"'))
        segmenter.load_clicks(later)  # a second clicks file: the first stays protected
        for loaded in (clicks, later):
            with pytest.raises(MSTGeoError, match="is the clicks file"):
                segmenter.save(loaded, overwrite=True)
        assert clicks.read_bytes() == before


def test_public_exports_and_light_import():
    assert mst_geo.load_model is resolve_model
    assert mst_geo.Segmenter is Segmenter and mst_geo.segment_scene is segment_scene
    assert mst_geo.Click(1.0, 2.0).positive
    heavy = subprocess.run(
        [sys.executable, "-c", "import sys, mst_geo; print(sorted({'torch', 'rasterio', 'geopandas'} & set(sys.modules)))"],
        capture_output=True, text=True, check=True,
    )
    assert heavy.stdout.strip() == "[]"


def test_interrupted_run_resumes_with_the_finished_objects(tmp_path, naip_scene, local_checkpoint, monkeypatch):
    """Interrupted right after the first object: the rerun skips it and writes the same polygons."""
    example = json.loads((naip_scene.parent / "clicks.geojson").read_text())
    clicks = tmp_path / "clicks.geojson"
    clicks.write_text(json.dumps({**example, "features": [example["features"][i] for i in (0, 2, 7, 9, 10)]}))
    calls = []
    predict = Predictor.predict
    monkeypatch.setattr(Predictor, "predict", lambda self, *a: calls.append(1) or predict(self, *a))
    reference = segment_scene(naip_scene, clicks, tmp_path / "reference.gpkg", model=local_checkpoint, progress=False)
    reference_calls = len(calls)

    save = ObjectJournal.save
    def save_then_interrupt(journal, result):
        save(journal, result)
        raise KeyboardInterrupt

    out = tmp_path / "out" / "objects.gpkg"
    monkeypatch.setattr(ObjectJournal, "save", save_then_interrupt)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        segment_scene(naip_scene, clicks, out, model=local_checkpoint, progress=False)
    first_object_calls = len(calls)
    assert not out.exists() and len(list((out.parent / ".objects.gpkg.resume").glob("*.npz"))) == 1

    monkeypatch.setattr(ObjectJournal, "save", save)
    calls.clear()
    resumed = segment_scene(naip_scene, clicks, out, model=local_checkpoint, progress=False)
    assert len(calls) == reference_calls - first_object_calls
    assert resumed["object"].tolist() == reference["object"].tolist() == ["pond", "road", "farm building"]
    for ours, theirs in zip(resumed.geometry, reference.geometry):
        assert not ours.is_empty and ours.equals(theirs)
    assert sorted(p.name for p in out.parent.iterdir()) == ["objects.gpkg"]  # the journal is gone


def test_clicks_load_from_memory_and_never_merge_into_existing_objects(naip_scene, local_checkpoint, local_segmenter):
    """``load_clicks`` takes a GeoDataFrame or a clicks GeoJSON dict as well as a file; an id
    already in the session is refused (a file's default object 1 used to fuse with the first
    clicked object, and loading a file twice doubled every object's clicks)."""
    pond = local_segmenter.add_click(*xy(40.5, 860.5))
    assert pond == 1
    exported = local_segmenter.clicks_geojson()
    with Segmenter(naip_scene, model=local_checkpoint) as fresh:
        assert fresh.load_clicks(exported) == [1]
        np.testing.assert_array_equal(fresh.mask(1).probability, local_segmenter.mask(1).probability)
    frame = gpd.GeoDataFrame.from_features(exported["features"], crs=local_segmenter.crs)
    with Segmenter(naip_scene, model=local_checkpoint) as fresh:
        fresh.load_clicks(frame)
        np.testing.assert_array_equal(fresh.mask("1").mask, local_segmenter.mask(1).mask)
        fresh.delete(1)
        fresh.load_clicks(frame.to_crs("EPSG:3857"))  # in its own CRS, as a file's layer
        (click,), (original,) = fresh.mask(1).clicks, local_segmenter.mask(1).clicks
        assert (click.row, click.col) == pytest.approx((original.row, original.col), abs=1e-6)
    with pytest.raises(MSTGeoError, match="object\\(s\\) 1 already in this session"):
        local_segmenter.load_clicks(exported)
    assert len(local_segmenter.mask(1).clicks) == 1


def test_object_ids_read_as_text_everywhere(segmenter):
    segmenter.add_click(*xy(40.5, 860.5))
    segmenter.add_click(*xy(624.5, 260.5), object="road")
    assert segmenter.mask("1") is segmenter.mask(1)
    segmenter.add_click(*xy(95.5, 843.5), object="1")
    segmenter.undo("1")
    assert len(segmenter.mask(1).clicks) == 1
    segmenter.delete("1")
    assert segmenter.objects() == ["road"]


def test_outline_settings_redraw_every_outline_and_are_checked(local_segmenter):
    local_segmenter.add_click(*xy(40.5, 860.5), object="pond")
    raw = local_segmenter.polygons().geometry.iloc[0]
    local_segmenter.simplify = 10.0
    simplified = local_segmenter.polygons().geometry.iloc[0]
    assert len(simplified.exterior.coords if simplified.geom_type == "Polygon" else simplified.geoms[0].exterior.coords) \
        < len(raw.exterior.coords if raw.geom_type == "Polygon" else raw.geoms[0].exterior.coords)
    local_segmenter.min_area = raw.area * 2
    assert local_segmenter.polygons().geometry.iloc[0].is_empty
    for setting, value, message in (("simplify", -1, "simplify \\(--simplify\\) must be a number, 0 or more"),
                                    ("simplify", "2", "simplify \\(--simplify\\) must be a number, 0 or more, got '2'"),
                                    ("min_area", float("nan"), "min_area \\(--min-area\\) must be a number, 0 or more"),
                                    ("simplify", 10_000, "simplify \\(--simplify\\) 10000 is 2,000 pixels")):
        with pytest.raises(MSTGeoError, match=message):
            setattr(local_segmenter, setting, value)
    assert local_segmenter.simplify == 10.0


def test_a_model_path_with_a_tilde_resumes_like_its_full_path(tmp_path, naip_scene, tiny_checkpoint, monkeypatch):
    """The shell leaves ``--model=~/x.safetensors`` as it is: loading expanded it, the resume key did not."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "tiny.safetensors").write_bytes(tiny_checkpoint.read_bytes())
    with Segmenter(naip_scene, model="~/tiny.safetensors") as seg:
        key = seg.run_key()
        assert seg.model_name == "tiny"
    with Segmenter(naip_scene, model=tmp_path / "tiny.safetensors") as seg:
        assert key is not None and key == seg.run_key()
        seg.raster.high = seg.raster.high + 1  # another stretch (a newer release computing it otherwise)
        assert seg.run_key() != key


def test_overviews_added_beside_the_scene_change_the_resume_key(tmp_path, naip_scene, tiny_checkpoint):
    """External overviews (scene.tif.ovr) change what a large object's window shows: a run that
    resumes after one was built must not reuse objects read without it."""
    from rasterio.enums import Resampling

    with rasterio.open(naip_scene) as source:
        profile, pixels = source.profile, source.read()
    profile.update(driver="GTiff")
    with rasterio.open(tmp_path / "scene.tif", "w", **profile) as copy:
        copy.write(pixels)
    with Segmenter(tmp_path / "scene.tif", model=tiny_checkpoint) as seg:
        before = seg.run_key()
    with rasterio.Env(TIFF_USE_OVR=True), rasterio.open(tmp_path / "scene.tif", "r+") as scene:
        scene.build_overviews([2, 4], Resampling.average)
    assert (tmp_path / "scene.tif.ovr").is_file()
    with Segmenter(tmp_path / "scene.tif", model=tiny_checkpoint) as seg:
        assert [Path(path).name for path in seg.raster.files] == ["scene.tif", "scene.tif.ovr"]
        assert seg.run_key() != before


def test_a_loaded_model_and_bad_bands(naip_scene, local_checkpoint):
    model, card = mst_geo.load_model(local_checkpoint)
    with Segmenter(naip_scene, model=model) as seg, Segmenter(naip_scene, model=local_checkpoint) as by_path:
        assert seg.run_key() is None and seg.card == by_path.card == card
        assert seg.model_name == (card.get("name") or model.config.preset)
        seg.add_click(*xy(40.5, 860.5))
    with Segmenter(naip_scene, model=mst_geo.load_model("default")[0]) as shipped:
        assert shipped.model_name == "shipped_gpu_anneal"  # the card's name, as model="default" gives it
    with pytest.raises(MSTGeoError, match="model must be 'default', a checkpoint path, a preset or an MSTModel, got tuple"):
        Segmenter(naip_scene, model=mst_geo.load_model(local_checkpoint))
    for bands, message in (((4, 3), "takes 1 band \\(grey\\) or 3 bands"), ("4,3,2", "must be band numbers"),
                           ((1.5, 2, 3), "whole band numbers"), (4, "must be band numbers"),
                           ((4, 3, 9), "band 9 requested but the raster has bands 1..4")):
        with pytest.raises(MSTGeoError, match=message) as error:
            Segmenter(naip_scene, model=local_checkpoint, bands=bands)
        assert "naip_scene.tif" in str(error.value)
    with pytest.raises(MSTGeoError, match="is a folder, not a raster"):
        Segmenter(naip_scene.parent, model=local_checkpoint)


def test_a_failed_setup_leaves_the_scene_closed(tmp_path, naip_scene, tiny_checkpoint, monkeypatch, open_handles):
    """The predictor failing to start (no GPU memory, say) closes the scene it had opened."""
    import shutil

    import mst_geo.api

    scene = shutil.copy(naip_scene, tmp_path / "scene.tif")

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(mst_geo.api, "Predictor", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory") as failure:
        Segmenter(scene, model=tiny_checkpoint)
    assert failure.tb is not None  # the traceback keeps the half-built Segmenter alive: its scene must be closed
    assert open_handles(scene) == 0


def test_uncovered_clicks_are_judged_on_the_saved_polygons(naip_scene, tmp_path):
    """Two positive clicks in two ponds make one object of two parts; a min_area that drops the
    smaller part leaves its click out of the saved polygon, and that is what counts (the raw mask
    still covers it). An object that comes out empty is left to its own warning."""
    from shapely.geometry import Point

    from mst_geo.api import _warn_if_clicks_uncovered
    from mst_geo.errors import MSTGeoWarning

    with Segmenter(naip_scene) as seg:  # the shipped model: both ponds come out
        pond = seg.add_click(*xy(351.5, 364.5))
        seg.add_click(*xy(280.5, 699.5), object=pond)
        parts = {click: next(part for part in seg.polygons().geometry.iloc[0].geoms if part.covers(Point(*xy(*click))))
                 for click in ((351.5, 364.5), (280.5, 699.5))}
        small, large = sorted(part.area for part in parts.values())
        assert seg.uncovered_clicks() == {}
        seg.min_area = (small + large) / 2  # the smaller pond's part goes, the larger stays
        assert seg.mask(pond).mask.any() and seg.uncovered_clicks() == {pond: 1}
        seg.min_area = large * 2  # every part goes: "came out empty", not "uncovered"
        assert seg.polygons().geometry.iloc[0].is_empty and seg.uncovered_clicks() == {}
        with pytest.warns(MSTGeoWarning, match=r"1 object\(s\) came out empty \(1\): add positive clicks, or lower "
                                               r"the minimum area"):
            seg.save(tmp_path / "emptied.gpkg")

    with pytest.warns(MSTGeoWarning, match=r"7 object\(s\) leave out .* \('a', 'b', 'c', 'd', 'e', …\): check them"):
        _warn_if_clicks_uncovered({name: 1 for name in "abcdefg"})


def test_the_mask_shows_the_polygons_as_written(naip_scene, tmp_path):
    """``min_area`` drops parts: the mask COG burns what the polygons hold (it burned the model's
    raw mask, dropped parts included, also for an object whose polygon came out empty), and
    ``score`` is taken over the same pixels (an empty object scored 0.65)."""
    from mst_geo.geo.vectorize import polygon_to_mask

    with Segmenter(naip_scene) as seg:  # the shipped model: a pond in 2 parts (51 200 m² the largest), a road in 7
        seg.add_click(*xy(40.5, 860.5), object="pond")
        seg.add_click(*xy(624.5, 260.5), object="road")
        raw = seg.polygons().set_index("object").geometry
        seg.min_area = 60_000.0
        with pytest.warns(MSTGeoWarning, match=r"1 object\(s\) came out empty \('pond'\)"):
            seg.save(tmp_path / "objects.gpkg", mask_path=tmp_path / "mask.tif")
    frame = gpd.read_file(tmp_path / "objects.gpkg").set_index("object")
    with rasterio.open(tmp_path / "mask.tif") as mask:
        values, transform = mask.read(1), mask.transform
    assert frame.loc["pond", "score"] == 0.0 and not (values == 1).any()
    road = frame.loc["road", "geometry"]
    dropped = polygon_to_mask(raw["road"].difference(road), values.shape, transform)
    assert frame.loc["road", "score"] > 0 and dropped.sum() > 4  # parts of the road were dropped
    assert not (dropped & (values == 2)).any()
    kept = polygon_to_mask(road, values.shape, transform)
    assert np.count_nonzero(kept != (values == 2)) <= 0.01 * kept.sum()  # pixel centres on a decimated read's edges


def test_the_package_shows_its_api_to_editors_and_type_checkers():
    """``dir(mst_geo)`` (a notebook's completion) lists the lazily imported API, and the package
    carries PEP 561's ``py.typed`` so type checkers read its hints."""
    import mst_geo

    fresh = subprocess.run([sys.executable, "-c", "import mst_geo; print(' '.join(dir(mst_geo)))"],  # nothing imported yet
                           capture_output=True, text=True, check=True).stdout.split()
    assert {"Segmenter", "segment_scene", "load_model", "Click"} <= set(fresh)
    assert (Path(mst_geo.__file__).parent / "py.typed").is_file()
