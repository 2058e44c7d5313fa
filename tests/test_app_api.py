"""The web app's JSON API through FastAPI's TestClient on the real NAIP scene (EPSG:26914).

The model is a small randomly initialised MST saved to a temporary checkpoint (``app_checkpoint``): these tests check
the mechanics (coordinates, state, files, errors), not segmentation quality.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from fastapi.testclient import TestClient
from PIL import Image
from shapely.geometry import box, shape

from mst_geo.api import Segmenter, segment_scene
from mst_geo.app.server import create_app

EXAMPLE = Path(__file__).parents[1] / "examples" / "naip_scene.tif"
POND = (351.5, 364.5)  # (row, col) inside a pond of about 40 px
FIELD = (280.5, 699.5)  # inside the scene's largest pond


@pytest.fixture()
def segmenter(app_checkpoint: Path) -> Segmenter:
    with Segmenter(EXAMPLE, model=app_checkpoint) as seg:
        yield seg


@pytest.fixture()
def client(segmenter: Segmenter) -> TestClient:
    return TestClient(create_app(segmenter))


def scene_xy(segmenter: Segmenter, pixel: tuple[float, float]) -> tuple[float, float]:
    """Scene CRS coordinates of a (row, col) pixel position."""
    return segmenter.transform * (pixel[1], pixel[0])


def page_xy(scene_info: dict, pixel: tuple[float, float]) -> tuple[float, float]:
    """Page (Leaflet CRS.Simple lng, lat) coordinates of a (row, col) pixel position."""
    scale = 2 ** scene_info["max_zoom"]
    return pixel[1] / scale, -pixel[0] / scale


def click(client: TestClient, x: float, y: float, **fields) -> dict:
    response = client.post("/api/click", json={"x": x, "y": y, "space": "scene", **fields})
    assert response.status_code == 200, response.text
    return response.json()


def delete(client: TestClient, object_id) -> object:
    """DELETE api/objects as the page sends it: the id in the body (".." is no path segment)."""
    return client.request("DELETE", "/api/objects", json={"object": object_id})


def test_names_no_url_can_hold_and_what_a_save_noted(segmenter: Segmenter, app_checkpoint: Path,
                                                     tmp_path: Path) -> None:
    """An object called ".." deletes (a browser folds the path api/objects/..), an export of a scene
    named in any script downloads (an HTTP header is Latin-1: it failed with a 500), and a save
    whose objects all came out empty says so to the page, not only in the server's terminal."""
    pond = scene_xy(segmenter, POND)
    assert segmenter.load_clicks({"type": "FeatureCollection", "crs": {"type": "name", "properties": {
        "name": "EPSG:26914"}}, "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates": list(pond)},
                                              "properties": {"object": ".."}}]}) == [".."]  # fmt: skip
    client = TestClient(create_app(segmenter))
    segmenter.min_area = segmenter.width * segmenter.height * 25 / 2  # half the scene: every object comes out empty
    saved = client.post("/api/save", json={"path": str(tmp_path / "empty.gpkg")}).json()
    assert saved["n_objects"] == 1 and saved["warnings"] == [
        "1 object(s) came out empty ('..'): add positive clicks, or lower the minimum area (min_area, --min-area)"]
    assert delete(client, "..").json() == {"deleted": ".."} and segmenter.objects() == []

    named = tmp_path / "staw łąka 池塘.tif"
    named.symlink_to(EXAMPLE)
    with Segmenter(named, model=app_checkpoint) as other:
        export = TestClient(create_app(other)).get("/api/export-clicks")
    assert export.status_code == 200
    assert export.headers["content-disposition"] == ('attachment; filename="staw __ka ___clicks.geojson"; '
                                                      "filename*=UTF-8''staw%20%C5%82%C4%85ka%20%E6%B1%A0%E5%A1%98_clicks.geojson")


def test_scene_info_matches_the_raster(client: TestClient) -> None:
    info = client.get("/api/scene").json()
    with rasterio.open(EXAMPLE) as src:
        assert (info["width"], info["height"]) == (src.width, src.height)
        assert info["bounds"] == pytest.approx(list(src.bounds))
        assert info["crs_name"] == "EPSG:26914"
    assert info["bands"] == [1, 2, 3]
    assert info["max_zoom"] == 2
    assert info["page_bounds"] == [[-723 / 4, 0.0], [0.0, 934 / 4]]


