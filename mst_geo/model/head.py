"""Mask head: SimpleClick's all-MLP fusion of the pyramid at 1/4, then a light half-resolution
refinement that also sees the image, the click disks and the previous mask, so boundaries are
placed at 2 px rather than 4 px without a full-resolution decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn


class MaskHead(nn.Module):
    """Pyramid (+ low-level inputs) -> full-resolution mask logits."""

    def __init__(self, in_dims: tuple[int, ...], head_dim: int, refine_dim: int, low_level_chans: int):
        super().__init__()
        self.project = nn.ModuleList(nn.Conv2d(dim, head_dim, 1) for dim in in_dims)
        self.fuse = nn.Sequential(
            nn.Conv2d(head_dim * len(in_dims), head_dim, 1), LayerNorm2d(head_dim), nn.GELU(),
            nn.Conv2d(head_dim, refine_dim, 1),
        )
        self.stem = nn.Sequential(nn.Conv2d(low_level_chans, refine_dim, 3, stride=2, padding=1), nn.GELU())
        self.refine = nn.Sequential(
            nn.Conv2d(2 * refine_dim, refine_dim, 3, padding=1), nn.GELU(), nn.Conv2d(refine_dim, 1, 1),
        )

    def forward(self, pyramid: list[torch.Tensor], low_level: torch.Tensor) -> torch.Tensor:
        size = pyramid[0].shape[-2:]
        fused = self.fuse(torch.cat([
            F.interpolate(proj(level), size=size, mode="bilinear", align_corners=False)
            if level.shape[-2:] != size else proj(level)
            for proj, level in zip(self.project, pyramid)
        ], dim=1))
        low = self.stem(low_level)
        fused = F.interpolate(fused, size=low.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.refine(torch.cat([fused, low], dim=1))
        return F.interpolate(logits, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
