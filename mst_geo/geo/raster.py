"""Windowed access to a GeoTIFF scene of any size: band choice, nodata, percentile normalisation.

A scene is a local file or a URL / GDAL virtual path (``https://.../scene.tif``, ``s3://...``,
``/vsicurl/...``): a cloud-optimised GeoTIFF on a server is read window by window over HTTP
range requests, never downloaded whole.

Nothing here reads the whole raster: the per-band percentiles come from windows sampled over the
scene at native resolution (an overview only when those are all nodata), and every image read
is a window, decimated through the overviews (``out_shape``) when it is larger than the model input.

A scene georeferenced by a rotated or south-up geotransform, by ground control points alone (a
scanned map) or by RPCs alone (a level-1 satellite image, warped to WGS84) is read through a
north-up warped VRT (``open_scene``): the windows, the polygons and the mask GeoTIFF all live on
that axis-aligned grid.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import contextlib
import os
import re
import warnings

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NodataShadowWarning, NotGeoreferencedWarning, RasterioIOError
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from mst_geo.errors import MSTGeoError, a_few, warn
from mst_geo.geo.bands import BandRef, band_choice, sensor_rgb
from mst_geo.geo.ground import ground_steps

GDAL_CACHE_MB = 256
"""GDAL's block cache unless the ``GDAL_CACHEMAX`` environment variable is set: its default, 5 % of
the machine's memory, makes a run's memory grow with the machine rather than with the work: 16
objects of a 30 000² px scene peaked at 2.3 GB on a 24 GB machine, 1.4 GB with this cache, same
polygons, same time. Applied whenever a scene opens (``bound_gdal_cache``), in this process only."""

PERCENTILES = (2.0, 98.0)
"""Per-band stretch (the cumulative-count cut GIS viewers use), so the model sees what the analyst sees."""

MIN_STATS_SHARE = 0.01
"""The stretch leaves out flat fill and saturated pixels unless fewer than this share of the valid
pixels, or fewer than 100, would remain: then the scene is that flat, and all valid pixels count."""

STATS_MAX_SIDE = 1024
"""Scenes up to this side are read whole for the percentiles; larger ones are sampled."""

STATS_GRID = 8
STATS_WINDOW = 256
"""Larger scenes: a STATS_GRID x STATS_GRID grid of STATS_WINDOW² px windows at native resolution."""

RGB_INTERP = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)

REMOTE_SCHEMES = {"http", "https", "ftp", "s3", "gs", "az", "oss"}
"""URL schemes rasterio reads over the network."""

REMOTE_VSI = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift", "/vsiwebhdfs")
"""GDAL's network file systems (local archives such as /vsizip/ are not among them)."""


def flat_pixels(values: np.ndarray) -> np.ndarray:
    """(bands, h, w) -> (h, w): pixels whose 3x3 neighbourhood holds their own value in every band.
    Imagery has noise, so such patches are fill or padding that no nodata tag marks."""
    data = np.ma.getdata(values)
    height, width = data.shape[1:]
    padded = np.pad(data, ((0, 0), (1, 1), (1, 1)), mode="edge")
    flat = np.ones((height, width), bool)
    for dy in range(3):
        for dx in range(3):
            flat &= (padded[:, dy:dy + height, dx:dx + width] == data).all(axis=0)
    return flat


def scene_source(path: str | Path) -> str | Path:
    """A network URL or GDAL network path as the text GDAL reads (a Path would fold ``https://``),
    anything else as a local Path (``~`` expanded: Python callers get no shell to do it)."""
    text = str(path)
    remote = urlparse(text).scheme.lower() in REMOTE_SCHEMES or text.startswith(REMOTE_VSI)
    return text if remote else Path(path).expanduser()


def public_source(path: str | Path) -> str:
    """The scene as run files and cards record it: a URL without its query and fragment (a presigned
    URL's signature is a secret and changes with each signing), a local path as it is."""
    source = scene_source(path)
    return urlparse(source)._replace(query="", fragment="").geturl() if isinstance(source, str) else str(source)


