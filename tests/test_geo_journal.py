"""geo.journal: finished objects stored exactly and only reused by the same run."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.windows import Window

from mst_geo.geo.journal import ObjectJournal
from mst_geo.geo.prompts import PixelMapper
from mst_geo.geo.scene import ObjectMask


def pond_result(naip_scene) -> ObjectMask:
    """A real object: the pond's near-infrared darkness as a probability, over its window."""
    window = Window(780, 0, 154, 140)
    with rasterio.open(naip_scene) as src:
        nir = src.read(4, window=window).astype(np.float32)
        mapper = PixelMapper(src.crs, src.transform, src.width, src.height)
        transform = src.window_transform(window)
    click = mapper.click(*(mapper.transform @ (860.5, 40.5)), True, None)
    return ObjectMask(1 - nir / 255, nir > 0, window, transform, (click,), zoom=(0, 0, 140, 154))


def test_round_trip_is_exact_and_keyed_by_run(tmp_path, naip_scene):
    result = pond_result(naip_scene)
    journal = ObjectJournal(tmp_path / "j", {"scene": "a", "model": 1})
    assert journal.load(result.clicks) is None
    journal.save(result)
    back = ObjectJournal(tmp_path / "j", {"model": 1, "scene": "a"}).load(result.clicks)
    np.testing.assert_array_equal(back.probability, result.probability)
    np.testing.assert_array_equal(back.mask, result.mask)
    assert (back.window, back.transform, back.zoom, back.clicks) == (result.window, result.transform, result.zoom, result.clicks)
    assert ObjectJournal(tmp_path / "j", {"scene": "b", "model": 1}).load(result.clicks) is None  # another run
    assert not (tmp_path / "j").exists()  # its leftovers were dropped


def test_entry_is_only_returned_for_exactly_its_clicks(tmp_path, naip_scene):
    """A longer, shorter, relabelled or reordered click list is another object: never the stored one."""
    result = pond_result(naip_scene)
    (click,) = result.clicks
    with rasterio.open(naip_scene) as src:
        mapper = PixelMapper(src.crs, src.transform, src.width, src.height)
    negative = mapper.click(*(mapper.transform @ (885.5, 60.5)), False, None)
    journal = ObjectJournal(tmp_path / "j", {"scene": "a"})
    journal.save(result)
    assert journal.load(result.clicks) is not None
    assert journal.load((click, negative)) is None  # the same clicks plus one more
    assert journal.load((negative,)) is None  # another click
    assert journal.load((mapper.click(click.x, click.y, False, None),)) is None  # same place, other label
    journal.save(ObjectMask(result.probability, result.valid, result.window, result.transform, (click, negative)))
    assert journal.load((click, negative)) is not None
    assert journal.load((negative, click)) is None  # order matters: the model saw them in order
    assert journal.load((click,)).clicks == (click,)  # the one-click entry is still its own


def test_a_vrt_of_zipped_tiles_is_identified_by_its_files(tmp_path, write_geotiff):
    """A VRT whose tile lies in a zip: GDAL lists the tile as a /vsizip/ name, which has no file to
    stat; it is identified by its name, the VRT by its own size and date (was FileNotFoundError)."""
    import zipfile

    from mst_geo.geo.journal import file_identity, files_digest
    from mst_geo.geo.raster import SceneRaster

    tile = write_geotiff("tile.tif", np.full((3, 20, 30), 90, dtype=np.uint8))
    with zipfile.ZipFile(tmp_path / "tiles.zip", "w") as archive:
        archive.write(tile, "tile.tif")
    tile.unlink()
    inner = f"/vsizip/{tmp_path / 'tiles.zip'}/tile.tif"
    bands = "".join(f'<VRTRasterBand dataType="Byte" band="{band}"><SimpleSource><SourceFilename>{inner}'
                    f"</SourceFilename><SourceBand>{band}</SourceBand></SimpleSource></VRTRasterBand>"
                    for band in (1, 2, 3))
    mosaic = tmp_path / "mosaic.vrt"
    mosaic.write_text(f'<VRTDataset rasterXSize="30" rasterYSize="20"><SRS>EPSG:26914</SRS>'
                      f"<GeoTransform>485899, 5, 0, 5209246, 0, -5</GeoTransform>{bands}</VRTDataset>")
    with SceneRaster(mosaic) as raster:
        identities = [file_identity(name) for name in raster.files]
        assert any(str(name).startswith("/vsizip/") for name in raster.files)
        assert {"size", "mtime_ns"} <= set(identities[0]) and len(files_digest(raster.files)) == 12
