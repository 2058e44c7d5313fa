"""``mst-geo segment`` end to end on the real NAIP scene, and every bad input the issue lists.

Each bad input must give a non-zero exit, one line naming the file and the problem, no
traceback and no output file. The command runs in-process through the console-script entry
point (``mst_geo.cli.main``), plus once through the installed ``mst-geo`` executable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.enums import Resampling
from pyproj import Transformer
from safetensors.torch import load_file, save_file
from shapely import get_num_coordinates
from shapely.geometry import Point

from mst_geo.clicks.predictor import Predictor
from mst_geo.geo.journal import ObjectJournal
from mst_geo.geo.raster import SceneRaster
from mst_geo.geo.vectorize import mask_to_polygon, polygon_to_mask
from mst_geo.model import create_model
from mst_geo.model.checkpoint import CARD_KEY, read_card

EXAMPLE_CLICKS = Path(__file__).parents[1] / "examples" / "clicks.geojson"


def polygon_parts(geometry) -> list:
    return list(getattr(geometry, "geoms", [geometry]))


@pytest.fixture
def few_clicks(tmp_path) -> Path:
    """Two objects of one click each (pond, road): the cheap clicks for runs that check plumbing."""
    features = json.loads(EXAMPLE_CLICKS.read_text())["features"]
    return write_clicks(tmp_path / "few.geojson", [features[0], features[7]])


@pytest.fixture
def segment(cli, naip_scene, local_checkpoint, tmp_path, few_clicks):
    """``mst-geo segment`` with local_checkpoint; scene, clicks (default: few_clicks), output overridable."""

    def run(*extra, scene=naip_scene, clicks=few_clicks, out=tmp_path / "out" / "objects.gpkg"):
        out.parent.mkdir(exist_ok=True)
        return cli("segment", scene, "--clicks", clicks, "-o", out, "--model", local_checkpoint, "-q", *extra)

    return run


def assert_user_error(result, *fragments: str, out_dir: Path | None = None) -> None:
    code, _, err = result
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    if out_dir is not None and out_dir.exists():
        assert list(out_dir.iterdir()) == []


def write_clicks(path: Path, features: list, **extra) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features, **extra}))
    return path


def point(lon: float, lat: float, **properties) -> dict:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": properties}


def pixel_lonlat(row: float, col: float, crs: str = "EPSG:4326") -> tuple[float, float]:
    x, y = 485899.0 + 5.0 * col, 5209246.0 - 5.0 * row
    return Transformer.from_crs("EPSG:26914", crs, always_xy=True).transform(x, y)


# -- it works ------------------------------------------------------------------------------------
def test_objects_that_come_out_empty_are_named(segment, tmp_path):
    """--min-area over every object's size: the polygons are written, and one warning line names them."""
    code, stdout, err = segment("--min-area", "5000000")
    assert code == 0 and "wrote 2 objects" in stdout
    assert "warning: 2 object(s) came out empty ('pond', 'road'): add positive clicks, or lower the minimum area (min_area, --min-area)" in err
    assert gpd.read_file(tmp_path / "out" / "objects.gpkg").geometry.is_empty.all()


