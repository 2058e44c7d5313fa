"""The public API: ``Segmenter`` for notebooks and the web app, ``segment_scene`` behind the CLI.

``segment_scene`` is a ``Segmenter`` fed with a clicks file, so the CLI, a notebook and the app
produce the same polygons for the same clicks, and ``Segmenter.clicks_geojson()`` fed back to
``mst-geo segment`` reproduces them.
"""

from __future__ import annotations

import math
import numbers
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
from affine import Affine
from shapely.geometry import Point
from pyproj import CRS
from tqdm.auto import tqdm  # imported quietly by mst_geo/__init__.py (a notebook without ipywidgets)

import mst_geo
from mst_geo.geo.bands import BandRef
from mst_geo.clicks.predictor import Predictor
from mst_geo.devices import torch_device
from mst_geo.errors import MSTGeoError, a_few, warn
from mst_geo.geo.io import (
    MaskOutput,
    ObjectRecord,
    check_output_crs,
    check_outputs,
    polygons_frame,
    write_outputs,
)
from mst_geo.geo.journal import ObjectJournal, file_identity
from mst_geo.geo.prompts import (
    ObjectId,
    PixelMapper,
    SceneClick,
    clicks_from_geojson,
    clicks_to_geojson,
    frame_as_geojson,
    parse_crs,
    parse_label,
    parse_object_id,
    read_clicks,
)
from mst_geo.geo.raster import SceneRaster
from mst_geo.geo.scene import ObjectMask, ObjectSegmenter
from mst_geo.geo.vectorize import mask_to_polygon, polygon_to_mask
from mst_geo.model.checkpoint import checkpoint_path, resolve_model, untrained_card
from mst_geo.model.mst import MSTModel

ClicksSource = str | Path | gpd.GeoDataFrame | Mapping[str, Any]
"""A clicks file, a GeoDataFrame of click points or a clicks GeoJSON dict (the same contract)."""


@dataclass(frozen=True)
class _Outline:
    """An object's polygon as written, with the pixels of its window it covers (parts under
    ``min_area`` dropped, small holes filled, simplified): the mask COG burns these, and
    ``score`` averages the model's probability over them."""

    record: ObjectRecord
    pixels: np.ndarray