def test_page_and_tiles_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "leaflet.js" in page.text
    for asset in ["app.js", "app.css", "vendor/leaflet/leaflet.js", "vendor/leaflet/leaflet.css"]:
        assert client.get(f"/static/{asset}").status_code == 200, asset
    for z, x, y in [(0, 0, 0), (1, 1, 0), (2, 2, 1), (2, 3, 2)]:
        response = client.get(f"/tiles/{z}/{x}/{y}.png")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(response.content))
        assert image.format == "PNG" and image.size == (256, 256)
    missing = client.get("/tiles/3/0/0.png")
    assert missing.status_code == 404 and "zoom runs 0..2" in missing.json()["detail"]
    assert "/api/click" in client.get("/openapi.json").json()["paths"]
    tile_url = client.get("/api/scene").json()["tile_url"]
    assert tile_url.startswith("tiles/{z}/{x}/{y}.png?v=")
    assert client.get(tile_url.format(z=0, x=0, y=0)).status_code == 200


def test_click_in_page_coordinates_returns_a_polygon_inside_the_scene(client: TestClient, segmenter: Segmenter) -> None:
    info = client.get("/api/scene").json()
    x, y = page_xy(info, POND)
    result = client.post("/api/click", json={"x": x, "y": y}).json()
    assert result["object"] == 1 and result["seconds"] > 0
    assert result["feature"]["properties"]["n_clicks"] == 1

    objects = client.get("/api/objects").json()
    assert objects["current"] == 1 and objects["crs"] == "EPSG:26914"
    [feature] = objects["scene"]["features"]
    polygon = shape(feature["geometry"])
    assert not polygon.is_empty and polygon.is_valid
    assert box(*segmenter.bounds).contains(polygon)
    # the object's mask pixels x their ground area (window read possibly decimated): the polygon is those pixels
    mask = segmenter.mask(1)
    pixels_m2 = mask.mask.sum() * abs(mask.transform.a * mask.transform.e)
    assert pixels_m2 > 0
    assert feature["properties"]["area_m2"] == pytest.approx(pixels_m2, rel=0.002)  # ground area: UTM within 0.1 %
    assert polygon.area == pytest.approx(pixels_m2, rel=1e-6)
    # the page copy is the same polygon in page coordinates
    [page_feature] = objects["page"]["features"]
    page_polygon = shape(page_feature["geometry"])
    assert page_polygon.area == pytest.approx(polygon.area / 25 / 16, rel=1e-6)  # 5 m pixels, 4 px per unit
    # the click landed where the page asked, in scene and page coordinates
    [page_click] = objects["page_clicks"]["features"]
    assert page_click["geometry"]["coordinates"] == pytest.approx([x, y])
    clicks = client.get("/api/export-clicks").json()
    assert clicks["features"][0]["geometry"]["coordinates"] == pytest.approx(scene_xy(segmenter, POND))


def test_objects_undo_and_delete(client: TestClient, segmenter: Segmenter) -> None:
    pond = click(client, *scene_xy(segmenter, POND))["object"]
    first = client.get("/api/objects").json()["scene"]["features"][0]["geometry"]
    click(client, *scene_xy(segmenter, (POND[0] + 12, POND[1] + 12)), positive=False)
    assert client.get("/api/objects").json()["scene"]["features"][0]["properties"]["n_clicks"] == 2

    lake = client.post("/api/objects").json()["object"]
    assert lake == pond + 1
    assert click(client, *scene_xy(segmenter, FIELD))["object"] == lake
    features = client.get("/api/objects").json()["scene"]["features"]
    assert [f["properties"]["object"] for f in features] == [pond, lake]

    undo = client.post("/api/undo", json={"object": pond})
    assert undo.status_code == 200 and undo.json()["remaining"]
    after = {f["properties"]["object"]: f for f in client.get("/api/objects").json()["scene"]["features"]}
    assert after[pond]["properties"]["n_clicks"] == 1
    assert shape(after[pond]["geometry"]).equals(shape(first))  # back to the one-click mask

    assert client.post("/api/undo", json={}).json() == {"object": lake, "remaining": False}  # current object
    assert [f["properties"]["object"] for f in client.get("/api/objects").json()["scene"]["features"]] == [pond]
    assert client.get("/api/objects").json()["current"] == pond  # the object clicked before it, not none

    assert delete(client, pond).json() == {"deleted": pond}
    assert client.get("/api/objects").json()["scene"]["features"] == []
    assert delete(client, pond).status_code == 404


