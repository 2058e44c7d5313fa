"""RITM's packed COCO+LVIS annotations, the training set of the RITM, SimpleClick and MST papers as
RITM distributes it (``cocolvis_annotation.tar``): ``<split>/hannotation.pickle`` maps each image
id to its ``num_instance_masks`` (the objects; the entries past them are stuff regions) and
``<split>/masks/<id>.pickle`` holds ``(layers, mapping)``: PNG-encoded label layers and, per
entry, the (layer, value) whose pixels are that entry's mask. Images are
``<split>/images/<id>.jpg``.

Pickles can run code when loaded, so these are read by an unpickler that builds nothing but
Python's plain containers and numpy arrays: a file that names any other class is refused.
"""

from __future__ import annotations

import _compat_pickle
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mst_geo.data.instance import InstanceRef
from mst_geo.errors import MSTGeoError

ANNOTATIONS = "hannotation.pickle"
"""RITM's per-split index of the packed annotations."""

ARRAY_GLOBALS = {
    (module, name)
    for package in ("numpy.core", "numpy._core")  # numpy 1 wrote the first, numpy 2 the second
    for module, name in ((f"{package}.multiarray", "_reconstruct"), (f"{package}.multiarray", "scalar"),
                         (f"{package}.numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")} | {
    ("builtins", name) for name in ("set", "frozenset", "bytes", "bytearray")}
"""The only globals a pack may name: what pickling plain containers and numpy arrays writes
(``_codecs.encode`` rebuilds bytes in protocol 2 pickles)."""


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # protocol 2 pickles written by Python 3 name Python 2's modules (__builtin__.set)
        python3 = _compat_pickle.NAME_MAPPING.get((module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        if python3 not in ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which an annotation pack never holds")
        return super().find_class(module, name)


def load_pack(path: Path, what: str) -> Any:
    """A pickle of plain containers and numpy arrays (MSTGeoError naming ``path`` otherwise)."""
    if not path.is_file():
        raise MSTGeoError(f"{what} not found", path)
    try:
        with path.open("rb") as file:
            return _ArraysOnly(file).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise MSTGeoError(f"not a readable {what} ({error})", path) from error


@dataclass(frozen=True)
class PackedRef(InstanceRef):
    """An object of a packed image: ``object_id`` indexes the mapping in ``mask_path``."""


def packed_refs(split_folder: Path) -> list[InstanceRef]:
    """One ref per object (``num_instance_masks`` per image, stuff left out), images in id order."""
    index_path = split_folder / ANNOTATIONS
    index = load_pack(index_path, "RITM annotation index")
    try:
        counts = [(str(image_id), int(sample["num_instance_masks"])) for image_id, sample in sorted(index.items())]
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise MSTGeoError(f"not RITM's annotation index (no num_instance_masks per image: {error!r})",
                          index_path) from error
    refs: list[InstanceRef] = []
    for image_id, count in counts:  # in RITM's order: its sorted(items())
        image, masks = split_folder / "images" / f"{image_id}.jpg", split_folder / "masks" / f"{image_id}.pickle"
        refs += [PackedRef(image, masks, f"{image_id}_{entry}", image_id, entry) for entry in range(count)]
    return refs


def packed_mask(ref: InstanceRef) -> np.ndarray:
    """The object's pixels (1) in its image's packed layers, the rest 0."""
    pack = load_pack(ref.mask_path, "RITM mask pack")
    try:
        encoded_layers, mapping = pack
        layer, value = mapping[ref.object_id]
        decoded = cv2.imdecode(np.asarray(encoded_layers[layer], dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except (TypeError, ValueError, IndexError, cv2.error) as error:
        raise MSTGeoError(f"not a RITM mask pack with object {ref.object_id} ({error!r})", ref.mask_path) from error
    if decoded is None or decoded.ndim != 2:
        raise MSTGeoError(f"layer {layer} of object {ref.object_id} is not an encoded label image", ref.mask_path)
    return (decoded == value).astype(np.uint8)
