"""geo.io: the output contract, atomic GeoPackage/GeoJSON writes and the mask COG on the scene grid."""

from __future__ import annotations

import json
import os

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import CRS
from rasterio.windows import Window
from shapely.geometry import MultiPolygon, Polygon, box

from mst_geo.errors import MSTGeoError, MSTGeoWarning
from mst_geo.geo.io import COLUMNS, MaskOutput, ObjectRecord, polygons_frame, write_outputs

UTM = CRS.from_epsg(26914)
TRANSFORM = Affine(5.0, 0, 485899.0, 0, -5.0, 5209246.0)


@pytest.fixture
def records() -> list[ObjectRecord]:
    return [
        ObjectRecord(object="pond", geometry=box(489900, 5208700, 490100, 5209100), n_clicks=3, score=0.91),
        ObjectRecord(object=2, geometry=MultiPolygon([box(489000, 5208000, 489010, 5208010), box(489020, 5208000, 489030, 5208010)]), n_clicks=1, score=0.5),
        ObjectRecord(object="empty", geometry=MultiPolygon(), n_clicks=1, score=0.0),
    ]


def write_polygons(frame, path, overwrite=False):
    return write_outputs(frame, path, overwrite)


def write_mask_cog(path, width, height, masks, overwrite=False):
    """The mask COG through the one writer, beside a one-row table ``objects.gpkg``."""
    frame = polygons_frame([ObjectRecord(object=1, geometry=box(0, 0, 1, 1), n_clicks=1, score=1.0)], UTM, model="m")
    write_outputs(frame, path.parent / "objects.gpkg", overwrite, MaskOutput(path, UTM, TRANSFORM, width, height, masks))
    return path


