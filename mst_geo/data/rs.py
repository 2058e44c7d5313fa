"""Remote-sensing benchmarks as click-segmentation instances: torchgeo semantic masks turned into
objects (connected components per class), each served as a crop around the object.

The torchgeo classes know the real on-disk layouts (LoveDA ``Train|Val/Urban|Rural/images_png``,
Inria ``AerialImageDataset/train/{images,gt}``, DeepGlobe ``data/{training,test}_data``,
LandCover.ai ``output/<id>.jpg``, ``<id>_m.png`` and ``{train,val,test}.txt``, Potsdam
``4_Ortho_RGBIR/*_RGBIR.tif`` beside ``*_label.tif``, Vaihingen ``top/*.tif`` beside the label
files of the same name; the ISPRS sets also as their zips, which torchgeo unpacks); they
are imported inside functions so ``mst_geo.data`` stays importable without the geo stack.
Object sizes are measured at native resolution and binned as small (< 32² px), medium and
large (> 256² px), the breakdown the bench reports.
"""

from __future__ import annotations

import re
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from mst_geo.data.instance import IGNORE, Instance
from mst_geo.data.iseg import dataset_location, known_name, named_folder, spelled_as
from mst_geo.errors import MSTGeoError

SMALL_MAX_AREA = 32 * 32
LARGE_MIN_AREA = 256 * 256
SIZE_CLASSES = ("small", "medium", "large")


def size_class(area: int) -> str:
    """``small`` below 32² px, ``large`` above 256² px, ``medium`` in between."""
    if area < SMALL_MAX_AREA:
        return "small"
    return "large" if area > LARGE_MIN_AREA else "medium"


@dataclass(frozen=True)
class RSLayout:
    """How to open one torchgeo dataset and which mask values are objects or ignored."""

    open: Callable[[Path, str], Any]
    object_classes: dict[int, str]
    ignore_classes: tuple[int, ...]
    default_split: str
    tile_path: Callable[[Any, int], str]
    read_classes: Callable[[Any, int], np.ndarray] | None = None
    """The tile's class map when torchgeo's ``sample["mask"]`` is not the one to use; its image is
    then read from ``tile_path`` directly (uint8, first three bands), not through torchgeo, which
    would decode the label too and hold the image as float: 2.6 s and 1.8 GB for a 4000 px tile."""
    expects: str = ""
    """The files torchgeo looks for, said when it finds none."""


def _open_loveda(root: Path, split: str) -> Any:
    from torchgeo.datasets import LoveDA

    return LoveDA(root, split=split, scene=["urban", "rural"])


def _open_inria(root: Path, split: str) -> Any:
    from torchgeo.datasets import InriaAerialImageLabeling

    dataset = InriaAerialImageLabeling(root, split=split)
    if split in ("train", "val"):
        dataset.files = _inria_tiles(root / dataset.directory / "train", split)
    return dataset


def _inria_tiles(folder: Path, split: str) -> list[dict[str, str]]:
    """The train or val tiles (val: tiles 1-5 of each town, as torchgeo splits them), numbered by
    the file name. torchgeo 0.8 takes the number from the first letters-then-digits run of the
    whole path, so a parent folder such as ``data2/`` put every tile in one split."""
    files = []
    for image in sorted((folder / "images").glob("*.tif")):
        number = re.search(r"(\d+)$", image.stem)
        if number and (int(number.group(1)) < 6) == (split == "val"):
            files.append({"image": str(image), "label": str(folder / "gt" / image.name)})
    return files


def _open_deepglobe(root: Path, split: str) -> Any:
    from torchgeo.datasets import DeepGlobeLandCover

    return DeepGlobeLandCover(root, split=split)


def _open_landcoverai(root: Path, split: str) -> Any:
    from torchgeo.datasets import LandCoverAI

    return LandCoverAI(root, split=split)


def _open_potsdam(root: Path, split: str) -> Any:
    from torchgeo.datasets import Potsdam2D

    return Potsdam2D(root, split=split)