def test_undoing_another_objects_only_click_keeps_the_current_one(client: TestClient, segmenter: Segmenter) -> None:
    pond = click(client, *scene_xy(segmenter, POND))["object"]
    client.post("/api/objects")
    click(client, *scene_xy(segmenter, FIELD))
    fresh = client.post("/api/objects").json()["object"]  # N: a new object waits for its first click
    assert client.post("/api/undo", json={"object": pond}).json() == {"object": pond, "remaining": False}
    assert client.get("/api/objects").json()["current"] == fresh


def test_the_version_counts_changes_that_succeeded(client: TestClient, segmenter: Segmenter) -> None:
    """What a second tab polls: clicks, N, undo and delete move it; reads and refused requests do not."""
    start = client.get("/api/version").json()["version"]
    click(client, *scene_xy(segmenter, POND))
    client.get("/api/objects")
    assert client.post("/api/undo", json={"object": 42}).status_code == 404
    assert client.get("/api/version").json()["version"] == start + 1
    client.post("/api/objects")
    assert client.get("/api/objects").json()["version"] == start + 2


def test_objects_loaded_from_a_clicks_file_keep_their_ids(segmenter: Segmenter, tmp_path: Path) -> None:
    """``mst-geo app --clicks``: named and numbered objects of a file can be extended, selected and
    deleted by the ids the file gave them (the output holds mixed ids as text)."""
    pond, field = scene_xy(segmenter, POND), scene_xy(segmenter, FIELD)
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": list(xy)}, "properties": {"object": obj}}
                for xy, obj in ((pond, "pond N/S"), (field, 7))]  # fmt: skip
    path = tmp_path / "clicks.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "crs": {"type": "name", "properties": {
        "name": "urn:ogc:def:crs:EPSG::26914"}}, "features": features}))  # fmt: skip
    assert segmenter.load_clicks(path) == ["pond N/S", 7]
    client = TestClient(create_app(segmenter))
    assert client.get("/api/objects").json()["current"] == 7  # the file's last click: Z would undo it

    listed = client.get("/api/objects").json()["scene"]["features"]
    assert [f["properties"]["object"] for f in listed] == ["pond N/S", "7"]
    assert client.post("/api/objects").json() == {"object": 8}  # past the file's numbers
    assert click(client, *scene_xy(segmenter, (POND[0] + 3, POND[1])), object="pond N/S")["feature"] is not None
    assert client.put("/api/current", json={"object": "7"}).json() == {"object": 7}
    assert click(client, *scene_xy(segmenter, (FIELD[0] + 40, FIELD[1])), positive=False)["object"] == 7
    n_clicks = {f["properties"]["object"]: f["properties"]["n_clicks"]
                for f in client.get("/api/objects").json()["scene"]["features"]}  # fmt: skip
    assert n_clicks == {"pond N/S": 2, "7": 2}
    assert segmenter.add_click(*scene_xy(segmenter, (FIELD[0], FIELD[1] + 40)), object="7") == 7  # not a new "7"
    assert segmenter.objects() == ["pond N/S", 7]
    assert delete(client, "7").json() == {"deleted": 7}
    assert delete(client, "pond N/S").json() == {"deleted": "pond N/S"}
    assert segmenter.objects() == []
    assert client.post("/api/objects").json() == {"object": 9}  # never the file's deleted 7, nor 8 given above