class Segmenter:
    """Interactive segmentation of one GeoTIFF scene of any size, clicks in map coordinates.

    Example::

        seg = Segmenter("examples/naip_scene.tif")
        pond = seg.add_click(490201.5, 5209043.5)                # scene CRS (UTM 14N) by default
        seg.add_click(-99.12732, 47.03394, positive=False, crs="EPSG:4326", object=pond)
        seg.polygons()                                           # GeoDataFrame, one row per object
        seg.save("objects.gpkg")
    """

    def __init__(
        self,
        scene_path: str | Path,
        model: str | Path | MSTModel = "default",
        bands: Sequence[BandRef] | None = None,
        device: str = "cpu",
        simplify: float = 0.0,
        min_area: float = 0.0,
    ):
        """``model``: "default", a checkpoint path, a preset (random weights) or a loaded
        ``MSTModel`` (``mst_geo.load_model(...)[0]``); ``simplify`` and ``min_area`` count in the
        scene CRS's units and may be changed later (every outline is redrawn)."""
        run_on = torch_device(device)
        self.raster = SceneRaster(scene_path, bands)
        try:  # a bad setting, a checkpoint of another size, no GPU memory: the scene is not left open
            _check_outline_settings(simplify, min_area, self.raster)
            network, self.card = _network(model)
            options = scene_inference(network)
            predictor = Predictor(network, device=run_on, **options)
            self._segmenter = ObjectSegmenter(self.raster, predictor, options["input_size"])
            self._mapper = PixelMapper(self.crs, self.transform, self.width, self.height, is_valid=self.raster.is_valid)
        except BaseException:
            self.raster.close()
            raise
        self.model_name = _model_name(model, self.card)
        self._model_source = None if isinstance(model, MSTModel) else str(checkpoint_path(model))
        self._device = device
        # files save() must never replace: the scene, what GDAL reads for it (a VRT's tiles, sidecars), clicks files
        self._inputs: list[tuple[str, str | Path]] = [("the scene", scene_path)]
        self._inputs += [("a file the scene reads", name) for name in self.raster.files]
        self._simplify, self._min_area = float(simplify), float(min_area)
        self._clicks: dict[ObjectId, list[SceneClick]] = {}
        self._results: dict[ObjectId, ObjectMask] = {}
        self._outlines: dict[ObjectId, _Outline] = {}
        self._history: list[ObjectId] = []

    # -- the scene ------------------------------------------------------------------------------
    @property
    def crs(self) -> CRS:
        """The scene's CRS: the polygons' CRS, and the clicks' unless a clicks file names its own."""
        return CRS.from_user_input(self.raster.crs)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the scene CRS."""
        return tuple(self.raster.bounds)

    @property
    def transform(self) -> Affine:
        """Scene pixel (col, row) -> scene CRS coordinates (the grid the mask output is written on)."""
        return self.raster.transform

    @property
    def width(self) -> int:
        """Scene columns."""
        return self.raster.width

    @property
    def height(self) -> int:
        """Scene rows."""
        return self.raster.height

    @property
    def bands(self) -> tuple[int, int, int]:
        """The scene bands read as R,G,B (1-based; one grey band repeated), chosen when it opens."""
        return self.raster.bands

    # -- outline settings -------------------------------------------------------------------------
    @property
    def simplify(self) -> float:
        """Douglas-Peucker tolerance of the outlines, in the scene CRS's unit (0: pixel edges)."""
        return self._simplify

    @simplify.setter
    def simplify(self, value: float) -> None:
        _check_outline_settings(value, self._min_area, self.raster)
        self._simplify = float(value)
        self._outlines.clear()  # every outline is redrawn with the new tolerance

    @property
    def min_area(self) -> float:
        """Polygon parts smaller than this (scene CRS's unit squared) are dropped."""
        return self._min_area

    @min_area.setter
    def min_area(self, value: float) -> None:
        _check_outline_settings(self._simplify, value, self.raster)
        self._min_area = float(value)
        self._outlines.clear()

    # -- clicks ---------------------------------------------------------------------------------
    def add_click(
        self, x: float, y: float, positive: bool = True, crs: Any = None, object: ObjectId | None = None
    ) -> ObjectId:
        """Add a click at map (x, y) (scene CRS unless ``crs``) to ``object`` (None: a new one);
        returns the object id once its mask is updated."""
        self._require_open()
        if not all(isinstance(value, numbers.Real) and not isinstance(value, bool) for value in (x, y)):
            raise MSTGeoError(f"x and y must be numbers (map coordinates), got {x!r}, {y!r}")
        if not all(math.isfinite(value) for value in (x, y)):
            raise MSTGeoError(f"x and y must be finite numbers (map coordinates), got {x!r}, {y!r}")
        source = None if crs is None else parse_crs(crs)
        try:
            positive = parse_label(positive)
        except ValueError as error:
            raise MSTGeoError(f"positive must be True or False: {error}") from None
        try:
            click = self._mapper.click(x, y, positive, source)
        except ValueError as error:
            raise MSTGeoError(str(error), self.raster.path) from None
        target = self.new_object_id() if object is None else self.existing_id(_object_id(object))
        if target not in self._clicks:
            self._warn_if_like_another(target)
        self._append(target, click)
        return target

    def existing_id(self, object: ObjectId) -> ObjectId:
        """The id of the object that reads as ``object`` ("7" for 7: the output and the app hold ids
        as text), else ``object`` itself (a new object)."""
        return next((obj for obj in self._clicks if str(obj) == str(object)), object)

    def _warn_if_like_another(self, new: ObjectId) -> None:
        """A new id that differs from an existing one only in case or spaces ("Pond" beside "pond")
        is most likely a typo: its click would silently start a second object."""
        key = str(new).strip().casefold()
        alike = next((obj for obj in self._clicks if str(obj).strip().casefold() == key), None)
        if alike is not None:
            warn(f"object {new!r} is a new object beside {alike!r} (ids are compared exactly); "
                 f"to add this click to {alike!r}, undo() it and pass object={alike!r}")

    def load_clicks(
        self,
        clicks: ClicksSource,
        clicks_crs: str | None = None,
        progress: bool = False,
        journal: ObjectJournal | None = None,
    ) -> list[ObjectId]:
        """Add every click of ``clicks`` (the contract: a GeoJSON or OGR point file, a GeoDataFrame
        of points, or a clicks GeoJSON dict such as ``clicks_geojson()``), object by object, in
        click order. Its objects must be new: an id already in this session is refused rather
        than merged (to add clicks to an object, use ``add_click(..., object=id)``).

        With a ``journal``, objects it already holds are restored instead of recomputed, and each
        finished object is stored in it (so an interrupted run resumes).
        """
        self._require_open()
        objects, source = self._read_clicks(clicks, clicks_crs)
        taken = [obj for obj in objects if str(obj) in {str(known) for known in self._clicks}]
        if taken:
            raise MSTGeoError(f"object(s) {', '.join(map(repr, taken))} already in this session; load into a new "
                              "Segmenter, or give the file's objects other ids", source)
        if isinstance(clicks, (str, Path)):
            self._inputs.append(("the clicks file", clicks))  # every one loaded, not only the last
        with tqdm(total=len(objects), desc="objects", unit="object", disable=not progress) as bar:
            for object_id, clicks in objects.items():
                bar.set_postfix(object=object_id, clicks=len(clicks))
                stored = journal.load(clicks) if journal is not None else None
                if stored is not None:
                    self._clicks[object_id] = clicks
                    self._store(object_id, stored)
                    self._history.extend([object_id] * len(clicks))
                else:
                    for click in clicks:
                        self._append(object_id, click)
                    if journal is not None:
                        journal.save(self._results[object_id])
                bar.update()
        return list(objects)

    def _read_clicks(self, clicks: ClicksSource, clicks_crs: str | None) -> tuple[dict[ObjectId, list[SceneClick]], Any]:
        """The objects of a clicks source, and what to name in its errors."""
        if isinstance(clicks, gpd.GeoDataFrame):
            source = "clicks GeoDataFrame"
            return clicks_from_geojson(frame_as_geojson(clicks), self._mapper, clicks_crs or clicks.crs, source), source
        if isinstance(clicks, Mapping):
            return clicks_from_geojson(clicks, self._mapper, clicks_crs, "clicks GeoJSON"), "clicks GeoJSON"
        if not isinstance(clicks, (str, Path)):
            raise MSTGeoError(f"clicks must be a clicks file's path, a GeoDataFrame of points or a clicks GeoJSON "
                              f"dict, got {type(clicks).__name__}")
        return read_clicks(clicks, self._mapper, clicks_crs), clicks

    def undo(self, object: ObjectId | None = None) -> None:
        """Remove the last click of ``object`` (None: the last object clicked); an object without
        clicks disappears."""
        if object is None:
            if not self._history:
                raise MSTGeoError("nothing to undo")
            object = self._history[-1]
        object = self._known(object)
        clicks = self._clicks[object][:-1]
        if not clicks:
            self.delete(object)
            return
        self._require_open()
        result = self._segmenter.segment(clicks)  # first: a failure (Ctrl-C) leaves the session as it was
        del self._history[len(self._history) - 1 - self._history[::-1].index(object)]
        self._clicks[object] = clicks
        self._store(object, result)

    def delete(self, object: ObjectId) -> None:
        """Forget ``object`` and its clicks."""
        object = self._known(object)
        for table in (self._clicks, self._results, self._outlines):
            table.pop(object, None)
        self._history = [obj for obj in self._history if obj != object]

    def last_clicked(self) -> ObjectId | None:
        """The object the latest remaining click went to (what undo would act on), None without clicks."""
        return self._history[-1] if self._history else None

    # -- results --------------------------------------------------------------------------------
    def objects(self) -> list[ObjectId]:
        """Object ids, in the order they were created."""
        return list(self._clicks)

    def mask(self, object: ObjectId) -> ObjectMask:
        """The object's mask over its window (``.mask``, ``.probability``, ``.window``, ``.transform``)."""
        return self._results[self._known(object)]

    def polygons(self) -> gpd.GeoDataFrame:
        """One (Multi)Polygon per object in the scene CRS, with the output contract's columns."""
        records = [self._record(obj) for obj in self._clicks]
        return polygons_frame(records, self.crs, self.model_name)

    def uncovered_clicks(self) -> dict[ObjectId, int]:
        """Objects whose polygon (as saved, not empty) leaves out some of their positive clicks,
        with how many: where the model overruled the analyst, to check or click again."""
        missed = {}
        for obj, clicks in self._clicks.items():
            geometry = self._record(obj).geometry
            count = 0 if geometry.is_empty else sum(
                click.positive and not geometry.covers(Point(click.x, click.y)) for click in clicks)
            if count:
                missed[obj] = count
        return missed

    def clicks_geojson(self) -> dict:
        """The clicks as a clicks GeoJSON (scene CRS, named): ``mst-geo segment`` reproduces the polygons."""
        return clicks_to_geojson(self._clicks, self.crs)

    def save(self, path: str | Path, overwrite: bool = False, mask_path: str | Path | None = None) -> Path:
        """Write the polygons (GeoPackage, or GeoJSON/FlatGeobuf by extension) and optionally the mask COG."""
        path, mask_path = _local(path, "path"), _local(mask_path, "mask_path", optional=True)
        if not self._clicks:
            raise MSTGeoError("no objects to save: add clicks first", path)
        self.refuse_input_as_output(*(p for p in (path, mask_path) if p is not None))
        mask = None
        if mask_path is not None:
            masks = [(self._results[obj].window, self._outline(obj).pixels) for obj in self._clicks]
            mask = MaskOutput(Path(mask_path), self.crs, self.transform, self.width, self.height, masks)
        frame = self.polygons()
        written = write_outputs(frame, path, overwrite, mask)
        empty = frame.loc[frame.geometry.is_empty, "object"].tolist()
        if empty:
            hint = ("add positive clicks, or lower the minimum area (min_area, --min-area)" if self.min_area > 0
                    else "add positive clicks")
            warn(f"{len(empty)} object(s) came out empty ({a_few([repr(obj) for obj in empty])}): {hint}")
        return written

    def refuse_input_as_output(self, *outputs: str | Path) -> None:
        """``MSTGeoError`` when an output would be the scene, a file GDAL reads for it (a VRT's tiles,
        sidecars) or a clicks file this session loaded (saving with overwrite would replace it)."""
        _refuse_outputs_over_inputs([Path(output) for output in outputs], self._inputs)

    def run_key(self) -> dict[str, Any] | None:
        """What a result depends on besides the clicks (scene, bands and their stretch, model
        weights, device); None when results cannot be reproduced (a preset name means new random
        weights). The stretch is there because the code that computes it may change between runs."""
        self._require_open()  # the scene's files are identified through the open dataset
        if self._model_source is None or not Path(self._model_source).is_file():
            return None
        model = Path(self._model_source)
        return {
            "scene": [file_identity(path) for path in self.raster.files],  # sidecar overviews change results
            # the grid too: two URLs that differ only in their query are one identity above
            "grid": [self.width, self.height, list(self.transform)[:6], self.crs.to_wkt()],
            "bands": self.raster.bands,
            "stretch": [self.raster.low.tolist(), self.raster.high.tolist(), self.raster.inverted.tolist()],
            "model": file_identity(model),
            "device": self._device,
            "version": mst_geo.__version__,
        }

    def close(self) -> None:
        """Close the scene (``with Segmenter(...)`` does it): objects stay readable, clicks need it open."""
        self.raster.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------
    def _require_open(self) -> None:
        """Clicks need the scene's pixels: after ``close()`` say so, rather than blame the file."""
        if self.raster.closed:
            raise MSTGeoError("this Segmenter is closed (close() or the end of its with-block): its objects stay "
                              "readable, new clicks need a new Segmenter", self.raster.path)

    def _append(self, object_id: ObjectId, click: SceneClick) -> None:
        clicks = [*self._clicks.get(object_id, []), click]
        self._store(object_id, self._segmenter.add(self._results.get(object_id), clicks))
        self._clicks[object_id] = clicks
        self._history.append(object_id)

    def _store(self, object_id: ObjectId, result: ObjectMask) -> None:
        self._results[object_id] = result
        self._outlines.pop(object_id, None)

    def _outline(self, object_id: ObjectId) -> _Outline:
        """The object's output feature and the pixels it covers, vectorised once per change."""
        if object_id not in self._outlines:
            result = self._results[object_id]
            geometry = mask_to_polygon(result.mask, result.transform, self.simplify, self.min_area)
            pixels = polygon_to_mask(geometry, result.mask.shape, result.transform)
            score = result.mean_probability(pixels)  # over what is written
            record = ObjectRecord(object_id, geometry, len(result.clicks), score)
            self._outlines[object_id] = _Outline(record, pixels)
        return self._outlines[object_id]

    def _record(self, object_id: ObjectId) -> ObjectRecord:
        return self._outline(object_id).record

    def _known(self, object_id: ObjectId) -> ObjectId:
        """The id of an object in this session that reads as ``object_id`` (7 or "7")."""
        known = self.existing_id(_object_id(object_id))
        if known not in self._clicks:
            raise MSTGeoError(f"unknown object {object_id!r}")
        return known

    def new_object_id(self, reserved: Iterable[ObjectId] = ()) -> int:
        """An integer id past every id in use or ``reserved`` that reads as a number: "7" from a
        text field counts, as the output and the app compare ids as text."""
        numbers = [int(str(obj)) for obj in (*self._clicks, *reserved) if str(obj).isdecimal()]
        return max(numbers, default=0) + 1


