"""What a dataset item is: an image and its object's mask in one convention (uint8: 1 object,
0 background, 255 ignore), and where an item lives on disk before it is read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mst_geo.errors import MSTGeoError

IGNORE = 255
"""Mask value of pixels that count neither as object nor as background (GrabCut's unknown band)."""


@dataclass(frozen=True)
class Instance:
    """One object to segment: RGB ``image`` (HxWx3 uint8), ``mask`` (HxW uint8: 1/0/255).

    ``native_pixels``: source pixels per image pixel, not 1 where a scene object was read resampled
    (decimated, or on square ground pixels): its size class counts it at the source's resolution."""

    image: np.ndarray
    mask: np.ndarray
    name: str
    image_id: str
    native_pixels: float = 1.0


@dataclass(frozen=True)
class InstanceRef:
    """Where an instance lives on disk; ``object_id`` picks one object in a multi-object file."""

    image_path: Path
    mask_path: Path
    name: str
    image_id: str
    object_id: int | None = None


MaskReader = Callable[[InstanceRef], np.ndarray]
"""A dataset's rule from a ref's stored mask to 1/0/255."""


def read_image_file(path: Path, flags: int, what: str = "image") -> np.ndarray:
    """``cv2.imread`` with one-line errors: a missing file is named as missing before OpenCV would
    print its own warning line about it."""
    if not Path(path).is_file():
        raise MSTGeoError(f"{what} file not found", path)
    image = cv2.imread(str(path), flags)
    if image is None:
        raise MSTGeoError(f"cannot read this {what} (not an image file OpenCV reads)", path)
    return image


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 HxWx3, its pixels as stored: masks are drawn on those, so an
    EXIF orientation tag (a phone photo's) is not applied."""
    image = read_image_file(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