def test_undo_right_after_loading_clicks_undoes_the_files_last_click(segmenter: Segmenter, tmp_path: Path) -> None:
    """``mst-geo app --clicks``, then Z: the last click of the file goes, as it would have before the export."""
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": list(scene_xy(segmenter, xy))},
                 "properties": {"object": obj}} for xy, obj in ((POND, 1), (FIELD, 2), ((FIELD[0] + 30, FIELD[1]), 2))]
    path = tmp_path / "clicks.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "crs": {"type": "name", "properties": {
        "name": "urn:ogc:def:crs:EPSG::26914"}}, "features": features}))  # fmt: skip
    segmenter.load_clicks(path)
    client = TestClient(create_app(segmenter))
    assert client.post("/api/undo").json() == {"object": 2, "remaining": True}
    assert client.post("/api/undo").json() == {"object": 2, "remaining": False}
    assert client.get("/api/objects").json()["current"] == 1  # its only click went: the one clicked before it
    assert client.post("/api/undo").json() == {"object": 1, "remaining": False}
    assert segmenter.objects() == []


def test_save_and_reopen_with_geopandas(client: TestClient, segmenter: Segmenter, tmp_path: Path) -> None:
    click(client, *scene_xy(segmenter, POND))
    client.post("/api/objects")
    click(client, *scene_xy(segmenter, FIELD))
    shown = client.get("/api/objects").json()["scene"]["features"]
    for name in ["objects.gpkg", "objects.geojson"]:
        response = client.post("/api/save", json={"path": str(tmp_path / name)})
        assert response.status_code == 200, response.text
        assert response.json() == {"path": str(tmp_path / name), "n_objects": 2, "warnings": [],
                                   "clicks_exported": False}
        saved = gpd.read_file(tmp_path / name)
        assert saved.crs.to_epsg() == 26914
        assert list(saved.columns) == ["object", "n_clicks", "area", "area_m2", "score", "model", "geometry"]
        assert saved["object"].tolist() == [1, 2]
        for geometry, feature in zip(saved.geometry, shown):
            assert geometry.equals(shape(feature["geometry"]))  # a GeoPackage stores MultiPolygons
    assert sorted(p.name for p in tmp_path.iterdir()) == ["objects.geojson", "objects.gpkg"]


def test_exported_clicks_reproduce_the_polygons_with_segment_scene(
    client: TestClient, segmenter: Segmenter, app_checkpoint: Path, tmp_path: Path
) -> None:
    click(client, *scene_xy(segmenter, POND))
    click(client, *scene_xy(segmenter, (POND[0] - 15, POND[1] + 20)), positive=False)
    client.post("/api/objects")
    click(client, *scene_xy(segmenter, FIELD))
    app_polygons = gpd.GeoDataFrame.from_features(client.get("/api/objects").json()["scene"]["features"])

    export = client.get("/api/export-clicks")
    assert export.headers["content-disposition"] == ('attachment; filename="naip_scene_clicks.geojson"; '
                                                      "filename*=UTF-8''naip_scene_clicks.geojson")
    clicks_path = tmp_path / "clicks.geojson"
    clicks_path.write_text(json.dumps(export.json()))
    out = tmp_path / "segment.gpkg"
    frame = segment_scene(EXAMPLE, clicks_path, out, model=app_checkpoint, progress=False)
    reread = gpd.read_file(out)
    assert reread["object"].tolist() == app_polygons["object"].tolist() == [1, 2]
    assert reread["n_clicks"].tolist() == [2, 1]
    for mine, theirs in zip(app_polygons.geometry, reread.geometry):
        assert mine.equals(theirs)
    assert np.allclose(frame["score"], app_polygons["score"])


