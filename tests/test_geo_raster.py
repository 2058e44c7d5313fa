"""geo.raster on the real NAIP scene and on real GeoTIFFs derived from it (other dtypes, bands, CRSs)."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Geod
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.rpc import RPC
from rasterio.enums import ColorInterp, Resampling
from rasterio.warp import transform_bounds
from rasterio.windows import Window, bounds

from mst_geo.errors import MSTGeoError, MSTGeoWarning
from mst_geo.geo.journal import file_identity
from mst_geo.geo.bands import parse_bands
from mst_geo.geo.raster import PERCENTILES, SceneRaster, public_source, scene_name, scene_source

NAIP_TRANSFORM = Affine(5.0, 0, 485899.0, 0, -5.0, 5209246.0)


@pytest.fixture(scope="module")
def naip_pixels(naip_scene) -> np.ndarray:
    with rasterio.open(naip_scene) as src:
        return src.read()


def test_default_bands_and_exact_percentiles_on_small_scene(naip_scene, naip_pixels):
    with SceneRaster(naip_scene) as raster:
        assert raster.bands == (1, 2, 3)  # named red, green, blue (and near infrared)
        assert raster.crs.to_epsg() == 26914 and (raster.width, raster.height) == (934, 723)
        expected = np.percentile(naip_pixels[:3].reshape(3, -1), PERCENTILES, axis=1)
        np.testing.assert_allclose(raster.low, expected[0])
        np.testing.assert_allclose(raster.high, expected[1])


@pytest.mark.parametrize("pad_value", [120, 25])
def test_flat_fill_without_nodata_does_not_set_the_stretch(write_geotiff, naip_pixels, naip_scene, pad_value):
    """The scene padded by 1 500 px of one grey (fill no nodata tag marks, or a flat bright or dark
    area) is stretched as the scene itself: the fill used to set both ends and wash objects out."""
    height, width = naip_pixels.shape[1:]
    padded = np.full((3, height + 1500, width + 1500), pad_value, np.uint8)
    padded[:, 1500:, 1500:] = naip_pixels[:3]
    path = write_geotiff("padded.tif", padded, tiled=True, blockxsize=256, blockysize=256)
    with SceneRaster(naip_scene) as plain, SceneRaster(path) as raster:
        fill_share = 1 - naip_pixels[0].size / padded[0].size
        assert fill_share > 0.85
        np.testing.assert_allclose(raster.low, plain.low, atol=6)
        np.testing.assert_allclose(raster.high, plain.high, atol=8)


def test_saturated_pixels_do_not_set_the_stretch(write_geotiff, naip_pixels):
    """5 % of a uint16 scene at 65535 (clouds, a sensor's ceiling): the top percentile is the scene's."""
    scene = naip_pixels[:3].astype(np.uint16) * 40
    saturated = scene.copy()
    saturated[:, :36, :] = 65535  # 36 of 723 rows
    plain_path, path = write_geotiff("plain.tif", scene), write_geotiff("saturated.tif", saturated)
    rotated = write_geotiff("rotated.tif", saturated, transform=NAIP_TRANSFORM * Affine.rotation(10))
    with SceneRaster(plain_path) as plain, SceneRaster(path) as raster, SceneRaster(rotated) as warped:
        assert (raster.high < 10_000).all()
        np.testing.assert_allclose(raster.high, plain.high, rtol=0.03)
        np.testing.assert_allclose(raster.low, plain.low, rtol=0.05)
        assert warped.dataset.dtypes[0] == "float32"  # read through a warp: still the file's uint16 ceiling
        assert (warped.high < 10_000).all()


def test_a_scene_that_is_mostly_flat_still_has_a_stretch(write_geotiff):
    """Two values only (a drawn mask, a chart): too few textured pixels to count alone, so all count."""
    data = np.full((3, 200, 200), 30, np.uint8)
    data[:, 50:150, 50:150] = 200
    with SceneRaster(write_geotiff("two_values.tif", data)) as raster:
        np.testing.assert_allclose(raster.low, 30)
        np.testing.assert_allclose(raster.high, 200)


def test_native_window_read_is_the_stretched_pixels(naip_scene, naip_pixels):
    with SceneRaster(naip_scene) as raster:
        read = raster.read(Window(800, 10, 100, 120))
        expected = (naip_pixels[:3, 10:130, 800:900].astype(np.float32) - raster.low[:, None, None]) / (
            raster.high - raster.low
        )[:, None, None]
        np.testing.assert_allclose(read.image, np.clip(np.moveaxis(expected, 0, -1), 0, 1), atol=1e-6)
        assert read.scale == (1.0, 1.0) and read.valid.all()
        assert read.transform == raster.dataset.window_transform(Window(800, 10, 100, 120))


def test_window_is_clipped_to_the_scene(naip_scene):
    with SceneRaster(naip_scene) as raster:
        read = raster.read(Window(900, 700, 100, 100))
        assert read.image.shape == (23, 34, 3)
        assert (read.window.col_off, read.window.row_off) == (900, 700)


def test_decimated_read_keeps_the_window_footprint(naip_scene):
    with SceneRaster(naip_scene) as raster:
        window = Window(0, 0, 934, 723)
        read = raster.read(window, max_side=224)
        assert max(read.image.shape[:2]) == 224
        assert read.scale[0] == pytest.approx(934 / 224, rel=0.01)
        corner = read.transform @ (read.image.shape[1], read.image.shape[0])
        expected = bounds(window, raster.transform)
        assert corner == pytest.approx((expected[2], expected[1]))


def test_nodata_pixels_are_invalid_and_black(write_geotiff, naip_pixels):
    data = naip_pixels.copy()
    data[:, :100, :200] = 0  # a real no-data corner, as at the edge of a NAIP quarter quad
    path = write_geotiff("holes.tif", data, nodata=0)
    with SceneRaster(path) as raster:
        read = raster.read(Window(150, 50, 100, 100))
        assert not read.valid[:50, :50].any() and read.valid[50:, 50:].all()
        assert (read.image[:50, :50] == 0).all()
        assert not raster.is_valid(10, 10) and raster.is_valid(300, 300)
        expected = [np.percentile(band[band != 0], PERCENTILES) for band in data[:3]]
        np.testing.assert_allclose(np.stack([raster.low, raster.high], axis=1), expected)  # nodata left out


def test_nodata_is_judged_on_the_bands_read(write_geotiff, naip_pixels):
    """A stack whose bands cover different footprints: where the bands read are all nodata there is
    no data, whatever the other bands hold; a dark pixel with one band at the nodata value is data
    (GDAL's rule: nodata when every band is)."""
    data = np.concatenate([naip_pixels, naip_pixels[:1]])  # 5 bands, nodata 0
    data[:3, :100, :200] = 0  # the bands read are empty there, bands 4 and 5 are not
    data[0, 300:310, 300:310] = 0  # one band at 0 in a dark patch
    path = write_geotiff("stack.tif", data, nodata=0, photometric="MINISBLACK")
    with SceneRaster(path, bands=(1, 2, 3)) as raster:
        assert not raster.is_valid(10, 10) and raster.is_valid(305, 305)
        read = raster.read(Window(150, 50, 100, 100))
        assert not read.valid[:50, :50].any() and read.valid[50:, 50:].all()
    with SceneRaster(path, bands=(4, 5, 2)) as raster:  # band 2 is empty there, 4 and 5 hold data
        assert raster.is_valid(10, 10)


@pytest.mark.parametrize("dtype", ["complex64", "complex_int16"])
def test_complex_bands_are_refused(write_geotiff, naip_pixels, dtype):
    """A SAR SLC's complex samples have no order to stretch: one line saying to take the amplitude."""
    values = (naip_pixels[:1] * (1 + 1j)).astype(np.complex64)
    if dtype == "complex64":
        path = write_geotiff("slc.tif", values)
    else:  # numpy has no complex int16: an empty file of that type is enough
        path = write_geotiff("slc.tif", values, dtype="complex_int16")
    with pytest.raises(MSTGeoError, match=rf"slc.tif: band\(s\) of complex type {dtype}: take the amplitude first"):
        SceneRaster(path)


def test_block_sample_estimates_percentiles_without_overviews(write_geotiff, naip_pixels):
    """A 2 k scene without overviews: the statistics come from blocks spread over the scene."""
    mosaic = np.tile(naip_pixels[:3], (1, 3, 3))[:, :2048, :2048]
    path = write_geotiff("mosaic.tif", mosaic, tiled=True, blockxsize=256, blockysize=256)
    with SceneRaster(path) as raster:
        assert not raster.dataset.overviews(1)
        true_low, true_high = np.percentile(mosaic.reshape(3, -1), PERCENTILES, axis=1)
        np.testing.assert_allclose(raster.low, true_low, atol=4)
        np.testing.assert_allclose(raster.high, true_high, atol=4)


def test_percentiles_are_native_even_with_overviews(write_geotiff, naip_pixels):
    """Averaged overview pixels narrow the 2/98 % range; the sampled native windows do not."""
    mosaic = np.tile(naip_pixels[:3], (1, 3, 3))[:, :2048, :2048]
    path = write_geotiff("mosaic_ovr.tif", mosaic, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews([2, 4, 8], Resampling.average)
    with rasterio.open(path) as src:
        coarse = src.read(out_shape=(3, 256, 256))
    true_low, true_high = np.percentile(mosaic.reshape(3, -1), PERCENTILES, axis=1)
    coarse_low, coarse_high = np.percentile(coarse.reshape(3, -1), PERCENTILES, axis=1)
    assert (coarse_high - coarse_low < true_high - true_low - 5).all()  # the bias being avoided
    with SceneRaster(path) as raster:
        np.testing.assert_allclose(raster.low, true_low, atol=3)
        np.testing.assert_allclose(raster.high, true_high, atol=3)


def test_rgb_colour_interpretation_picks_the_bands(write_geotiff, naip_pixels):
    path = write_geotiff("bgrn.tif", naip_pixels[[2, 1, 0, 3]], photometric="MINISBLACK")
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    with warnings.catch_warnings():
        warnings.simplefilter("error", MSTGeoWarning)  # named bands: nothing to announce
        with SceneRaster(path) as raster:
            assert raster.bands == (3, 2, 1)


@pytest.mark.parametrize(
    ("bands", "colours", "expected", "announced"),
    [
        (1, [ColorInterp.gray], (1, 1, 1), None),
        (2, [ColorInterp.gray, ColorInterp.alpha], (1, 1, 1), None),  # grey + alpha: the alpha is no colour
        (2, None, (1, 1, 1), "2 bands without colour names; reading band(s) 1 as grey"),  # red + NIR, say
        (4, None, (1, 2, 3), "4 bands without colour names; reading band(s) 1,2,3 as R,G,B"),  # RGBN or BGRN?
        (13, None, (1, 2, 3), "13 bands without colour names"),
        (4, [ColorInterp.gray, ColorInterp.undefined, ColorInterp.undefined, ColorInterp.alpha], (1, 2, 3), None),
    ],
)
def test_unnamed_bands_are_guessed_aloud(write_geotiff, naip_pixels, bands, colours, expected, announced):
    """Without colour names the first bands that are not alpha are read, and a guess among
    several possible orders is announced once (MSTGeoWarning), naming the scene and --bands."""
    stack = np.concatenate([naip_pixels] * 4)[:bands]
    path = write_geotiff(f"bands{bands}.tif", np.ascontiguousarray(stack), photometric="MINISBLACK")
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = colours or [ColorInterp.undefined] * bands
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with SceneRaster(path) as raster:
            assert raster.bands == expected
    notes = [str(w.message) for w in caught if issubclass(w.category, MSTGeoWarning)]
    if announced is None:
        assert notes == []
    else:
        assert len(notes) == 1 and announced in notes[0] and str(path) in notes[0] and "--bands" in notes[0]


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("grey_uint8", lambda px: px[3:4]),  # the NIR band alone
        ("uint16_12bit", lambda px: (px.astype(np.uint16) * 16 + 7)),  # as 12-bit sensors store it
        ("float32_reflectance", lambda px: px.astype(np.float32) / 255.0 * 0.6),
        ("thirteen_bands", lambda px: np.concatenate([px, px[:3] // 2, px[:3] // 3, px[:3] // 4])),
    ],
)
def test_other_dtypes_and_band_counts_normalise_to_unit_range(write_geotiff, naip_pixels, name, make):
    data = make(naip_pixels[:, :200, :300])
    path = write_geotiff(f"{name}.tif", np.ascontiguousarray(data))
    with SceneRaster(path) as raster:
        read = raster.read(Window(0, 0, 300, 200))
        assert read.image.dtype == np.float32 and read.image.shape == (200, 300, 3)
        assert 0.0 <= read.image.min() and read.image.max() <= 1.0
        assert read.image.std() > 0.1  # stretched to use the range, whatever the dtype
        if data.shape[0] == 1:
            assert raster.bands == (1, 1, 1)


def test_user_bands(naip_scene):
    with SceneRaster(naip_scene, bands=parse_bands("4,1,2")) as raster:
        assert raster.bands == (4, 1, 2)
    assert parse_bands(None) is None and parse_bands("4") == (4,) and parse_bands(" B04, 3 ,2") == ("B04", 3, 2)
    with pytest.raises(MSTGeoError, match="band 5 requested but the raster has bands 1..4"):
        SceneRaster(naip_scene, bands=(5, 1, 2))
    with pytest.raises(MSTGeoError, match="1 band .* or 3 bands"):
        parse_bands("red,green")
    with pytest.raises(MSTGeoError, match="1 band .* or 3 bands"):
        parse_bands("1,2")
    with pytest.raises(MSTGeoError, match="band numbers from 1"):
        parse_bands("0,1,2")


def test_bands_by_description(write_geotiff, naip_pixels):
    """Descriptions name bands where colour interpretation does not: blue,green,red described but
    stored in that order are read as R,G,B by name (not as bands 1,2,3), and --bands takes names
    (a Sentinel-2 scene described B01..B12)."""
    bgr = write_geotiff("bgr.tif", naip_pixels[2::-1].copy(), photometric="MINISBLACK")
    with rasterio.open(bgr, "r+") as dst:
        dst.colorinterp = [ColorInterp.undefined] * 3
        for band, name in enumerate(("Blue", "Green", "Red"), 1):
            dst.set_band_description(band, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MSTGeoWarning)
        with SceneRaster(bgr) as raster:
            assert raster.bands == (3, 2, 1)
    s2 = write_geotiff("s2.tif", np.concatenate([naip_pixels, naip_pixels[:2]]), photometric="MINISBLACK")
    with rasterio.open(s2, "r+") as dst:
        for band in range(1, 7):
            dst.set_band_description(band, f"B{band:02d}")
    with SceneRaster(s2, bands=parse_bands("B03,b02,1")) as raster:
        assert raster.bands == (3, 2, 1)
    with SceneRaster(s2, bands=parse_bands("B3,b2,B1")) as raster:  # unpadded, as many exports write them
        assert raster.bands == (3, 2, 1)
    with pytest.raises(MSTGeoError, match=r"s2.tif: no band described or coloured as 'B8A' \(bands: 1 'B01'/'gray', 2 'B02', 3"):
        SceneRaster(s2, bands=("B8A", 2, 1))
    with SceneRaster(s2, bands=("3", "2", "1")) as raster:  # numbers written as text (a recipe, the API)
        assert raster.bands == (3, 2, 1)
    two_dates = write_geotiff("two_dates.tif", np.concatenate([naip_pixels[:3], naip_pixels[:3]]), photometric="MINISBLACK")
    with rasterio.open(two_dates, "r+") as dst:
        for band, name in enumerate(("red", "green", "blue") * 2, 1):
            dst.set_band_description(band, name)
    with pytest.raises(MSTGeoError, match="bands 1 and 4 are all named 'Red': choose them by number"):
        SceneRaster(two_dates, bands=("Red", 2, 3))
    with pytest.warns(MSTGeoWarning, match="6 bands without colour names; reading band\\(s\\) 1,2,3"):
        SceneRaster(two_dates).close()  # descriptions that repeat name no bands: the guess is announced


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"], (4, 3, 2)),  # Sentinel-2 L2A
        (["B08", "B04", "B03", "B02"], (2, 3, 4)),  # its 10 m bands, NIR first
        (["B02", "B03", "B04"], (3, 2, 1)),  # its true-colour bands in band order: blue first
        (["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7", "ST_B10"], (4, 3, 2)),  # Landsat 8/9 C2 L2
        (["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"], (4, 3, 2)),  # ... without its thermal band
        (["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7"], None),  # Landsat 4-7: red is B3, so no guess
        (["SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7"], None),  # ... also without its blue band
        (["B2", "B3", "B4", "B2", "B3", "B4"], None),  # two dates: the names repeat
        ([f"B{number}" for number in range(1, 11)], None),  # ten bands numbered by some other tool
        (["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B10", "B11"], (4, 3, 2)),  # Landsat 8 bands stacked by name
    ],
)
def test_satellite_band_names_give_true_colour(write_geotiff, naip_pixels, names, expected):
    """A stack whose bands carry Sentinel-2 or Landsat 8/9 names is read as B4,B3,B2 (true colour)
    without a guess announced; Landsat 4-7 names, whose blue is B1, and repeated names fall back to
    the announced guess of the first three bands."""
    stack = np.concatenate([naip_pixels] * 3)[:len(names)]
    path = write_geotiff("named.tif", np.ascontiguousarray(stack), photometric="MINISBLACK")
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.undefined] * len(names)
        for band, name in enumerate(names, 1):
            dst.set_band_description(band, name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with SceneRaster(path) as raster:
            assert raster.bands == (expected or (1, 2, 3))
    notes = [str(w.message) for w in caught if issubclass(w.category, MSTGeoWarning)]
    if expected:
        assert notes == []
    else:
        assert len(notes) == 1 and "bands without colour names; reading band(s) 1,2,3" in notes[0]


def test_bands_by_colour_interpretation(naip_scene):
    """An RGB file's bands answer to their colours, as QGIS names them; a description of the same
    name wins (it is what the user wrote)."""
    with SceneRaster(naip_scene, bands=("blue", "Green", "red")) as raster:
        assert raster.bands == (3, 2, 1)
    with pytest.raises(MSTGeoError, match=r"no band described or coloured as 'nir' \(bands: 1 'red', 2 'green', 3 'blue', 4 unnamed\)"):
        SceneRaster(naip_scene, bands=("nir", 2, 1))


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(MSTGeoError, match="raster not found") as missing:
        SceneRaster(tmp_path / "nope.tif")
    assert str(tmp_path / "nope.tif") in str(missing.value)
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x13" * 500)
    with pytest.raises(MSTGeoError, match="cannot read as a raster"):
        SceneRaster(corrupt)


def test_truncated_file_is_a_clear_error(naip_scene, tmp_path):
    """The header survives a cut-off download, the pixels do not: one line naming the file."""
    data = naip_scene.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MSTGeoError, match="cannot read its pixels, the file may be truncated") as error:
        SceneRaster(cut)
    assert str(cut) in str(error.value) and "\n" not in str(error.value)


def test_nan_pixels_are_not_valid_clicks(write_geotiff, naip_pixels):
    """A float scene whose gaps are NaN without a nodata tag: a click there is on no data."""
    data = naip_pixels[:3].astype("float32")
    data[:, :50, :50] = np.nan
    with SceneRaster(write_geotiff("nan.tif", data)) as raster:
        assert not raster.is_valid(10, 10) and raster.is_valid(300, 300)
        read = raster.read(Window(0, 0, 100, 100))
        assert not read.valid[:50, :50].any() and read.valid[50:, 50:].all()


def test_rasters_without_georeferencing_are_refused(write_geotiff, naip_pixels):
    with pytest.raises(MSTGeoError, match="no CRS"):
        SceneRaster(write_geotiff("nocrs.tif", naip_pixels[:, :50, :50], crs=None))
    with pytest.raises(MSTGeoError, match="no geotransform"):
        SceneRaster(write_geotiff("notransform.tif", naip_pixels[:, :50, :50], transform=Affine.identity()))


@pytest.mark.parametrize(
    ("given", "remote", "name"),
    [
        ("https://example.com/naip/m%20quad.tif?X-Amz-Signature=abc", True, "m quad.tif"),
        ("HTTPS://example.com/a.TIF", True, "a.TIF"),
        ("s3://bucket/scenes/b.tif", True, "b.tif"),
        ("/vsicurl/https://example.com/c.tif", True, "c.tif"),
        ("https://example.com/", True, "scene"),
        ("/vsizip/archive.zip/d.tif", False, "d.tif"),  # a local archive: a local path
        ("scenes/e.tif", False, "e.tif"),
    ],
)
def test_scene_sources_urls_stay_text(given, remote, name):
    assert isinstance(scene_source(given), str) is remote
    assert scene_name(given) == name


def test_a_url_is_identified_without_its_signature(naip_scene):
    signed = "https://example.com/naip/scene.tif?X-Amz-Signature=abc&X-Amz-Expires=60"
    assert file_identity(signed) == {"path": "https://example.com/naip/scene.tif"}
    assert set(file_identity(naip_scene)) == {"path", "size", "mtime_ns"}
    assert public_source(signed) == "https://example.com/naip/scene.tif"
    assert public_source(naip_scene) == str(naip_scene)


def _gcp_only(write_geotiff, naip_pixels) -> Path:
    """The example's pixels georeferenced by a 3x3 grid of ground control points, no geotransform."""
    path = write_geotiff("gcps.tif", naip_pixels, crs=None, transform=Affine.identity(), nodata=0)
    height, width = naip_pixels.shape[1:]
    with rasterio.open(path, "r+") as dst:
        dst.gcps = ([GroundControlPoint(row, col, *(NAIP_TRANSFORM @ (col, row)))
                     for row in (0, height // 2, height) for col in (0, width // 2, width)], CRS.from_epsg(26914))
    return path


def test_south_up_and_gcp_scenes_are_read_on_the_north_up_grid(write_geotiff, naip_pixels, naip_scene):
    """A south-up scene (rows stored bottom first) and one placed by ground control points alone
    read as the north-up original: same grid, same pixels."""
    south_up = write_geotiff("south.tif", np.ascontiguousarray(naip_pixels[:, ::-1]), nodata=0,
                             transform=NAIP_TRANSFORM @ Affine.translation(0, 723) @ Affine.scale(1, -1))
    full = Window(0, 0, 934, 723)
    with SceneRaster(naip_scene) as original:
        expected = original.read(full)
        for scene in (south_up, _gcp_only(write_geotiff, naip_pixels)):
            with SceneRaster(scene) as raster:
                assert raster.transform.almost_equals(NAIP_TRANSFORM) and (raster.width, raster.height) == (934, 723)
                assert raster.crs.to_epsg() == 26914
                read = raster.read(full)
                np.testing.assert_allclose(read.image, expected.image, atol=1e-6)
                np.testing.assert_array_equal(read.valid, expected.valid)


@pytest.mark.parametrize(("nodata", "photometric"), [(0, "RGB"), (None, "RGB"), (None, "MINISBLACK")])
def test_rotated_scene_is_warped_north_up(write_geotiff, naip_pixels, naip_scene, nodata, photometric):
    """A geotransform rotated 30 degrees about the scene centre: read through a north-up warp in
    the same CRS, whose pixels hold the source's values at the same map points (bilinear) and
    whose corners outside the rotated footprint are no data, also when the file names no nodata
    value (a scanned map): the corners neither take clicks nor darken the stretch."""
    centre = NAIP_TRANSFORM @ (467, 361.5)
    rotated = Affine.translation(*centre) @ Affine.rotation(30) @ Affine.translation(-centre[0], -centre[1]) @ NAIP_TRANSFORM
    # RGB: the fourth band is an alpha band (here NIR values); MINISBLACK: four plain bands, no mask at all
    scene = write_geotiff("rotated.tif", naip_pixels, transform=rotated, nodata=nodata, photometric=photometric)
    with SceneRaster(naip_scene) as original:
        stretch = original.low, original.high
    with SceneRaster(scene) as raster:
        assert not raster.is_valid(0, 0) and raster.is_valid(raster.height / 2, raster.width / 2)
        np.testing.assert_allclose((raster.low, raster.high), stretch, atol=8)  # bilinear narrows it; corners: low 0
        transform = raster.transform
        assert transform.b == transform.d == 0 and transform.a > 0 > transform.e and raster.crs.to_epsg() == 26914
        read = raster.read(Window(0, 0, raster.width, raster.height))
        raw = raster.dataset.read(1).astype(float)
    footprint = 934 * 723 / (raster.width * raster.height)
    assert read.valid.mean() == pytest.approx(footprint, abs=0.03) and not read.valid[0, 0]
    rows, cols = np.nonzero(read.valid[1:-1, 1:-1])
    rows, cols = rows[::97] + 1.5, cols[::97] + 1.5  # pixel centres, a spread sample
    source_cols, source_rows = ~rotated @ (transform @ (cols, rows))
    inside = (source_rows > 1) & (source_rows < 722) & (source_cols > 1) & (source_cols < 933)
    warped = raw[(rows[inside] - 0.5).astype(int), (cols[inside] - 0.5).astype(int)]
    assert inside.sum() > 1000

    def source_at(shift: float) -> np.ndarray:
        at = [(coords[inside] - 0.5 + shift).astype(np.float32)[:, None] for coords in (source_cols, source_rows)]
        return cv2.remap(naip_pixels[0].astype(np.float32), *at, cv2.INTER_LINEAR)[:, 0]

    error = np.abs(warped - source_at(0)).mean()
    assert error < 3.0  # uint8 values: the same map points, up to interpolation and the warp's 1/8 px tolerance
    assert np.abs(warped - source_at(1)).mean() > 2 * error  # one source pixel away is clearly worse



def test_pixels_in_degrees_are_read_square_on_the_ground(write_geotiff, naip_pixels, naip_scene):
    """A scene in degrees at 47°N has pixels 0.68 as wide as high on the ground: reads resample
    them to square ground pixels (the model saw undistorted photos), UTM reads stay as they are."""
    ground = Geod(ellps="WGS84")
    west, south, east, north = transform_bounds("EPSG:26914", "EPSG:4326", 485899.0, 5205631.0, 490569.0, 5209246.0)
    step = (north - south) / 723
    degrees = write_geotiff("degrees.tif", naip_pixels, crs="EPSG:4326",
                            transform=Affine(step, 0, west, 0, -step, north), nodata=0)
    with SceneRaster(naip_scene) as utm:
        assert utm.pixel_aspect == 1.0
        assert utm.read(Window(100, 100, 200, 100)).image.shape[:2] == (100, 200)
    with SceneRaster(degrees) as raster:
        lat = (south + north) / 2
        assert raster.pixel_aspect == pytest.approx(ground.inv(0, lat, step, lat)[2] / ground.inv(0, lat, 0, lat + step)[2],
                                                    rel=1e-3)
        assert 0.66 < raster.pixel_aspect < 0.70
        native = raster.read(Window(100, 100, 200, 100))
        assert native.image.shape[:2] == (round(100 / raster.pixel_aspect), 200)  # rows resampled, columns kept
        decimated = raster.read(Window(0, 0, 600, 600), max_side=224)
        assert decimated.image.shape[:2] == (224, round(224 * raster.pixel_aspect))
        for view in (native, decimated):  # each image pixel is square on the ground
            t = view.transform
            lon, lat = t @ (view.image.shape[1] / 2, view.image.shape[0] / 2)
            across = ground.inv(lon, lat, lon + t.a, lat)[2]
            down = ground.inv(lon, lat, lon, lat + t.e)[2]
            assert across == pytest.approx(down, rel=0.01)


@pytest.mark.parametrize(("nodata", "crs_tag"), [(0, None), (None, "EPSG:26914")])
def test_rpc_only_scene_is_warped_to_wgs84(write_geotiff, naip_pixels, nodata, crs_tag):
    """A level-1 image placed by RPCs alone (here RPCs linear in longitude and latitude) is read on
    a north-up WGS84 grid whose pixels hold the source values the RPCs place there, also without a
    nodata value (outside the image is then NaN, no data) and whatever CRS tag the file carries."""
    height, width = naip_pixels.shape[1:]
    west, south, east, north = -99.186, 47.004, -99.124, 47.037
    zero = [0.0] * 20
    one, minus_lat, plus_lon = [1.0] + zero[1:], zero[:2] + [-1.0] + zero[3:], [0.0, 1.0] + zero[2:]
    rpcs = RPC(height_off=0, height_scale=100, lat_off=(north + south) / 2, lat_scale=(north - south) / 2,
               long_off=(east + west) / 2, long_scale=(east - west) / 2, line_off=height / 2, line_scale=height / 2,
               samp_off=width / 2, samp_scale=width / 2, line_num_coeff=minus_lat, line_den_coeff=one,
               samp_num_coeff=plus_lon, samp_den_coeff=one)
    path = write_geotiff("rpc.tif", naip_pixels, crs=crs_tag, transform=Affine.identity(), nodata=nodata,
                         photometric="MINISBLACK")
    with rasterio.open(path, "r+") as dst:
        dst.rpcs = rpcs
    with SceneRaster(path) as raster:
        transform = raster.transform
        assert raster.crs.to_epsg() == 4326 and transform.b == transform.d == 0 and transform.a > 0 > transform.e
        warped = raster.dataset.read(1).astype(np.float32)
        assert raster.is_valid(raster.height / 2, raster.width / 2)
    rows, cols = np.nonzero(np.nan_to_num(warped[1:-1, 1:-1]) > 0)
    rows, cols = rows[::97] + 1.5, cols[::97] + 1.5  # pixel centres, a spread sample
    lons, lats = transform @ (cols, rows)
    # where the RPCs put each point, in pixel indexes (RPC line/sample count pixel centres from 0)
    samp = width / 2 + width / 2 * (lons - rpcs.long_off) / rpcs.long_scale
    line = height / 2 - height / 2 * (lats - rpcs.lat_off) / rpcs.lat_scale
    inside = (samp > 1) & (samp < width - 1) & (line > 1) & (line < height - 1)
    values = warped[(rows[inside] - 0.5).astype(int), (cols[inside] - 0.5).astype(int)]

    def source_at(shift: float) -> np.ndarray:
        at = [(coords[inside] + shift).astype(np.float32)[:, None] for coords in (samp, line)]
        return cv2.remap(naip_pixels[0].astype(np.float32), *at, cv2.INTER_LINEAR)[:, 0]

    error = np.abs(values - source_at(0)).mean()
    assert inside.sum() > 1000 and error < 1.5
    assert np.abs(values - source_at(1)).mean() > 2 * error  # one source pixel away is clearly worse


def test_an_alpha_band_gdal_does_not_apply_still_masks(write_geotiff, naip_pixels):
    """R,G,B,NIR plus alpha in band 5 (``gdalwarp -dstalpha`` on a NAIP quad): GDAL applies alpha
    only as band 2 of 2 or 4 of 4, so the transparent pixels must be masked here, as the same
    pixels marked nodata are."""
    data = naip_pixels.copy()
    data[:, :100, :200] = 0  # nodata too: GDAL then masks by nodata alone
    alpha = np.full((1, *data.shape[1:]), 255, np.uint8)
    alpha[:, 300:400, 500:700] = 0  # transparent, though its band values look like data
    alpha[:, :100, :200] = 0  # as gdalwarp -dstalpha marks the nodata corner
    path = write_geotiff("rgbna.tif", np.concatenate([data, alpha]), nodata=0,
                         photometric="minisblack", alpha="unspecified")
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined,
                           ColorInterp.alpha]
    same = data.copy()
    same[:, 300:400, 500:700] = 0
    with SceneRaster(path) as raster, SceneRaster(write_geotiff("holes.tif", same, nodata=0)) as holes:
        assert raster.bands == (1, 2, 3) and raster.alpha_band == 5
        np.testing.assert_allclose(raster.low, holes.low)
        np.testing.assert_allclose(raster.high, holes.high)
        assert not raster.is_valid(350, 600) and raster.is_valid(350, 450) and not raster.is_valid(50, 50)
        read = raster.read(Window(450, 250, 200, 200))
        assert not read.valid[50:150, 50:].any() and read.valid[:50].all()
        np.testing.assert_array_equal(read.image, holes.read(Window(450, 250, 200, 200)).image)


def _paletted(write_geotiff, naip_pixels, name: str, order: np.ndarray) -> Path:
    """The scene's colours quantised to 64 levels, saved as one paletted band whose index order
    is ``order`` (a permutation of the 64 colours)."""
    levels = (naip_pixels[:3] // 64).astype(np.uint8)  # 4 levels per channel: 64 colours
    colour_of = {int(r * 16 + g * 4 + b): (int(r) * 64 + 32, int(g) * 64 + 32, int(b) * 64 + 32, 255)
                 for r in range(4) for g in range(4) for b in range(4)}
    index = levels[0] * 16 + levels[1] * 4 + levels[2]
    path = write_geotiff(name, order[index][None].astype(np.uint8), photometric="palette")
    with rasterio.open(path, "r+") as dst:
        dst.write_colormap(1, {int(order[k]): colour for k, colour in colour_of.items()})
    return path


def test_a_paletted_scene_is_read_in_its_colours(write_geotiff, naip_pixels):
    """The model sees a paletted scene's colours, not its indices: the same picture with the
    colour table in another order reads the same, and as an RGB file of those colours."""
    plain = _paletted(write_geotiff, naip_pixels, "palette.tif", np.arange(64))
    shuffled = _paletted(write_geotiff, naip_pixels, "shuffled.tif", np.random.default_rng(0).permutation(64))
    rgb = ((naip_pixels[:3] // 64) * 64 + 32).astype(np.uint8)
    window = Window(100, 100, 300, 200)
    with SceneRaster(plain) as a, SceneRaster(shuffled) as b, SceneRaster(write_geotiff("rgb.tif", rgb)) as c:
        assert a.palette is not None and a.bands == (1, 1, 1)
        for raster in (a, b):
            np.testing.assert_allclose(raster.low, c.low)
            np.testing.assert_allclose(raster.high, c.high)
            np.testing.assert_allclose(raster.read(window).image, c.read(window).image)
            decimated = raster.read(Window(0, 0, 934, 723), max_side=224).image
            assert np.isin(np.round(decimated * (c.high - c.low) + c.low), [32, 96, 160, 224]).mean() > 0.9


@pytest.mark.parametrize(("given", "expected"), [(None, str(256 << 20)), ("64", str(64 << 20))])  # bytes; env: MB
def test_gdal_block_cache_is_bounded_unless_the_user_sets_it(naip_scene, given, expected):
    """GDAL's default cache (5 % of the machine's memory) is held to 256 MB when a scene opens, even
    after rasterio has read other files, without touching the environment child processes get; a
    GDAL_CACHEMAX the user set is kept. In a fresh process: the setting is process-wide."""
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key != "GDAL_CACHEMAX"}
    if given is not None:
        env["GDAL_CACHEMAX"] = given
    code = ("import os, rasterio, rasterio.env, mst_geo.geo.raster as r\n"
            "with rasterio.open(%r) as d: d.read(1)\n"
            "with rasterio.Env(GDAL_CACHEMAX=512 << 20): r.SceneRaster(%r).close()\n"  # leaving it restores the default
            "s = r.SceneRaster(%r); s.read(r.Window(0, 0, 64, 64))\n"
            "print(rasterio.env.get_gdal_config('GDAL_CACHEMAX'), os.environ.get('GDAL_CACHEMAX'))"
            % (str(naip_scene), str(naip_scene), str(naip_scene)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == [expected, str(given)]
