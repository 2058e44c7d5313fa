"""Tiles of the web app: valid PNGs at every zoom, the model's bands and stretch, nodata transparent."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.windows import Window
from rio_tiler.io import Reader

from mst_geo.app.pagegrid import PageGrid
from mst_geo.app.tiles import SceneTiles
from mst_geo.geo.raster import SceneRaster

EXAMPLE = Path(__file__).parents[1] / "examples" / "naip_scene.tif"


def _png(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGBA"))


@pytest.fixture(scope="module")
def example_tiles() -> SceneTiles:
    raster = SceneRaster(EXAMPLE)
    yield SceneTiles(raster)
    raster.close()


def test_every_zoom_gives_valid_pngs(example_tiles: SceneTiles) -> None:
    grid = example_tiles.grid
    assert grid.max_zoom == 2  # 934 px wide: 256 -> 512 -> 1024
    for z in range(grid.max_zoom + 1):
        n = 2**z
        tiles = [(x, y) for x in range(n) for y in range(n) if grid.has_tile(z, x, y)]
        assert tiles
        for x, y in tiles:
            rgba = _png(example_tiles.render(z, x, y))
            assert rgba.shape == (256, 256, 4)
            assert rgba[..., 3].any(), f"tile {z}/{x}/{y} is empty"
            assert rgba[..., :3].std() > 5, f"tile {z}/{x}/{y} has no contrast"


def test_native_tile_matches_the_models_view(example_tiles: SceneTiles) -> None:
    """At full resolution the tile shows exactly what SceneRaster feeds the model (bands, stretch)."""
    raster = SceneRaster(EXAMPLE)
    model_view = raster.read(Window(256, 256, 256, 256)).image * 255.0
    raster.close()
    tile = _png(example_tiles.render(2, 1, 1))
    difference = np.abs(tile[..., :3].astype(float) - model_view)
    assert difference.max() <= 1.0


def test_outside_the_scene_is_transparent(example_tiles: SceneTiles) -> None:
    rgba = _png(example_tiles.render(2, 3, 2))  # cols 768..1024 of 934, rows 512..768 of 723
    assert rgba[:200, :160, 3].all()  # inside: opaque
    assert not rgba[:, 934 - 768 :, 3].any()  # right of the scene
    assert not rgba[723 - 512 :, :, 3].any()  # below the scene
    assert not example_tiles.grid.has_tile(2, 4, 0)
    assert not example_tiles.grid.has_tile(3, 0, 0)
    assert not example_tiles.grid.has_tile(0, 10**400, 0) and not example_tiles.grid.has_tile(0, 0, 10**400)  # no float


def test_nodata_is_transparent(tmp_path: Path) -> None:
    path = tmp_path / "holes.tif"
    with rasterio.open(EXAMPLE) as src:
        profile = src.profile
        data = src.read()
    data[:, :100, :100] = 0  # the scene's nodata value
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    raster = SceneRaster(path)
    rgba = _png(SceneTiles(raster).render(2, 0, 0))
    raster.close()
    assert not rgba[:100, :100, 3].any()
    assert rgba[120:, 120:, 3].all()


@pytest.mark.parametrize("nodata", [None, float("nan")])
def test_nan_pixels_are_transparent(tmp_path: Path, nodata: float | None) -> None:
    """A float scene with NaN gaps, untagged or tagged nodata=NaN: NaN is no data on the map as for
    clicks, and rendering it raises no cast warning (the NaN tag's fill value once warned per tile)."""
    path = tmp_path / "gaps.tif"
    with rasterio.open(EXAMPLE) as src:
        profile = {**src.profile, "dtype": "float32", "nodata": nodata}
        data = src.read().astype("float32")
    data[:, :100, :100] = np.nan
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    with SceneRaster(path) as raster, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rgba = _png(SceneTiles(raster).render(2, 0, 0))
        assert not raster.is_valid(50, 50)
    assert not rgba[:100, :100, 3].any()
    assert rgba[120:, 120:, 3].all()


def test_alpha_in_band_five_and_palettes_look_as_the_model_reads_them(tmp_path: Path) -> None:
    """An alpha band GDAL leaves unapplied (band 5 of R,G,B,NIR,alpha) is transparent on the map,
    and a paletted scene shows its colours (one tile for two index orders of the same colours)."""
    with rasterio.open(EXAMPLE) as src:
        profile, data = src.profile, src.read()
    alpha = np.full((1, *data.shape[1:]), 255, np.uint8)
    alpha[:, :100, :100] = 0  # with the scene's nodata 0 kept: GDAL and rio-tiler then mask by nodata only
    profile.update(count=5, photometric="minisblack", alpha="unspecified")
    with rasterio.open(tmp_path / "rgbna.tif", "w", **profile) as dst:
        dst.write(np.concatenate([data, alpha]))
    with rasterio.open(tmp_path / "rgbna.tif", "r+") as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined,
                           ColorInterp.alpha]
    with SceneRaster(tmp_path / "rgbna.tif") as raster:
        rgba = _png(SceneTiles(raster).render(2, 0, 0))
    assert not rgba[:100, :100, 3].any() and rgba[120:, 120:, 3].all()

    colours = (data[:3] // 128).astype(np.uint8)  # 8 colours
    index = colours[0] * 4 + colours[1] * 2 + colours[2]
    tiles = []
    for name, order in (("plain", np.arange(8)), ("shuffled", np.array([5, 2, 7, 0, 3, 6, 1, 4]))):
        palette = {int(order[k]): ((k >> 2) * 200, ((k >> 1) & 1) * 200, (k & 1) * 200, 255) for k in range(8)}
        with rasterio.open(tmp_path / f"{name}.tif", "w", **{**profile, "count": 1, "photometric": "palette",
                                                          "nodata": None}) as dst:
            dst.write(order[index][None].astype(np.uint8))
            dst.write_colormap(1, palette)
        with SceneRaster(tmp_path / f"{name}.tif") as raster:
            tiles.append(_png(SceneTiles(raster).render(2, 1, 1)))
    np.testing.assert_array_equal(tiles[0], tiles[1])
    assert len(np.unique(tiles[0][..., :3].reshape(-1, 3), axis=0)) > 2  # colours, not one grey ramp


def test_a_negative_scale_is_read_the_right_way_round(tmp_path: Path, example_tiles: SceneTiles) -> None:
    """Stored values 255 - x tagged scale -1, offset 255 (the quantity is x): the model and the map
    see the scene itself, not its negative."""
    with rasterio.open(EXAMPLE) as src:
        profile, data = src.profile, src.read()
    profile.update(nodata=None, photometric="minisblack")  # band 4 stays NIR, not alpha
    with rasterio.open(tmp_path / "negated.tif", "w", **profile) as dst:
        dst.write(255 - data)
        dst.scales, dst.offsets = [-1.0] * 4, [255.0] * 4
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined]
    window = Window(256, 256, 256, 256)
    with SceneRaster(EXAMPLE) as plain, SceneRaster(tmp_path / "negated.tif") as negated:
        assert negated.inverted.tolist() == [True] * 3 and not plain.inverted.any()
        difference = np.abs(negated.read(window).image - plain.read(window).image)
        assert np.percentile(difference, 99) < 0.02  # the same picture, up to the 2/98 % cut points
        tile = _png(SceneTiles(negated).render(2, 1, 1)).astype(float)
    assert np.percentile(np.abs(tile - _png(example_tiles.render(2, 1, 1))), 99) <= 6