def test_bad_requests_get_clear_4xx_and_the_server_keeps_working(
    client: TestClient, segmenter: Segmenter, tmp_path: Path
) -> None:
    nothing_yet = client.post("/api/undo")
    assert nothing_yet.status_code == 404
    assert nothing_yet.json()["detail"] == "no current object: click on the map first"
    fresh = client.post("/api/objects").json()["object"]  # N, then Z or Delete: the new object is cancelled
    assert client.post("/api/undo").json() == {"object": fresh, "remaining": False, "cancelled": True}
    assert client.post("/api/undo").status_code == 404  # nothing current any more
    fresh = client.post("/api/objects").json()["object"]
    assert client.post("/api/objects").json()["object"] == fresh  # N twice: still the one new object
    assert delete(client, fresh).json() == {"deleted": fresh}
    assert client.get("/api/objects").json()["current"] is None

    left, bottom, right, top = segmenter.bounds
    outside = client.post("/api/click", json={"x": right + 100, "y": top, "space": "scene"})
    assert outside.status_code == 400 and "outside" in outside.json()["detail"]
    outside_page = client.post("/api/click", json={"x": -5.0, "y": 1.0})
    assert outside_page.status_code == 400

    middle = {"x": (left + right) / 2, "y": (bottom + top) / 2, "space": "scene"}
    unknown = client.post("/api/click", json={**middle, "object": 42})
    assert unknown.status_code == 404 and "unknown object 42" in unknown.json()["detail"]
    assert client.post("/api/undo", json={"object": 42}).status_code == 404
    assert delete(client, 42).status_code == 404
    assert client.put("/api/current", json={"object": 42}).status_code == 404

    malformed = client.post("/api/click", content=b'{"x": 1, "y": ', headers={"Content-Type": "application/json"})
    assert malformed.status_code == 422 and "not valid JSON" in malformed.json()["detail"]
    missing = client.post("/api/click", json={"x": 1.0})
    assert missing.status_code == 422 and missing.json()["detail"] == "y: Field required"
    wrong_type = client.post("/api/click", json={"x": "east", "y": 1.0})
    assert wrong_type.status_code == 422 and wrong_type.json()["detail"].startswith("x: ")

    # NaN and Infinity (Python's json sends and reads them) are refused as bad input, and the answer
    # is still JSON; true is no object id and no coordinate
    for path, body in [("/api/click", b'{"x": NaN, "y": 1}'), ("/api/click", b"NaN"),
                       ("/api/click", b'{"x": 1, "y": Infinity}'), ("/api/click", b'{"x": true, "y": 1}'),
                       ("/api/click", b'{"x": 1, "y": 1, "object": true}'), ("/api/undo", b'{"object": NaN}'),
                       ("/api/save", b'{"path": NaN}')]:
        refused = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert refused.status_code == 422 and refused.json()["detail"], (path, body)
    assert client.put("/api/current", content=b'{"object": 1e400}',
                      headers={"Content-Type": "application/json"}).status_code == 422
    overflow = client.post("/api/click", json={"x": 1e308, "y": -1e308})  # finite, but no scene point
    assert overflow.status_code == 400 and overflow.json()["detail"] == "click at (1e+308, -1e+308) lies outside the scene"

    nothing = client.post("/api/save", json={"path": str(tmp_path / "empty.gpkg")})
    assert nothing.status_code == 400 and "no objects" in nothing.json()["detail"]

    # the server still works after all of that
    click(client, *scene_xy(segmenter, POND))
    assert len(client.get("/api/objects").json()["scene"]["features"]) == 1