def _open_vaihingen(root: Path, split: str) -> Any:
    from torchgeo.datasets import Vaihingen2D

    return Vaihingen2D(root, split=split)


def _colour_lookup(colours: dict[tuple[int, int, int], int], unknown: int) -> np.ndarray:
    """Classes of colour masks binarised at 128, as a lookup from red*4 + green*2 + blue; the
    colours outside ``colours`` are ``unknown``."""
    table = np.full(8, unknown, dtype=np.uint8)
    for (red, green, blue), class_id in colours.items():
        table[red * 4 + green * 2 + blue] = class_id
    return table


def _colour_classes(path: str, lookup: np.ndarray) -> np.ndarray:
    """A colour mask's class map, binarised at 128 first: torchgeo matches exact colours and
    sends the rest to class 0, so a mask that is not pure 0/255 (DeepGlobe's) gave specks of
    false objects, and a colour outside the palette became class 0 rather than unknown."""
    from PIL import Image

    with Image.open(path) as image:
        bits = np.asarray(image.convert("RGB")) >= 128
    code = (bits[..., 0].astype(np.uint8) << 2) | (bits[..., 1].astype(np.uint8) << 1) | bits[..., 2]
    return lookup[code]


DEEPGLOBE_CLASS_OF_BITS = _colour_lookup(
    {(0, 1, 1): 0, (1, 1, 0): 1, (1, 0, 1): 2, (0, 1, 0): 3, (0, 0, 1): 4, (1, 1, 1): 5, (0, 0, 0): 6}, unknown=6)
"""DeepGlobe land cover: urban .. barren, 6 unknown (black, and red, which is not in its palette)."""

ISPRS_CLASS_OF_BITS = _colour_lookup(
    {(1, 0, 0): 0, (1, 1, 1): 1, (0, 0, 1): 2, (0, 1, 1): 3, (0, 1, 0): 4, (1, 1, 0): 5}, unknown=6)
"""ISPRS Potsdam/Vaihingen (torchgeo's class order): clutter, impervious surfaces, building, low
vegetation, tree, car; 6 unknown (black: the eroded-boundary label files' boundaries)."""


RS_LAYOUTS: dict[str, RSLayout] = {
    # LoveDA: 0 no-data, 1 background, 2 building .. 7 agriculture
    "LoveDA": RSLayout(
        _open_loveda,
        {2: "building", 3: "road", 4: "water", 5: "barren", 6: "forest", 7: "agriculture"},
        (0,), "val", lambda ds, i: ds.files[i]["image"],
        expects="Train|Val|Test/Urban|Rural/images_png/*.png with masks_png/ beside, Urban and Rural both",
    ),
    # Inria: 0 background, 1 building
    "Inria": RSLayout(_open_inria, {1: "building"}, (), "val", lambda ds, i: ds.files[i]["image"],
                      expects="AerialImageDataset/train/images/<town><n>.tif with gt/ beside (val: tiles 1-5)"),
    # DeepGlobe land cover: 0 urban .. 5 barren, 6 unknown
    "DeepGlobe": RSLayout(
        _open_deepglobe,
        {0: "urban", 1: "agriculture", 2: "rangeland", 3: "forest", 4: "water", 5: "barren"},
        (6,), "test", lambda ds, i: ds.image_fns[i],
        lambda ds, i: _colour_classes(ds.mask_fns[i], DEEPGLOBE_CLASS_OF_BITS),
        expects="data/training_data|test_data/images/<id>_sat.jpg with masks/<id>_mask.png beside",
    ),
    # LandCover.ai (512 px chips in output/, split lists beside): 0 background, 1 building .. 4 road
    "LandCoverAI": RSLayout(
        _open_landcoverai, {1: "building", 2: "woodland", 3: "water", 4: "road"}, (), "test",
        lambda ds, i: str(Path(ds.root) / "output" / f"{ds.ids[i].strip()}.jpg"),
        expects="output/<id>.jpg and <id>_m.png with train.txt, val.txt, test.txt beside output/",
    ),
    # ISPRS Potsdam (RGBIR tiles: R,G,B used) and Vaihingen (IRRG tiles: the false colour is used as
    # RGB, as is usual for it): buildings, low vegetation, trees and cars; impervious surfaces (one
    # network over the whole tile) and clutter are background, the boundary colour ignored
    "Potsdam": RSLayout(
        _open_potsdam, {2: "building", 3: "low_vegetation", 4: "tree", 5: "car"}, (6,), "test",
        lambda ds, i: ds.files[i]["image"], lambda ds, i: _colour_classes(ds.files[i]["mask"], ISPRS_CLASS_OF_BITS),
        expects="4_Ortho_RGBIR/top_potsdam_<tile>_RGBIR.tif, and top_potsdam_<tile>_label.tif in the folder itself "
        "(5_Labels_all.zip unpacked there; the noBoundary labels renamed to _label.tif)",
    ),
    "Vaihingen": RSLayout(
        _open_vaihingen, {2: "building", 3: "low_vegetation", 4: "tree", 5: "car"}, (6,), "test",
        lambda ds, i: ds.files[i]["image"], lambda ds, i: _colour_classes(ds.files[i]["mask"], ISPRS_CLASS_OF_BITS),
        expects="top/top_mosaic_09cm_area<n>.tif, and the label of the same name in the folder itself "
        "(the ground-truth COMPLETE zip unpacked there)",
    ),
}
RS_ALIASES = {"LandCover.ai": "LandCoverAI", "InriaAerialImageLabeling": "Inria", "DeepGlobeLandCover": "DeepGlobe", "Potsdam2D": "Potsdam",
              "Vaihingen2D": "Vaihingen", "ISPRSPotsdam": "Potsdam", "ISPRSVaihingen": "Vaihingen"}


