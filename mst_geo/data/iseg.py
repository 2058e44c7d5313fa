"""Interactive-segmentation datasets in their published (RITM) folder layouts, one object per item.

Every dataset is a list of ``InstanceRef`` (which image, which mask, which object in it) and a
rule (``data.masks``) turning the stored mask into the shared convention: uint8, 1 object /
0 background / 255 ignore. Reading happens per item, so a dataset of thousands of images costs nothing until
indexed (except the per-object layouts, whose masks are read once to list their objects).
Layouts (``root`` holds one folder per dataset, as in ``../shared/data/iseg``):

- GrabCut  ``data_GT/*.{jpg,bmp}``, ``boundary_GT/<stem>.bmp`` (128 = unknown band -> ignore)
- Berkeley ``images/*.jpg``, ``masks/<stem>.png`` (same values as GrabCut; one object per image,
  96, as RITM scores it: the part masks ``<stem>a|b.png`` are left out)
- DAVIS, COCO_MVal ``img/*.jpg``, ``gt/<stem>.png`` (any value above 0 is the object, as in RITM)
- DUTS_TR  ``img/<id>.jpg``, ``gt/<id>.png`` (ids from ``list.txt``)
- CCP      ``instances.json`` records ``{image, mask, label}`` (nested person/garment masks), as the
  shared data repacks the authors' label maps (their ``photos/`` and ``.mat`` layout is not read)
- PascalVOC ``ImageSets/Segmentation/<split>.txt``, ``JPEGImages``, ``SegmentationObject``
  (palette index = object, 255 = void -> ignore), one item per object; the folder may also be
  the official tar's ``VOCdevkit/VOC2012``
- SBD      ``<split>.txt``, ``img/*.jpg``, ``inst/*.mat`` (``GTinst.Segmentation``), per object;
  the folder may also be the official tar's ``benchmark_RELEASE/dataset``
- COCO_LVIS ``<split>/images/*.jpg`` and RITM's packed ``<split>/hannotation.pickle`` with
  ``<split>/masks/*.pickle`` (``mst_geo.data.cocolvis_pack``), else ``<split>/lvis_<split>.json``
  (polygons), per object
- ssTEM    ``raw/*.tif``, ``mitochondria/*.png``, every 8-connected component one object (SimpleClick);
  the folder may also be the published repository's ``stack1`` (``groundtruth-drosophila-vnc``)
- OAIZIB   ``<split>/image/*.png``, ``<split>/annotations/*.png``, every value above 0 one object, a
  slice without one none (SimpleClick; the folder may be ``OAI-ZIB`` or its ``iseg_slices``)
- DAVIS585 ``<sequence>/<frame>.jpg``, ``<sequence>/<object>_<frame>.png`` (above 128; ClickSEG's
  ``init_*`` masks left out: every object starts from no mask)
- any other set (your own photos, label maps, ...) in RITM's images-folder layout, by name or by
  path: ``mst_geo.data.images_folder``

Hidden files (macOS ``._*`` copies) are not instances; a mask with no object pixel is an error
naming it, not a free perfect score.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mst_geo.data.cocolvis_pack import ANNOTATIONS as PACKED_ANNOTATIONS
from mst_geo.data.cocolvis_pack import PackedRef, packed_mask, packed_refs
from mst_geo.data.instance import Instance, InstanceRef, MaskReader, read_rgb
from mst_geo.data.masks import (
    PolygonRef,
    above_128_mask,
    above_zero,
    binary_mask,
    component_mask,
    indexed_mask,
    nonzero_mask,
    oaizib_labels,
    oaizib_mask,
    object_ids,
    polygon_mask,
    read_palette_indices,
    read_sbd_instances,
    sbd_mask,
    trimap_mask,
)
from mst_geo.errors import MSTGeoError

DEFAULT_DATA_ROOT = "../shared/data/iseg"
"""Where bench and train look for the RITM-layout datasets unless told (beside a clone of the repo)."""


class ISegDataset(Sequence[Instance]):
    """A named list of instances, read from disk on indexing."""

    def __init__(self, name: str, refs: Sequence[InstanceRef], read_mask: MaskReader, folder: Path | None = None):
        self.name = name
        self.refs = list(refs)
        self.folder = folder
        """The set's folder (the bench records it, so a rerun never mixes two copies' rows)."""
        self.read_mask = read_mask
        """The set's rule from a ref's stored mask to 1/0/255 (shared with the trainer's image groups)."""

    def __len__(self) -> int:
        return len(self.refs)

    def name_of(self, index: int) -> str:
        """The instance's name without reading its files (the bench's resume key)."""
        return self.refs[index].name

    def __getitem__(self, index: int) -> Instance:  # type: ignore[override]
        ref = self.refs[index]
        image = read_rgb(ref.image_path)
        mask = self.read_mask(ref)
        if not (mask == 1).any():
            raise MSTGeoError("mask holds no object pixel (an empty instance cannot be scored)", ref.mask_path)
        if mask.shape != image.shape[:2]:
            raise MSTGeoError(
                f"mask is {mask.shape[1]}x{mask.shape[0]} px but its image is "
                f"{image.shape[1]}x{image.shape[0]} px",
                ref.mask_path,
            )
        return Instance(image=image, mask=mask, name=ref.name, image_id=ref.image_id)


# ---- layouts -------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def sorted_files(folder: Path) -> list[Path]:
    """The image files of ``folder`` (hidden ones, such as macOS ``._`` copies, left out)."""
    _require_dir(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def files_by_stem(folder: Path) -> dict[str, Path]:
    """The image files of ``folder`` by stem; two files of one stem are an error, not a guess."""
    files: dict[str, Path] = {}
    for path in sorted_files(folder):
        if path.stem in files:
            raise MSTGeoError(f"two images named {path.stem!r} ({files[path.stem].name}, {path.name}); "
                              "keep one", folder)
        files[path.stem] = path
    return files


def _require_dir(folder: Path) -> None:
    if not folder.is_dir():
        raise MSTGeoError("folder missing (not the expected dataset layout)", folder)


def _image_mask_pairs(folder: Path, image_dir: str, mask_dir: str) -> list[tuple[Path, Path]]:
    """Each image with the mask of its stem in the sibling folder, as RITM's and SimpleClick's
    readers pair them (an image is a sample; a mask without an image is not)."""
    masks = files_by_stem(folder / mask_dir)
    pairs = []
    for image_path in files_by_stem(folder / image_dir).values():  # x.jpg beside x.png: an error, not two objects
        if image_path.stem not in masks:
            raise MSTGeoError(f"no mask {image_path.stem}.* in {mask_dir}/ for this image", image_path)
        pairs.append((image_path, masks[image_path.stem]))
    return pairs


def _paired(folder: Path, image_dir: str, mask_dir: str) -> list[InstanceRef]:
    """One instance per image (Berkeley: 96, its part masks 189011a/b and 239007a/b, whose unions
    are 189011's and 239007's masks, are not scored, as in RITM's evaluation)."""
    return [InstanceRef(image, mask, image.stem, image.stem)
            for image, mask in _image_mask_pairs(folder, image_dir, mask_dir)]


def _listed_ids(folder: Path, list_name: str) -> list[str]:
    list_path = folder / list_name
    if not list_path.is_file():
        raise MSTGeoError("split list missing", list_path)
    return [line.strip() for line in list_path.read_text().splitlines() if line.strip()]


def _duts(folder: Path, split: str) -> list[InstanceRef]:
    return [
        InstanceRef(folder / "img" / f"{i}.jpg", folder / "gt" / f"{i}.png", i, i)
        for i in _listed_ids(folder, "list.txt")
    ]


def _ccp(folder: Path, split: str) -> list[InstanceRef]:
    index = folder / "instances.json"
    if not index.is_file():
        raise MSTGeoError("CCP index missing: CCP is read as the shared data repacks it (img/, gt/, "
                          "instances.json; shared/data/iseg/CCP/README.md), not as the authors' photos/ and "
                          ".mat annotations", index)
    refs = []
    for record in json.loads(index.read_text()):
        image_path, mask_path = folder / record["image"], folder / record["mask"]
        refs.append(InstanceRef(image_path, mask_path, mask_path.stem, image_path.stem))
    return refs


def _per_object_refs(folder: Path, list_file: str, mask_path: Callable[[str], Path],
                     image_path: Callable[[str], Path],
                     read_ids: Callable[[Path], np.ndarray]) -> list[InstanceRef]:
    """One ref per object id of each listed sample whose instance map holds several objects."""
    refs = []
    for sample in _listed_ids(folder, list_file):
        masks = mask_path(sample)
        for object_id in object_ids(read_ids(masks)):
            refs.append(InstanceRef(image_path(sample), masks, f"{sample}_{object_id}", sample, object_id))
    return refs


def _pascal_voc(folder: Path, split: str) -> list[InstanceRef]:
    return _per_object_refs(folder, f"ImageSets/Segmentation/{split}.txt",
                            lambda sample: folder / "SegmentationObject" / f"{sample}.png",
                            lambda sample: folder / "JPEGImages" / f"{sample}.jpg",
                            read_palette_indices)


def _sbd(folder: Path, split: str) -> list[InstanceRef]:
    return _per_object_refs(folder, f"{split}.txt",
                            lambda sample: folder / "inst" / f"{sample}.mat",
                            lambda sample: folder / "img" / f"{sample}.jpg",
                            read_sbd_instances)


def _coco_lvis(folder: Path, split: str) -> list[InstanceRef]:
    """RITM's packed annotations where the split holds them, else LVIS's JSON polygons."""
    if (folder / split / PACKED_ANNOTATIONS).is_file():
        return packed_refs(folder / split)
    annotations_path = folder / split / f"lvis_{split}.json"
    if not annotations_path.is_file():
        raise MSTGeoError(f"neither RITM's packed annotations ({PACKED_ANNOTATIONS}) nor an LVIS annotation "
                          f"file ({annotations_path.name}) in {folder / split}", annotations_path)
    try:
        lvis = json.loads(annotations_path.read_text())
        images = {image["id"]: image for image in lvis["images"]}
        refs = []
        for annotation in lvis["annotations"]:
            image = images[annotation["image_id"]]
            file_name = image.get("file_name") or image["coco_url"].rsplit("/", 1)[-1]
            stem = Path(file_name).stem
            refs.append(
                PolygonRef(
                    folder / split / "images" / file_name,
                    annotations_path,
                    f"{stem}_{annotation['id']}",
                    stem,
                    int(annotation["id"]),
                    polygons=tuple(tuple(p) for p in annotation["segmentation"]),
                    size=(int(image["height"]), int(image["width"])),
                )
            )
    except (KeyError, TypeError, ValueError) as error:
        raise MSTGeoError(f"not an LVIS annotation file ({error!r})", annotations_path) from error
    return refs


def coco_lvis_mask(ref: InstanceRef) -> np.ndarray:
    """An object of either COCO+LVIS layout: from RITM's packed layers or from LVIS's polygons."""
    return packed_mask(ref) if isinstance(ref, PackedRef) else polygon_mask(ref)


def _sstem(folder: Path, split: str) -> list[InstanceRef]:
    """SimpleClick's ssTEM (``uncbiag/SimpleClick`` isegm/data/datasets/ssTEM.py): ``raw/*.tif``
    slices, ``mitochondria/*.png`` masks (foreground above 0), every connected component one object.
    Its code asks for 4-connectivity but passes the 4 where OpenCV expects the output labels, so
    the published numbers count 8-connected components: so does this reader."""
    refs = []
    for image_path, mask_path in _image_mask_pairs(folder, "raw", "mitochondria"):
        count = cv2.connectedComponents(above_zero(mask_path), connectivity=8)[0]
        refs.extend(InstanceRef(image_path, mask_path, f"{mask_path.stem}_{k}", image_path.stem, k)
                    for k in range(1, count))
    return refs


def _oaizib(folder: Path, split: str) -> list[InstanceRef]:
    """SimpleClick's OAI-ZIB (``uncbiag/SimpleClick`` isegm/data/datasets/oai_zib.py):
    ``<split>/image/*.png`` beside ``<split>/annotations/*.png``, every value above 0 one object
    (femoral and tibial cartilage, whatever their label values), a slice without one none; it
    ships train and test, so the bench's default split is test."""
    chosen = "test" if split == "val" and not (folder / "val").is_dir() else split
    if (folder / chosen).is_dir():
        folder = folder / chosen
    elif not (folder / "annotations").is_dir():  # one flat slice folder (image/ + annotations/) is fine too
        raise MSTGeoError(f"no {chosen} split folder here", folder)
    refs = []
    for image_path, mask_path in _image_mask_pairs(folder, "image", "annotations"):
        refs.extend(InstanceRef(image_path, mask_path, f"{mask_path.stem}_{value}", image_path.stem, value)
                    for value in map(int, np.unique(oaizib_labels(mask_path))) if value)
    return refs


def _davis585(folder: Path, split: str) -> list[InstanceRef]:
    """ClickSEG's DAVIS-585 (``XavierCHEN34/ClickSEG`` isegm/data/datasets/davis585.py): one folder
    per sequence holding ``<frame>.jpg`` and ``<object>_<frame>.png`` masks (object above 128);
    its ``init_*`` masks (the mask-correction protocol's start) are not instances: the bench
    starts every object from no mask."""
    refs = []
    for sequence in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for mask_path in sorted_files(sequence):
            if mask_path.suffix.lower() != ".png" or "init" in mask_path.name:
                continue
            frame = mask_path.stem.rsplit("_", 1)[-1]
            image_path = sequence / f"{frame}.jpg"
            if not image_path.is_file():
                raise MSTGeoError(f"no image {image_path.name} beside this mask", mask_path)
            refs.append(InstanceRef(image_path, mask_path, f"{sequence.name}_{mask_path.stem}",
                                    f"{sequence.name}_{frame}"))
    return refs


def _named_path(root: Path, relative: str) -> Path | None:
    """``root/relative`` with its first folder matched like dataset names (``davis``, ``DUTS-TR``)."""
    first, *rest = Path(relative).parts
    folder = named_folder(root, first)
    path = folder.joinpath(*rest) if folder is not None else None
    return path if path is not None and path.is_dir() else None


def named_folder(root: Path, name: str) -> Path | None:
    """``root/name``, matched like dataset names (case, ``_``/``-``/``+`` aside)."""
    if (root / name).is_dir():
        return root / name
    return next((p for p in sorted(root.iterdir()) if p.is_dir() and name_key(p.name) == name_key(name)), None)


@dataclass(frozen=True)
class _Layout:
    folders: tuple[str, ...]
    """Where the set may lie under the data root, in order of preference."""
    marker: str | None
    """A file or folder that only the set's own folder holds: the first candidate holding it wins
    (None: the first candidate that exists)."""
    list_refs: Callable[[Path, str], list[InstanceRef]]
    read_mask: MaskReader


LAYOUTS: dict[str, _Layout] = {
    "GrabCut": _Layout(("GrabCut",), "boundary_GT", lambda f, s: _paired(f, "data_GT", "boundary_GT"), trimap_mask),
    "Berkeley": _Layout(("Berkeley",), "masks", lambda f, s: _paired(f, "images", "masks"), trimap_mask),
    "DAVIS": _Layout(("DAVIS",), "gt", lambda f, s: _paired(f, "img", "gt"), nonzero_mask),
    "COCO_MVal": _Layout(("COCO_MVal",), "gt", lambda f, s: _paired(f, "img", "gt"), nonzero_mask),
    "DUTS_TR": _Layout(("DUTS_TR",), "list.txt", _duts, binary_mask),
    "CCP": _Layout(("CCP",), "instances.json", _ccp, binary_mask),
    "PascalVOC": _Layout(("PascalVOC", "PascalVOC/VOCdevkit/VOC2012", "PascalVOC/VOC2012", "VOCdevkit/VOC2012",
                          "VOC2012"), "SegmentationObject",
                         _pascal_voc, indexed_mask),
    "SBD": _Layout(("SBD", "SBD/dataset", "SBD/benchmark_RELEASE/dataset", "benchmark_RELEASE/dataset"), "inst",
                   _sbd, sbd_mask),
    "COCO_LVIS": _Layout(("COCO_LVIS", "cocolvis"), None, _coco_lvis, coco_lvis_mask),
    "ssTEM": _Layout(("ssTEM", "ssTEM/stack1", "groundtruth-drosophila-vnc/stack1"), "mitochondria", _sstem,
                     component_mask),
    "OAIZIB": _Layout(("OAIZIB/iseg_slices", "OAIZIB"), None, _oaizib, oaizib_mask),
    "DAVIS585": _Layout(("DAVIS585",), None, _davis585, above_128_mask),
}
"""Dataset name -> candidate folders under the data root, their marker, instance lister and mask rule."""

ALIASES = {"PASCAL": "PascalVOC", "VOC": "PascalVOC", "D585": "DAVIS585"}

DISTINCT_MARKERS = ("GrabCut", "PascalVOC", "SBD", "CCP", "ssTEM")
"""Sets whose marker (with ``HELD_BESIDE_MARKER``) no other layout holds, so a folder of any name
holding it is that set."""

HELD_BESIDE_MARKER = {"ssTEM": ("raw",)}
"""Folders a set holds beside its marker where the marker alone is not distinctive (an images-folder
set may keep a ``mitochondria`` folder too)."""

BENCHMARK_SETS = ("GrabCut", "Berkeley")
"""Evaluation only: the sets the README reports are never trained on (shared/data/README)."""


def name_key(name: str) -> str:
    """A name reduced to lower-case letters and digits: COCO+LVIS, coco_lvis, COCO-MVal, cocomval."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def spelled_as(name: str, names: Iterable[str], aliases: Mapping[str, str]) -> str | None:
    """The one of ``names`` (or of ``aliases``' targets) that ``name`` spells, ``name_key`` aside."""
    lookup = {name_key(key): key for key in names} | {name_key(a): t for a, t in aliases.items()}
    return lookup.get(name_key(name))


def known_name(name: str) -> str | None:
    """The known spelling of a dataset name (case, ``_``/``-``/``+`` and aliases such as VOC aside),
    None for a set without a layout of its own (read in the generic images-folder layout)."""
    return spelled_as(name, LAYOUTS, ALIASES)


def _distinct_set_in(folder: Path) -> tuple[str, Path] | None:
    """The set whose distinctive marker ``folder`` holds, itself or in the inner folders of that
    set's archive (``VOCdevkit`` holds ``VOC2012``, ``benchmark_RELEASE`` holds ``dataset``)."""
    for key in DISTINCT_MARKERS:
        layout = LAYOUTS[key]
        markers = (str(layout.marker), *HELD_BESIDE_MARKER.get(key, ()))
        for candidate in (folder, *(folder / relative for relative in _archive_folders(layout))):
            if all((candidate / marker).exists() for marker in markers):
                return key, candidate
    return None


def _archive_folders(layout: _Layout) -> list[str]:
    """The folders a set's archive nests inside its own (``VOCdevkit/VOC2012``, ``VOC2012``): the
    trailing parts of its candidate folders."""
    return sorted({str(Path(*Path(f).parts[i:])) for f in layout.folders for i in range(1, len(Path(f).parts))})


def dataset_location(name: str, root: str | Path) -> tuple[Path, str]:
    """``(root, name)`` of a dataset named by name under ``root`` or by its folder's path (a name
    holding a slash)."""
    if "/" in name or "\\" in name:
        return Path(name).parent, Path(name).name
    return Path(root), name


def load_iseg_dataset(name: str, root: str | Path, split: str = "val", also_known: Sequence[str] = ()) -> ISegDataset:
    """The dataset ``name`` under ``root`` (a folder holding one folder per dataset).

    ``name`` may also be a folder's path (it holds a slash), read as that folder's set. A folder
    holding a known set's distinctive marker is read as that set (and named after it); any other is
    read in the generic images-folder layout (module docstring), as is a known set's folder that
    lacks its marker but holds image and mask folders. ``split`` matters only for the sets that
    ship several (PascalVOC, SBD, COCO_LVIS, OAIZIB); ``also_known`` names other sets for the error
    on an unknown name (the bench's remote-sensing sets).
    """
    root, name = dataset_location(name, root)
    if not root.is_dir():
        raise MSTGeoError("data root is not a folder", root)
    from mst_geo.data.images_folder import has_images_folder_layout, images_folder_dataset  # builds on this module

    known = known_name(name)
    if known is None:
        folder = named_folder(root, name)
        if folder is None:
            known_names = [*LAYOUTS, *also_known]
            close = difflib.get_close_matches(name_key(name), [name_key(k) for k in known_names], n=1, cutoff=0.7)
            hint = next((f"; did you mean {k}?" for k in known_names if close and name_key(k) == close[0]), "")
            raise MSTGeoError(f"unknown dataset {name!r}: no folder of that name here, and not one of "
                              f"{', '.join(known_names)}{hint}", root)
        inner = _distinct_set_in(folder)
        if inner is None:
            return images_folder_dataset(folder)
        known, folder = inner
        present = [folder]  # a known set by another name (a copy, VOCdevkit/VOC2012 by its path)
    else:  # its usual folders, then folders named as given or by an alias (ROOT/VOC, ROOT/D585)
        aliases = [alias for alias, target in ALIASES.items() if target == known]
        candidates = dict.fromkeys((*LAYOUTS[known].folders, name, *aliases))
        present = [found for f in candidates if (found := _named_path(root, f)) is not None]
    name, layout = known, LAYOUTS[known]
    if layout.marker is not None:  # a folder named as the set may wrap its archive (VOC/VOCdevkit/VOC2012)
        present += [f / inner for f in present for inner in _archive_folders(layout) if (f / inner).is_dir()]
    folder = next((f for f in present if layout.marker is None or (f / layout.marker).exists()), None)
    if folder is None and present and has_images_folder_layout(present[0]):
        return images_folder_dataset(present[0], name)  # as its archive unpacks (DUTS-TR/DUTS-TR-Image, -Mask)
    folder = folder or (present[0] if present else None)
    if folder is None:
        itself = name_key(root.name) == name_key(name) or (layout.marker is not None and (root / layout.marker).exists())
        hint = f"; this looks like the {name} folder itself: the data root is the folder holding it" if itself else ""
        raise MSTGeoError(f"no {name} folder here (looked for {', '.join(layout.folders)}){hint}", root)
    refs = layout.list_refs(folder, split)
    if not refs:
        raise MSTGeoError(f"no {name} instances found", folder)
    return ISegDataset(name, refs, layout.read_mask, folder)