def test_a_scene_cut_short_gives_502_tiles_not_tracebacks(app_checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "scene.tif"
    copy.write_bytes(EXAMPLE.read_bytes())
    with Segmenter(copy, model=app_checkpoint) as segmenter:
        client = TestClient(create_app(segmenter))
        tile_url = client.get("/api/scene").json()["tile_url"].format(z=0, x=0, y=0)
        copy.write_bytes(EXAMPLE.read_bytes()[:4096])  # the file is replaced by its first 4 KiB
        response = client.get(tile_url)
        assert response.status_code == 502
        assert response.json()["detail"].startswith(f"{copy}: cannot read")
        assert client.get("/api/scene").status_code == 200  # the server keeps working


def test_failed_saves_leave_no_file(client: TestClient, segmenter: Segmenter, tmp_path: Path) -> None:
    click(client, *scene_xy(segmenter, POND))
    not_a_dir = tmp_path / "notes.txt"
    not_a_dir.write_text("a file, not a folder")
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o500)
    existing = tmp_path / "existing.gpkg"
    existing.write_bytes(b"keep me")
    loop = tmp_path / "loop.gpkg"
    loop.symlink_to(loop)
    cases = {  # case: (path asked for, the path the error must name, the problem it must state)
        "parent is a file": (not_a_dir / "objects.gpkg", not_a_dir, "is a file, not a folder"),
        "unwritable folder (even for root)": (Path("/proc/mst_geo_objects.gpkg"), "/proc", "cannot write a file in this folder"),
        "a folder": (tmp_path, tmp_path, "output is a folder; give a file name"),
        "unknown format": (tmp_path / "objects.csv", tmp_path / "objects.csv", "unknown output format '.csv'"),
        "exists": (existing, existing, "exists (save with overwrite to replace it)"),
        "a NUL byte": (f"{tmp_path}/a\0b.gpkg", f"{tmp_path}/a\\x00b.gpkg", "not a usable file name"),
        "name too long": (tmp_path / ("x" * 300 + ".gpkg"), tmp_path / ("x" * 300 + ".gpkg"), "not a usable file name"),
        "link to itself": (loop, loop, "not a usable file name"),
        "the scene (never offered for replacing)": (EXAMPLE, EXAMPLE, "is the scene: write the outputs to another file"),
    }
    if not _can_write(read_only):  # root ignores permissions
        cases["read-only folder"] = (read_only / "objects.gpkg", read_only, "cannot write a file in this folder")
    before = sorted(tmp_path.rglob("*"))
    for case, (path, named, problem) in cases.items():
        response = client.post("/api/save", json={"path": str(path)})
        assert 400 <= response.status_code < 500, (case, response.text)
        detail = response.json()["detail"]
        assert "\n" not in detail and "Traceback" not in detail, case
        assert detail.startswith(f"{named}: ") and problem in detail, (case, detail)
    assert client.post("/api/save", json={"path": str(existing)}).status_code == 409  # the page asks, then overwrites
    existing.chmod(0o444)  # read-only: refused even with overwrite (a rename would replace it regardless)
    refused = client.post("/api/save", json={"path": str(existing), "overwrite": True})
    assert refused.status_code == 400 and refused.json()["detail"] == f"{existing}: output is read-only (make it writable to replace it)"
    existing.chmod(0o644)
    assert sorted(tmp_path.rglob("*")) == before
    assert not Path("/proc/mst_geo_objects.gpkg").exists()
    assert existing.read_bytes() == b"keep me"
    ok = client.post("/api/save", json={"path": str(existing), "overwrite": True})
    assert ok.status_code == 200 and len(gpd.read_file(existing)) == 1


def test_save_on_a_full_disk_says_so(client: TestClient, segmenter: Segmenter, full_disk: Path) -> None:
    """GDAL reports a full disk as a symptom ("no such table: gpkg_contents"); the page gets one
    line naming the file and the cause, and no temporary is left behind."""
    click(client, *scene_xy(segmenter, POND))
    with open(full_disk / "filler", "wb", buffering=0) as filler:  # fill it to the last byte
        with pytest.raises(OSError, match="No space left"):
            while True:
                filler.write(b"x" * 1024)
    for name in ["objects.gpkg", "objects.geojson"]:
        response = client.post("/api/save", json={"path": str(full_disk / name)})
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["detail"].startswith(f"{full_disk / name}: cannot write it (No space left on device: ")
    assert [p.name for p in full_disk.iterdir()] == ["filler"]


