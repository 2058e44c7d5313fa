"""Sets without a layout of their own, in RITM's images-folder layout and its common variants.

A folder named after the set holds an image folder (``img``, ``images``, ``im``, ``DUTS-TR-Image``,
``images_test`` ...) and a mask folder (``gt``, ``masks``, ``labels``, ``annotations``,
``DUTS-TR-Mask``, ``masks_max255`` ...). A mask ``<stem>.<ext>`` (also ``<stem>_<k>``,
``<stem>_mask``, ``<stem>_gt``) belongs to the image ``<stem>``. What a mask's values mean is read
from the values themselves, since these sets come from many tools:

- a palette PNG, or integer values that are all small (at most ``LABEL_MAP_MAX``), is a label
  map: every value above 0 is one object (OAIZIB's cartilages, DAVIS-2017's objects), 255 beside
  them is void and ignored (the VOC/SBD convention); colour masks are label maps of their colours
  (VOC's palette colours read as its indices, so its void colour stays void); instance maps of
  more labels are read as one object;
- values 0/128/255 are a GrabCut trimap: 128 is the unknown band, ignored;
- anything else (0/255, antialiased edges, JPEG-compressed masks, 16-bit 0/65535, soft float
  masks) is one object where the value is above half the largest value present (127.5 for a
  0/255 mask, about ClickSEG's cut for such sets).

Masks are read once when the set is listed, to count their objects.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mst_geo.data.instance import IGNORE, InstanceRef
from mst_geo.data.iseg import ISegDataset, files_by_stem
from mst_geo.data.masks import voc_indices
from mst_geo.errors import MSTGeoError, a_few, warn

IMAGE_FOLDER = re.compile(r"^(img|imgs|im|image|images|jpegimages)([-_ ].*)?$|.*[-_ ](image|images|img)$", re.I)
MASK_FOLDER = re.compile(r"^(gt|gts|mask|masks|label|labels|annotations?)([-_ ].*)?$|.*[-_ ](mask|masks|gt)$", re.I)
"""Image and mask folder names: RITM's ``img``/``gt``, ``images``/``masks`` and their variants."""

MASK_SUFFIX = re.compile(r"(.+?)(?:[-_](?:mask|gt|label)|_\d+)$", re.I)
"""A mask stem naming its image's stem: ``<stem>_<k>``, ``<stem>_mask``, ``<stem>-gt``."""

LABEL_MAP_MAX = 32
"""Masks whose values are all at most this (besides 0 and void 255) are label maps."""


@dataclass(frozen=True)
class MaskValues:
    """A mask's values as one channel and how to read them (module docstring)."""

    values: np.ndarray
    objects: tuple[int, ...]  # label values that are objects; empty: one object by threshold
    void: int | None  # value ignored (255 beside labels, 128 of a trimap)
    threshold: float  # object above this when ``objects`` is empty


GREY, LABELS, VOC = "grey", "labels", "voc"
"""How a mask's one channel reads: values, labels (a palette's or colours' ids) or VOC indices."""

VOC_VOID_COLOUR = (224, 224, 192)


def _one_channel(path: Path) -> tuple[np.ndarray, str]:
    """The mask's values and how they read (``GREY``, ``LABELS`` or ``VOC``)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode in ("P", "PA"):
                palette = image.getpalette() or []
                void = tuple(palette[3 * IGNORE:3 * IGNORE + 3]) == VOC_VOID_COLOUR
                return np.asarray(image.getchannel(0)), VOC if void else LABELS
            array = np.asarray(image.convert("RGBA") if image.mode == "LA" else image)
    except OSError as error:
        raise MSTGeoError(f"cannot read this mask ({error})", path) from error
    if array.ndim == 2:
        return array, GREY
    rgb = array[..., :3]
    if (rgb == rgb[..., :1]).all():
        alpha = array[..., 3] if array.shape[2] == 4 else None
        if alpha is not None and (rgb == rgb.flat[0]).all() and (alpha != alpha.flat[0]).any():
            return alpha, GREY  # one colour everywhere: the mask is in the alpha channel
        return rgb[..., 0], GREY
    indices = voc_indices(rgb)  # VOC's palette, void included
    if indices is not None:
        return indices, VOC
    colours, ids = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    ids = ids.reshape(rgb.shape[:2])
    if len(colours) > LABEL_MAP_MAX + 1:  # a compressed colour mask: read its brightness
        return rgb.max(axis=2), GREY
    # colours in sorted order, black (background) first when present: ids 0.., else 1..
    return (ids + (0 if (colours[0] == 0).all() else 1)).astype(np.int32), LABELS


def read_mask_values(path: Path) -> MaskValues:
    """A generic set's mask with the rule its values follow (module docstring)."""
    values, kind = _one_channel(path)
    present = np.unique(values)
    nonzero = present[present != 0]
    integers = np.issubdtype(values.dtype, np.integer) or values.dtype == bool
    small = nonzero[nonzero <= LABEL_MAP_MAX] if integers else nonzero[:0]
    large = set(nonzero[nonzero > LABEL_MAP_MAX].tolist())
    others = [int(v) for v in nonzero if v != IGNORE]
    if kind == VOC:  # 255 is VOC's void colour: never the object
        return MaskValues(values, tuple(others), IGNORE, 0)
    if kind == LABELS:  # 255 is void beside other labels, the object when alone (a 0/255 palette mask)
        return MaskValues(values, tuple(others) if others else (IGNORE,), IGNORE if others else None, 0)
    if integers and not large:
        return MaskValues(values, tuple(int(v) for v in small), None, 0)
    if integers and large == {IGNORE} and small.size:  # 8 or 16 bits: a label map with its void
        return MaskValues(values, tuple(int(v) for v in small), IGNORE, 0)
    if large == {128, 255} and not small.size:
        return MaskValues(values, (), 128, 128)
    return MaskValues(values, (), None, float(present.max()) / 2 if present.size else 0.0)