def segment_scene(
    scene: str | Path,
    clicks: str | Path,
    out: str | Path,
    *,
    clicks_crs: str | None = None,
    model: str | Path = "default",
    bands: Sequence[BandRef] | None = None,
    device: str = "cpu",
    simplify: float = 0.0,
    min_area: float = 0.0,
    mask_out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    resume: bool = True,
) -> gpd.GeoDataFrame:
    """Segment every object of a clicks file on a scene and write the polygons (and mask COG).

    Finished objects are journaled beside ``out`` until the outputs are written, so rerunning
    an interrupted call (same scene, model, bands, device) skips them; ``resume=False`` does not.
    """
    out, mask_out = _local(out, "out (--out)"), _local(mask_out, "mask_out (--mask-out)", optional=True)
    outputs = [out] + ([mask_out] if mask_out is not None else [])
    if len(outputs) == 2 and outputs[0].resolve() == outputs[1].resolve():
        raise MSTGeoError("the mask output (mask_out, --mask-out) must differ from the polygons output", mask_out)
    _refuse_outputs_over_inputs(outputs, [("the scene", scene), ("the clicks file", clicks)])
    check_outputs(out, mask_out, overwrite)  # fail on a bad output before loading the model or running anything
    with Segmenter(scene, model=model, bands=bands, device=device, simplify=simplify, min_area=min_area) as seg:
        seg.refuse_input_as_output(*outputs)  # a VRT's tiles are known once it is open
        check_output_crs(out, seg.crs)  # a format that cannot hold the scene's CRS fails before any object runs
        key = seg.run_key() if resume else None
        journal_dir = out.parent / f".{out.name}.resume"
        journal = ObjectJournal(journal_dir, key) if key is not None else None
        seg.load_clicks(clicks, clicks_crs=clicks_crs, progress=progress, journal=journal)
        seg.save(out, overwrite=overwrite, mask_path=mask_out)
        shutil.rmtree(journal_dir, ignore_errors=True)  # this run's, or one resume=False passed over
        _warn_if_clicks_uncovered(seg.uncovered_clicks())
        return seg.polygons()


