"""The iterative predictor: the model called per click, the previous mask fed back, optional zoom-in.

Shared by ``segment`` (geo layer), ``bench`` and training validation, so every path sees the
model the same way. The image is resized so its longer side is the model's input size (or a
given one) and padded to a multiple of the patch size; clicks follow the resize. With zoom-in
(RITM's "ZoomIn", facts from ``isegm/inference/transforms/zoom_in.py``), clicks after the first
are predicted on a crop around the current mask and the positive clicks, expanded 1.4x and at
least ``zoom_min_crop`` px; the crop is kept while it holds every click and the new one overlaps
it by IoU >= 0.5, and its prediction is pasted back into an otherwise empty map. Clicks outside
the window (negatives far from the object) are not shown to the model. Three rules differ from
RITM's ZoomIn, deliberately: the crop must hold every click, negatives too (RITM checks positives
only, so a new negative outside it goes unseen), an empty mask crops around the positive clicks
(RITM looks at the whole image) and the mask is cut at the predictor's 0.49 (RITM's ZoomIn: 0.5).
RITM's rules measured no better on 200 held-out objects (NoC@85/90/95 5.05/7.67/13.21 against
5.00/7.63/13.15, shipped weights; docs/training.md). With ``flip`` the
window and its mirror image go through the model as one batch of two and their probabilities
are averaged (a card's ``flip`` setting, or the argument). RITM's evaluation mirrors too but
averages logits; its order measured no better here (100 held-out objects, NoC@85/90 4.32/6.62
against 4.26/6.60; docs/training.md, "Mirror averaging").
With several input sizes (a card's
``inference_size`` list, or ``input_size=(320, 384)``) the window goes through the model once per
size and the probabilities, each back at the window's native size, are averaged: multi-scale
test-time augmentation, 2x the time for two sizes. With ``first_click_passes`` N > 1 (a card's
setting, or the argument) a bare first click (one click, no previous mask or an empty one) runs
the model N times, each pass after the first fed the one before's probabilities as the previous
mask: the bare click is the one state the click training rarely shows the model, and one extra
pass turns it into the familiar "correct your own mask" state (held-out objects:
docs/training.md, "A second pass at the first click"). A first click that comes with a mask (a
caller's prior) runs once, as every correction click does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mst_geo.clicks.click import Click
from mst_geo.clicks.simulator import PRED_THRESHOLD
from mst_geo.devices import torch_device
from mst_geo.views import view_sizes

Box = tuple[int, int, int, int]
"""``(top, left, bottom, right)`` in pixels, bottom/right exclusive."""

ZOOM_EXPANSION = 1.4
"""A later click's view is this many times the object's box (RITM's zoom-in expansion); the scene
workflow's windows use it too."""


def box_iou(first: Box, second: Box) -> float:
    """IoU of two boxes."""
    height = min(first[2], second[2]) - max(first[0], second[0])
    width = min(first[3], second[3]) - max(first[1], second[1])
    inter = max(height, 0) * max(width, 0)
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    return inter / (area(first) + area(second) - inter)


def zoom_box(mask: np.ndarray, clicks: Sequence[Click], expansion: float, min_crop: int) -> Box | None:
    """The region to zoom into: the box of ``mask`` and the positive clicks, grown ``expansion``
    times around its centre, each side at least ``min_crop`` px, clipped to the image."""
    region = mask.copy()
    height, width = mask.shape
    for click in clicks:
        if click.positive and 0 <= click.y < height and 0 <= click.x < width:  # the caller's window may cut some
            region[int(click.y), int(click.x)] = True
    rows, cols = np.nonzero(region)
    if rows.size == 0:
        return None
    centre_y, centre_x = (rows.min() + rows.max() + 1) / 2, (cols.min() + cols.max() + 1) / 2
    half_h = max(expansion * (rows.max() - rows.min() + 1), min_crop) / 2
    half_w = max(expansion * (cols.max() - cols.min() + 1), min_crop) / 2
    top, bottom = max(0, int(round(centre_y - half_h))), min(height, int(round(centre_y + half_h)))
    left, right = max(0, int(round(centre_x - half_w))), min(width, int(round(centre_x + half_w)))
    return top, left, bottom, right


def _inside(click: Click, box: Box) -> bool:
    return box[0] <= click.y < box[2] and box[1] <= click.x < box[3]


class Predictor:
    """Segments one image from clicks with an ``MSTModel`` (SAM-predictor-like surface).

    ``set_image`` once, then ``predict`` with all clicks so far and the previous output.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cpu",
        zoom_in: bool = True,
        input_size: int | Sequence[int] | None = None,
        zoom_expansion: float = ZOOM_EXPANSION,
        zoom_min_crop: int = 200,
        zoom_keep_iou: float = 0.5,
        flip: bool | None = None,
        first_click_passes: int | None = None,
    ):
        self.device = torch_device(device)
        self.model = model.to(self.device).eval()
        self.view_sizes = view_sizes(input_size) if input_size else model.config.views
        self.stride = model.config.patch_size
        self.zoom_in = zoom_in
        self.zoom_expansion = zoom_expansion
        self.zoom_min_crop = zoom_min_crop
        self.zoom_keep_iou = zoom_keep_iou
        self.flip = model.config.flip if flip is None else flip
        self.first_click_passes = model.config.first_click_passes if first_click_passes is None else first_click_passes
        if self.first_click_passes < 1:
            raise ValueError(f"first_click_passes must be at least 1, got {self.first_click_passes}")
        self.image: torch.Tensor | None = None
        self.roi: Box | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Keep an HxWx3 RGB image (uint8, or float in 0..1) for the next ``predict`` calls."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
        scale = 255.0 if image.dtype == np.uint8 else 1.0
        self.image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(scale)
        self.roi = None

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None) -> np.ndarray:
        """float32 HxW foreground probability from all clicks so far and the previous output."""
        if self.image is None:
            raise RuntimeError("call set_image() before predict()")
        bare = len(clicks) == 1 and (prev_mask is None or not np.any(prev_mask))
        if prev_mask is None:
            prev_mask = np.zeros(tuple(self.image.shape[-2:]), dtype=np.float32)
        probabilities = self._predict_once(clicks, prev_mask)
        for _ in range(self.first_click_passes - 1 if bare else 0):
            probabilities = self._predict_once(clicks, probabilities)
        return probabilities

    def _predict_once(self, clicks: Sequence[Click], prev_mask: np.ndarray) -> np.ndarray:
        """One model pass (per view) over the whole image or the zoom-in crop."""
        height, width = self.image.shape[-2:]
        box = self._zoom_box(clicks, prev_mask)
        if box is None:
            return self._predict_window(clicks, prev_mask, (0, 0, height, width))
        probabilities = np.zeros((height, width), dtype=np.float32)
        top, left, bottom, right = box
        probabilities[top:bottom, left:right] = self._predict_window(clicks, prev_mask, box)
        return probabilities

    def _zoom_box(self, clicks: Sequence[Click], prev_mask: np.ndarray) -> Box | None:
        """The crop for this click, or None to look at the whole image (first click, no zoom)."""
        if not self.zoom_in or len(clicks) <= 1:
            self.roi = None
            return None
        box = zoom_box(prev_mask > PRED_THRESHOLD, clicks, self.zoom_expansion, self.zoom_min_crop)
        if box is not None and (
            self.roi is None
            or box_iou(box, self.roi) < self.zoom_keep_iou
            or not all(_inside(c, self.roi) for c in clicks)
        ):
            self.roi = box
        return self.roi

    def _predict_window(self, clicks: Sequence[Click], prev_mask: np.ndarray, box: Box) -> np.ndarray:
        """Probabilities of the image window ``box`` at its native size: the mean over the views."""
        views = [self._predict_view(clicks, prev_mask, box, side) for side in self.view_sizes]
        return views[0] if len(views) == 1 else np.mean(views, axis=0, dtype=np.float32)

    def _predict_view(self, clicks: Sequence[Click], prev_mask: np.ndarray, box: Box, side: int) -> np.ndarray:
        """Run the model on the image window ``box`` resized so its longer side is ``side``;
        probabilities of the window at its native size (with ``flip``, the mean of the view and its
        mirror image: flip test-time augmentation, as RITM's evaluation has it)."""
        return np.mean(self._predict_mirrors(clicks, prev_mask, box, side), axis=0, dtype=np.float32)

    @torch.inference_mode()
    def _predict_mirrors(self, clicks: Sequence[Click], prev_mask: np.ndarray, box: Box, side: int) -> np.ndarray:
        """``_predict_view``'s probabilities before the mirror mean: one map for the view, and one
        for its mirror image (mirrored back) with ``flip``; 1 or 2 x the window's native size."""
        top, left, bottom, right = box
        crop_h, crop_w = bottom - top, right - left
        scale = side / max(crop_h, crop_w)
        size = (max(1, round(crop_h * scale)), max(1, round(crop_w * scale)))
        padded = (-(-size[0] // self.stride) * self.stride, -(-size[1] // self.stride) * self.stride)

        mirrors = (False, True) if self.flip else (False,)

        def model_input(window: torch.Tensor) -> torch.Tensor:
            resized = F.interpolate(window[None], size=size, mode="bilinear", align_corners=False)
            batch = torch.cat([resized.flip(-1) if mirrored else resized for mirrored in mirrors])
            return F.pad(batch, (0, padded[1] - size[1], 0, padded[0] - size[0])).to(self.device)

        image = model_input(self.image[:, top:bottom, left:right])
        mask = model_input(torch.from_numpy(np.asarray(prev_mask, dtype=np.float32)[None, top:bottom, left:right]))
        rows = [
            ((c.y - top + 0.5) * size[0] / crop_h - 0.5, (c.x - left + 0.5) * size[1] / crop_w - 0.5, float(c.positive))
            for c in clicks
            if _inside(c, box)
        ] or [(0.0, 0.0, -1.0)]  # one padding row when no click falls in the window
        click_tensor = torch.tensor(rows, dtype=torch.float32, device=self.device).view(1, -1, 3).repeat(len(mirrors), 1, 1)
        if self.flip:
            click_tensor[1, :, 1] = size[1] - 1 - click_tensor[1, :, 1]
        logits = self.model(image, click_tensor, mask).logits[:, :, : size[0], : size[1]]
        logits = F.interpolate(logits.float(), size=(crop_h, crop_w), mode="bilinear", align_corners=False)
        probabilities = torch.sigmoid(logits[:, 0])
        if self.flip:
            probabilities = torch.stack([probabilities[0], probabilities[1].flip(-1)])
        return probabilities.cpu().numpy()