def locate_rs_dataset(name: str, root: str | Path) -> tuple[str, Path] | None:
    """``(canonical name, folder)`` of a remote-sensing set named under ``root`` (its folder in
    any case) or by its folder's path; None when ``name`` is no remote-sensing set."""
    root, folder_name = dataset_location(name, root)
    canonical = rs_dataset_name(folder_name)
    if canonical is None:
        return None
    found = named_folder(root, folder_name) if root.is_dir() else None
    return canonical, found or root / canonical


def rs_dataset_name(name: str) -> str | None:
    """The canonical remote-sensing dataset name, or None if ``name`` is not one."""
    return spelled_as(name, RS_LAYOUTS, RS_ALIASES)


def dataset_name(given: str) -> str:
    """A ``--datasets`` entry as one spelling: a folder's path by its folder's name, a known set
    by its own spelling (``coco-mval`` and ``/data/COCO_MVal`` are one set)."""
    folder = dataset_location(given, ".")[1]
    return known_name(folder) or rs_dataset_name(folder) or folder


@dataclass(frozen=True)
class _ObjectRef:
    tile: int
    class_id: int
    component: int
    area: int
    box: tuple[int, int, int, int]  # top, left, height, width
    name: str


@dataclass
class _Tile:
    """The tile last read: its RGB pixels, class map and, per class as asked, its components."""

    index: int
    image: np.ndarray
    classes: np.ndarray
    components: dict[int, np.ndarray]

    def labels(self, class_id: int) -> np.ndarray:
        if class_id not in self.components:
            self.components[class_id] = cv2.connectedComponents((self.classes == class_id).astype(np.uint8),
                                                                connectivity=8)[1]
        return self.components[class_id]