def _local(path: str | Path | None, name: str, optional: bool = False) -> Path | None:
    """An output path with ``~`` expanded (Python callers get no shell to do it); the parameter
    ``name`` that gave something else (None, unless ``optional``) is refused."""
    if path is None and optional:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise MSTGeoError(f"{name} must be a file path, got {type(path).__name__} {path!r}")
    return Path(path).expanduser()


def _object_id(value: Any) -> ObjectId:
    """``value`` as an object id (``parse_object_id``), else the error a Python caller gets."""
    try:
        return parse_object_id(value)
    except ValueError as error:
        raise MSTGeoError(str(error)) from None


def _warn_if_clicks_uncovered(uncovered: Mapping[ObjectId, int]) -> None:
    """Name the objects whose polygon leaves out a positive click (at most five of them)."""
    if not uncovered:
        return
    warn(f"{len(uncovered)} object(s) leave out some of their positive clicks "
         f"({a_few([repr(obj) for obj in uncovered])}): check them, or "
         "add a click there")


def _refuse_outputs_over_inputs(outputs: Sequence[Path], inputs: Sequence[tuple[str, Any]]) -> None:
    """An output that is one of the (name, input) files would replace it (--overwrite) with the result;
    ``name`` reads after "is" ("the scene")."""
    for name, given in inputs:
        if not isinstance(given, (str, Path)):
            continue  # a clicks dict or frame: nothing on disk to replace
        for output in outputs:
            try:
                same = output.exists() and Path(given).exists() and output.samefile(given)
            except OSError:  # a URL too long for a path, say: no file of ours
                continue
            if same:
                raise MSTGeoError(f"is {name}: write the outputs to another file", output)


