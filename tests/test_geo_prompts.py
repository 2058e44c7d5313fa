"""geo.prompts: the clicks GeoJSON contract against the real NAIP scene's georeferencing."""

from __future__ import annotations

import json
import re
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
import rasterio
from pyproj import Transformer

from mst_geo.errors import MSTGeoError, MSTGeoWarning
from mst_geo.geo.raster import SceneRaster
from mst_geo.geo.prompts import (
    PixelMapper,
    clicks_from_geojson,
    clicks_to_geojson,
    parse_label,
    read_clicks,
)


@pytest.fixture(scope="module")
def mapper(naip_scene) -> PixelMapper:
    with rasterio.open(naip_scene) as src:
        return PixelMapper(src.crs, src.transform, src.width, src.height)


def lonlat_of_pixel(row: float, col: float, crs: str = "EPSG:4326") -> tuple[float, float]:
    """Map position of a NAIP scene pixel (5 m grid, EPSG:26914) in another CRS."""
    x, y = 485899.0 + 5.0 * col, 5209246.0 - 5.0 * row
    return Transformer.from_crs("EPSG:26914", crs, always_xy=True).transform(x, y)


def collection(*points, crs=None) -> dict:
    """A FeatureCollection of Point features from (x, y, properties) triples."""
    data = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]}, "properties": props}
            for x, y, props in points
        ],
    }
    if crs:
        data["crs"] = {"type": "name", "properties": {"name": crs}}
    return data


@pytest.mark.parametrize("value", ["positive", "POS", 1, True, "true", "fg", "1", "foreground", np.True_,
                                   np.int64(1), np.float64(1.0)])  # numpy: cells of a GeoDataFrame
def test_positive_labels(value):
    assert parse_label(value) is True


@pytest.mark.parametrize("value", ["negative", "neg", 0, False, "false", "bg", "0", 0.0, np.False_, np.int32(0)])
def test_negative_labels(value):
    assert parse_label(value) is False


@pytest.mark.parametrize("value", ["maybe", 2, None, [1]])
def test_unknown_labels(value):
    with pytest.raises(ValueError, match="unknown label"):
        parse_label(value)


def test_wgs84_clicks_land_on_their_pixels_grouped_and_ordered(mapper):
    pond = lonlat_of_pixel(60.5, 850.5)
    field = lonlat_of_pixel(95.5, 120.5)
    grass = lonlat_of_pixel(60.5, 880.5)
    data = collection(
        (*grass, {"label": "negative", "object": "pond", "order": 2}),
        (*field, {"label": 1, "object": 7}),
        (*pond, {"label": "positive", "object": "pond", "order": 1}),
    )
    objects = clicks_from_geojson(data, mapper)
    assert list(objects) == ["pond", 7]  # first appearance in the file
    first, second = objects["pond"]
    assert (first.row, first.col, first.positive) == (pytest.approx(60.5), pytest.approx(850.5), True)
    assert (second.row, second.col, second.positive) == (pytest.approx(60.5), pytest.approx(880.5), False)
    assert objects[7][0].x == pytest.approx(485899.0 + 5 * 120.5)


def test_default_object_and_file_order(mapper):
    points = [lonlat_of_pixel(row, 400.5) for row in (300.5, 100.5, 200.5)]
    with pytest.warns(MSTGeoWarning, match="3 clicks without a 'label' or 'object' field are read as one object"):
        objects = clicks_from_geojson(collection(*((*p, {}) for p in points)), mapper)
    assert list(objects) == [1]
    assert [click.row for click in objects[1]] == pytest.approx([300.5, 100.5, 200.5])
    assert all(click.positive for click in objects[1])


def test_points_named_but_without_contract_fields_are_announced(mapper):
    """Google Earth's placemarks say "pond negative" in their Name: read as one object of positive
    clicks, as the contract says, and said so, naming the field that is not read."""
    points = [lonlat_of_pixel(row, 400.5) for row in (300.5, 100.5)]
    named = collection((*points[0], {"Name": "pond"}), (*points[1], {"Name": "pond negative"}))
    with pytest.warns(MSTGeoWarning, match=r"2 clicks .* positive clicks; its 'Name' field is not read"):
        clicks_from_geojson(named, mapper)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MSTGeoWarning)  # one click, or any contract field: nothing to say
        clicks_from_geojson(collection((*points[0], {"Name": "pond"})), mapper)
        clicks_from_geojson(collection((*points[0], {"object": "pond"}), (*points[1], {"label": 0, "object": 2})), mapper)


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:26914", "EPSG:32614"])
def test_crs_member_is_honoured(mapper, crs):
    x, y = lonlat_of_pixel(400.5, 300.5, crs)
    objects = clicks_from_geojson(collection((x, y, {}), crs=f"urn:ogc:def:crs:{crs.replace(':', '::')}"), mapper)
    assert (objects[1][0].row, objects[1][0].col) == (pytest.approx(400.5, abs=1e-6), pytest.approx(300.5, abs=1e-6))