def scene_location(path: str | Path) -> str:
    """Where the scene is, as one string every spelling of it shares: a local file's resolved
    path, a URL without its query (``public_source``). Run records compare scenes by it."""
    source = scene_source(path)
    return str(source.resolve()) if isinstance(source, Path) else public_source(source)


def band_key(name: str) -> str:
    """How a band name is matched: case and the zeros padding its numbers aside, so Sentinel-2's
    ``B04`` (SAFE files) and ``B4`` (many exports) name one band; ``B8A`` and ``B10`` stay apart."""
    return re.sub(r"(?<![0-9])0+(?=[0-9])", "", name.strip().lower())


def scene_name(source: str | Path) -> str:
    """The scene's file name (a URL's last path part, decoded, without its query), for output names."""
    source = scene_source(source)
    if isinstance(source, Path):
        return source.name
    return PurePosixPath(unquote(urlparse(source).path)).name or "scene"


def scene_stem(source: str | Path) -> str:
    """The scene's file name without its extension: what default output names start with."""
    return PurePosixPath(scene_name(source)).stem


def opening(source: str | Path) -> rasterio.Env:
    """The GDAL settings to open ``source`` with: for a URL no directory listing or sidecar
    probes (one request less per open), for a local file GDAL's defaults."""
    remote = isinstance(scene_source(source), str)
    return rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR") if remote else rasterio.Env()


@dataclass(frozen=True)
class WindowImage:
    """One read: the normalised image of a scene window and where its pixels lie on the map.

    ``image`` is float32 HxWx3 in 0..1; ``valid`` is False on nodata / masked pixels;
    ``transform`` maps the (possibly decimated) image pixels to scene CRS coordinates.
    """

    image: np.ndarray
    valid: np.ndarray
    window: Window
    transform: Affine

    @property
    def native_pixels(self) -> float:
        """Scene pixels per image pixel: more than 1 where a large window was read decimated, less
        where pixels not square on the ground were resampled along their longer side."""
        rows, cols = self.scale
        return rows * cols

    @property
    def scale(self) -> tuple[float, float]:
        """Scene pixels per image pixel along (rows, cols); 1 at native resolution."""
        return window_scale(self.window, self.image.shape)


def window_scale(window: Window, shape: tuple[int, ...]) -> tuple[float, float]:
    """Scene pixels per array pixel along (rows, cols) of an array of ``shape`` covering ``window``."""
    return window.height / shape[0], window.width / shape[1]