MAX_SIMPLIFY_PIXELS = 100
"""A simplify tolerance wider than this many scene pixels is a unit mistake, not a choice."""


def _check_outline_settings(simplify: float, min_area: float, raster: SceneRaster) -> None:
    """Refuse a simplify or min_area that is negative or would wipe out every outline: both
    count in the scene CRS's units, so 1 on a scene in degrees is 111 km, not 1 m."""
    for flag, value in (("simplify (--simplify)", simplify), ("min_area (--min-area)", min_area)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value >= 0:  # NaN too
            raise MSTGeoError(f"{flag} must be a number, 0 or more, got {value!r}", raster.path)
    crs = CRS.from_user_input(raster.crs)
    unit = f"the {crs.axis_info[0].unit_name}" if crs.axis_info else "its own"
    pixel = abs(raster.transform.a)
    if simplify > MAX_SIMPLIFY_PIXELS * pixel:
        raise MSTGeoError(f"simplify (--simplify) {simplify:g} is {simplify / pixel:,.0f} pixels of this scene; it counts in the "
                          f"scene CRS's unit, {unit} (one pixel: {pixel:.3g})", raster.path)
    scene_area = raster.width * raster.height * pixel * abs(raster.transform.e)
    if min_area >= scene_area:
        raise MSTGeoError(f"min_area (--min-area) {min_area:g} is at least the whole scene ({scene_area:.3g}); it counts in "
                          f"the scene CRS's unit squared, {unit}", raster.path)


def scene_inference(network: MSTModel) -> dict[str, Any]:
    """The Predictor options of the scene workflow (``segment``, the app, ``Segmenter``). The adaptive
    windows already frame the object, so the model sees them at its training size and once per
    click: the card's larger inference_size and extra first-click passes help on whole images
    (bench) but not here (scripts/bench_first_click.py; README "Scale, speed and memory",
    docs/training.md "A second pass at the first click"), and its mirror averaging would double
    every click's wait in the app."""
    return {"input_size": network.config.input_size, "first_click_passes": 1, "flip": False}


def _network(model: str | Path | MSTModel) -> tuple[MSTModel, dict[str, Any]]:
    """The network and its card, from a name or path, or as given (a card built from its config)."""
    if isinstance(model, MSTModel):  # its own card when it was loaded from a checkpoint
        return model.eval(), model.card or untrained_card(model)
    if not isinstance(model, (str, Path)):
        raise MSTGeoError(f"model must be 'default', a checkpoint path, a preset or an MSTModel, got "
                          f"{type(model).__name__}")
    return resolve_model(model)


def _model_name(model: str | Path | MSTModel, card: dict) -> str:
    """The ``model`` output property: the card's name, else the checkpoint's file name or the preset."""
    if card.get("name"):
        return str(card["name"])
    if isinstance(model, MSTModel):
        return str(card["preset"])
    path = checkpoint_path(model)
    return path.stem if path.suffix else str(card.get("preset", model))