def read_only_dir(tmp_path):
    """A directory this process cannot write to (root ignores modes, so use read-only sysfs then)."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        return locked
    return pytest.importorskip("pathlib").Path("/sys")


def test_frame_follows_the_output_contract(records):
    frame = polygons_frame(records, UTM, model="mst_tiny_test")
    assert list(frame.columns) == [*COLUMNS, "geometry"]
    assert frame["object"].tolist() == ["pond", "2", "empty"]  # one column type for GeoPackage
    assert frame["area"].tolist() == [200 * 400, 200, 0]
    assert frame["area_m2"].tolist() == pytest.approx([200 * 400, 200, 0], rel=0.002)  # ground area: UTM within 0.1 %
    assert frame.crs == UTM and (frame["model"] == "mst_tiny_test").all()
    integers = polygons_frame(records[1:2], UTM, model="m")
    assert integers["object"].tolist() == [2]


@pytest.mark.parametrize("name", ["objects.gpkg", "objects.geojson", "objects.fgb"])
def test_polygons_round_trip_and_leave_no_temporary_files(tmp_path, records, name):
    path = write_polygons(polygons_frame(records, UTM, model="m"), tmp_path / name)
    back = gpd.read_file(path)
    assert back.crs == UTM
    assert back["object"].tolist() == ["pond", "2", "empty"]
    assert back["n_clicks"].tolist() == [3, 1, 1]
    assert back.geometry.iloc[0].equals(records[0].geometry)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    if name.endswith(".geojson"):  # the layer is named after the file, not its temporary name
        assert json.loads(path.read_text())["name"] == "objects"


def test_existing_output_needs_overwrite(tmp_path, records):
    frame = polygons_frame(records, UTM, model="m")
    path = write_polygons(frame, tmp_path / "out.gpkg")
    with pytest.raises(MSTGeoError, match="out.gpkg: output exists \\(pass --overwrite"):
        write_polygons(frame.iloc[:1], path)
    assert len(gpd.read_file(path)) == 3
    write_polygons(frame.iloc[:1], path, overwrite=True)
    assert len(gpd.read_file(path)) == 1


def test_bad_output_paths(tmp_path, records):
    frame = polygons_frame(records, UTM, model="m")
    with pytest.raises(MSTGeoError, match="unknown output format '.shp'"):
        write_polygons(frame, tmp_path / "out.shp")
    assert write_polygons(frame, tmp_path / "new" / "dir" / "out.gpkg").is_file()  # directories are created
    (tmp_path / "file").write_text("")
    with pytest.raises(MSTGeoError, match="file: is a file, not a folder"):
        write_polygons(frame, tmp_path / "file" / "out.gpkg")
    (tmp_path / "link").symlink_to(tmp_path / "gone")  # a link to a folder that is not there
    with pytest.raises(MSTGeoError, match="link: is a link to nothing"):
        write_polygons(frame, tmp_path / "link" / "sub" / "out.gpkg")
    locked = read_only_dir(tmp_path)
    with pytest.raises(MSTGeoError, match="cannot write a file in this folder"):
        write_polygons(frame, locked / "out.gpkg")


def test_failed_write_leaves_the_previous_output_untouched(tmp_path, monkeypatch):
    """A write that fails half-way (the COG copy after the staging grid) removes its temp files,
    keeps the previous output and names the target, not the temporary file."""
    path = write_mask_cog(tmp_path / "mask.tif", 64, 64, [(Window(0, 0, 8, 8), np.ones((8, 8), bool))])

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rasterio.shutil, "copy", disk_full)
    with pytest.raises(MSTGeoError, match="cannot write it") as error:
        write_mask_cog(path, 64, 64, [(Window(0, 0, 16, 16), np.ones((16, 16), bool))], overwrite=True)
    assert str(error.value).startswith(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif", "objects.gpkg"]
    with rasterio.open(path) as grid:
        assert (grid.read(1) == 1).sum() == 64


def test_a_mask_of_more_than_255_objects_widens_to_uint16(tmp_path):
    """Every building of a town in one mask: past 255 objects the values no longer fit a byte (the
    run was refused); the mask widens instead, each object still its own value."""
    many = [(Window(k % 64, k // 64, 1, 1), np.ones((1, 1), bool)) for k in range(300)]
    path = write_mask_cog(tmp_path / "mask.tif", 64, 64, many)
    with rasterio.open(path) as grid:
        assert grid.dtypes == ("uint16",)
        data = grid.read(1)
    assert data[299 // 64, 299 % 64] == 300 and len(np.unique(data)) == 301
    few = write_mask_cog(tmp_path / "mask.tif", 64, 64, many[:255], overwrite=True)
    with rasterio.open(few) as grid:
        assert grid.dtypes == ("uint8",) and grid.read(1).max() == 255


def test_mask_cog_on_the_scene_grid(tmp_path):
    pond = np.zeros((50, 40), bool)
    pond[10:30, 5:25] = True
    coarse_field = np.ones((10, 10), bool)  # a 4x decimated window: 40x40 scene pixels
    masks = [(Window(100, 200, 40, 50), pond), (Window(0, 0, 40, 40), coarse_field)]
    path = write_mask_cog(tmp_path / "mask.tif", 934, 723, masks)
    with rasterio.open(path) as grid:
        assert (grid.width, grid.height, grid.crs, grid.transform) == (934, 723, UTM, TRANSFORM)
        assert grid.dtypes == ("uint8",) and grid.profile["tiled"] and grid.overviews(1)
        data = grid.read(1)
    assert (data[210:230, 105:125] == 1).all() and (data == 1).sum() == 400
    assert (data[:40, :40] == 2).all() and (data == 2).sum() == 1600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif", "objects.gpkg"]


def test_decimated_mask_lines_up_with_its_polygon(tmp_path):
    """A mask read at 1/3 resolution lands on the scene grid where its polygon lies: each scene
    pixel takes the value of the coarse pixel under its centre."""
    from rasterio.features import rasterize

    from mst_geo.geo.vectorize import mask_to_polygon

    coarse = np.zeros((10, 10), bool)
    coarse[3:7, 2:6] = True
    window = Window(0, 0, 29, 29)  # 29 scene pixels over 10 mask pixels: not a whole factor
    path = write_mask_cog(tmp_path / "mask.tif", 64, 64, [(window, coarse)])
    with rasterio.open(path) as grid:
        data = grid.read(1)[:29, :29] == 1
    polygon = mask_to_polygon(coarse, TRANSFORM * Affine.scale(2.9, 2.9))
    expected = rasterize([polygon], out_shape=(29, 29), transform=TRANSFORM).astype(bool)
    assert (data == expected).all()


def test_objects_hidden_in_the_mask_are_named_by_their_ids(tmp_path):
    """Integer ids read as written (3), not as numpy's repr (np.int64(3))."""
    records = [ObjectRecord(object=k, geometry=box(0, 0, 1, 1), n_clicks=1, score=1.0) for k in (3, 7)]
    everywhere = (Window(0, 0, 8, 8), np.ones((8, 8), bool))
    mask = MaskOutput(tmp_path / "mask.tif", UTM, TRANSFORM, 8, 8, [everywhere, everywhere])
    with pytest.warns(MSTGeoWarning, match=r"1 object\(s\) have no pixel in the mask .*\(3\)"):
        write_outputs(polygons_frame(records, UTM, model="m"), tmp_path / "objects.gpkg", mask=mask)


