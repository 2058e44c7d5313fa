"""MSTModel and its timm-style preset registry (``create_model("mst_tiny")``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mst_geo.model.backbone import MSTBackbone
from mst_geo.model.click_maps import click_disk_maps
from mst_geo.model.config import PRESETS, MSTConfig, preset_config
from mst_geo.model.head import MaskHead
from mst_geo.model.neck import SimpleFPN


@dataclass
class MSTOutput:
    """Model output: mask logits plus the token features the contrastive loss needs."""

    logits: torch.Tensor  # [B,1,H,W]
    token_embeddings: torch.Tensor  # [B,gh*gw,contrast_dim], base grid, row-major
    grid_size: tuple[int, int]
    patch_size: int
    selected_index: torch.Tensor | None  # [B,k] candidate indices (eval with top-k), else None
    token_scores: torch.Tensor | None  # [B,Nc] selection scores in 0..1, None without selection


class MSTModel(nn.Module):
    """Interactive segmentation network: image + clicks + previous mask -> mask logits.

    Input contract (docs/internals.md): ``image`` [B,3,H,W] in 0..1 with H, W multiples of 16,
    ``clicks`` [B,N,3] rows (y, x, label) with label 1/0/-1 (padding), ``prev_mask`` [B,1,H,W].
    """

    def __init__(self, config: MSTConfig):
        super().__init__()
        self.config = config
        self.card: dict | None = None
        """The model card it was loaded with (``load_checkpoint``): outputs name the model by it."""
        self.backbone = MSTBackbone(config)
        self.neck = SimpleFPN(config.embed_dim)
        self.head = MaskHead(self.neck.out_dims, config.head_dim, config.refine_dim, low_level_chans=6)
        self.contrast_proj = nn.Linear(config.embed_dim, config.contrast_dim)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """An image in 0..1 as the encoder takes it (the config's mean and std)."""
        return (image - self.mean) / self.std

    def forward(self, image: torch.Tensor, clicks: torch.Tensor, prev_mask: torch.Tensor) -> MSTOutput:
        height, width = image.shape[-2:]
        if height % self.config.patch_size or width % self.config.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of {self.config.patch_size}")
        if clicks.ndim != 3 or clicks.shape[-1] != 3:
            raise ValueError(f"clicks must be [B,N,3] rows (y, x, label), got {tuple(clicks.shape)}")
        image = self.normalise(image)
        clicks = clicks.to(image.dtype)
        aux = torch.cat([click_disk_maps(clicks, height, width, self.config.click_radius),
                         prev_mask.to(image.dtype)], dim=1)
        encoded = self.backbone(image, aux, clicks)
        logits = self.head(self.neck(encoded.feature_map), torch.cat([image, aux], dim=1))
        selection = encoded.selection
        return MSTOutput(
            logits=logits,
            token_embeddings=self.contrast_proj(encoded.tokens),
            grid_size=tuple(encoded.feature_map.shape[-2:]),
            patch_size=self.config.patch_size,
            selected_index=None if selection is None else selection.index,
            token_scores=None if selection is None else selection.scores,
        )


def list_presets() -> list[str]:
    """Names accepted by ``create_model``."""
    return list(PRESETS)


def create_model(name: str, **overrides: Any) -> MSTModel:
    """A randomly initialised ``MSTModel`` of preset ``name``; ``overrides`` replace config fields
    (e.g. ``input_size=320``, ``token_selection="none"``)."""
    return MSTModel(preset_config(name, **overrides))
