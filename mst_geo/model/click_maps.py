"""Clicks as the network sees them: disk maps for the click embedding, token indices for selection.

Clicks are rows ``(y, x, label)`` in pixels; label 1 positive, 0 negative, -1 padding.
"""

from __future__ import annotations

import math

import torch

POSITIVE, NEGATIVE, PADDING = 1, 0, -1


def click_disk_maps(clicks: torch.Tensor, height: int, width: int, radius: float) -> torch.Tensor:
    """``[B,2,H,W]`` float maps: 1 inside a disk of ``radius`` px around positive (channel 0) and
    negative (channel 1) clicks, 0 elsewhere. Padding rows are ignored.

    Only the pixels of a small window around each click are tested and scattered into the maps,
    so the cost is O(clicks * radius^2), not O(clicks * H * W)."""
    batch = clicks.shape[0]
    reach = int(math.ceil(radius)) + 1
    offsets = torch.arange(-reach, reach + 1, device=clicks.device, dtype=clicks.dtype)
    off_y, off_x = (o.reshape(1, 1, -1) for o in torch.meshgrid(offsets, offsets, indexing="ij"))
    y, x, label = (clicks[..., i : i + 1] for i in range(3))  # [B,N,1] each
    rows = y.floor() + off_y  # [B,N,M] candidate pixels around each click
    cols = x.floor() + off_x
    inside = ((rows - y) ** 2 + (cols - x) ** 2 <= radius**2) & (label != PADDING)
    inside &= (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    channel = (label == NEGATIVE).to(clicks.dtype).expand_as(rows)
    index = (channel * height * width + rows * width + cols).long() * inside
    maps = torch.zeros(batch, 2 * height * width, device=clicks.device, dtype=clicks.dtype)
    maps.scatter_add_(1, index.reshape(batch, -1), inside.reshape(batch, -1).to(clicks.dtype))
    return (maps > 0).to(clicks.dtype).reshape(batch, 2, height, width)


def click_token_index(clicks: torch.Tensor, grid_size: tuple[int, int], patch_size: int) -> torch.Tensor:
    """``[B,N]`` long: the flat index (row-major) of the ``patch_size`` token under each click,
    clamped into the grid (padding rows get a valid index too; mask them by label)."""
    rows = (clicks[..., 0] / patch_size).floor().long().clamp(0, grid_size[0] - 1)
    cols = (clicks[..., 1] / patch_size).floor().long().clamp(0, grid_size[1] - 1)
    return rows * grid_size[1] + cols