def test_an_object_covering_no_pixel_centre_is_named_and_an_empty_one_is_not(tmp_path):
    """A simplified sliver can hold no pixel centre: its polygon is written, the mask has none of
    it, and that is said (it was silent); an empty object is the caller's warning ("came out empty")."""
    sliver = Polygon([(485899.0, 5209246.0), (485919.0, 5209245.0), (485899.0, 5209244.0)])
    records = [ObjectRecord(object=k, geometry=geometry, n_clicks=1, score=0.0)
               for k, geometry in (("sliver", sliver), ("empty", MultiPolygon()))]
    nothing = (Window(0, 0, 8, 8), np.zeros((8, 8), bool))
    mask = MaskOutput(tmp_path / "mask.tif", UTM, TRANSFORM, 8, 8, [nothing, nothing])
    with pytest.warns(MSTGeoWarning, match=r"1 object\(s\) have no pixel in the mask .*\('sliver'\)"):
        write_outputs(polygons_frame(records, UTM, model="m"), tmp_path / "objects.gpkg", mask=mask)


def test_flatgeobuf_keeps_the_objects_order(tmp_path):
    """FlatGeobuf's spatial index would store features in spatial order; the k-th feature must stay
    the k-th object (the mask COG's value k)."""
    records = [ObjectRecord(object=k, geometry=box(489000 + 500 * ((k * 7) % 10), 5208000, 489000 + 500 * ((k * 7) % 10) + 100,
                                                   5208100), n_clicks=1, score=0.5) for k in range(1, 11)]
    path = write_polygons(polygons_frame(records, UTM, model="m"), tmp_path / "many.fgb")
    assert gpd.read_file(path)["object"].tolist() == list(range(1, 11))


def test_geojson_of_a_crs_without_epsg_code_is_written_in_wgs84(tmp_path, records):
    """A GeoJSON file names its CRS by EPSG code only; without one a reader takes the coordinates
    as longitude/latitude, so such a scene's polygons go out in WGS84, with a warning."""
    lcc = CRS.from_proj4("+proj=lcc +lat_1=46 +lat_2=48 +lat_0=47 +lon_0=-99.15 +x_0=1000 +y_0=2000 +ellps=GRS80 +units=m")
    assert lcc.to_epsg() is None
    pond = box(-1000, 500, -800, 900)
    frame = polygons_frame([ObjectRecord(object="pond", geometry=pond, n_clicks=1, score=0.9)], lcc, model="m")
    with pytest.warns(MSTGeoWarning, match=r"objects.geojson: the scene.s CRS has no EPSG code.*WGS84 longitude/latitude \(write .gpkg to keep"):
        path = write_polygons(frame, tmp_path / "objects.geojson")
    back = gpd.read_file(path)
    assert back.crs == CRS.from_epsg(4326)
    assert back.to_crs(lcc).geometry.iloc[0].symmetric_difference(pond).area < 1e-3 * pond.area  # lands where it was
    assert back["area"].iloc[0] == pytest.approx(200 * 400)  # still the scene CRS's area
    kept = write_polygons(frame, tmp_path / "objects.gpkg")  # a GeoPackage keeps the CRS as it is
    assert CRS(gpd.read_file(kept).crs).equals(lcc)


US_FOOT_UTM = CRS.from_wkt(
    'PROJCS["custom_tm",GEOGCS["GCS_NAD83",DATUM["D_North_American_1983",SPHEROID["GRS_1980",6378137,298.257222101]],'
    'PRIMEM["Greenwich",0],UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],'
    'PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",-99],PARAMETER["scale_factor",0.9996],'
    'PARAMETER["false_easting",1640416.6667],PARAMETER["false_northing",0],UNIT["Foot_US",0.304800609601219]]')
LOCAL_GRID = CRS.from_wkt('LOCAL_CS["Site grid",LOCAL_DATUM["local",0],UNIT["metre",1],AXIS["Easting",EAST],'
                          'AXIS["Northing",NORTH]]')