def test_example_scene_and_clicks(segment, tmp_path):
    out = tmp_path / "out" / "objects.gpkg"
    mask = tmp_path / "out" / "mask.tif"
    code, stdout, err = segment("--mask-out", mask, "--simplify", "5", "--min-area", "80", clicks=EXAMPLE_CLICKS)
    assert code == 0 and f"wrote 4 objects to {out}" in stdout
    assert "came out empty" not in err
    frame = gpd.read_file(out)
    assert frame["object"].tolist() == ["pond", "field", "road", "farm building"]
    assert frame["n_clicks"].tolist() == [4, 3, 3, 2]
    assert frame.crs.to_epsg() == 26914 and (frame["model"] == "mst_tiny_seed3").all()
    assert set(frame.columns) >= {"object", "n_clicks", "area", "area_m2", "score", "model"}
    with rasterio.open(mask) as grid:
        assert (grid.width, grid.height, grid.dtypes[0]) == (934, 723, "uint8")
        labels, transform = grid.read(1), grid.transform
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}  # every object drew pixels
    vertices, raw_vertices = 0, 0
    for k, geometry in enumerate(frame.geometry, start=1):
        assert not geometry.is_empty and geometry.is_valid
        pixels_m2 = (labels == k).sum() * 25.0  # 5 m pixels
        raw = mask_to_polygon(labels == k, transform)  # the same pixels, neither simplified nor filtered
        few_pixels = 10 * 25.0  # --simplify 5 on a mask of a few dozen pixels moves a few of them
        assert geometry.area == pytest.approx(pixels_m2, rel=0.1, abs=few_pixels), frame["object"][k - 1]
        assert frame["area"][k - 1] == pytest.approx(geometry.area)
        assert frame["area_m2"][k - 1] == pytest.approx(pixels_m2, rel=0.1, abs=few_pixels)
        vertices, raw_vertices = vertices + get_num_coordinates(geometry), raw_vertices + get_num_coordinates(raw)
        drawn = polygon_to_mask(geometry, labels.shape, transform)  # the mask shows the polygon as written
        assert np.count_nonzero(drawn != (labels == k)) <= 0.02 * drawn.sum() + 4, frame["object"][k - 1]
        assert all(part.area >= 80 for part in polygon_parts(geometry))  # --min-area: no part under 80 m2
    # --simplify 5 (one pixel) cuts the pixel staircases: far fewer vertices than the raw outlines
    # (summed: objects read decimated are outlined on their own grid, not the mask COG's)
    assert vertices < 0.9 * raw_vertices, (vertices, raw_vertices)
    assert sorted(p.name for p in out.parent.iterdir()) == ["mask.tif", "objects.gpkg"]
    # without --min-area the same run keeps parts under 80 m²: --min-area had some to drop
    code, _, _ = segment("--simplify", "5", clicks=EXAMPLE_CLICKS, out=tmp_path / "all" / "objects.gpkg")
    parts = [part.area for geometry in gpd.read_file(tmp_path / "all" / "objects.gpkg").geometry
             for part in polygon_parts(geometry)]
    assert code == 0 and any(area < 80 for area in parts)


def test_polygons_that_leave_out_a_positive_click_are_named(cli, naip_scene, tmp_path):
    """A click on the scene's first pixel: the shipped model draws nothing under it (the edge), and
    the run says which object to check; the pond covers its click and is not named."""
    pond = json.loads(EXAMPLE_CLICKS.read_text())["features"][0]
    clicks = write_clicks(tmp_path / "corner.geojson", [point(*pixel_lonlat(0.3, 0.3), object="corner"), pond])
    code, stdout, err = cli("segment", naip_scene, "--clicks", clicks, "-o", tmp_path / "o.gpkg", "-q")
    assert code == 0 and "wrote 2 objects" in stdout
    assert err.strip().splitlines() == ["warning: 1 object(s) leave out some of their positive clicks ('corner'): "
                                        "check them, or add a click there"]
    frame = gpd.read_file(tmp_path / "o.gpkg").set_index("object")
    corner = Point(Transformer.from_crs("EPSG:4326", "EPSG:26914", always_xy=True).transform(*pixel_lonlat(0.3, 0.3)))
    pond_click = Point(Transformer.from_crs("EPSG:4326", "EPSG:26914", always_xy=True).transform(*pond["geometry"]["coordinates"]))
    assert not frame.geometry["corner"].is_empty and not frame.geometry["corner"].contains(corner)
    assert frame.geometry["pond"].contains(pond_click)


def test_interrupted_command_resumes_when_rerun(segment, tmp_path, monkeypatch):
    """Ctrl-C after the first object: exit 130 with the resume hint, no output; the rerun
    reuses the finished object from the journal and completes."""
    out = tmp_path / "out" / "objects.gpkg"
    save, load = ObjectJournal.save, ObjectJournal.load
    loaded, predicted = [], []

    def save_then_interrupt(journal, result):
        save(journal, result)
        raise KeyboardInterrupt

    predict = Predictor.predict
    monkeypatch.setattr(Predictor, "predict", lambda self, *a: predicted.append(1) or predict(self, *a))
    monkeypatch.setattr(ObjectJournal, "load", lambda journal, clicks: loaded.append(load(journal, clicks)) or loaded[-1])
    monkeypatch.setattr(ObjectJournal, "save", save_then_interrupt)
    code, stdout, err = segment()
    assert code == 130 and "rerun the same command to resume" in err and "Traceback" not in err
    assert not out.exists() and "wrote" not in stdout
    assert len(list((out.parent / ".objects.gpkg.resume").glob("*.npz"))) == 1
    assert loaded == [None] and predicted  # the pond ran the model, then the interrupt came

    monkeypatch.setattr(ObjectJournal, "save", save)
    loaded.clear()
    predicted.clear()
    code, stdout, err = segment()
    assert code == 0 and f"wrote 2 objects to {out}" in stdout
    assert [entry is not None for entry in loaded] == [True, False]  # the pond came from the journal
    assert predicted  # the road ran the model
    frame = gpd.read_file(out)
    assert frame["object"].tolist() == ["pond", "road"] and not frame.geometry.is_empty.any()
    assert sorted(p.name for p in out.parent.iterdir()) == ["objects.gpkg"]  # the journal is gone


