"""PNG tiles of a scene in its own pixel grid, rendered with rio-tiler from windowed reads.

rio-tiler picks the overview that matches each tile's resolution, so a tile costs about the
same at any zoom and memory stays bounded however large the scene is (by GDAL's block cache,
``geo.raster.GDAL_CACHE_MB`` unless GDAL_CACHEMAX says otherwise). The bands and the
percentile stretch are the ones ``SceneRaster`` chose for the model, so the map shows what
the model sees. A tile borrows a reader from a pool (a rasterio dataset serves one thread at a
time), so no more scenes are open than tiles were ever rendered at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import warnings
from collections.abc import Iterator

import cv2
import numpy as np
import rasterio.windows
from rio_tiler.errors import NoOverviewWarning
from rio_tiler.io import Reader
from rio_tiler.models import ImageData

from mst_geo.app.pagegrid import PageGrid
from mst_geo.geo.journal import file_identity
from mst_geo.geo.raster import SceneRaster, close_scene, open_scene, palette_colours, pixel_reads, window_bounds

PNG_OPTIONS = (cv2.IMWRITE_PNG_COMPRESSION, 1)
WARNING_FILTERS = threading.Lock()
"""Held around every ``warnings.catch_warnings`` of the server's threads: the filters it swaps are
the process's, and two blocks that overlap and exit out of order would leave one's filters on."""


class SceneTiles:
    """Renders tile z/x/y of a scene as a PNG (stretched to 8 bits, nodata transparent)."""

    def __init__(self, raster: SceneRaster):
        self.source = raster.path
        self.bands = tuple(raster.bands)
        self.palette = raster.palette
        self.alpha_band = raster.alpha_band
        self.in_range = tuple(zip(raster.low.tolist(), raster.high.tolist()))
        self.inverted = raster.inverted
        self.grid = PageGrid(raster.transform, raster.width, raster.height, aspect=raster.pixel_aspect)
        look = ([file_identity(name) for name in raster.files], self.bands, self.in_range, self.inverted.tolist())
        self.version = hashlib.sha1(repr(look).encode()).hexdigest()[:12]
        """Changes with the file or its sidecars (an ``.ovr`` built later), bands or stretch, so
        browsers never show cached tiles of another look."""
        self._idle: queue.SimpleQueue[Reader] = queue.SimpleQueue()
        self._closed = False  # after close(), a reader coming back from a tile is closed, not kept
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Reader]:
        """A reader of the scene for one tile: an idle one, else a new one (a GDAL dataset serves
        one thread at a time). Readers outlive the server's worker threads, which come and go, so
        no more scenes are open than tiles were ever read at once."""
        try:
            reader = self._idle.get_nowait()
        except queue.Empty:
            dataset = open_scene(self.source)  # the grid the model reads (north-up, warped if need be)
            with WARNING_FILTERS, warnings.catch_warnings():  # a small scene without overviews is fine: windowed reads
                warnings.simplefilter("ignore", NoOverviewWarning)
                reader = Reader(str(self.source), dataset=dataset)
        try:
            yield reader
        finally:
            with self._lock:
                if self._closed:
                    close_scene(reader.dataset)
                else:
                    self._idle.put(reader)

    def close(self) -> None:
        """Close the idle readers' scenes now and those still rendering a tile when they finish
        (the app's shutdown)."""
        with self._lock:
            self._closed = True
            while not self._idle.empty():
                close_scene(self._idle.get_nowait().dataset)

    def read(self, z: int, x: int, y: int) -> ImageData:
        """Raw band values of tile z/x/y, masked outside the scene, on nodata and on NaN (as the
        model's reads are: a NaN pixel is no data, whatever the nodata tag says), a paletted band
        in its colours and transparent where an alpha band GDAL does not apply says so (as
        ``SceneRaster`` reads them)."""
        with self._reader() as reader:
            col, row, width, height = self.grid.tile_window(z, x, y)
            window = rasterio.windows.Window(col, row, width, height)
            bounds = window_bounds(window, reader.dataset.transform)
            size = self.grid.tile_size
            image = reader.part(
                bounds,
                dst_crs=reader.dataset.crs,
                bounds_crs=reader.dataset.crs,
                width=size,
                height=size,
                indexes=(self.bands[:1] if self.palette is not None else self.bands)
                + (() if self.alpha_band is None else (self.alpha_band,)),
                resampling_method="bilinear" if self.palette is None else "nearest",
            )
        if self.palette is not None or self.alpha_band is not None:
            image = self._as_model_reads(image)
        values = image.array
        missing = ~np.isfinite(values.data)
        if missing.any():
            values.mask = np.ma.getmaskarray(values) | missing.any(axis=0)
            values.data[missing] = 0
        values.fill_value = 0  # a NaN nodata tag's fill value would warn in every cast to 8 bits
        return image

    def _as_model_reads(self, image: ImageData) -> ImageData:
        """``image`` with its trailing alpha band applied as the mask and its palette indices
        expanded to colours."""
        values = image.array
        if self.alpha_band is not None:
            transparent = np.ma.getdata(values)[-1] == 0
            values = values[:-1]
        else:
            transparent = False
        mask = np.ma.getmaskarray(values).all(axis=0) | transparent  # no band valid, as the model's dataset mask
        data = np.ma.getdata(values)
        if self.palette is not None:
            data = palette_colours(self.palette, data[0])
        array = np.ma.MaskedArray(data, mask=np.broadcast_to(mask, data.shape).copy())
        return ImageData(array, bounds=image.bounds, crs=image.crs)

    def render(self, z: int, x: int, y: int) -> bytes:
        """Tile z/x/y as PNG bytes, stretched by the scene's per-band percentiles.

        Encoded with OpenCV at low zlib effort: the tiles travel over localhost, where encoding
        time matters and size does not (about half of GDAL's PNG time).
        """
        with pixel_reads(self.source):
            image = self.read(z, x, y).rescale(in_range=self.in_range)
        red, green, blue = np.where(self.inverted[:, None, None], 255 - image.data, image.data)  # as the model reads them
        ok, png = cv2.imencode(".png", np.dstack([blue, green, red, image.mask]), PNG_OPTIONS)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode tile {z}/{x}/{y}")
        return png.tobytes()
