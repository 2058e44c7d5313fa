"""Training packs: the training sets re-encoded at a small size, in their own RITM layouts.

A GPU machine takes at most 64 MiB of working tree, and decoding 320 px JPEGs is several times
cheaper than decoding the originals, so the trainer reads a pack exactly like the original root
(``data/iseg.py`` loaders, same relative paths, same index files) plus a ``val.txt`` naming the
held-out images. Images are shrunk (never enlarged) to a maximum side and re-encoded as JPEG at the
highest quality that keeps the whole pack within a size budget; masks keep their values (nearest
neighbour) as PNG. The pack is written to a temporary folder and renamed when complete.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mst_geo.data.instance import read_image_file
from mst_geo.data.iseg import load_iseg_dataset
from mst_geo.errors import MSTGeoError
from mst_geo.train.instances import VAL_LIST_NAME, build_split

INDEX_FILES = ("list.txt", "instances.json")
"""Per-dataset index files copied unchanged (DUTS_TR's id list, CCP's instance records)."""

QUALITIES = (90, 85, 80, 75, 70, 65, 60, 55, 50)


@dataclass(frozen=True)
class PackReport:
    """What a pack holds: its folder, bytes, JPEG quality and counts."""

    folder: Path
    bytes: int
    quality: int
    images: int
    masks: int
    held_out_images: int


def shrink(array: np.ndarray, max_side: int, interpolation: int) -> np.ndarray:
    """``array`` scaled so its longer side is at most ``max_side`` (never enlarged)."""
    height, width = array.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return array
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(array, size, interpolation=interpolation)


def encode_image(path: Path, max_side: int, quality: int) -> bytes:
    """The image as stored (no EXIF turn, as ``read_rgb`` reads it), shrunk, as JPEG."""
    image = read_image_file(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    small = shrink(image, max_side, cv2.INTER_AREA)
    return cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def encode_mask(path: Path, max_side: int) -> bytes:
    """A mask file as PNG bytes at most ``max_side`` across, resized nearest (labels stay labels)."""
    mask = read_image_file(path, cv2.IMREAD_UNCHANGED, "mask")
    small = shrink(mask, max_side, cv2.INTER_NEAREST)
    return cv2.imencode(".png", small, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()


def pick_quality(images: Sequence[Path], mask_bytes: int, max_side: int, budget: int,
                 probe: int = 150) -> int:
    """The highest JPEG quality whose estimated pack size (from a probe of images) fits."""
    rng = np.random.default_rng(0)
    sample = [images[i] for i in rng.choice(len(images), min(probe, len(images)), replace=False)]
    for quality in QUALITIES:
        mean = np.mean([len(encode_image(p, max_side, quality)) for p in sample])
        if mean * len(images) + mask_bytes <= 0.95 * budget:
            return quality
    raise MSTGeoError(f"even JPEG quality {QUALITIES[-1]} would not fit {budget / 2**20:.0f} MiB; "
                      "lower --max-side or pack fewer datasets")


def make_pack(source: str | Path, datasets: Sequence[str], out: str | Path, max_side: int = 320,
              budget_mib: float = 50.0, val_fraction: float = 0.05,
              quality: int | None = None) -> PackReport:
    """Write ``datasets`` from ``source`` into the pack folder ``out`` (see module docstring)."""
    source, out = Path(source), Path(out)
    if out.exists():
        raise MSTGeoError("pack folder already exists; remove it or choose another", out)
    budget = int(budget_mib * 2**20)
    loaded = [load_iseg_dataset(name, source, split="train") for name in datasets]
    images = sorted({ref.image_path for ds in loaded for ref in ds.refs})
    masks = sorted({ref.mask_path for ds in loaded for ref in ds.refs})
    not_images = [m for m in masks if m.suffix.lower() not in (".png", ".bmp", ".jpg")]
    if not_images:
        raise MSTGeoError("packs hold datasets with one mask image per instance; this one stores "
                          "its masks otherwise", not_images[0])
    probe = [len(encode_mask(p, max_side)) for p in masks[:: max(1, len(masks) // 100)]]
    quality = quality or pick_quality(images, int(np.mean(probe) * len(masks)), max_side, budget)
    _, held_out = build_split(source, datasets, val_fraction)

    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    total = 0
    image_set = set(images)
    for path in tqdm(images + masks, desc="pack", unit="file"):
        data = (encode_image(path, max_side, quality) if path in image_set
                else encode_mask(path, max_side))
        target = staging / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        total += len(data)
    for dataset in loaded:
        folder = Path(dataset.refs[0].image_path).relative_to(source).parts[0]
        for name in INDEX_FILES:
            if (source / folder / name).is_file():
                shutil.copy2(source / folder / name, staging / folder / name)
                total += (source / folder / name).stat().st_size
    keys = sorted(group.key for group in held_out.groups)
    val_list = staging / VAL_LIST_NAME
    val_list.write_text(
        f"# held-out images (dataset/image_id), {val_fraction:.0%} by a fixed hash; never trained on\n"
        + "\n".join(keys) + "\n")
    total += val_list.stat().st_size
    if total > budget:
        shutil.rmtree(staging)
        raise MSTGeoError(f"pack would be {total / 2**20:.1f} MiB, over the {budget_mib:.0f} MiB "
                          f"budget at JPEG quality {quality}; pass a lower --quality", out)
    staging.rename(out)
    return PackReport(out, total, quality, len(images), len(masks), len(keys))