@pytest.fixture
def served_scene(naip_scene, write_geotiff, serve_file):
    """A 5604 x 4338 px scene (the example tiled 6 x 6; 256 px deflated blocks and overviews, as a
    COG) on a local HTTP server answering range requests: (local path, URL)."""
    with rasterio.open(naip_scene) as src:
        data, transform = src.read(), src.transform
    path = write_geotiff("big.tif", np.tile(data, (1, 6, 6)), transform=transform,
                         tiled=True, blockxsize=256, blockysize=256, compress="deflate")  # fmt: skip
    with rasterio.open(path, "r+") as scene:
        scene.build_overviews([2, 4, 8, 16], Resampling.average)
    return path, serve_file(path)


def test_scene_at_a_url_is_read_by_windows(segment, served_scene, tmp_path):
    """A COG behind a URL gives the polygons the same file gives on disk, and is never downloaded whole."""
    path, url = served_scene
    local, remote = tmp_path / "out" / "local.gpkg", tmp_path / "out" / "remote.gpkg"
    assert segment(scene=path, out=local)[0] == 0
    code, _, err = segment(scene=url, out=remote)
    assert code == 0, err
    ours, reference = gpd.read_file(remote), gpd.read_file(local)
    assert ours["object"].tolist() == reference["object"].tolist()
    assert all(a.equals(b) and not a.is_empty for a, b in zip(ours.geometry, reference.geometry))
    served = sum(int(n) for n in path.with_name("big.tif.served").read_text().split())
    # the stretch samples 64 windows, each object reads a few more: 14 % of the file here, not all of it
    assert 0 < served < 0.35 * path.stat().st_size, (served, path.stat().st_size)
    assert segment(scene=f"/vsicurl/{url}", out=tmp_path / "out" / "vsicurl.gpkg")[0] == 0  # GDAL's own spelling
    assert gpd.read_file(tmp_path / "out" / "vsicurl.gpkg").geometry.geom_equals(reference.geometry).all()
    gone = url.replace("big.tif", "gone.tif")
    failed = tmp_path / "failed"
    assert_user_error(segment(scene=gone, out=failed / "objects.gpkg"), gone, "cannot read as a raster", out_dir=failed)


def test_geojson_output_and_overwrite(segment, tmp_path):
    out = tmp_path / "out" / "objects.geojson"
    assert segment(out=out)[0] == 0
    assert json.loads(out.read_text())["type"] == "FeatureCollection"
    before = out.read_bytes()
    assert_user_error(segment(out=out), str(out), "output exists (pass --overwrite")
    assert out.read_bytes() == before
    assert segment("--overwrite", out=out)[0] == 0


def test_an_untrained_preset_is_one_warning_line(segment):
    code, _, err = segment("--model", "mst_xtiny", "--overwrite")
    assert code == 0
    assert err.strip().splitlines()[0] == ("warning: model 'mst_xtiny' is a preset with random weights: its masks "
                                           "are meaningless until it is trained")
    assert all(line.startswith("warning: ") for line in err.strip().splitlines())  # random masks may be empty


def test_outputs_never_replace_the_inputs(segment, naip_scene, few_clicks, tmp_path):
    """--overwrite replaces earlier results, never the scene or the clicks the run reads."""
    scene, clicks = tmp_path / "scene.tif", tmp_path / "clicks.geojson"
    scene.write_bytes(naip_scene.read_bytes())
    clicks.write_bytes(Path(few_clicks).read_bytes())
    assert_user_error(segment("--mask-out", scene, "--overwrite", scene=scene, clicks=clicks),
                      str(scene), "is the scene")
    assert_user_error(segment("--overwrite", scene=scene, clicks=clicks, out=clicks), str(clicks), "is the clicks file")
    assert scene.read_bytes() == naip_scene.read_bytes() and clicks.read_bytes() == Path(few_clicks).read_bytes()