def object_window(bbox: tuple[int, int, int, int], shape: tuple[int, int], min_side: int, context: float) -> tuple[int, int, int, int]:
    """A crop ``(top, left, height, width)`` holding the box ``(top, left, h, w)`` with context.

    Its sides are ``context`` times the box's longer side, at least ``min_side``, shifted to stay
    inside the image (and cut to the image where the image is smaller).
    """
    top, left, box_h, box_w = bbox
    side = max(min_side, int(np.ceil(context * max(box_h, box_w))))
    crop_h, crop_w = min(side, shape[0]), min(side, shape[1])
    crop_top = int(np.clip(top + box_h // 2 - crop_h // 2, 0, shape[0] - crop_h))
    crop_left = int(np.clip(left + box_w // 2 - crop_w // 2, 0, shape[1] - crop_w))
    return crop_top, crop_left, crop_h, crop_w


def _read_rgb(path: str) -> np.ndarray:
    """A tile's first three bands as HxWx3 uint8 (a grey tile repeated), read by GDAL."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():  # DeepGlobe's JPEGs and Vaihingen's tiles carry no georeference
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as tile:
            bands = [1, 2, 3] if tile.count >= 3 else [1, 1, 1]
            return _as_rgb(tile.read(bands))


def _as_rgb(image: Any) -> np.ndarray:
    """A CxHxW image (torchgeo's float one, 0..255) as HxWx3 uint8 (first three bands)."""
    array = np.asarray(image)[:3]
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array.transpose(1, 2, 0))


class RSInstances:
    """Objects of the torchgeo segmentation dataset ``name`` (a key of ``RS_LAYOUTS``), one per
    connected component of each object class (8-connected, at least ``min_area`` px), each a crop
    around the object.

    Tiles are scanned in order only as far as needed: ``max_instances`` stops the scan early,
    so a short benchmark does not read a whole dataset (``max_tiles``: a smoke run's first tiles).
    The last tile read is kept (not through the scan, nor into pickles for loader processes).
    """

    def __init__(
        self,
        name: str,
        dataset: Any,
        min_area: int = 16,
        min_crop: int = 256,
        context: float = 1.5,
        max_instances: int | None = None,
        max_tiles: int | None = None,
    ):
        self.name = name
        self.dataset = dataset
        self.min_crop = min_crop
        self.context = context
        self.refs: list[_ObjectRef] = []
        self._cached: _Tile | None = None
        tiles = range(min(len(dataset), max_tiles if max_tiles is not None else len(dataset)))
        for tile in tqdm(tiles, desc=f"{name} objects", unit="tile", leave=False):
            if max_instances is not None and len(self.refs) >= max_instances:
                break
            self.refs.extend(self._objects(tile, min_area))
        if max_instances is not None:
            del self.refs[max_instances:]
        self._cached = None

    @property
    def layout(self) -> RSLayout:
        """Looked up by name, not stored: its lambdas would not pickle into loader processes."""
        return RS_LAYOUTS[self.name]

    def _tile(self, tile: int) -> _Tile:
        if self._cached is None or self._cached.index != tile:
            read_classes = self.layout.read_classes
            try:
                if read_classes is not None:
                    image, classes = _read_rgb(self.tile_path(tile)), read_classes(self.dataset, tile)
                else:
                    sample = self.dataset[tile]
                    if "mask" not in sample:
                        raise MSTGeoError("this split has no masks to benchmark on", self.tile_path(tile))
                    image, classes = _as_rgb(sample["image"]), np.asarray(sample["mask"])
            except OSError as error:  # rasterio's and PIL's errors for missing or broken files
                raise MSTGeoError(f"cannot read this tile or its label ({str(error).splitlines()[0]})",
                                  self.tile_path(tile)) from None
            if image.shape[:2] != classes.shape[:2]:  # a label of another tile, or cropped by hand
                raise MSTGeoError(f"its label is {classes.shape[1]}x{classes.shape[0]} px, the image "
                                  f"{image.shape[1]}x{image.shape[0]}: they must match", self.tile_path(tile))
            # every layout's classes are < 256
            self._cached = _Tile(tile, image, classes.astype(np.uint8), {})
        return self._cached

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the cached tile (hundreds of MB for Potsdam) for loader processes."""
        return {**self.__dict__, "_cached": None}

    def tile_path(self, tile: int) -> str:
        """The image file of tile ``tile``."""
        return self.layout.tile_path(self.dataset, tile)

    def _objects(self, tile: int, min_area: int) -> list[_ObjectRef]:
        classes = self._tile(tile).classes
        stem = Path(self.tile_path(tile)).stem
        refs = []
        for class_id, class_name in self.layout.object_classes.items():
            count, _, stats, _ = cv2.connectedComponentsWithStats((classes == class_id).astype(np.uint8), connectivity=8)
            for component in range(1, count):
                left, top, width, height, area = (int(v) for v in stats[component])
                if area >= min_area:
                    refs.append(_ObjectRef(tile, class_id, component, area, (top, left, height, width),
                                           f"{stem}_{class_name}_{component}"))
        return refs

    def __len__(self) -> int:
        return len(self.refs)

    def name_of(self, index: int) -> str:
        """The instance's name without reading pixels (the bench's resume key)."""
        return self.refs[index].name

    def window(self, index: int, min_side: int | None = None) -> tuple[int, int, int, int]:
        """Object ``index``'s crop ``(top, left, height, width)``: ``context`` times its box, at
        least ``min_side`` (default ``min_crop``) a side, inside its tile."""
        ref = self.refs[index]
        shape = self._tile(ref.tile).classes.shape
        return object_window(ref.box, shape, self.min_crop if min_side is None else min_side, self.context)

    def parts(self, index: int, min_side: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Object ``index``'s crop (``window``): RGB image, and boolean maps of the object, of the
        other objects (every other object-class pixel: negatives for training) and of the ignored
        pixels."""
        ref = self.refs[index]
        tile = self._tile(ref.tile)
        top, left, height, width = self.window(index, min_side)
        window = (slice(top, top + height), slice(left, left + width))
        target = tile.labels(ref.class_id)[window] == ref.component
        classes = tile.classes[window]
        others = np.isin(classes, list(self.layout.object_classes)) & ~target
        ignore = np.isin(classes, self.layout.ignore_classes)
        return np.ascontiguousarray(tile.image[window]), target, others, ignore

    def __getitem__(self, index: int) -> Instance:
        image, target, _, ignore = self.parts(index)
        mask = target.astype(np.uint8)
        mask[ignore] = IGNORE
        ref = self.refs[index]
        return Instance(image=image, mask=mask, name=ref.name, image_id=str(ref.tile))


def load_rs_dataset(name: str, root: str | Path, split: str | None = None, max_instances: int | None = None,
                    max_tiles: int | None = None) -> RSInstances:
    """Objects of remote-sensing dataset ``name`` (LoveDA, Inria, DeepGlobe, LandCoverAI, Potsdam, Vaihingen) found under
    ``root``, in its benchmark split unless ``split`` names another (``train`` for training)."""
    canonical = rs_dataset_name(name)
    if canonical is None:
        raise MSTGeoError(f"unknown remote-sensing dataset {name!r}; known: {', '.join(RS_LAYOUTS)}")
    layout = RS_LAYOUTS[canonical]
    root = Path(root)
    if not root.is_dir():
        raise MSTGeoError(f"no {canonical} folder here", root)
    from torchgeo.datasets import DatasetNotFoundError

    split = split or layout.default_split
    try:
        dataset = layout.open(root, split)
    except (DatasetNotFoundError, AssertionError, FileNotFoundError) as error:
        raise MSTGeoError(f"not a {canonical} dataset with its {split} split in its torchgeo layout, "
                          f"{layout.expects} ({str(error).splitlines()[0]})", root) from None
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError) as error:  # torchgeo unpacks what it finds
        raise MSTGeoError(f"an archive of {canonical} here is damaged or partly downloaded ({error}); download "
                          "it again and delete what it unpacked so far, or unpack it yourself", root) from None
    if not len(dataset):
        raise MSTGeoError(f"no {split} tile of {canonical} with its label here; torchgeo reads {layout.expects}, "
                          f"the tiles it lists as {split}", root)
    instances = RSInstances(canonical, dataset, max_instances=max_instances, max_tiles=max_tiles)
    if not len(instances):
        raise MSTGeoError(f"no {canonical} objects found", root)
    return instances
