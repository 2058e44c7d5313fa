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
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from safetensors.torch import load_file, save_file

from mst_geo.cli import main
from mst_geo.model import create_model
from mst_geo.model.checkpoint import CARD_KEY, read_card

EXAMPLE_CLICKS = Path(__file__).parents[1] / "examples" / "clicks.geojson"


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``mst-geo ARGS`` in-process; returns (exit code, stdout, stderr)."""

    def run(*args) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["mst-geo", *map(str, args)])
        capsys.readouterr()  # drop what the test's own set-up printed (e.g. rasterio warnings)
        with pytest.raises(SystemExit) as exit_info:
            main()
        captured = capsys.readouterr()
        return exit_info.value.code or 0, captured.out, captured.err

    return run


@pytest.fixture
def few_clicks(tmp_path) -> Path:
    """Two objects of one click each (pond, road): the cheap clicks for runs that check plumbing."""
    features = json.loads(EXAMPLE_CLICKS.read_text())["features"]
    return write_clicks(tmp_path / "few.geojson", [features[0], features[7]])


@pytest.fixture
def segment(cli, naip_scene, tiny_checkpoint, tmp_path, few_clicks):
    """``mst-geo segment`` with the tiny checkpoint; scene, clicks (default: few_clicks), output overridable."""

    def run(*extra, scene=naip_scene, clicks=few_clicks, out=tmp_path / "out" / "objects.gpkg"):
        out.parent.mkdir(exist_ok=True)
        return cli("segment", scene, "--clicks", clicks, "-o", out, "--model", tiny_checkpoint, "-q", *extra)

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
def test_example_scene_and_clicks(segment, tmp_path):
    out = tmp_path / "out" / "objects.gpkg"
    mask = tmp_path / "out" / "mask.tif"
    code, stdout, _ = segment("--mask-out", mask, "--simplify", "2.5", "--min-area", "50", clicks=EXAMPLE_CLICKS)
    assert code == 0 and f"wrote 4 objects to {out}" in stdout
    frame = gpd.read_file(out)
    assert frame["object"].tolist() == ["pond", "field", "road", "farm building"]
    assert frame["n_clicks"].tolist() == [4, 3, 3, 2]
    assert frame.crs.to_epsg() == 26914 and (frame["model"] == "mst_tiny_random").all()
    assert set(frame.columns) >= {"object", "n_clicks", "area", "area_m2", "score", "model"}
    with rasterio.open(mask) as grid:
        assert (grid.width, grid.height, grid.dtypes[0]) == (934, 723, "uint8")
        assert set(np.unique(grid.read(1))) <= {0, 1, 2, 3, 4}
    assert sorted(p.name for p in out.parent.iterdir()) == ["mask.tif", "objects.gpkg"]


def test_geojson_output_and_overwrite(segment, tmp_path):
    out = tmp_path / "out" / "objects.geojson"
    assert segment(out=out)[0] == 0
    assert json.loads(out.read_text())["type"] == "FeatureCollection"
    before = out.read_bytes()
    assert_user_error(segment(out=out), str(out), "output exists (pass --overwrite")
    assert out.read_bytes() == before
    assert segment("--overwrite", out=out)[0] == 0


@pytest.mark.parametrize("how", ["crs member", "--clicks-crs"])
def test_clicks_in_another_crs_work(segment, tmp_path, few_clicks, how):
    """Web Mercator clicks give the same objects as the same clicks in WGS84."""
    wgs84 = json.loads(few_clicks.read_text())
    to_mercator = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    for feature in wgs84["features"]:
        feature["geometry"]["coordinates"] = list(to_mercator.transform(*feature["geometry"]["coordinates"]))
    extra = {"crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}} if how == "crs member" else {}
    clicks = write_clicks(tmp_path / "mercator.geojson", wgs84["features"], **extra)
    flags = ["--clicks-crs", "EPSG:3857"] if how == "--clicks-crs" else []
    mercator_out = tmp_path / "out" / "mercator.gpkg"
    assert segment(*flags, clicks=clicks, out=mercator_out)[0] == 0
    assert segment()[0] == 0
    ours, reference = gpd.read_file(mercator_out), gpd.read_file(tmp_path / "out" / "objects.gpkg")
    assert ours["object"].tolist() == reference["object"].tolist()
    assert ours["area"].tolist() == pytest.approx(reference["area"].tolist(), rel=0.02)


@pytest.mark.parametrize(
    ("name", "make", "bands"),
    [
        ("grey.tif", lambda px: px[3:4], None),  # one band (near infrared)
        ("uint16.tif", lambda px: px.astype(np.uint16) * 16 + 7, None),  # 16-bit, 12-bit values
        ("sentinel_like.tif", lambda px: np.concatenate([px, px // 2, px // 3, px[:1] // 4]), "1,2,3"),  # 13 bands
        ("sentinel_like.tif", lambda px: np.concatenate([px, px // 2, px // 3, px[:1] // 4]), "4,1,2"),
    ],
)
def test_other_band_layouts_work(segment, write_geotiff, naip_scene, tmp_path, name, make, bands):
    with rasterio.open(naip_scene) as src:
        data = np.ascontiguousarray(make(src.read()))
    scene = write_geotiff(name, data, nodata=0)
    extra = ["--bands", bands] if bands else []
    code, stdout, _ = segment(*extra, scene=scene)
    assert code == 0, stdout
    assert len(gpd.read_file(tmp_path / "out" / "objects.gpkg")) == 2


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
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [f"error: {out}: output exists (pass --overwrite to replace it)"]


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
    assert_user_error(result, str(locked), "output directory not writable")
    assert not (locked / "objects.gpkg").exists()
    (tmp_path / "file").write_text("")
    blocked = tmp_path / "file" / "mask.tif"
    assert_user_error(segment("--mask-out", blocked, out=tmp_path / "out" / "y.gpkg"), "cannot create the output directory")
    assert not (tmp_path / "out" / "y.gpkg").exists()
    assert_user_error(segment(out=tmp_path / "out" / "objects.shp"), "unknown output format '.shp'")


def test_checkpoint_of_another_preset(segment, tmp_path, tiny_checkpoint):
    """Weights of a small-preset network under a card that says mst_tiny: refused by name."""
    small = tmp_path / "small.safetensors"
    save_file(
        {k: v.contiguous() for k, v in create_model("mst_small", depth=2).state_dict().items()},
        small,
        metadata={CARD_KEY: json.dumps(read_card(tiny_checkpoint))},
    )
    code, _, err = segment("--model", small)
    assert_user_error((code, "", err), "small.safetensors", "mst_tiny", out_dir=tmp_path / "out")
    missing = segment("--model", tmp_path / "nothing.safetensors")
    assert_user_error(missing, "nothing.safetensors", out_dir=tmp_path / "out")
    assert load_file(str(small))  # the file itself is a readable safetensors file


def test_bad_bands(segment, tmp_path):
    assert_user_error(segment("--bands", "7,1,2"), "naip_scene.tif", "band 7 requested", out_dir=tmp_path / "out")
    assert_user_error(segment("--bands", "r,g,b"), "--bands must be", out_dir=tmp_path / "out")


def test_unavailable_or_unknown_device(segment, tmp_path):
    import torch

    if not torch.cuda.is_available():
        assert_user_error(segment("--device", "cuda"), "device 'cuda' is not available", out_dir=tmp_path / "out")
    assert_user_error(segment("--device", "tpu9"), "unknown device 'tpu9'", out_dir=tmp_path / "out")