@pytest.mark.parametrize("how", ["crs member", "--clicks-crs", "GeoPackage layer"])
def test_clicks_in_another_crs_work(segment, tmp_path, few_clicks, how):
    """Web Mercator clicks give the same objects as the same clicks in WGS84, also from a
    GeoPackage point layer (as digitised in QGIS), whose own CRS needs no flag."""
    wgs84 = json.loads(few_clicks.read_text())
    to_mercator = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    for feature in wgs84["features"]:
        feature["geometry"]["coordinates"] = list(to_mercator.transform(*feature["geometry"]["coordinates"]))
    extra = {"crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}} if how == "crs member" else {}
    clicks = write_clicks(tmp_path / "mercator.geojson", wgs84["features"], **extra)
    if how == "GeoPackage layer":
        clicks = tmp_path / "mercator.gpkg"
        gpd.GeoDataFrame.from_features(wgs84["features"], crs="EPSG:3857").to_file(clicks, layer="clicks")
    flags = ["--clicks-crs", "EPSG:3857"] if how == "--clicks-crs" else []
    mercator_out = tmp_path / "out" / "mercator.gpkg"
    mercator_mask, reference_mask = tmp_path / "out" / "mercator_mask.tif", tmp_path / "out" / "mask.tif"
    assert segment(*flags, "--mask-out", mercator_mask, clicks=clicks, out=mercator_out)[0] == 0
    assert segment("--mask-out", reference_mask)[0] == 0
    ours, reference = gpd.read_file(mercator_out), gpd.read_file(tmp_path / "out" / "objects.gpkg")
    assert ours["object"].tolist() == reference["object"].tolist()
    assert not ours.geometry.is_empty.any()
    assert ours["area"].tolist() == pytest.approx(reference["area"].tolist(), rel=0.02)
    with rasterio.open(mercator_mask) as a, rasterio.open(reference_mask) as b:
        pixels, expected = a.read(1), b.read(1)
    assert expected.any() and set(np.unique(expected)) == {0, 1, 2}  # both objects drew pixels
    assert np.array_equal(pixels, expected)


@pytest.mark.parametrize(
    ("name", "make", "bands", "checkpoint"),
    [  # the checkpoint whose random masks are non-empty and local on that layout (seed 3 grows the grey road to the scene)
        ("grey.tif", lambda px: px[3:4], None, "tiny_checkpoint"),  # one band (near infrared)
        ("uint16.tif", lambda px: px.astype(np.uint16) * 16 + 7, None, "local_checkpoint"),  # 16-bit, 12-bit values
        ("sentinel_like.tif", lambda px: np.concatenate([px, px // 2, px // 3, px[:1] // 4]), "1,2,3", "local_checkpoint"),
        ("sentinel_like.tif", lambda px: np.concatenate([px, px // 2, px // 3, px[:1] // 4]), "4,1,2", "local_checkpoint"),
    ],
)
def test_other_band_layouts_work(segment, write_geotiff, naip_scene, tmp_path, monkeypatch, request, name, make, bands,
                                 checkpoint):
    with rasterio.open(naip_scene) as src:
        data = np.ascontiguousarray(make(src.read()))
    scene = write_geotiff(name, data, nodata=0)
    opened = []
    monkeypatch.setattr("mst_geo.api.SceneRaster", lambda *a: opened.append(SceneRaster(*a)) or opened[-1])
    extra = ["--bands", bands] if bands else []
    code, stdout, err = segment(*extra, "--model", request.getfixturevalue(checkpoint), scene=scene)
    assert code == 0, stdout + err
    frame = gpd.read_file(tmp_path / "out" / "objects.gpkg")
    assert len(frame) == 2 and not frame.geometry.is_empty.any() and (frame.geometry.area > 0).all()
    assert "came out empty" not in err
    expected = {None: (1, 1, 1) if data.shape[0] == 1 else (1, 2, 3), "1,2,3": (1, 2, 3), "4,1,2": (4, 1, 2)}[bands]
    assert [raster.bands for raster in opened] == [expected]  # the CLI read the bands asked for
    if bands == "4,1,2":  # the model's RGB really is bands 4, 1, 2: a permutation of the 1,2,3 read
        window = rasterio.windows.Window(780, 0, 154, 140)
        with SceneRaster(scene, (4, 1, 2)) as asked, SceneRaster(scene, (1, 2, 3)) as plain:
            image, rgb = asked.read(window).image, plain.read(window).image
        np.testing.assert_array_equal(image[..., 1:], rgb[..., :2])
        assert np.abs(image[..., 0] - rgb[..., 2]).mean() > 0.05  # NIR is not blue


def test_a_guessed_band_order_is_one_warning_line(segment, write_geotiff, naip_scene, tmp_path):
    """Five unnamed bands: the run goes on with bands 1,2,3 and says so once; --bands silences it."""
    with rasterio.open(naip_scene) as src:
        data = np.concatenate([src.read(), src.read(1)[None] // 2])
    scene = write_geotiff("five.tif", data, nodata=0, photometric="MINISBLACK")
    code, _, err = segment(scene=scene)
    assert code == 0
    guessed = [line for line in err.strip().splitlines() if "bands" in line]  # (the untrained model also misses clicks)
    assert guessed == [f"warning: {scene}: 5 bands without colour names; reading band(s) 1,2,3 "
                       "as R,G,B (choose them with --bands, or bands= in Python)"]
    code, _, err = segment("--bands", "1,2,3", "--overwrite", scene=scene)
    assert code == 0 and "bands" not in err


def test_scenes_placed_by_gcps_or_a_rotated_geotransform(segment, write_geotiff, naip_scene, tmp_path, few_clicks):
    """Ground control points alone give the north-up original's objects; a geotransform rotated
    30 degrees is warped north-up: polygons and mask on that grid, each object (shipped model)
    holding its click."""
    with rasterio.open(naip_scene) as src:
        data, transform = src.read(), src.transform
    reference_mask, mask = tmp_path / "out" / "reference.tif", tmp_path / "out" / "mask.tif"
    assert segment("--mask-out", reference_mask, out=tmp_path / "out" / "reference.gpkg")[0] == 0
    gcp_scene = write_geotiff("gcps.tif", data, crs=None, transform=Affine.identity(), nodata=0)
    with rasterio.open(gcp_scene, "r+") as dst:
        dst.gcps = ([GroundControlPoint(row, col, *(transform @ (col, row))) for row in (0, 400, 723) for col in (0, 500, 934)],
                    rasterio.crs.CRS.from_epsg(26914))
    assert segment("--mask-out", mask, scene=gcp_scene)[0] == 0
    with rasterio.open(mask) as ours, rasterio.open(reference_mask) as reference:
        assert ours.transform.almost_equals(reference.transform) and ours.crs == reference.crs
        assert reference.read(1).any() and np.array_equal(ours.read(1), reference.read(1))

    centre = transform @ (467, 361.5)
    rotation = Affine.translation(*centre) @ Affine.rotation(30) @ Affine.translation(-centre[0], -centre[1])
    rotated = write_geotiff("rotated.tif", data, transform=rotation @ transform, nodata=0)
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:26914", always_xy=True)
    features = json.loads(few_clicks.read_text())["features"]
    for feature in features:  # the same scene pixel, now at its rotated map position
        feature["geometry"]["coordinates"] = list(rotation @ to_utm.transform(*feature["geometry"]["coordinates"]))
    utm = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::26914"}}
    clicks = write_clicks(tmp_path / "rotated_clicks.geojson", features, crs=utm)
    out = tmp_path / "out" / "rotated.gpkg"
    code, _, err = segment("--mask-out", mask, "--overwrite", "--model", "default", scene=rotated, clicks=clicks, out=out)
    assert code == 0 and "came out empty" not in err, err
    frame = gpd.read_file(out)
    assert frame.crs.to_epsg() == 26914 and len(frame) == 2
    with rasterio.open(mask) as grid:
        north_up = grid.transform
        assert north_up.b == north_up.d == 0 and north_up.a == pytest.approx(5.0, rel=0.05) and north_up.e < 0
        assert grid.width > 1000 and grid.height > 900  # the rotated footprint's bounding box
    for geometry, feature in zip(frame.geometry, features):
        assert geometry.contains(Point(feature["geometry"]["coordinates"]))  # the shipped model: the clicked pond, road


def vrt_mosaic(write_geotiff, naip_scene: Path, folder: Path) -> tuple[Path, list[Path]]:
    """The example scene cut into two GeoTIFF tiles and a GDAL VRT mosaic of them (what
    gdalbuildvrt writes): the VRT's path and the tiles'."""
    with rasterio.open(naip_scene) as src:
        data, transform = src.read(), src.transform
    sources = []
    for name, cols in (("west.tif", slice(0, 467)), ("east.tif", slice(467, 934))):
        tile = write_geotiff(name, np.ascontiguousarray(data[:, :, cols]), nodata=0,
                             transform=transform @ Affine.translation(cols.start, 0))
        sources.append((tile, cols.start, cols.stop - cols.start))
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{band}"><NoDataValue>0</NoDataValue>' + "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="1">{tile.name}</SourceFilename>'
            f"<SourceBand>{band}</SourceBand><SrcRect xOff=\"0\" yOff=\"0\" xSize=\"{width}\" ySize=\"723\"/>"
            f'<DstRect xOff="{offset}" yOff="0" xSize="{width}" ySize="723"/></SimpleSource>'
            for tile, offset, width in sources) + "</VRTRasterBand>"
        for band in range(1, 5))
    mosaic = folder / "mosaic.vrt"
    mosaic.write_text(f'<VRTDataset rasterXSize="934" rasterYSize="723"><SRS>EPSG:26914</SRS>'
                      f"<GeoTransform>{', '.join(map(str, transform.to_gdal()))}</GeoTransform>{bands}</VRTDataset>")
    return mosaic, [tile for tile, _, _ in sources]


def test_tiles_mosaicked_by_a_vrt(segment, write_geotiff, naip_scene, tmp_path):
    """Clicks over a scene delivered as tiles: a GDAL VRT mosaic of the tiles (what gdalbuildvrt
    writes) is the scene, read by windows that may span both tiles, with the original's objects."""
    mosaic, _ = vrt_mosaic(write_geotiff, naip_scene, tmp_path)
    reference_mask, mask = tmp_path / "out" / "reference.tif", tmp_path / "out" / "mosaic_mask.tif"
    assert segment("--mask-out", reference_mask, out=tmp_path / "out" / "reference.gpkg")[0] == 0
    assert segment("--mask-out", mask, scene=mosaic, out=tmp_path / "out" / "mosaic.gpkg")[0] == 0
    with rasterio.open(mask) as ours, rasterio.open(reference_mask) as reference:
        assert ours.transform == reference.transform
        assert reference.read(1).any() and np.array_equal(ours.read(1), reference.read(1))


def test_outputs_never_replace_the_tiles_a_vrt_reads(segment, write_geotiff, naip_scene, tmp_path):
    """--overwrite onto one of a VRT scene's tiles would destroy the scene: refused like the scene itself."""
    mosaic, tiles = vrt_mosaic(write_geotiff, naip_scene, tmp_path)
    before = tiles[0].read_bytes()
    assert_user_error(segment("--mask-out", tiles[0], "--overwrite", "--bands", "1,2,3", scene=mosaic, out=tmp_path / "objects.gpkg"),
                      str(tiles[0]), "is a file the scene reads")
    assert tiles[0].read_bytes() == before and not (tmp_path / "objects.gpkg").exists()


def test_installed_console_script(tmp_path, naip_scene, tiny_checkpoint, few_clicks):
    executable = shutil.which("mst-geo") or str(Path(sys.executable).parent / "mst-geo")
    out = tmp_path / "objects.gpkg"
    done = subprocess.run(
        [executable, "segment", str(naip_scene), "--clicks", str(few_clicks), "-o", str(out),
         "--model", str(tiny_checkpoint), "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(gpd.read_file(out)) == 2
    again = subprocess.run(
        [executable, "segment", str(naip_scene), "--clicks", str(EXAMPLE_CLICKS), "-o", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [f"error: {out}: output exists (pass --overwrite, or overwrite=True in Python, to replace it)"]


# -- bad input -----------------------------------------------------------------------------------
def test_missing_and_corrupt_tiff(segment, tmp_path):
    out_dir = tmp_path / "out"
    assert_user_error(segment(scene=tmp_path / "none.tif"), "none.tif", "raster not found", out_dir=out_dir)
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    assert_user_error(segment(scene=corrupt), "corrupt.tif", "cannot read as a raster", out_dir=out_dir)


def test_raster_without_crs_or_transform(segment, write_geotiff, naip_scene, tmp_path):
    with rasterio.open(naip_scene) as src:
        data = src.read()
    no_crs = write_geotiff("nocrs.tif", data, crs=None)
    assert_user_error(segment(scene=no_crs), "nocrs.tif", "no CRS", out_dir=tmp_path / "out")
    no_transform = write_geotiff("notransform.tif", data, transform=Affine.identity())
    assert_user_error(segment(scene=no_transform), "notransform.tif", "no geotransform", out_dir=tmp_path / "out")


def test_outline_settings_in_the_wrong_unit(segment, write_geotiff, naip_scene, tmp_path):
    """--simplify and --min-area count in the scene CRS's unit: on a scene in degrees, 1 and 25
    would wipe out every outline, so they are refused before the model loads."""
    with rasterio.open(naip_scene) as src:
        data = src.read()
    degrees = write_geotiff("degrees.tif", data, crs="EPSG:4326", transform=Affine(6e-5, 0, -99.186, 0, -4.5e-5, 47.037))
    out_dir = tmp_path / "out"
    assert_user_error(segment("--simplify", "1", scene=degrees), "degrees.tif", "simplify (--simplify) 1 is 16,667 pixels",
                      "the degree", out_dir=out_dir)
    assert_user_error(segment("--min-area", "25", scene=degrees), "degrees.tif", "min_area (--min-area) 25 is at least the whole scene",
                      out_dir=out_dir)
    assert_user_error(segment("--simplify", "600"), "naip_scene.tif", "120 pixels", "the metre", out_dir=out_dir)


def test_a_failed_run_creates_no_output_folders(cli, naip_scene, local_checkpoint, tmp_path):
    empty = write_clicks(tmp_path / "empty.geojson", [])
    deep = tmp_path / "new" / "folders"
    result = cli("segment", naip_scene, "--clicks", empty, "-o", deep / "objects.gpkg", "--mask-out", deep / "m.tif",
                 "--model", local_checkpoint, "-q")
    assert_user_error(result, "empty.geojson", "holds no click points")
    assert not (tmp_path / "new").exists()


def test_bad_clicks_files(segment, tmp_path):
    out_dir = tmp_path / "out"
    inside = pixel_lonlat(95.5, 120.5)
    assert_user_error(segment(clicks=tmp_path / "none.geojson"), "none.geojson", "clicks file not found", out_dir=out_dir)
    not_json = tmp_path / "notjson.geojson"
    not_json.write_text("object,label\npond,positive\n")
    assert_user_error(segment(clicks=not_json), "notjson.geojson", "not valid JSON", out_dir=out_dir)
    empty = write_clicks(tmp_path / "empty.geojson", [])
    assert_user_error(segment(clicks=empty), "empty.geojson", "holds no click points", out_dir=out_dir)
    polygon = {"type": "Feature", "properties": {"object": "field"},
               "geometry": {"type": "Polygon", "coordinates": [[inside, inside, inside, inside]]}}  # fmt: skip
    wrong_type = write_clicks(tmp_path / "polygon.geojson", [point(*inside), polygon])
    assert_user_error(segment(clicks=wrong_type), "polygon.geojson", "feature #2", "Polygon", out_dir=out_dir)
    label = write_clicks(tmp_path / "label.geojson", [point(*inside, label="maybe", object="field")])
    assert_user_error(segment(clicks=label), "label.geojson", "feature #1", "unknown label 'maybe'", out_dir=out_dir)
    corrupt = tmp_path / "corrupt.gpkg"
    corrupt.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = segment(clicks=corrupt)
    assert_user_error(result, "corrupt.gpkg", "cannot read these clicks", out_dir=out_dir)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]  # GDAL's notes print as more lines
    polygons = tmp_path / "polygons.gpkg"
    gpd.GeoDataFrame.from_features([polygon], crs="EPSG:4326").to_file(polygons)
    assert_user_error(segment(clicks=polygons), "polygons.gpkg", "feature #1", "Polygon", out_dir=out_dir)


def test_clicks_outside_the_scene_or_on_nodata(segment, write_geotiff, naip_scene, tmp_path):
    out_dir = tmp_path / "out"
    outside = write_clicks(tmp_path / "outside.geojson", [point(*pixel_lonlat(95.5, 120.5)), point(-99.0, 46.0)])
    assert_user_error(segment(clicks=outside), "outside.geojson", "feature #2", "outside the scene", out_dir=out_dir)
    with rasterio.open(naip_scene) as src:
        data = src.read()
    data[:, :, :200] = 0  # the field (col 120) now lies in a no-data strip
    strip = write_geotiff("strip.tif", data, nodata=0)
    assert_user_error(
        segment(scene=strip, clicks=EXAMPLE_CLICKS), "clicks.geojson", "feature #5", "falls on nodata", out_dir=out_dir
    )


def test_output_directory_problems(segment, tmp_path):
    import os

    locked = Path("/sys") if os.geteuid() == 0 else tmp_path / "locked"  # root ignores file modes
    if locked != Path("/sys"):
        locked.mkdir(mode=0o500)
    result = segment(out=locked / "objects.gpkg")
    assert_user_error(result, str(locked), "cannot write a file in this folder")
    assert not (locked / "objects.gpkg").exists()
    (tmp_path / "file").write_text("")
    blocked = tmp_path / "file" / "mask.tif"
    assert_user_error(segment("--mask-out", blocked, out=tmp_path / "out" / "y.gpkg"), "is a file, not a folder")
    assert not (tmp_path / "out" / "y.gpkg").exists()
    assert_user_error(segment(out=tmp_path / "out" / "objects.shp"), "unknown output format '.shp'")
    assert_user_error(segment(out=tmp_path / "out"), "output is a folder; give a file name such as objects.gpkg")
    assert_user_error(segment("--mask-out", tmp_path / "out" / "mask.png"), "mask.png", "unknown mask format '.png'",
                      out_dir=tmp_path / "out")  # fmt: skip
    for flag, value in (("--simplify", "-1"), ("--simplify", "nan"), ("--min-area", "-inf")):
        assert_user_error(segment(flag, value), f"{flag}) must be a number, 0 or more, got {float(value)!r}")


def test_an_output_format_that_cannot_hold_the_crs_fails_first(segment, tmp_path, write_geotiff, naip_scene):
    """A scene in a custom US-foot UTM: FlatGeobuf would name it by the metre UTM code, so the run
    stops before any object is segmented, and the resume folder is never made."""
    feet = 1 / 0.304800609601219
    wkt = ('PROJCS["custom_tm",GEOGCS["NAD83",DATUM["North_American_Datum_1983",SPHEROID["GRS 1980",6378137,'
           '298.257222101]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],'
           'PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",-99],PARAMETER["scale_factor",0.9996],'
           'PARAMETER["false_easting",1640416.6667],PARAMETER["false_northing",0],UNIT["US survey foot",0.304800609601219]]')
    with rasterio.open(naip_scene) as source:
        pixels = source.read([1, 2, 3])
    scene = write_geotiff("feet.tif", pixels, crs=rasterio.crs.CRS.from_wkt(wkt),
                          transform=Affine(5 * feet, 0, (485899.0 - 500000) * feet + 1640416.6667, 0, -5 * feet,
                                           5209246.0 * feet))
    out = tmp_path / "out" / "objects.fgb"
    assert_user_error(segment(scene=scene, out=out), f"{out}: FlatGeobuf cannot hold the scene's CRS (custom_tm",
                      out_dir=out.parent)


def test_checkpoint_of_another_preset(segment, tmp_path, tiny_checkpoint):
    """Weights of a small-preset network under a card that says mst_tiny: refused by name."""
    small = tmp_path / "small.safetensors"
    save_file(
        {k: v.contiguous() for k, v in create_model("mst_small", depth=2).state_dict().items()},
        small,
        metadata={CARD_KEY: json.dumps(read_card(tiny_checkpoint))},
    )
    code, _, err = segment("--model", small)
    assert_user_error(
        (code, "", err), f"{small}: weights do not fit preset 'mst_tiny': shape differs for ['backbone.",
        out_dir=tmp_path / "out",
    )
    missing = segment("--model", tmp_path / "nothing.safetensors")
    assert_user_error(
        missing, f"{tmp_path / 'nothing.safetensors'}: not found: no such checkpoint file, and not a preset (",
        "nor 'default'",
        out_dir=tmp_path / "out",
    )
    assert load_file(str(small))  # the file itself is a readable safetensors file


def test_bad_bands(segment, tmp_path):
    assert_user_error(segment("--bands", "7,1,2"), "naip_scene.tif", "band 7 requested", out_dir=tmp_path / "out")
    assert_user_error(segment("--bands", "r,g,b"), "naip_scene.tif: no band described or coloured as 'r' (bands: 1 'red', 2 'green', 3 'blue', 4 unnamed)",
                      out_dir=tmp_path / "out")


def test_unavailable_or_unknown_device(segment, tmp_path):
    import torch

    if not torch.cuda.is_available():
        assert_user_error(segment("--device", "cuda"), "device 'cuda' is not available", out_dir=tmp_path / "out")
    assert_user_error(segment("--device", "tpu9"), "unknown device 'tpu9'", out_dir=tmp_path / "out")


def test_a_csv_of_clicks_gives_the_geojsons_polygons(segment, tmp_path):
    clicks = gpd.read_file(EXAMPLE_CLICKS)
    table = tmp_path / "clicks.csv"
    clicks.assign(x=clicks.geometry.x, y=clicks.geometry.y).drop(columns="geometry").to_csv(table, index=False)
    assert segment(clicks=EXAMPLE_CLICKS)[0] == 0
    code, stdout, _ = segment("--clicks-crs", str(clicks.crs), clicks=table, out=tmp_path / "csv" / "objects.gpkg")
    assert code == 0 and "wrote 4 objects" in stdout
    geojson, csv = gpd.read_file(tmp_path / "out" / "objects.gpkg"), gpd.read_file(tmp_path / "csv" / "objects.gpkg")
    assert csv["object"].tolist() == geojson["object"].tolist()
    assert all(a.equals(b) for a, b in zip(csv.geometry, geojson.geometry, strict=True))