def test_large_uint16_scene_reads_through_overviews(tmp_path: Path) -> None:
    """A 16-bit tiled scene with overviews: low zooms come from overviews, still valid and stretched."""
    path = tmp_path / "big16.tif"
    with rasterio.open(EXAMPLE) as src:
        rgb = src.read((1, 2, 3)).astype(np.uint16) * 40
        transform, crs = src.transform, src.crs
    big = np.tile(rgb, (1, 4, 4))  # 2892 x 3736 px
    profile = dict(
        driver="GTiff", width=big.shape[2], height=big.shape[1], count=3, dtype="uint16", crs=crs,
        transform=transform, tiled=True, blockxsize=256, blockysize=256, compress="deflate", nodata=0,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(big)
        dst.build_overviews([2, 4, 8, 16], Resampling.average)
    raster = SceneRaster(path)
    tiles = SceneTiles(raster)
    raster.close()
    assert tiles.grid == PageGrid(transform, 3736, 2892)
    assert tiles.grid.max_zoom == 4
    for z, x, y in [(0, 0, 0), (2, 1, 1), (4, 10, 7)]:
        rgba = _png(tiles.render(z, x, y))
        assert rgba[..., 3].any() and rgba[..., :3].std() > 5
        assert rgba[..., :3][rgba[..., 3] > 0].max() > 200  # stretched, not the raw 16-bit range shifted down


@pytest.mark.parametrize("aspect", [1.0, 0.68, 1.5])
def test_page_coordinates_round_trip(aspect: float) -> None:
    """Scene CRS <-> page, also for pixels that are not square on the ground (aspect: width over
    height), whose longer side is stretched: one page unit spans the same ground both ways."""
    with rasterio.open(EXAMPLE) as src:
        grid = PageGrid(src.transform, src.width, src.height, aspect=aspect)
        corner_x, corner_y = grid.page_to_scene(0.0, 0.0)
        assert (corner_x, corner_y) == (src.bounds.left, src.bounds.top)
        x, y = grid.page_to_scene(100.25, -50.5)
        back = grid.scene_to_page_coords(np.array([[x, y]]))
        assert np.allclose(back, [[100.25, -50.5]])
        south, east = grid.page_bounds[0][0], grid.page_bounds[1][1]
        assert np.allclose(grid.page_to_scene(east, south), (src.bounds.right, src.bounds.bottom))
        (x0, y0), (x1, _), (_, y1) = (grid.page_to_scene(*p) for p in ((10, -10), (11, -10), (10, -11)))
        across, down = (x1 - x0) / src.transform.a, (y1 - y0) / src.transform.e  # scene pixels per page unit
        assert across * aspect == pytest.approx(down)  # ground: pixel widths x aspect = pixel heights
        _, _, width, height = grid.tile_window(grid.max_zoom, 0, 0)
        assert width * aspect == pytest.approx(height) and max(width, height) == grid.tile_size


def test_one_band_scene_is_grey(tmp_path: Path) -> None:
    """A single band (here NAIP's near infrared as 16-bit) shows as grey, as the model sees it."""
    path = tmp_path / "nir16.tif"
    with rasterio.open(EXAMPLE) as src:
        nir = src.read(4).astype(np.uint16) * 100
        profile = {**src.profile, "count": 1, "dtype": "uint16"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(nir, 1)
    raster = SceneRaster(path)
    rgba = _png(SceneTiles(raster).render(1, 0, 0))
    raster.close()
    opaque = rgba[..., 3] > 0
    assert opaque.mean() > 0.9
    assert (rgba[..., 0] == rgba[..., 1]).all() and (rgba[..., 1] == rgba[..., 2]).all()
    assert rgba[..., 0][opaque].std() > 20


def test_gcp_scene_shows_the_north_up_grid(tmp_path: Path, example_tiles: SceneTiles) -> None:
    """A scene placed by ground control points alone is shown on the warped north-up grid the
    model reads: its tiles are the original's."""
    path = tmp_path / "gcps.tif"
    with rasterio.open(EXAMPLE) as src:
        profile, data, transform = src.profile, src.read(), src.transform
    del profile["transform"], profile["crs"]
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.gcps = ([GroundControlPoint(row, col, *(transform @ (col, row))) for row in (0, 723) for col in (0, 934)],
                    CRS.from_epsg(26914))
    with SceneRaster(path) as raster:
        tiles = SceneTiles(raster)
        assert tiles.grid.max_zoom == example_tiles.grid.max_zoom
        for z, x, y in [(0, 0, 0), (2, 1, 1), (2, 3, 2)]:
            ours, original = _png(tiles.render(z, x, y)).astype(int), _png(example_tiles.render(z, x, y)).astype(int)
            if z == tiles.grid.max_zoom:  # native resolution: the same pixels
                assert np.array_equal(ours, original), (z, x, y)
            else:  # decimated by the warp instead of the file's overview: the scene's edge row may differ
                assert (ours[..., 3] != original[..., 3]).mean() < 0.01
                assert np.abs(ours - original)[..., :3].mean() < 8


def test_tile_readers_are_reused_across_threads_and_closed(tmp_path: Path, open_handles) -> None:
    """The server's worker threads come and go (AnyIO retires idle ones): 20 threads one after
    another read through one reused scene, not one each; the app's shutdown closes them."""
    import shutil
    import threading

    from fastapi.testclient import TestClient

    from mst_geo.api import Segmenter
    from mst_geo.app.server import create_app

    scene = shutil.copy(EXAMPLE, tmp_path / "scene.tif")
    with SceneRaster(scene) as raster:
        tiles = SceneTiles(raster)
    for _ in range(20):
        thread = threading.Thread(target=tiles.render, args=(0, 0, 0))
        thread.start()
        thread.join()
    assert open_handles(scene) == 1
    tiles.close()
    assert open_handles(scene) == 0

    with Segmenter(scene, model="mst_tiny") as segmenter:
        before = open_handles(scene)  # the segmenter's own
        with TestClient(create_app(segmenter)) as client:
            assert client.get("/tiles/0/0/0.png").status_code == 200
            assert open_handles(scene) > before
        assert open_handles(scene) == before  # the app's shutdown closed its tile readers


def test_closing_while_a_tile_renders_lets_it_finish(tmp_path: Path, open_handles) -> None:
    """The shutdown closes idle readers at once and a rendering one when its tile is done (it used
    to close the dataset under the tile and hand the closed reader to the next one)."""
    import shutil
    import threading

    scene = shutil.copy(EXAMPLE, tmp_path / "scene.tif")
    with SceneRaster(scene) as raster:
        tiles = SceneTiles(raster)
    tiles.render(0, 0, 0)  # one idle reader
    started, release = threading.Event(), threading.Event()
    part = Reader.part

    def slow_part(self, *args, **kwargs):
        started.set()
        release.wait(30)
        return part(self, *args, **kwargs)

    pngs: list[bytes] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Reader, "part", slow_part)
        worker = threading.Thread(target=lambda: pngs.append(tiles.render(0, 0, 0)))
        worker.start()
        assert started.wait(30)
        tiles.close()  # the idle-turned-busy reader is rendering: it stays open until done
        assert open_handles(scene) == 1
        release.set()
        worker.join(30)
    assert len(pngs) == 1 and _png(pngs[0]).shape == (256, 256, 4)
    assert open_handles(scene) == 0


def test_tile_version_changes_with_a_sidecar(tmp_path: Path) -> None:
    """External overviews built beside the scene change the low-zoom tiles: cached ones must not
    be reused (the version names every file GDAL reads, as the segment run's resume key does)."""
    scene = tmp_path / "scene.tif"
    with rasterio.open(EXAMPLE) as source:  # a plain GeoTIFF copy: no internal overviews
        profile, pixels = source.profile, source.read()
    with rasterio.open(scene, "w", **{**profile, "driver": "GTiff"}) as copy:
        copy.write(pixels)

    def version() -> str:
        raster = SceneRaster(scene)
        try:
            return SceneTiles(raster).version
        finally:
            raster.close()

    before, stat = version(), scene.stat()
    with rasterio.Env(TIFF_USE_OVR=True), rasterio.open(scene, "r+") as dataset:  # to scene.tif.ovr
        dataset.build_overviews([2, 4], Resampling.average)
    os.utime(scene, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the scene file itself as it was
    assert (tmp_path / "scene.tif.ovr").is_file() and scene.stat().st_size == stat.st_size
    assert version() != before
