"""Sets without a layout of their own, in RITM's images-folder layout and its common variants.

A folder named after the set holds an image folder (``img``, ``images``, ``im``, ``DUTS-TR-Image``,
``images_test`` ...) and a mask folder (``gt``, ``masks``, ``labels``, ``annotations``,
``DUTS-TR-Mask``, ``masks_max255`` ...). A mask ``<stem>.<ext>`` (also ``<stem>_<k>``,
``<stem>_mask``, ``<stem>_gt``) belongs to the image ``<stem>``. What a mask's values mean is read
from the values themselves, since these sets come from many tools:

- a palette PNG, or values that are all small integers (at most ``LABEL_MAP_MAX``), is a label
  map: every value above 0 is one object (OAIZIB's cartilages, DAVIS-2017's objects), 255 beside
  them is void and ignored (the VOC/SBD convention); colour masks are label maps of their colours;
- values 0/128/255 are a GrabCut trimap: 128 is the unknown band, ignored;
- anything else (0/255, antialiased edges, JPEG-compressed masks, 16-bit 0/65535) is one object
  where the value is above half the type's range (ClickSEG's rule for such sets).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mst_geo.data.iseg import IGNORE, ISegDataset, InstanceRef, files_by_stem, image_for, sorted_files
from mst_geo.errors import MSTGeoError

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


def _one_channel(path: Path) -> tuple[np.ndarray, bool]:
    """The mask's values and whether they are labels by construction (palette or colours)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode == "P":
                return np.asarray(image), True
            array = np.asarray(image)
    except OSError as error:
        raise MSTGeoError(f"cannot read this mask ({error})", path) from error
    if array.ndim == 2:
        return array, False
    rgb = array[..., :3]
    if (rgb == rgb[..., :1]).all():
        return rgb[..., 0], False
    colours, ids = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    if len(colours) > LABEL_MAP_MAX + 1:  # a compressed colour mask: read its brightness
        return rgb.max(axis=2), False
    black = np.flatnonzero((colours == 0).all(axis=1))
    if black.size:  # black is background: id 0, the other colours 1..n in colour order
        ids = np.where(ids == black[0], 0, ids + (ids < black[0]))
    else:
        ids = ids + 1
    return ids.reshape(rgb.shape[:2]).astype(np.int32), True


def read_mask_values(path: Path) -> MaskValues:
    """A generic set's mask with the rule its values follow (module docstring)."""
    values, labelled = _one_channel(path)
    present = np.unique(values)
    nonzero = present[present != 0]
    small = nonzero[nonzero <= LABEL_MAP_MAX]
    large = set(nonzero[nonzero > LABEL_MAP_MAX].tolist())
    if labelled:
        return MaskValues(values, tuple(int(v) for v in nonzero if v != IGNORE), IGNORE, 0)
    if not large:
        return MaskValues(values, tuple(int(v) for v in small), None, 0)
    if large == {IGNORE} and small.size and values.dtype == np.uint8:
        return MaskValues(values, tuple(int(v) for v in small), IGNORE, 0)
    if large == {128, 255} and not small.size:
        return MaskValues(values, (), 128, 128)
    top = np.iinfo(values.dtype).max if np.issubdtype(values.dtype, np.integer) else float(present.max())
    return MaskValues(values, (), None, top / 2)


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
    """Same stem, else the stem without a mask suffix (``_<k>``, ``_mask``, ``-gt``)."""
    suffixed = MASK_SUFFIX.fullmatch(stem)
    if stem not in images and suffixed and suffixed.group(1) in images:
        return images[suffixed.group(1)]
    return image_for(images, stem, mask_path)


def images_folder_dataset(folder: Path) -> ISegDataset:
    """A set of unknown name in the images-folder layout: one instance per object of each mask."""
    image_dir = _subfolder(folder, IMAGE_FOLDER, ("img", "images", "image", "imgs", "im"))
    mask_dir = _subfolder(folder, MASK_FOLDER, ("gt", "masks", "mask", "gts", "labels", "label", "annotations"))
    if image_dir is None or mask_dir is None:
        raise MSTGeoError("not a known dataset, nor an image folder (img, images, im, ...) beside a mask "
                          "folder (gt, masks, labels, ...)", folder)
    images = files_by_stem(folder / image_dir)
    refs = []
    for mask_path in sorted_files(folder / mask_dir):
        image_path = _image_of_mask(images, mask_path.stem, mask_path)
        objects = read_mask_values(mask_path).objects
        for value in objects or (None,):
            name = mask_path.stem if len(objects) < 2 else f"{mask_path.stem}_{value}"
            refs.append(InstanceRef(image_path, mask_path, name, image_path.stem, value))
    if not refs:
        raise MSTGeoError(f"no masks in {mask_dir}/", folder)
    return ISegDataset(folder.name, refs, images_folder_mask, folder)