@pytest.mark.parametrize(("crs", "suffix", "problem"), [
    (US_FOOT_UTM, ".fgb", "FlatGeobuf cannot hold the scene's CRS (custom_tm; it would be read as NAD83 / UTM zone 14N)"),
    (LOCAL_GRID, ".geojson", "GeoJSON cannot name the scene's CRS (Site grid: no EPSG code), nor does it reach WGS84"),
])
def test_a_format_that_cannot_hold_the_crs_writes_nothing(tmp_path, crs, suffix, problem):
    """GDAL's FlatGeobuf writer names a custom US-foot UTM by the metre UTM code (the polygons would
    land 11 000 km away), and a local grid has no datum to reach GeoJSON's WGS84: one line, no
    file, and the same check before any work (``check_output_crs``); a GeoPackage holds both."""
    from mst_geo.geo.io import check_output_crs

    frame = polygons_frame([ObjectRecord(object="pond", geometry=box(1000, 2000, 1100, 2100), n_clicks=1, score=0.9)],
                           crs, model="m")
    target = tmp_path / f"objects{suffix}"
    for attempt in (lambda: write_polygons(frame, target), lambda: check_output_crs(target, crs)):
        with pytest.raises(MSTGeoError, match=problem.replace("(", r"\(").replace(")", r"\)")):
            attempt()
    assert list(tmp_path.iterdir()) == []
    kept = write_polygons(frame, tmp_path / "objects.gpkg")
    assert CRS(gpd.read_file(kept).crs).equals(crs)
    check_output_crs(tmp_path / "other.gpkg", crs)


@pytest.mark.parametrize("suffix", [".gpkg", ".fgb"])
def test_a_crs_with_an_unnamed_datum_is_written_with_a_warning(tmp_path, suffix):
    """A scene CRS with an ellipsoid but no datum name (``+proj=utm +ellps=GRS80``) is stored by GDAL
    under the named CRS with its ellipsoid, projection and units: the coordinates are the scene's,
    so the file is written (and said so), not refused; a US-foot variant would move them: refused."""
    from mst_geo.errors import MSTGeoWarning
    from mst_geo.geo.io import check_output_crs, same_coordinates

    unnamed = CRS.from_user_input("+proj=utm +zone=14 +ellps=GRS80 +units=m")
    pond = box(490_000, 5_208_000, 490_100, 5_208_100)
    frame = polygons_frame([ObjectRecord(object="pond", geometry=pond, n_clicks=1, score=0.9)], unnamed, model="m")
    check_output_crs(tmp_path / f"probe{suffix}", unnamed)
    with pytest.warns(MSTGeoWarning, match="its datum unnamed\\) as .*: the same ellipsoid, projection and units"):
        written = write_polygons(frame, tmp_path / f"objects{suffix}")
    back = gpd.read_file(written)
    assert same_coordinates(unnamed, CRS(back.crs)) and back.geometry.iloc[0].equals(pond)
    in_feet = CRS.from_user_input("+proj=utm +zone=14 +ellps=GRS80 +units=us-ft")
    assert not same_coordinates(in_feet, CRS(back.crs))
    assert not same_coordinates(CRS.from_epsg(26914), CRS(back.crs))  # a named datum is never renamed silently
    for moved in ("+pm=paris", "+axis=wsu"):  # another prime meridian, axes the other way: other places
        assert not same_coordinates(CRS.from_user_input(f"+proj=utm +zone=14 +ellps=GRS80 +units=m {moved}"),
                                    CRS(back.crs))


def test_gdal_write_errors_become_os_errors(tmp_path):
    """GDAL names a full disk by its symptom ("database or disk is full") even with space left on
    the device: it is ENOSPC all the same; any other write failure keeps GDAL's words."""
    import errno

    from pyogrio.errors import DataSourceError, FieldError

    from mst_geo.geo.io import _failed_write

    full = _failed_write(tmp_path / "x.gpkg", DataSourceError("sqlite3_exec(INSERT ...) failed: database or disk is full"))
    assert full.errno == errno.ENOSPC
    other = _failed_write(tmp_path / "x.gpkg", FieldError("Cannot write field 'name'\nmore GDAL detail"))
    assert other.errno == errno.EIO and other.strerror == "Cannot write field 'name'"

