"""The MST encoder: adaptive patch embedding, click embedding, token selection, ViT blocks.

Base 16x16 tokens always run through the blocks; with ``token_selection="topk"`` the selected
8x8 / 28x28 tokens join them and are folded back onto the base grid after the last block, so the
neck sees one 16x16 feature map whatever was selected.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from mst_geo.model.click_maps import click_token_index
from mst_geo.model.config import MSTConfig
from mst_geo.model.patch_embed import AdaptivePatchEmbed, sample_pos_embed
from mst_geo.model.tokens import Selection, TokenSelector, candidate_coverage, fold_selected


@dataclass
class BackboneOutput:
    """Encoder output: the base-grid feature map and what selection did."""

    feature_map: torch.Tensor  # [B,D,gh,gw]
    tokens: torch.Tensor  # [B,gh*gw,D] (the same features, token layout)
    selection: Selection | None


class MSTBackbone(nn.Module):
    """ViT-style encoder over base tokens plus the selected multi-scale tokens."""

    def __init__(self, config: MSTConfig):
        super().__init__()
        dim = config.embed_dim
        self.config = config
        self.patch_embed = AdaptivePatchEmbed(3, dim, config.patch_size)
        # SimpleClick: positive disks, negative disks and the previous mask get their own patch
        # embedding, added to the image tokens (resampled to every scale like the image kernel).
        self.click_embed = AdaptivePatchEmbed(3, dim, config.patch_size)
        self.pos_grid = (config.input_size // config.patch_size,) * 2
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pos_grid[0] * self.pos_grid[1], dim))
        self.scale_embed = nn.Parameter(torch.zeros(2, dim))  # tells fine from coarse tokens
        self.selector = TokenSelector(dim, config.score_dim, config.topk_samples, config.topk_sigma)
        rates = torch.linspace(0, config.drop_path_rate, config.depth).tolist()
        self.blocks = nn.Sequential(*[
            Block(dim, config.num_heads, config.mlp_ratio, qkv_bias=True, drop_path=rate) for rate in rates
        ])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.scale_embed, std=0.02)

    def position(self, grid: tuple[int, int], patch_size: int, image: torch.Tensor) -> torch.Tensor:
        """The position embedding of a ``grid`` of ``patch_size`` tokens over ``image``."""
        return sample_pos_embed(self.pos_embed, self.pos_grid, grid, patch_size, tuple(image.shape[-2:]))

    def image_tokens(self, image: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image tokens + position embedding at one patch size (what masked autoencoding trains)."""
        tokens, grid = self.patch_embed(image, patch_size)
        return tokens + self.position(grid, patch_size, image), grid

    def embed(self, image: torch.Tensor, aux: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image + click tokens + position embedding at one patch size."""
        tokens, grid = self.patch_embed(image, patch_size)
        click_tokens, _ = self.click_embed(aux, patch_size)
        return tokens + click_tokens + self.position(grid, patch_size, image), grid

    def num_selected(self, num_base: int, num_candidates: int) -> int:
        """How many multi-scale tokens join the base tokens."""
        if self.config.token_selection == "all":
            return num_candidates
        return max(1, round(self.config.topk_ratio * num_base))

    def forward(self, image: torch.Tensor, aux: torch.Tensor, clicks: torch.Tensor) -> BackboneOutput:
        """``image`` normalised ``[B,3,H,W]``, ``aux`` click disks + previous mask ``[B,3,H,W]``."""
        cfg = self.config
        base, grid = self.embed(image, aux, cfg.patch_size)
        num_base = base.shape[1]
        selection = None
        tokens = base
        if cfg.token_selection != "none":
            fine, _ = self.embed(image, aux, cfg.fine_patch_size)
            coarse, _ = self.embed(image, aux, cfg.coarse_patch_size)
            candidates = torch.cat([fine + self.scale_embed[0], coarse + self.scale_embed[1]], dim=1)
            click_index = click_token_index(clicks, grid, cfg.patch_size)
            min_score = cfg.topk_min_score if cfg.token_selection == "topk" else 0.0
            selection = self.selector(base, candidates, click_index, clicks[..., 2],
                                      self.num_selected(num_base, candidates.shape[1]), min_score)
            tokens = torch.cat([base, selection.tokens], dim=1)
        tokens = self.norm(self.blocks(tokens))
        base_out = tokens[:, :num_base]
        if selection is not None:
            coverage = candidate_coverage(tuple(image.shape[-2:]), cfg.patch_size,
                                          (cfg.fine_patch_size, cfg.coarse_patch_size), image.device)
            base_out = fold_selected(base_out, tokens[:, num_base:], selection.indicator, coverage)
        feature_map = base_out.transpose(1, 2).reshape(base_out.shape[0], -1, *grid)
        return BackboneOutput(feature_map, base_out, selection)