def _can_write(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
    except PermissionError:
        return False
    (folder / ".probe").unlink()
    return True


def test_polygon_page_transform_is_the_scene_grid(segmenter: Segmenter) -> None:
    """A scene-pixel square maps to the same square in page units (px / 2**max_zoom, y up)."""
    app = create_app(segmenter)
    grid = app.state.session.grid
    square = shapely.box(*(segmenter.transform * (10, 20)), *(segmenter.transform * (30, 0)))
    page = grid.scene_to_page(square)
    assert page.equals(shapely.box(10 / 4, -20 / 4, 30 / 4, 0))


def test_requests_from_other_sites_are_refused(segmenter: Segmenter) -> None:
    """Served on loopback, the app answers its own names only (a DNS-rebinding page gets 403),
    and no page of another origin may change the session (a cross-site form post gets 403)."""
    guarded = TestClient(create_app(segmenter, trusted_hosts=("localhost", "127.0.0.1", "::1")),
                         base_url="http://127.0.0.1:8000")
    assert guarded.get("/api/scene").status_code == 200
    assert guarded.get("/api/scene", headers={"host": "[::1]:8000"}).status_code == 200
    rebound = guarded.get("/api/scene", headers={"host": "evil.example:8000"})
    assert rebound.status_code == 403 and "not 'evil.example:8000'" in rebound.json()["detail"]
    cross = guarded.post("/api/objects", headers={"origin": "http://evil.example"})
    assert cross.status_code == 403 and "http://evil.example" in cross.json()["detail"]
    assert guarded.post("/api/objects", headers={"origin": "http://127.0.0.1:8000"}).status_code == 200


def test_unsaved_changes_are_known(client: TestClient, segmenter: Segmenter, tmp_path: Path) -> None:
    """What a shutdown would lose: clicks since the last save (the CLI warns about them), and what
    only an export keeps: the clicks that ``--clicks`` restarts a session from."""
    session = client.app.state.session
    assert not session.unsaved() and not session.unexported()
    click(client, *scene_xy(segmenter, POND))
    assert session.unsaved()
    saved = client.post("/api/save", json={"path": str(tmp_path / "objects.gpkg")})
    assert saved.status_code == 200 and saved.json()["clicks_exported"] is False  # the page says: Export too
    assert not session.unsaved() and session.unexported()
    assert client.post("/api/undo").status_code == 200 and session.unsaved()
    assert client.get("/api/export-clicks", headers={"sec-fetch-site": "cross-site"}).status_code == 200
    assert session.unsaved()  # another site fetching the export does not count as the user keeping it
    assert client.get("/api/export-clicks").status_code == 200 and not session.unsaved()  # the download keeps them
    assert not session.unexported()
    click(client, *scene_xy(segmenter, POND))
    assert client.get("/api/export-clicks").status_code == 200
    again = client.post("/api/save", json={"path": str(tmp_path / "objects.gpkg"), "overwrite": True})
    assert again.json()["clicks_exported"] is True


def test_a_deleted_objects_number_is_not_given_again(client: TestClient, segmenter: Segmenter) -> None:
    """Object 2 deleted, the next new object is 3: an earlier export's object 2 stays that object;
    a new object cancelled before its first click gives its number back."""
    first = click(client, *scene_xy(segmenter, POND))["object"]
    second = client.post("/api/objects").json()["object"]
    click(client, *scene_xy(segmenter, FIELD))
    assert delete(client, second).status_code == 200
    third = client.post("/api/objects").json()["object"]
    assert (first, second, third) == (1, 2, 3)
    assert client.post("/api/undo").json()["cancelled"]  # N then Z: nothing was clicked on it
    assert client.post("/api/objects").json()["object"] == 3


def test_cancelling_a_new_object_goes_back_to_the_previous_one(client: TestClient, segmenter: Segmenter) -> None:
    """N then Z cancels the new object; the next Z undoes the last click of the object that was
    current before N, as an analyst undoing step by step expects (not "no current object")."""
    click(client, *scene_xy(segmenter, POND))
    click(client, *scene_xy(segmenter, (POND[0] + 2, POND[1] + 2)))
    first = client.get("/api/objects").json()["current"]
    fresh = client.post("/api/objects").json()["object"]
    assert client.post("/api/undo").json() == {"object": fresh, "remaining": False, "cancelled": True}
    assert client.get("/api/objects").json()["current"] == first
    assert client.post("/api/undo").json() == {"object": first, "remaining": True}
    assert len(segmenter.clicks_geojson()["features"]) == 1


def test_a_click_the_polygon_leaves_out_is_reported() -> None:
    """The shipped model draws nothing under a click on the scene's first pixel (its edge): the
    click's reply says so, and the page shows it in the status line."""
    with Segmenter(EXAMPLE) as seg, TestClient(create_app(seg)) as client:
        x, y = seg.transform * (0.3, 0.3)
        corner = client.post("/api/click", json={"x": x, "y": y, "space": "scene"}).json()
        pond_x, pond_y = seg.transform * (POND[1], POND[0])
        client.post("/api/objects")  # a new object for the pond
        pond = client.post("/api/click", json={"x": pond_x, "y": pond_y, "space": "scene"}).json()
    assert corner["uncovered"] == 1 and corner["feature"] is not None
    assert pond["uncovered"] == 0
