"""How each published layout stores an object's mask, read into the shared convention (uint8: 1
object, 0 background, 255 ignore): grey and trimap PNGs, PASCAL VOC palette indices (also when
re-saved as RGB), SBD ``.mat`` instance maps, label maps, connected components and LVIS polygons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import cv2
import numpy as np

from mst_geo.data.instance import IGNORE, InstanceRef, read_image_file
from mst_geo.errors import MSTGeoError


def read_gray(path: Path) -> np.ndarray:
    """A mask file as one channel: the max over the colour channels of an RGB mask, its alpha left
    out (RITM reads masks without it: an opaque alpha is not a whole-image object)."""
    raw = read_image_file(path, cv2.IMREAD_UNCHANGED, "mask")
    if raw.ndim == 3 and raw.shape[2] in (2, 4):  # grey + alpha, BGR + alpha
        raw = raw[..., :-1]
    return raw.max(axis=2) if raw.ndim == 3 else raw


def above_zero(path: Path) -> np.ndarray:
    """A mask's pixels above 0 as 1, the rest 0."""
    return (read_gray(path) > 0).astype(np.uint8)


def nonzero_mask(ref: InstanceRef) -> np.ndarray:
    """DAVIS and COCO_MVal: RITM's rule, any value above 0 is the object (its antialiased edge
    included; a 0/1 mask as well as a 0/255 one)."""
    return above_zero(ref.mask_path)


def binary_mask(ref: InstanceRef) -> np.ndarray:
    """DUTS_TR and CCP: object where > 127 (a saliency map's graded edge is cut at half)."""
    return (read_gray(ref.mask_path) > 127).astype(np.uint8)


def above_128_mask(ref: InstanceRef) -> np.ndarray:
    """DAVIS585: object where > 128, as ClickSEG reads it."""
    return (read_gray(ref.mask_path) > 128).astype(np.uint8)


def trimap_mask(ref: InstanceRef) -> np.ndarray:
    """GrabCut/Berkeley masks: 128 is the unknown band (ignored), above 128 is the object."""
    raw = read_gray(ref.mask_path)
    mask = (raw > 128).astype(np.uint8)
    mask[raw == 128] = IGNORE
    return mask


def indexed_mask(ref: InstanceRef) -> np.ndarray:
    """PascalVOC SegmentationObject palette PNG: index == object id, 255 (void) ignored."""
    raw = read_palette_indices(ref.mask_path)
    mask = (raw == ref.object_id).astype(np.uint8)
    mask[raw == IGNORE] = IGNORE
    return mask


def _voc_colours() -> np.ndarray:
    """PASCAL VOC's palette: index i's colour from i's bits, interleaved into R, G, B (devkit)."""
    colours = np.zeros((256, 3), dtype=np.int64)
    for index in range(256):
        value = index
        for shift in range(7, -1, -1):
            for channel in range(3):
                colours[index, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
    return colours


VOC_INDEX_OF_COLOUR = {tuple(colour): index for index, colour in enumerate(_voc_colours().tolist())}


def read_palette_indices(path: Path) -> np.ndarray:
    """A VOC SegmentationObject mask's palette indices; one re-saved as RGB is read back through
    VOC's palette (a colour outside it is an error naming the file)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode in ("P", "L"):
                return np.asarray(image)
            rgb = np.asarray(image.convert("RGB"))
    except OSError as error:
        raise MSTGeoError(f"cannot read this mask ({error})", path) from error
    indices = voc_indices(rgb)
    if indices is None:
        unknown = next(tuple(c) for c in np.unique(rgb.reshape(-1, 3), axis=0).tolist()
                       if tuple(c) not in VOC_INDEX_OF_COLOUR)
        raise MSTGeoError(f"an RGB mask with colours outside PASCAL VOC's palette (e.g. {unknown})", path)
    return indices


def voc_indices(rgb: np.ndarray) -> np.ndarray | None:
    """An HxWx3 mask's VOC palette indices (void 255 included), None when a colour is outside
    the palette."""
    colours, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    if not all(tuple(colour) in VOC_INDEX_OF_COLOUR for colour in colours.tolist()):
        return None
    indices = np.array([VOC_INDEX_OF_COLOUR[tuple(colour)] for colour in colours.tolist()], dtype=np.uint8)
    return indices[inverse.reshape(-1)].reshape(rgb.shape[:2])


def sbd_mask(ref: InstanceRef) -> np.ndarray:
    return (read_sbd_instances(ref.mask_path) == ref.object_id).astype(np.uint8)


def read_sbd_instances(path: Path) -> np.ndarray:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    if not Path(path).is_file():
        raise MSTGeoError("SBD instance file not found (listed in the split's list)", path)
    try:
        return loadmat(str(path))["GTinst"][0][0]["Segmentation"]
    except (OSError, ValueError, KeyError, IndexError, MatReadError) as error:
        raise MSTGeoError(f"not an SBD instance file with GTinst.Segmentation ({error})", path) from error


def object_ids(indices: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(indices) if v not in (0, IGNORE)]


def component_mask(ref: InstanceRef) -> np.ndarray:
    labels = cv2.connectedComponents(above_zero(ref.mask_path), connectivity=8)[1]
    return (labels == ref.object_id).astype(np.uint8)


def oaizib_labels(path: Path) -> np.ndarray:
    """An OAI-ZIB annotation as SimpleClick reads it: the first channel of the colour image."""
    return read_image_file(path, cv2.IMREAD_COLOR, "mask")[..., 0]


def oaizib_mask(ref: InstanceRef) -> np.ndarray:
    return (oaizib_labels(ref.mask_path) == ref.object_id).astype(np.uint8)


@dataclass(frozen=True)
class PolygonRef(InstanceRef):
    """An LVIS annotation: its mask is drawn from polygons, not read from a file."""

    polygons: tuple[tuple[float, ...], ...] = ()
    size: tuple[int, int] = (0, 0)


def polygon_mask(ref: InstanceRef) -> np.ndarray:
    """LVIS polygons (x, y pairs in pixels) filled into a mask of the image size."""
    ref = cast(PolygonRef, ref)
    mask = np.zeros(ref.size, dtype=np.uint8)
    for polygon in ref.polygons:
        points = np.round(np.asarray(polygon, dtype=np.float64).reshape(-1, 2)).astype(np.int32)
        cv2.fillPoly(mask, [points], 1)
    return mask
