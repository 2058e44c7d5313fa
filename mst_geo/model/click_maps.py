"""Clicks as the network sees them: disk maps for the click embedding, token indices for selection.

Clicks are rows ``(y, x, label)`` in pixels; label 1 positive, 0 negative, -1 padding.
"""

from __future__ import annotations

import torch

POSITIVE, NEGATIVE, PADDING = 1, 0, -1


def click_disk_maps(clicks: torch.Tensor, height: int, width: int, radius: float) -> torch.Tensor:
    """``[B,2,H,W]`` float maps: 1 inside a disk of ``radius`` px around positive (channel 0) and
    negative (channel 1) clicks, 0 elsewhere. Padding rows are ignored."""
    ys = torch.arange(height, device=clicks.device, dtype=clicks.dtype).view(1, 1, height, 1)
    xs = torch.arange(width, device=clicks.device, dtype=clicks.dtype).view(1, 1, 1, width)
    cy = clicks[..., 0, None, None]
    cx = clicks[..., 1, None, None]
    inside = (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2  # [B,N,H,W]
    label = clicks[..., 2, None, None]
    positive = (inside & (label == POSITIVE)).any(dim=1)
    negative = (inside & (label == NEGATIVE)).any(dim=1)
    return torch.stack([positive, negative], dim=1).to(clicks.dtype)


def click_token_index(clicks: torch.Tensor, grid_size: tuple[int, int], patch_size: int) -> torch.Tensor:
    """``[B,N]`` long: the flat index (row-major) of the ``patch_size`` token under each click,
    clamped into the grid (padding rows get a valid index too; mask them by label)."""
    rows = (clicks[..., 0] / patch_size).floor().long().clamp(0, grid_size[0] - 1)
    cols = (clicks[..., 1] / patch_size).floor().long().clamp(0, grid_size[1] - 1)
    return rows * grid_size[1] + cols
