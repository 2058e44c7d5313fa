"""Training augmentation with OpenCV: scale + flip + crop that keeps the object, colour jitter.

Each function takes a ``numpy.random.Generator`` so that a sample is a pure function of its seed.
The scale is relative to the crop (1.0 fits the whole image into the crop), not to the file's
pixel size, so a pre-resized pack and the full-size originals give the same samples.
Parameters follow RITM/MST's public recipe (scale 0.5-1.5, brightness ±0.3, contrast -0.2..0.5,
RGB shift ±20, each with p 0.75); saturation and hue are our additions for the small-data preset.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np


@dataclass(frozen=True)
class Sample:
    """One image with the object to segment, the image's other objects and the ignored pixels."""

    image: np.ndarray  # HxWx3 uint8
    target: np.ndarray  # HxW bool
    others: np.ndarray  # HxW bool, union of the other objects of the image
    ignore: np.ndarray  # HxW bool, pixels that count neither as object nor as background

    def masks(self) -> list[np.ndarray]:
        return [self.target, self.others, self.ignore]

    def with_masks(self, image: np.ndarray, masks: list[np.ndarray]) -> Sample:
        return Sample(image, *(m.astype(bool) for m in masks))


def _resize(sample: Sample, height: int, width: int) -> Sample:
    image = cv2.resize(sample.image, (width, height), interpolation=cv2.INTER_LINEAR)
    masks = [cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
             for m in sample.masks()]
    return sample.with_masks(image, masks)


def _pad_to(sample: Sample, size: int) -> Sample:
    """Zero-pad bottom/right up to ``size`` (black image, background masks), like RITM's PadIfNeeded."""
    height, width = sample.target.shape
    pad_h, pad_w = max(size - height, 0), max(size - width, 0)
    if not pad_h and not pad_w:
        return sample
    pads = ((0, pad_h), (0, pad_w))
    image = np.pad(sample.image, pads + ((0, 0),))
    return sample.with_masks(image, [np.pad(m, pads) for m in sample.masks()])


def _crop_origin(target: np.ndarray, size: int, min_area: int, rng: np.random.Generator,
                 tries: int = 10) -> tuple[int, int]:
    """A window origin anywhere in the image where the object keeps enough pixels.

    The object may sit anywhere in the crop (centred crops teach the model to ignore the clicks,
    DESIGN.md); after ``tries`` misses the window is placed around a random object pixel.
    """
    height, width = target.shape
    integral = cv2.integral(target.astype(np.uint8))
    need = min(min_area, int(target.sum() * 0.5))
    for _ in range(tries):
        y0, x0 = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        inside = (integral[y0 + size, x0 + size] - integral[y0, x0 + size]
                  - integral[y0 + size, x0] + integral[y0, x0])
        if inside >= max(need, 1):
            return y0, x0
    ys, xs = np.nonzero(target)
    pick = int(rng.integers(len(ys)))
    y0 = int(np.clip(ys[pick] - rng.integers(0, size), 0, height - size))
    x0 = int(np.clip(xs[pick] - rng.integers(0, size), 0, width - size))
    return y0, x0


def scale_flip_crop(sample: Sample, size: int, scale_range: tuple[float, float], flip_prob: float,
                    min_area: int, rng: np.random.Generator) -> Sample:
    """Random scale (relative to fitting the image into the crop), horizontal flip, square crop."""
    height, width = sample.target.shape
    factor = size / max(height, width) * rng.uniform(*scale_range)
    sample = _resize(sample, max(round(height * factor), 1), max(round(width * factor), 1))
    if rng.random() < flip_prob:
        sample = sample.with_masks(sample.image[:, ::-1], [m[:, ::-1] for m in sample.masks()])
    sample = _pad_to(sample, size)
    if sample.target.any():
        y0, x0 = _crop_origin(sample.target, size, min_area, rng)
    else:
        y0 = int(rng.integers(0, sample.target.shape[0] - size + 1))
        x0 = int(rng.integers(0, sample.target.shape[1] - size + 1))
    window = (slice(y0, y0 + size), slice(x0, x0 + size))
    return sample.with_masks(np.ascontiguousarray(sample.image[window]),
                             [np.ascontiguousarray(m[window]) for m in sample.masks()])


@dataclass(frozen=True)
class ColorJitter:
    """Photometric changes, each applied with probability ``prob``."""

    prob: float = 0.75
    brightness: float = 0.3
    contrast: tuple[float, float] = (-0.2, 0.5)
    rgb_shift: float = 20.0
    saturation: float = 0.0
    hue: float = 0.0

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = image.astype(np.float32)
        if rng.random() < self.prob:
            gain = 1.0 + rng.uniform(*self.contrast)
            offset = rng.uniform(-self.brightness, self.brightness) * 255.0
            mean = out.mean()
            out = (out - mean) * gain + mean + offset
        if self.rgb_shift > 0 and rng.random() < self.prob:
            out += rng.uniform(-self.rgb_shift, self.rgb_shift, size=3).astype(np.float32)
        if (self.saturation > 0 or self.hue > 0) and rng.random() < self.prob:
            hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV_FULL)
            hsv = hsv.astype(np.float32)
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(-self.hue, self.hue) * 256 / 360) % 256
            hsv[..., 1] *= 1.0 + rng.uniform(-self.saturation, self.saturation)
            out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)
        return np.clip(out, 0, 255).astype(np.uint8)


def paste_object(sample: Sample, donor_image: np.ndarray, donor_mask: np.ndarray,
                 rng: np.random.Generator, as_target: bool) -> Sample:
    """Copy-paste: put an object cut from another image at a random place and size in the crop.

    ``as_target``: the pasted object becomes the object to segment (a new target in a new
    context; the old target joins the other objects); otherwise it occludes the target and
    counts as another object (a distractor next to the target). Edges are softly blended so that
    a hard paste seam is no shortcut to the answer.
    """
    ys, xs = np.nonzero(donor_mask)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    patch, patch_mask = donor_image[box], donor_mask[box].astype(np.uint8)
    size = sample.target.shape[0]
    scale = size * rng.uniform(0.15, 0.7) / max(patch_mask.shape)
    height = int(np.clip(round(patch_mask.shape[0] * scale), 4, size))
    width = int(np.clip(round(patch_mask.shape[1] * scale), 4, size))
    patch = cv2.resize(patch, (width, height), interpolation=cv2.INTER_LINEAR)
    patch_mask = cv2.resize(patch_mask, (width, height), interpolation=cv2.INTER_NEAREST)
    if rng.random() < 0.5:
        patch, patch_mask = patch[:, ::-1], patch_mask[:, ::-1]
    y0 = int(rng.integers(0, sample.target.shape[0] - height + 1))
    x0 = int(rng.integers(0, sample.target.shape[1] - width + 1))
    window = (slice(y0, y0 + height), slice(x0, x0 + width))

    alpha = cv2.GaussianBlur(patch_mask.astype(np.float32), (3, 3), 0)[..., None]
    image = sample.image.copy()
    image[window] = (alpha * patch + (1 - alpha) * image[window]).astype(np.uint8)
    pasted = np.zeros_like(sample.target)
    pasted[window] = patch_mask > 0
    if as_target:
        return replace(sample, image=image, target=pasted,
                       others=(sample.others | sample.target) & ~pasted,
                       ignore=sample.ignore & ~pasted)
    return replace(sample, image=image, target=sample.target & ~pasted,
                   others=(sample.others & ~pasted) | pasted, ignore=sample.ignore & ~pasted)