def test_exported_clicks_name_their_crs_exactly():
    """A CRS that only loosely matches an EPSG code (UTM on GRS80 without a datum: pyproj's default
    confidence calls it EPSG:6369, a Mexican datum) is written as its WKT; an exact one by code."""
    from pyproj import CRS

    from mst_geo.geo.prompts import crs_member, parse_crs

    loose = CRS.from_proj4("+proj=utm +zone=14 +ellps=GRS80 +units=m")
    assert loose.to_epsg() == 6369
    name = crs_member(loose)["properties"]["name"]
    assert name.startswith("PROJCRS") and parse_crs(name).equals(loose)
    assert crs_member(CRS.from_epsg(26914))["properties"]["name"] == "urn:ogc:def:crs:EPSG::26914"


def test_clicks_crs_argument_overrides_the_file(mapper):
    x, y = lonlat_of_pixel(10.5, 20.5, "EPSG:3857")
    objects = clicks_from_geojson(collection((x, y, {})), mapper, clicks_crs="EPSG:3857")
    assert (objects[1][0].row, objects[1][0].col) == (pytest.approx(10.5, abs=1e-6), pytest.approx(20.5, abs=1e-6))


def test_round_trip_through_the_contract_is_exact(mapper):
    data = collection(
        (*lonlat_of_pixel(60.5, 850.5), {"object": "pond"}),
        (*lonlat_of_pixel(90.5, 870.5), {"object": "pond", "label": "bg"}),
        (*lonlat_of_pixel(624.5, 260.5), {"object": 3}),
    )
    objects = clicks_from_geojson(data, mapper)
    exported = json.loads(json.dumps(clicks_to_geojson(objects, mapper.scene_crs)))
    assert exported["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::26914"
    assert clicks_from_geojson(exported, mapper) == objects


def test_file_errors_name_the_file(tmp_path, mapper):
    with pytest.raises(MSTGeoError, match="clicks file not found") as missing:
        read_clicks(tmp_path / "none.geojson", mapper)
    assert "none.geojson" in str(missing.value)
    broken = tmp_path / "broken.geojson"
    broken.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(MSTGeoError, match="broken.geojson: not valid JSON"):
        read_clicks(broken, mapper)
    empty = tmp_path / "empty.geojson"
    empty.write_text(json.dumps(collection()))
    with pytest.raises(MSTGeoError, match="empty.geojson: holds no click points"):
        read_clicks(empty, mapper)
    listing = tmp_path / "list.geojson"
    listing.write_text("[1, 2]")
    with pytest.raises(MSTGeoError, match="not a GeoJSON FeatureCollection"):
        read_clicks(listing, mapper)
    (tmp_path / "folder.geojson").mkdir()
    with pytest.raises(MSTGeoError, match="folder.geojson: is a folder, not a clicks file"):
        read_clicks(tmp_path / "folder.geojson", mapper)


@pytest.mark.parametrize("crs", ["EPSG:5773", "EPSG:4978"])
def test_a_crs_that_places_nothing_on_the_map_is_refused(mapper, crs):
    """A height datum or an Earth-centred frame given as the clicks' CRS: one line, not clicks
    read as something they are not."""
    with pytest.raises(MSTGeoError, match=f"CRS '{crs}' .* does not place points on the map"):
        clicks_from_geojson(collection((*lonlat_of_pixel(300.5, 400.5), {})), mapper, clicks_crs=crs)


def test_a_byte_order_mark_is_read_past(tmp_path, mapper):
    """Notepad and other Windows editors save UTF-8 with a BOM; the clicks are the same."""
    text = json.dumps(collection((*lonlat_of_pixel(300.5, 400.5), {})))
    plain, marked = tmp_path / "plain.geojson", tmp_path / "bom.geojson"
    plain.write_text(text, encoding="utf-8")
    marked.write_text(text, encoding="utf-8-sig")
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    assert read_clicks(marked, mapper) == read_clicks(plain, mapper)


def test_feature_errors_name_the_feature(mapper):
    inside = lonlat_of_pixel(100.5, 100.5)
    line = collection((*inside, {}))
    line["features"].append(
        {"type": "Feature", "id": "road", "geometry": {"type": "LineString", "coordinates": [inside, inside]}}
    )
    with pytest.raises(MSTGeoError, match=r"feature #2 \(id 'road'\) has LineString; clicks must be Point"):
        clicks_from_geojson(line, mapper, source="c.geojson")
    empty = collection((*inside, {}))
    empty["features"][0]["geometry"]["coordinates"] = []  # GDAL writes an empty point so
    with pytest.raises(MSTGeoError, match=r"c.geojson: feature #1 is a Point without x and y coordinates, got \[\]"):
        clicks_from_geojson(empty, mapper, source="c.geojson")
    with pytest.raises(MSTGeoError, match=r"c.geojson: feature #1 \(object 'lake'\): unknown label 'yes'"):
        clicks_from_geojson(collection((*inside, {"label": "yes", "object": "lake"})), mapper, source="c.geojson")
    with pytest.raises(MSTGeoError, match="object id must be an integer or a string"):
        clicks_from_geojson(collection((*inside, {"object": 1.5})), mapper)
    far = lonlat_of_pixel(-50, 100)
    with pytest.raises(MSTGeoError, match=r"feature #2: click at \(.*\) lies outside the scene"):
        clicks_from_geojson(collection((*inside, {}), (*far, {})), mapper)
    with pytest.raises(MSTGeoError, match="unknown CRS 'EPSG:999999'"):
        clicks_from_geojson(collection((*inside, {})), mapper, clicks_crs="EPSG:999999")


def test_clicks_on_nodata_are_refused(naip_scene, write_geotiff):
    with rasterio.open(naip_scene) as src:
        data = src.read()
    data[:, :, :100] = 0  # the scene's left strip becomes no-data, as at a NAIP quarter-quad edge
    with SceneRaster(write_geotiff("strip.tif", data, nodata=0)) as raster:
        on_data = PixelMapper(raster.crs, raster.transform, raster.width, raster.height, is_valid=raster.is_valid)
        clicks = collection((*lonlat_of_pixel(10.5, 200.5), {}), (*lonlat_of_pixel(10.5, 50.5), {"object": "lake"}))
        with pytest.raises(MSTGeoError, match=r"feature #2 \(object 'lake'\): click at .* falls on nodata"):
            clicks_from_geojson(clicks, on_data)


def test_a_click_without_its_object_id_among_named_ones_is_said(mapper):
    """Clicks that name no object join object 1 (the contract's default for a file without the
    field); among clicks that name theirs, a blank cell is more often forgotten than meant: said."""
    pond, grass = lonlat_of_pixel(60.5, 850.5), lonlat_of_pixel(95.5, 120.5)
    with pytest.warns(MSTGeoWarning, match=r"^clicks: 1 click\(s\) have no object id and join object 1 \(feature #2\)"):
        objects = clicks_from_geojson(collection((*pond, {"object": "pond"}), (*grass, {"object": None})), mapper)
    assert list(objects) == ["pond", 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", MSTGeoWarning)  # no field at all: one object, as the contract says
        assert list(clicks_from_geojson(collection((*pond, {"label": 1}), (*grass, {"label": 1})), mapper)) == [1]


def test_a_contract_field_spelled_otherwise_is_refused_where_it_would_change_the_clicks(mapper, tmp_path):
    """Unread, a ``labels`` field would make its negative clicks positive and an ``object_id`` field
    would merge its objects into one: refused, naming the field and the name to give it. The same
    spellings pass where nothing is lost (all positive; ids one per point, as a GIS's OBJECTID)."""
    pond, grass, road = lonlat_of_pixel(60.5, 850.5), lonlat_of_pixel(95.5, 120.5), lonlat_of_pixel(300.5, 400.5)
    misspelt = collection((*pond, {"Labels": "positive", "object_id": "pond"}),
                          (*grass, {"Labels": "negative", "object_id": "pond"}),
                          (*road, {"Labels": "positive", "object_id": "road"}))
    path = tmp_path / "clicks.geojson"
    path.write_text(json.dumps(misspelt))
    with pytest.raises(MSTGeoError, match=re.escape(f"{path}: field 'Labels' holds negative clicks but is not read: "
                                                    "name it 'label'")):
        read_clicks(path, mapper)
    for feature in misspelt["features"]:
        feature["properties"]["label"] = feature["properties"].pop("Labels")
    with pytest.raises(MSTGeoError, match="field 'object_id' groups the clicks but is not read, so they make one "
                                          "object: name it 'object' if it names each click's object"):
        clicks_from_geojson(misspelt, mapper)
    for feature in misspelt["features"]:
        feature["properties"]["object"] = feature["properties"].pop("object_id")
    assert {obj: len(clicks) for obj, clicks in clicks_from_geojson(misspelt, mapper).items()} == {"pond": 2, "road": 1}
    appended = collection(*((*point, {"label": label, "OBJECTID": 1, "type": "click"})  # layers appended: ids repeat
                            for point, label in ((pond, 1), (grass, 0), (road, 1))))
    assert [click.positive for click in clicks_from_geojson(appended, mapper)[1]] == [True, False, True]
    positives = collection((*pond, {"labels": "positive", "id": 7}), (*grass, {"labels": "fg", "id": 8}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MSTGeoWarning)  # no contract field at all: said, and read as the contract says
        assert [click.positive for click in clicks_from_geojson(positives, mapper)[1]] == [True, True]


def test_coordinates_and_orders_that_are_not_numbers_are_said(mapper):
    pond = lonlat_of_pixel(60.5, 850.5)
    with pytest.raises(MSTGeoError, match=re.escape("feature #1: coordinates must be finite numbers, got [nan, ")):
        clicks_from_geojson(collection((float("nan"), pond[1], {})), mapper)
    with pytest.raises(MSTGeoError, match=re.escape("feature #1: order 'nan' is not a finite number")):
        clicks_from_geojson(collection((*pond, {"order": "nan"})), mapper)


def test_clicks_in_the_wrong_crs_fall_outside(mapper):
    """UTM metres read as degrees: far away, so the error says so rather than clicking anywhere,
    and gives the scene's extent in the CRS the clicks were read in, which shows the mix-up."""
    x, y = 485899.0 + 5 * 100, 5209246.0 - 5 * 100
    west, south = lonlat_of_pixel(723, 0)
    east, north = lonlat_of_pixel(0, 934)
    with pytest.raises(MSTGeoError, match="lies outside the scene") as error:
        clicks_from_geojson(collection((x, y, {})), mapper)
    spans = re.search(r"spans x (\S+)\.\.(\S+), y (\S+)\.\.(\S+) in EPSG:4326\)", str(error.value))
    assert [float(v) for v in spans.groups()] == pytest.approx([west, east, south, north], abs=2e-3)
    assert str(error.value).endswith("these are not degrees: name the clicks' CRS (--clicks-crs; crs= in add_click, "
                                     "clicks_crs= in load_clicks; or the file's 'crs' member)")
    lon, lat = lonlat_of_pixel(100, 100)
    with pytest.raises(MSTGeoError, match="lies outside the scene") as error:
        clicks_from_geojson(collection((lat, lon, {})), mapper)  # latitude first, as some tools write them
    assert str(error.value).endswith("longitude and latitude look swapped (GeoJSON gives longitude first)")


@pytest.mark.filterwarnings("ignore:'crs' was not provided")  # the Shapefile has none on purpose
def test_vector_point_layers_read_like_geojson(tmp_path, mapper):
    """A Shapefile of clicks (real-valued object field, a null order, no CRS: WGS84) and a
    GeoPackage layer in UTM give the objects the same clicks give as GeoJSON."""
    pond, grass, field = lonlat_of_pixel(60.5, 850.5), lonlat_of_pixel(60.5, 880.5), lonlat_of_pixel(95.5, 120.5)
    rows = [(*grass, {"label": "negative", "object": 1, "order": 2}),
            (*field, {"label": "positive", "object": 2, "order": 0}),
            (*pond, {"label": "positive", "object": 1, "order": 1})]  # fmt: skip
    expected = clicks_from_geojson(collection(*rows), mapper)
    frame = gpd.GeoDataFrame.from_features(collection(*rows)["features"])
    frame["object"] = frame["object"].astype(float)
    frame.loc[1, "order"] = None
    frame.to_file(tmp_path / "clicks.shp")
    assert read_clicks(tmp_path / "clicks.shp", mapper) == expected
    frame.loc[2, "label"] = None  # an empty cell: missing, so positive, as the pond's click is
    frame.geometry = [shapely.MultiPoint([point]) for point in frame.geometry]  # how some tools save points
    frame.to_file(tmp_path / "multi.shp")
    assert read_clicks(tmp_path / "multi.shp", mapper) == expected
    frame.set_crs("EPSG:4326").to_crs("EPSG:26914").to_file(tmp_path / "clicks.gpkg", layer="clicks")
    utm = read_clicks(tmp_path / "clicks.gpkg", mapper)
    assert list(utm) == list(expected)
    for obj in expected:
        assert [c.positive for c in utm[obj]] == [c.positive for c in expected[obj]]
        assert [(c.row, c.col) for c in utm[obj]] == [pytest.approx((c.row, c.col)) for c in expected[obj]]


def test_field_names_in_any_case_and_one_point_multipoints(tmp_path, mapper):
    """ArcGIS writes LABEL/OBJECT/ORDER: read as label/object/order (they were ignored, every click
    positive and one object); two names of one field are refused; a GeoJSON MultiPoint of one
    point is that point, as it already was from a GeoPackage."""
    pond, grass, field = lonlat_of_pixel(60.5, 850.5), lonlat_of_pixel(60.5, 880.5), lonlat_of_pixel(95.5, 120.5)
    rows = [(*grass, {"label": "negative", "object": 1, "order": 2}),
            (*field, {"label": "positive", "object": 2, "order": 0}),
            (*pond, {"label": "positive", "object": 1, "order": 1})]  # fmt: skip
    expected = clicks_from_geojson(collection(*rows), mapper)
    upper = [(x, y, {key.upper(): value for key, value in props.items()}) for x, y, props in rows]
    assert clicks_from_geojson(collection(*upper), mapper) == expected
    frame = gpd.GeoDataFrame.from_features(collection(*upper)["features"], crs="EPSG:4326")
    frame.rename(columns={"LABEL": "Label"}).to_file(tmp_path / "arcgis.shp")
    assert read_clicks(tmp_path / "arcgis.shp", mapper) == expected
    both = collection((*pond, {"label": "positive", "Label": "negative"}))
    with pytest.raises(MSTGeoError, match=r"feature #1: fields 'label' and 'Label' both give the click's label"):
        clicks_from_geojson(both, mapper)
    multi = collection(*rows)
    for feature in multi["features"]:
        feature["geometry"] = {"type": "MultiPoint", "coordinates": [feature["geometry"]["coordinates"]]}
    assert clicks_from_geojson(multi, mapper) == expected
    multi["features"][0]["geometry"]["coordinates"].append(list(field))
    with pytest.raises(MSTGeoError, match="feature #1 .*has MultiPoint; clicks must be Point"):
        clicks_from_geojson(multi, mapper)
    with pytest.raises(MSTGeoError, match=r"feature #1 \(object 1\): order 'b' is not a finite number"):
        clicks_from_geojson(collection((*pond, {"object": 1, "order": "b"})), mapper)


def test_vector_file_errors_name_the_file(tmp_path, mapper):
    with pytest.raises(MSTGeoError, match="clicks file not found") as missing:
        read_clicks(tmp_path / "none.gpkg", mapper)
    assert "none.gpkg" in str(missing.value)
    garbage = tmp_path / "garbage.gpkg"
    garbage.write_bytes(b"\x00\x01not a geopackage" * 10)
    with pytest.raises(MSTGeoError, match="garbage.gpkg: cannot read these clicks"):
        read_clicks(garbage, mapper)
    empty = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame({"label": []}, geometry=gpd.GeoSeries([], crs="EPSG:4326")).to_file(empty)
    with pytest.raises(MSTGeoError, match="empty.gpkg: holds no click points"):
        read_clicks(empty, mapper)
    layers = tmp_path / "layers.gpkg"
    points = gpd.GeoDataFrame(geometry=[shapely.Point(lonlat_of_pixel(100.5, 100.5))], crs="EPSG:4326")
    points.to_file(layers, layer="monday")
    points.to_file(layers, layer="tuesday")
    with pytest.raises(MSTGeoError, match=r"layers.gpkg: holds 2 layers with features \(monday, tuesday\); keep"):
        read_clicks(layers, mapper)


def test_the_one_layer_with_features_is_read(tmp_path, mapper):
    """A GPS's GPX file always has five layers, four of them empty: its waypoints are the clicks
    (the file was refused as holding 5 layers; a waypoint's time then broke the JSON); so is a
    GeoPackage's one non-empty layer."""
    lon, lat = lonlat_of_pixel(100.5, 100.5)
    gpx = tmp_path / "waypoints.gpx"
    gpx.write_text('<?xml version="1.0"?>\n<gpx version="1.1" creator="t" xmlns="http://www.topografix.com/GPX/1/1">'
                   f'<wpt lat="{lat!r}" lon="{lon!r}"><time>2024-06-01T10:30:00Z</time><name>001</name></wpt></gpx>\n')
    (clicks,) = read_clicks(gpx, mapper).values()
    assert [(c.row, c.col) for c in clicks] == [pytest.approx((100.5, 100.5), abs=1e-6)]
    track = tmp_path / "walk.gpx"  # waypoints and the track logged on the way: the waypoints are the clicks
    track.write_text(gpx.read_text().replace("</gpx>", f'<trk><trkseg><trkpt lat="{lat!r}" lon="{lon!r}"/>'
                                             f'<trkpt lat="{lat!r}" lon="{lon!r}"/></trkseg></trk></gpx>'))
    assert sum(len(clicks) for clicks in read_clicks(track, mapper).values()) == 1
    both = tmp_path / "both.gpkg"
    gpd.GeoDataFrame({"object": ["pond"]}, geometry=[shapely.Point(lon, lat)], crs="EPSG:4326").to_file(both, layer="clicks")
    gpd.GeoDataFrame({"object": []}, geometry=gpd.GeoSeries([], crs="EPSG:4326")).to_file(both, layer="spare")
    assert list(read_clicks(both, mapper)) == ["pond"]
    styled = tmp_path / "styled.gpkg"  # QGIS's "save style to database" adds a table without geometry
    gpd.GeoDataFrame({"object": ["pond"]}, geometry=[shapely.Point(lon, lat)], crs="EPSG:4326").to_file(styled, layer="clicks")
    pyogrio.write_dataframe(pd.DataFrame({"styleName": ["default"]}), styled, layer="layer_styles")
    assert list(read_clicks(styled, mapper)) == ["pond"]
    hollow = tmp_path / "hollow.gpkg"  # no layer holds a feature: said as such, not as "2 layers with features"
    for layer in ("a", "b"):
        gpd.GeoDataFrame({"object": []}, geometry=gpd.GeoSeries([], crs="EPSG:4326")).to_file(hollow, layer=layer)
    with pytest.raises(MSTGeoError, match="hollow.gpkg: holds no click points"):
        read_clicks(hollow, mapper)


def test_null_properties_are_missing_and_ids_must_differ_as_text(mapper):
    inside, other = lonlat_of_pixel(100.5, 100.5), lonlat_of_pixel(150.5, 300.5)
    objects = clicks_from_geojson(collection((*inside, {"label": None, "object": None, "order": None}),
                                             (*other, {"label": "", "object": "", "order": ""})), mapper)  # fmt: skip
    assert list(objects) == [1] and objects[1][0].positive and objects[1][1].positive
    with pytest.raises(MSTGeoError, match="object ids 7 and '7' read the same"):
        clicks_from_geojson(collection((*inside, {"object": 7}), (*other, {"object": "7"})), mapper)


def test_flatgeobuf_clicks_keep_their_order_or_are_refused(tmp_path, mapper):
    """FlatGeobuf written with its spatial index (GDAL's default) keeps points in spatial order:
    with an ``order`` field, or without the index, the clicks read as made; otherwise an object
    of several clicks is refused rather than run in another order."""
    far, near = lonlat_of_pixel(60.5, 850.5), lonlat_of_pixel(600.5, 20.5)
    rows = [(*far, {"label": "positive", "object": "pond", "order": 0}),
            (*near, {"label": "negative", "object": "pond", "order": 1})]  # fmt: skip
    expected = clicks_from_geojson(collection(*rows), mapper)
    frame = gpd.GeoDataFrame.from_features(collection(*rows)["features"], crs="EPSG:4326")
    frame.to_file(tmp_path / "ordered.fgb")
    assert read_clicks(tmp_path / "ordered.fgb", mapper) == expected
    unordered = frame.drop(columns="order")
    unordered.to_file(tmp_path / "plain.fgb", layer_options={"SPATIAL_INDEX": "NO"})
    assert read_clicks(tmp_path / "plain.fgb", mapper) == expected
    unordered.to_file(tmp_path / "indexed.fgb")
    with pytest.raises(MSTGeoError, match="indexed.fgb: a FlatGeobuf file with a spatial index keeps its points in spatial order"):
        read_clicks(tmp_path / "indexed.fgb", mapper)
    one_each = unordered.assign(object=["pond", "field"])
    one_each.to_file(tmp_path / "single.fgb")  # one click per object: nothing to reorder
    assert sorted(read_clicks(tmp_path / "single.fgb", mapper)) == ["field", "pond"]


def test_clicks_on_the_far_edges_are_in_the_last_pixel(mapper):
    """The extent is closed, as the refusal message prints it: a click exactly on the right or
    bottom edge (or the corner) lands in the last pixel; a pixel beyond is still outside."""
    right, bottom = 485899.0 + 5.0 * 934, 5209246.0 - 5.0 * 723
    clicks = clicks_from_geojson(collection((right, bottom, {}), (right, 5209000.0, {"object": 2}),
                                            crs="EPSG:26914"), mapper)
    corner, edge = clicks[1][0], clicks[2][0]
    assert (int(corner.row), int(corner.col)) == (722, 933) and int(edge.col) == 933
    assert (corner.x, corner.y) == (right, bottom)
    with pytest.raises(MSTGeoError, match="lies outside the scene"):
        clicks_from_geojson(collection((right + 5.0, bottom, {}), crs="EPSG:26914"), mapper)


def test_clicks_cannot_reach_a_local_grid_from_another_crs(naip_scene):
    """A scene on a local engineering grid (no datum): WGS84 clicks are named as unplaceable, not
    "outside the scene"; clicks in the grid's own CRS land."""
    from affine import Affine
    from pyproj import CRS

    local = CRS.from_wkt('LOCAL_CS["Site grid",LOCAL_DATUM["local",0],UNIT["metre",1],AXIS["Easting",EAST],'
                         'AXIS["Northing",NORTH]]')
    mapper = PixelMapper(local, Affine(5.0, 0, 1000.0, 0, -5.0, 5000.0), 100, 100)
    with pytest.raises(MSTGeoError, match=r"clicks.geojson: feature #1: clicks in WGS 84 cannot be placed in the "
                                          r"scene's CRS \(Site grid\): no transformation joins them"):
        clicks_from_geojson(collection((-99.1, 47.0, {})), mapper, source="clicks.geojson")
    [[click]] = clicks_from_geojson(collection((1100.0, 4900.0, {})), mapper, clicks_crs=local).values()
    assert (click.row, click.col) == (20.0, 20.0)


def test_longitudes_in_the_other_convention_land_on_a_geographic_scene():
    """A grid in 0..360 degrees east (climate and some global products) clicked at -99.1 degrees,
    and a -180..180 grid clicked at 260.9: one turn apart, the same place."""
    from affine import Affine

    east = PixelMapper("EPSG:4326", Affine(0.01, 0, 260.8, 0, -0.01, 47.1), 100, 100)
    [[click]] = clicks_from_geojson(collection((-99.1, 47.0, {})), east).values()
    assert (round(click.row, 6), round(click.col, 6)) == (10.0, 10.0) and click.x == pytest.approx(260.9)
    west = PixelMapper("EPSG:4326", Affine(0.01, 0, -99.2, 0, -0.01, 47.1), 100, 100)
    [[click]] = clicks_from_geojson(collection((260.9, 47.0, {})), west).values()
    assert (round(click.row, 6), round(click.col, 6)) == (10.0, 10.0) and click.x == pytest.approx(-99.1)
    with pytest.raises(MSTGeoError, match="lies outside the scene"):
        clicks_from_geojson(collection((-98.0, 47.0, {})), east)


def test_a_csv_of_clicks_reads_as_the_same_clicks(tmp_path, mapper):
    """A table typed in a spreadsheet: x/y in the scene CRS (which it must be told) or lon/lat in
    WGS84, the contract's fields as columns, empty cells as missing values."""
    expected = clicks_from_geojson(collection(
        (*lonlat_of_pixel(60.5, 850.5, "EPSG:26914"), {"object": 7}),
        (*lonlat_of_pixel(90.5, 870.5, "EPSG:26914"), {"object": 7, "label": "negative"}),
        (*lonlat_of_pixel(624.5, 260.5, "EPSG:26914"), {}),
        crs="EPSG:26914"), mapper)
    rows = [((60.5, 850.5), "7", ""), ((90.5, 870.5), "7", "negative"), ((624.5, 260.5), "", "")]
    projected = tmp_path / "clicks.csv"
    projected.write_text("X,Y,object,Label\n" + "".join(
        "{},{},{},{}\n".format(*lonlat_of_pixel(*pixel, "EPSG:26914"), obj, label) for pixel, obj, label in rows))
    assert read_clicks(projected, mapper, clicks_crs="EPSG:26914") == expected
    with pytest.raises(MSTGeoError, match="its X/Y columns name no CRS: pass --clicks-crs") as error:
        read_clicks(projected, mapper)
    assert str(error.value).startswith(str(projected))
    geographic = tmp_path / "lonlat.csv"
    geographic.write_text("object,label,Longitude,Latitude\n" + "".join(
        "{},{},{!r},{!r}\n".format(obj, label, *lonlat_of_pixel(*pixel)) for pixel, obj, label in rows))
    found = read_clicks(geographic, mapper)  # through WGS84 and back: the same pixels to a micro-pixel
    assert {obj: [c.positive for c in clicks] for obj, clicks in found.items()} == \
        {obj: [c.positive for c in clicks] for obj, clicks in expected.items()}
    for obj, clicks in expected.items():
        for got, want in zip(found[obj], clicks, strict=True):
            assert (got.row, got.col) == pytest.approx((want.row, want.col), abs=1e-6)
    bare = tmp_path / "bare.csv"
    bare.write_text("east,north\n490201.5,5209043.5\n")
    with pytest.raises(MSTGeoError, match="needs coordinate columns x,y .*got 'east', 'north'"):
        read_clicks(bare, mapper, clicks_crs="EPSG:26914")


def test_spreadsheet_exports_of_clicks(tmp_path, mapper):
    """What spreadsheets write: semicolons and decimal commas (European locales), a BOM and CRLF,
    spaces after the delimiter, a WKT column beside lon/lat (ignored: it put every click where the
    WKT said), blank lines; ids typed as text stay text (007, 1e3), whole numbers are numbers."""
    lon, lat = lonlat_of_pixel(60.5, 850.5)
    european = tmp_path / "european.csv"
    european.write_bytes(("\ufeffobject; label; lon; lat; WKT\r\n"
                          f"007; positive; {lon!r}; {lat!r}; POINT (0 0)\r\n\r\n"
                          f"12;negative;{str(lon).replace('.', ',')};{str(lat).replace('.', ',')};\r\n"
                          f"1e3;;{lon!r};{lat!r};\r\n").encode())
    objects = read_clicks(european, mapper)
    assert list(objects) == ["007", 12, "1e3"]
    assert [clicks[0].positive for clicks in objects.values()] == [True, False, True]
    for clicks in objects.values():
        assert (clicks[0].row, clicks[0].col) == pytest.approx((60.5, 850.5), abs=1e-6)
    tabbed = tmp_path / "tabbed.tsv"  # "Text (tab delimited)": .tsv or .txt
    tabbed.write_text(f"object\tlon\tlat\n5\t{lon}\t{lat}\n")
    assert read_clicks(tabbed, mapper) == read_clicks(tabbed.rename(tmp_path / "tabbed.txt"), mapper)
    assert list(read_clicks(tmp_path / "tabbed.txt", mapper)) == [5]
    excel = tmp_path / "excel.csv"  # Excel's delimiter line, a blank line, trailing delimiters
    excel.write_text(f"sep=;\n\nobject;lon;lat;;\n1;{lon};{lat};;\n")
    assert list(read_clicks(excel, mapper)) == [1]
    for name, text, message in (
        ("short.csv", f"object,lon,lat\na,{lon},{lat}\n\nb,{lon}\n", "line 4: 2 cells where the header names 3"),
        ("long.csv", f"lon,lat\n{lon},{lat},negative\n", "line 2: a value under no column name ('negative')"),
        ("twice.csv", f"label,lon,lat,label\n1,{lon},{lat},0\n", "column(s) 'label' appear more than once"),
        ("cased.csv", f"lon,LON,lat\n{lon},0,{lat}\n", "column(s) 'LON', 'lon' appear more than once (in any case)"),
        ("pairs.csv", f"lon,lat,x,y\n{lon},{lat},1,2\n", "columns x/y and lon/lat both give coordinates"),
        ("typo.csv", f"lon,lat\n{lon},{lat}\n\n{lon}x,{lat}\n", f"line 4: lon/lat must be numbers, got '{lon}x'"),
        ("under.csv", f"lon,lat\n-99.1_5,{lat}\n", "line 2: lon/lat must be numbers, got '-99.1_5'"),
        ("quote.csv", f"lon,lat,note\n{lon},{lat},\"{'a' * 140_000}\"\n", "line 2: not a CSV row"),
        ("unclosed.csv", f"lon,lat,note\n{lon},{lat},ok\n{lon},{lat},\"big tree\n{lon},{lat},pond\n",
         "line 3: not a CSV row"),  # the quote swallowed the next rows: three clicks read as two
    ):
        (tmp_path / name).write_text(text)
        with pytest.raises(MSTGeoError, match=re.escape(message)):
            read_clicks(tmp_path / name, mapper)
    with pytest.raises(MSTGeoError, match=re.escape("lon/lat columns are longitude/latitude, but the clicks CRS (--clicks-crs, clicks_crs= in Python) "
                                                  "is projected")):
        read_clicks(european, mapper, clicks_crs="EPSG:26914")