def images_folder_mask(ref: InstanceRef) -> np.ndarray:
    """The 1/0/255 mask of a generic set's ref (``object_id``: its label value, if a label map)."""
    mask_values = read_mask_values(ref.mask_path)
    values = mask_values.values
    if ref.object_id is not None:
        mask = (values == ref.object_id).astype(np.uint8)
    else:
        mask = (values > mask_values.threshold).astype(np.uint8)
    if mask_values.void is not None:
        mask[values == mask_values.void] = IGNORE
    return mask


def _subfolder(folder: Path, pattern: re.Pattern, preferred: Sequence[str]) -> str | None:
    """The one subfolder whose name fits ``pattern`` (of several, the first ``preferred`` name)."""
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and pattern.fullmatch(p.name))
    by_case = {name.lower(): name for name in names}
    choice = next((by_case[name] for name in preferred if name in by_case), None)
    if choice is None and len(names) > 1:
        raise MSTGeoError(f"holds several candidate folders ({', '.join(names)}); name the set by the path of a "
                          "folder holding just one image folder and its mask folder", folder)
    return choice or (names[0] if names else None)


def _image_of_mask(images: dict[str, Path], stem: str, mask_path: Path) -> Path:
    """Same stem, else the stem without a mask suffix (``_<k>``, ``_mask``, ``-gt``) or without an
    object letter after a number (``189011a`` and ``189011b`` share ``189011``)."""
    for candidate in (stem, MASK_SUFFIX.fullmatch(stem), re.fullmatch(r"(.*\d)[a-z]", stem)):
        image_stem = candidate.group(1) if isinstance(candidate, re.Match) else candidate
        if image_stem in images:
            return images[image_stem]
    raise MSTGeoError("no image with the same name for this mask", mask_path)


def _image_and_mask_folders(folder: Path) -> tuple[str, str] | None:
    image_dir = _subfolder(folder, IMAGE_FOLDER, ("img", "images", "image", "imgs", "im"))
    mask_dir = _subfolder(folder, MASK_FOLDER, ("gt", "masks", "mask", "gts", "labels", "label", "annotations"))
    return (image_dir, mask_dir) if image_dir is not None and mask_dir is not None else None


def has_images_folder_layout(folder: Path) -> bool:
    """Whether ``folder`` holds an image folder beside a mask folder."""
    return _image_and_mask_folders(folder) is not None


def images_folder_refs(folder: Path) -> list[InstanceRef]:
    """One ref per object of each mask of a folder in the images-folder layout (its label value
    as ``object_id`` for label maps)."""
    folders = _image_and_mask_folders(folder)
    if folders is None:
        raise MSTGeoError("not a known dataset, nor an image folder (img, images, im, ...) beside a mask "
                          "folder (gt, masks, labels, ...); known sets (GrabCut, LoveDA, ...) are found by "
                          "their folder's name: rename or link the folder", folder)
    image_dir, mask_dir = folders
    images = files_by_stem(folder / image_dir)
    refs = []
    for mask_path in files_by_stem(folder / mask_dir).values():
        image_path = _image_of_mask(images, mask_path.stem, mask_path)
        objects = read_mask_values(mask_path).objects
        for value in objects or (None,):
            name_of_object = mask_path.stem if len(objects) < 2 else f"{mask_path.stem}_{value}"
            refs.append(InstanceRef(image_path, mask_path, name_of_object, image_path.stem, value))
    if not refs:
        raise MSTGeoError(f"no masks in {mask_dir}/", folder)
    unmasked = sorted(set(images) - {ref.image_path.stem for ref in refs})
    if unmasked:  # RITM's layouts pair every image with a mask: one missing is more often lost than meant
        warn(f"{folder}: {len(unmasked)} of {len(images)} images have no mask in {mask_dir}/ and are left "
             f"out ({a_few(unmasked)})")
    repeated = [name for name, count in Counter(ref.name for ref in refs).items() if count > 1]
    if repeated:  # instance names are the bench's resume keys
        raise MSTGeoError(f"two objects would both be named {repeated[0]!r} (a label map beside a mask file of "
                          "that name); rename one mask", folder / mask_dir)
    return refs


def images_folder_dataset(folder: Path, name: str | None = None) -> ISegDataset:
    """A set in the images-folder layout (named ``name``, else after its folder): one instance per
    object of each mask."""
    return ISegDataset(name or folder.name, images_folder_refs(folder), images_folder_mask, folder)