class SceneRaster:
    """An open scene: georeferencing, the chosen bands and their stretch, and windowed reads."""

    def __init__(self, path: str | Path, bands: Sequence[BandRef] | None = None):
        if not isinstance(path, (str, Path)):
            raise MSTGeoError(f"the scene must be a GeoTIFF's path or URL, got {type(path).__name__}")
        self.path = scene_source(path)
        if isinstance(self.path, Path) and self.path.is_dir():
            raise MSTGeoError("is a folder, not a raster (give the GeoTIFF's path; tiles go through a VRT mosaic)",
                              self.path)
        if isinstance(self.path, Path) and not self.path.is_file():
            raise MSTGeoError("raster not found", self.path)
        self.dataset = open_scene(self.path)
        try:
            self.bands = self._choose_bands(bands)
            self._refuse_complex_bands()
            self.palette = self._palette()
            self.alpha_band = self._unapplied_alpha()
            self.pixel_aspect = ground_pixel_aspect(self.dataset)
            with pixel_reads(self.path):
                self.low, self.high = self._estimate_percentiles()
            self.inverted = self._inverted_bands()
        except BaseException:
            close_scene(self.dataset)
            raise

    # -- georeferencing -------------------------------------------------------------------------
    @property
    def crs(self) -> rasterio.crs.CRS:
        return self.dataset.crs

    @property
    def transform(self) -> Affine:
        return self.dataset.transform

    @property
    def width(self) -> int:
        return self.dataset.width

    @property
    def height(self) -> int:
        return self.dataset.height

    @property
    def bounds(self) -> rasterio.coords.BoundingBox:
        return self.dataset.bounds

    # -- bands and normalisation ----------------------------------------------------------------
    def _choose_bands(self, bands: Sequence[BandRef] | None) -> tuple[int, int, int]:
        """Three band indexes for the model's RGB input: the user's (numbers or descriptions), RGB
        by colour interpretation, else by description (bands described red, green, blue, else
        named as Sentinel-2 or Landsat 8/9 name them: ``sensor_rgb``), else the first three bands
        that are not alpha, else the first such band as grey (two bands, say red and near
        infrared, make no colour image). A guess among more than three bands, or among two, is
        announced (``MSTGeoWarning``): the wrong bands cost far more clicks."""
        if bands is not None:
            chosen = tuple(self._band_number(band) for band in band_choice(bands, self.path))
        else:
            interp = self.dataset.colorinterp
            named = self._named_bands()
            data_bands = [band for band, colour in enumerate(interp, 1) if colour != ColorInterp.alpha] or [1]
            if all(colour in interp for colour in RGB_INTERP):
                chosen = tuple(interp.index(colour) + 1 for colour in RGB_INTERP)
            elif all(len(named.get(colour, ())) == 1 for colour in ("red", "green", "blue")):
                chosen = tuple(named[colour][0] for colour in ("red", "green", "blue"))
            elif (sensor_bands := sensor_rgb(named)) is not None:
                chosen = sensor_bands
            else:
                chosen = tuple(data_bands[:3]) if len(data_bands) >= 3 else (data_bands[0],)
                if len(data_bands) != len(chosen):
                    used = "as R,G,B" if len(chosen) == 3 else "as grey"
                    warn(f"{self.path}: {len(data_bands)} bands without colour names; reading band(s) "
                         f"{','.join(map(str, chosen))} {used} (choose them with --bands, or bands= in Python)")
        if len(chosen) < 3:  # grey: repeat the band so the model gets three channels
            chosen = (chosen + (chosen[0],) * 3)[:3]
        return chosen  # type: ignore[return-value]

    @property
    def _source_file(self) -> DatasetReader:
        """The file's own dataset, also under a warp, whose VRT carries neither the file's type
        (it reads float32), nor its scale tags, nor its list of files."""
        return getattr(self.dataset, "src_dataset", self.dataset)

    def _inverted_bands(self) -> np.ndarray:
        """Per chosen band, whether its scale tag is negative: its stored values run against the
        quantity they encode, so it is stretched the other way (a positive scale or any offset
        changes nothing a percentile stretch sees)."""
        if self.palette is not None:  # indices into a colour table, whatever the tag says
            return np.zeros(3, bool)
        return np.array([self._source_file.scales[band - 1] < 0 for band in self.bands])

    def _refuse_complex_bands(self) -> None:
        """Complex samples (a SAR SLC) have no order to stretch: the model needs their amplitude."""
        kinds = {self.dataset.dtypes[band - 1] for band in self.bands}
        complex_kinds = sorted(kind for kind in kinds if kind.startswith("complex"))  # complex_int16 too
        if complex_kinds:
            raise MSTGeoError(f"band(s) of complex type {', '.join(complex_kinds)}: take the amplitude first "
                              "(e.g. gdal_translate -ot Float32 with a VRT pixel function 'mod')", self.path)

    def _described_bands(self) -> list[tuple[int, str]]:
        """(band number, description) of the bands that have one."""
        return [(band, text.strip()) for band, text in enumerate(self.dataset.descriptions, 1) if text and text.strip()]

    def _coloured_bands(self) -> list[tuple[int, str]]:
        """(band number, colour interpretation) of the bands whose colour is named ("red" of an RGB file)."""
        return [(band, colour.name) for band, colour in enumerate(self.dataset.colorinterp, 1)
                if colour not in (ColorInterp.undefined, ColorInterp.alpha)]

    def _named_bands(self) -> dict[str, list[int]]:
        """Band numbers by name key (``band_key``): descriptions (a stack of two dates repeats
        them), and colour interpretations where no description uses the name."""
        coloured: dict[str, list[int]] = {}
        described: dict[str, list[int]] = {}
        for table, bands in ((coloured, self._coloured_bands()), (described, self._described_bands())):
            for band, name in bands:
                table.setdefault(band_key(name), []).append(band)
        return {**coloured, **described}

    def _band_number(self, band: BandRef) -> int:
        """A band the user chose, by number or description, as its number (checked to exist)."""
        count = self.dataset.count
        if isinstance(band, str):
            named = self._named_bands()
            if band_key(band) not in named:
                names: dict[int, list[str]] = {}
                for number, name in sorted(self._described_bands() + self._coloured_bands()):
                    names.setdefault(number, []).append(repr(name))
                interp = self.dataset.colorinterp
                every = [f"{number} {'/'.join(names.get(number) or ['alpha' if interp[number - 1] == ColorInterp.alpha else 'unnamed'])}"
                         for number in range(1, count + 1)]
                raise MSTGeoError(f"no band described or coloured as {band!r} (bands: "
                                  f"{a_few(every, 12) if names else 'none is named'})", self.path)
            numbers = named[band_key(band)]
            if len(numbers) > 1:
                raise MSTGeoError(f"bands {' and '.join(map(str, numbers))} are all named {band!r}: "
                                  "choose them by number", self.path)
            return numbers[0]
        if not 1 <= band <= count:
            raise MSTGeoError(f"band {band} requested but the raster has bands 1..{count}", self.path)
        return band

    def _palette(self) -> np.ndarray | None:
        """The colour table (index -> R,G,B) when the chosen band is paletted, else None: a
        paletted scene's pixel values are indices, whose order says nothing about colour."""
        band = self.bands[0]
        if self.bands != (band,) * 3 or self.dataset.colorinterp[band - 1] != ColorInterp.palette:
            return None
        try:
            table = self.dataset.colormap(band)
        except ValueError:  # tagged paletted without a table: its values are all there is
            return None
        lut = np.zeros((max(256, max(table) + 1), 3), np.float32)
        for index, colour in table.items():
            lut[index] = colour[:3]
        return lut

    def _unapplied_alpha(self) -> int | None:
        """An alpha band that GDAL does not apply as the mask, else None. GDAL applies alpha only
        in the grey+alpha and RGBA layouts; ``gdalwarp -dstalpha`` on an R,G,B,NIR image puts it
        in band 5, where its transparent pixels would otherwise read as data."""
        interp = self.dataset.colorinterp
        if ColorInterp.alpha not in interp or MaskFlags.alpha in self.dataset.mask_flag_enums[self.bands[0] - 1]:
            return None
        return interp.index(ColorInterp.alpha) + 1

    def _values(self, window: Window | None = None, out_shape: tuple[int, int] | None = None,
                resampling: Resampling = Resampling.nearest, masked: bool = True) -> np.ndarray:
        """The chosen bands as three planes (``masked``: a masked array, masked on nodata, masked
        pixels and transparent alpha); a paletted band is expanded through its colour table, read
        nearest (averaged indices would be colours that are not there)."""
        if self.palette is None:
            values = self.dataset.read(self.bands, window=window, out_shape=out_shape and (3, *out_shape),
                                       resampling=resampling, masked=masked)
        else:
            index = self.dataset.read(self.bands[0], window=window, out_shape=out_shape, masked=masked)
            values = palette_colours(self.palette, np.ma.getdata(index))
            if masked:
                values = np.ma.MaskedArray(values, mask=np.broadcast_to(np.ma.getmaskarray(index), values.shape).copy())
        if masked and self.alpha_band is not None:
            values.mask = np.ma.getmaskarray(values) | ~self._opaque(window, values.shape[1:])
        return values

    def _opaque(self, window: Window | None, shape: tuple[int, int]) -> np.ndarray:
        """Where an alpha band GDAL does not apply (``alpha_band``) is not transparent."""
        if self.alpha_band is None:
            return np.ones(shape, bool)
        return self.dataset.read(self.alpha_band, window=window, out_shape=shape) > 0

    def _estimate_percentiles(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-band low/high percentiles of the valid pixels that carry the scene's contrast (see
        ``_stats_sample``): fill without a nodata tag (a flat pad of one value) or pixels saturated
        at the type's maximum (clouds in a uint16 scene) would otherwise set the range, and every
        object would be read washed out or clipped."""
        samples, flat = self._stats_sample()
        valid = ~np.ma.getmaskarray(samples) & np.isfinite(samples.data)
        if not valid.any(axis=1).all():
            raise MSTGeoError("raster holds only nodata pixels in the chosen bands", self.path)
        informative = valid & ~flat
        stored = np.dtype(self._source_file.dtypes[self.bands[0] - 1])
        if self.palette is None and np.issubdtype(stored, np.integer):  # the file's type, not a warp's float32
            informative &= samples.data < np.iinfo(stored).max
        enough = informative.sum(axis=1) >= np.maximum(100, MIN_STATS_SHARE * valid.sum(axis=1))
        counted = np.where(enough[:, None], informative, valid)
        low, high = np.array([np.percentile(band[ok], PERCENTILES) for band, ok in zip(samples.data, counted)]).T
        high = np.where(high > low, high, low + 1.0)  # a constant band maps to 0, not to NaN
        return low.astype(np.float32), high.astype(np.float32)

    def _stats_sample(self) -> tuple[np.ma.MaskedArray, np.ndarray]:
        """Pixels for the statistics at native resolution, as (3, N) values and whether each lies
        in a flat patch (``flat_pixels``): the whole raster when small, else windows on a grid
        snapped to block origins (one block each when tiled). Overviews are only the fallback
        (when every sampled window is nodata): averaged pixels narrow the 2/98 % range, so a large
        scene would be stretched differently from a small one."""
        longest = max(self.width, self.height)
        if longest > STATS_MAX_SIDE:
            sample, flat = self._sampled_windows()
            if not np.ma.getmaskarray(sample).all():
                return sample, flat
        factor = max(1.0, longest / STATS_MAX_SIDE)
        values = self._values(out_shape=(max(1, round(self.height / factor)), max(1, round(self.width / factor))))
        return np.ma.reshape(values, (3, -1)), flat_pixels(values).ravel()

    def _sampled_windows(self) -> tuple[np.ma.MaskedArray, np.ndarray]:
        """Every other pixel of up to STATS_GRID² windows of STATS_WINDOW² px spread over the scene."""
        block_h, block_w = self.dataset.block_shapes[self.bands[0] - 1]
        pieces, flat = [], []
        for row in _grid_starts(self.height, block_h):
            for col in _grid_starts(self.width, block_w):
                window = Window(col, row, STATS_WINDOW, STATS_WINDOW).intersection(self._full)
                piece = self._values(window)[:, ::2, ::2]
                pieces.append(np.ma.reshape(piece, (3, -1)))
                flat.append(flat_pixels(piece).ravel())
        return np.ma.concatenate(pieces, axis=1), np.concatenate(flat)

    @property
    def _full(self) -> Window:
        return Window(0, 0, self.width, self.height)

    # -- reads ----------------------------------------------------------------------------------
    def read(self, window: Window, max_side: int | None = None) -> WindowImage:
        """Read ``window`` (clipped to the scene) on square ground pixels, decimated so its longest
        side is <= ``max_side``. Pixels that are not square on the ground (a scene in degrees: 0.68
        as wide as high at 47°N) are resampled along their longer side, so the model sees the
        ground undistorted, as it saw photos in training."""
        window = window.intersection(self._full)
        (out_h, out_w), transform = self.read_grid(window, max_side)
        with pixel_reads(self.path):
            raw = self._values(window, (out_h, out_w), Resampling.bilinear, masked=False).astype(np.float32)
            valid = self._holds_data(window, (out_h, out_w)) & np.isfinite(raw).all(axis=0)
        image = (raw - self.low[:, None, None]) / (self.high - self.low)[:, None, None]
        image = np.clip(np.nan_to_num(np.moveaxis(image, 0, -1)), 0.0, 1.0)
        image[..., self.inverted] = 1.0 - image[..., self.inverted]
        image[~valid] = 0.0
        return WindowImage(image=np.ascontiguousarray(image), valid=valid, window=window, transform=transform)

    def read_grid(self, window: Window, max_side: int | None = None) -> tuple[tuple[int, int], Affine]:
        """The (rows, cols) and pixel-to-map transform of ``read(window, max_side)``: square ground
        pixels, longest side <= max_side."""
        height, width = int(window.height), int(window.width)
        across, down = pixel_stretch(self.pixel_aspect)
        factor = 1.0 if max_side is None else max(1.0, max(height * down, width * across) / max_side)
        out_h, out_w = max(1, round(height * down / factor)), max(1, round(width * across / factor))
        window_origin = Affine.translation(window.col_off, window.row_off)  # rasterio's window_transform, without
        transform = self.transform @ window_origin @ Affine.scale(width / out_w, height / out_h)  # its `*` warning
        return (out_h, out_w), transform

    @property
    def may_lack_data(self) -> bool:
        """Whether some pixel of the bands read may hold no data: a nodata value, a mask or alpha
        band, or floating-point samples (NaN). Without any of these every pixel is data."""
        masked = any(self.dataset.mask_flag_enums[band - 1] != [MaskFlags.all_valid] for band in set(self.bands))
        return masked or self._float_bands or self.alpha_band is not None

    @property
    def _float_bands(self) -> bool:
        """Whether a band read holds floating-point samples, whose NaN is no data."""
        return any(np.issubdtype(np.dtype(self.dataset.dtypes[band - 1]), np.floating) for band in set(self.bands))

    def holds_data(self, window: Window, max_side: int | None = None) -> tuple[np.ndarray, Affine]:
        """Where the window holds data on ``read(window, max_side)``'s grid, and that grid's transform,
        reading the masks alone (and the values of floating-point bands, nearest, for their NaN:
        ``read`` resamples them bilinearly, so a pixel beside NaN may differ)."""
        window = window.intersection(self._full)
        shape, transform = self.read_grid(window, max_side)
        with pixel_reads(self.path):
            valid = self._holds_data(window, shape)
            if self._float_bands:
                valid &= np.isfinite(self._values(window, shape, masked=False)).all(axis=0)
        return valid, transform

    def is_valid(self, row: float, col: float) -> bool:
        """Whether the scene pixel under (row, col) holds data (not nodata, not masked, not NaN)."""
        valid, _ = self.holds_data(Window(int(col), int(row), 1, 1))
        return bool(valid[0, 0])

    def _holds_data(self, window: Window, shape: tuple[int, int]) -> np.ndarray:
        """Where the chosen bands hold data: not all of them nodata (GDAL's rule for a nodata value,
        so a dark pixel with one band at 0 is data, but over the bands the model reads, not every
        band of a stack whose bands cover different footprints), not masked, not transparent."""
        bands = sorted(set(self.bands))
        masks = self.dataset.read_masks(bands, window=window, out_shape=(len(bands), *shape),
                                        resampling=Resampling.nearest)
        return (masks > 0).any(axis=0) & self._opaque(window, shape)

    @property
    def files(self) -> list[str | Path]:
        """What GDAL reads for this scene: the file and its sidecars (external overviews ``.ovr``, a
        mask ``.msk``, ``.aux.xml`` metadata), which change what the model sees as the file does; a
        URL alone (its sidecars are not probed)."""
        if isinstance(self.path, str):
            return [self.path]
        return [Path(name) for name in self._source_file.files]

    # -- lifetime -------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.dataset.closed

    def close(self) -> None:
        close_scene(self.dataset)

    def __enter__(self) -> SceneRaster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def window_bounds(window: Window, transform: Affine) -> tuple[float, float, float, float]:
    """The window's (left, bottom, right, top) in map coordinates, its corners through ``transform``
    (rasterio's ``windows.bounds`` gives the same through the ``*`` that affine deprecates)."""
    (x0, y0), (x1, y1) = (transform @ (col, row) for col, row in (
        (window.col_off, window.row_off), (window.col_off + window.width, window.row_off + window.height)))
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def palette_colours(palette: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Colour-table indices (HxW) as 3xHxW colours through ``palette`` (index -> R,G,B; an index
    past the table takes its last row), for the model's reads and the app's tiles alike."""
    return np.moveaxis(palette.take(np.asarray(index, dtype=np.int64), axis=0, mode="clip"), -1, 0)


def bound_gdal_cache() -> None:
    """Hold GDAL's block cache to at most ``GDAL_CACHE_MB`` unless the environment sets
    ``GDAL_CACHEMAX``. Checked at every open: a ``rasterio.Env`` left since the last one restores
    GDAL's default, and GDAL takes a new size even after its cache has been used."""
    bound = GDAL_CACHE_MB << 20  # bytes here (MB only in the environment)
    if "GDAL_CACHEMAX" not in os.environ and rasterio.env.get_gdal_config("GDAL_CACHEMAX") > bound:
        rasterio.env.set_gdal_config("GDAL_CACHEMAX", bound)


def open_scene(source: str | Path) -> DatasetReader | WarpedVRT:
    """Open a scene for pixel reads on a north-up grid in its CRS.

    A north-up scene opens as it is. A rotated or flipped (south-up) geotransform, ground control
    points without a geotransform, or RPCs alone (a level-1 satellite image: warped to WGS84 at
    the RPCs' mean height, GDAL's RPC transformer without a DEM) are warped on the fly (bilinear, GDAL's own
    VRT), so callers never meet a rotated grid; a scene with none of these is refused (nothing
    would place its polygons on the map).
    """
    bound_gdal_cache()
    try:
        with warnings.catch_warnings(), opening(source):  # georeferencing is checked below
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(source)
    except RasterioIOError as error:
        raise MSTGeoError(f"cannot read as a raster ({_first_line(error)})", source) from None
    gcps, gcp_crs = dataset.gcps
    transform = dataset.transform
    # No geotransform but RPCs: they place it (more finely than a level-1 product's corner GCPs), in
    # WGS84 longitude/latitude whatever CRS tag the file carries.
    placed_by_rpcs = transform.is_identity and dataset.rpcs is not None
    if placed_by_rpcs:
        crs = rasterio.crs.CRS.from_epsg(4326)
    else:
        crs = dataset.crs or (gcp_crs if gcps else None)
    problem = None
    if crs is None:
        problem = "raster has no CRS (georeference it, e.g. gdal_edit.py -a_srs EPSG:xxxx)"
    elif transform.is_identity and not gcps and not placed_by_rpcs:
        problem = "raster has no geotransform, ground control points or RPCs (pixel-to-map mapping)"
    if problem:
        dataset.close()
        raise MSTGeoError(problem, source)
    if transform.b == transform.d == 0 and transform.a > 0 > transform.e:  # north-up (never identity)
        return dataset
    # Nodata or an alpha band mark the grid's corners outside the image. Without either they would
    # read as black pixels (a VRT's default nodata 0, which also hides real zeros; an added alpha
    # band is not reported as its mask): warp to float with NaN as nodata instead.
    # A paletted image's values are colour-table indices: warped nearest (averaged indices are
    # colours that are not there), its corners marked by an added alpha band (its indices stay integers).
    paletted = ColorInterp.palette in dataset.colorinterp
    unmarked = dataset.nodata is None and ColorInterp.alpha not in dataset.colorinterp
    if paletted:
        marks = {"add_alpha": True} if unmarked else {}
    else:
        marks = {"dtype": "float32", "nodata": float("nan")} if unmarked else {}
    resampling = Resampling.nearest if paletted else Resampling.bilinear
    # RPCs at the image's mean height (RPC_HEIGHT 0 would shift a plateau at 1 000 m by hundreds of metres)
    by_rpcs = {"METHOD": "RPC", "RPC_HEIGHT": dataset.rpcs.height_off, "src_crs": crs} if placed_by_rpcs else {}
    try:
        with opening(source):
            return WarpedVRT(dataset, crs=crs, resampling=resampling, **marks, **by_rpcs)
    except BaseException:  # GDAL cannot warp it: the file is not left open behind the error
        dataset.close()
        raise


SQUARE_ENOUGH = 0.01
"""Pixels whose ground width and height differ by less than this share are read as square."""


def ground_pixel_aspect(dataset: DatasetReader | WarpedVRT) -> float:
    """Ground width over ground height of the scene's central pixel, geodesic on the CRS's
    ellipsoid: 1 for square pixels in a conformal projection (UTM, Web Mercator), about 0.68 for
    a scene in degrees at 47°N; the grid's own ratio for a local CRS without a datum."""
    transform = dataset.transform
    col, row = dataset.width / 2, dataset.height / 2
    steps = ground_steps(dataset.crs.to_wkt(), transform @ (col, row), transform @ (col + 1, row),
                         transform @ (col, row + 1))
    if steps is None:
        return abs(transform.a) / abs(transform.e)
    aspect = steps[0] / steps[1]
    return 1.0 if abs(aspect - 1.0) < SQUARE_ENOUGH else float(aspect)


def pixel_stretch(aspect: float) -> tuple[float, float]:
    """How many times to stretch (columns, rows) so pixels of ground ``aspect`` (width / height)
    become square: their longer ground side, never shrinking the shorter one."""
    return max(1.0, aspect), max(1.0, 1.0 / aspect)


def close_scene(dataset: DatasetReader | WarpedVRT) -> None:
    """Close what ``open_scene`` opened (a warped VRT and the file under it)."""
    dataset.close()
    if isinstance(dataset, WarpedVRT):
        dataset.src_dataset.close()


def _grid_starts(length: int, step: int) -> list[int]:
    """Up to STATS_GRID offsets spread over ``length``, each on a multiple of ``step`` (block origins)."""
    origins = range(0, length, step)
    picks = np.linspace(0, len(origins) - 1, min(STATS_GRID, len(origins))).round().astype(int)
    return sorted({origins[i] for i in picks})


@contextlib.contextmanager
def pixel_reads(path: str | Path) -> Iterator[None]:
    """Around pixel reads: a read that fails (a truncated or corrupt file, a lost connection to a
    URL's server) is a user error naming the scene; rasterio's warning that nodata shadows an alpha band is silenced (a 4-band RGBN
    scene with nodata, such as NAIP, is not RGBA, and the nodata value is exactly the mask we want)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NodataShadowWarning)
        try:
            yield
        except RasterioIOError as error:
            cause = "the server did not answer" if isinstance(path, str) else "the file may be truncated or corrupt"
            raise MSTGeoError(f"cannot read its pixels, {cause} ({_first_line(error)})", path) from None


def _first_line(error: BaseException) -> str:
    """GDAL's own reason: the first line of the innermost cause (rasterio's outer message may only
    say "Read failed. See previous exception for details.")."""
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
