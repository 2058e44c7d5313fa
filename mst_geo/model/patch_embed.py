"""Adaptive patch embedding: one learned 16x16 kernel applied at any patch size.

The 8x8 and 28x28 kernels are not parameters: they are recomputed from the 16x16 kernel on every
call with timm's pseudo-inverse resampling (FlexiViT), so training the base kernel trains all
scales. Position embeddings are likewise one learned grid, sampled at each token's centre.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers.patch_embed import PatchEmbedResamplerFixedOrigSize
from torch import nn


class AdaptivePatchEmbed(nn.Module):
    """Conv patch embedding whose kernel is resampled to the requested patch size."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 16):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.resampler = PatchEmbedResamplerFixedOrigSize((patch_size, patch_size))
        self._inference_kernels: dict[int, tuple[tuple, torch.Tensor]] = {}

    def kernel(self, patch_size: int) -> torch.Tensor:
        """The ``[D,C,p,p]`` kernel for patch size ``p``, derived from the base kernel.

        Without autograd (inference) the resampled kernel is kept until the base kernel changes
        (new storage, device, or an in-place update such as an optimiser step or a load)."""
        weight = self.proj.weight
        if torch.is_grad_enabled():
            return self.resampler(weight, [patch_size, patch_size])
        key = (weight.data_ptr(), weight._version, weight.dtype)
        cached = self._inference_kernels.get(patch_size)
        if cached is None or cached[0] != key:
            cached = (key, self.resampler(weight, [patch_size, patch_size]))
            self._inference_kernels[patch_size] = cached
        return cached[1]

    def forward(self, x: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """Tokens ``[B, gh*gw, D]`` and their grid ``(gh, gw)``; the image is zero-padded at the
        bottom/right up to a multiple of ``patch_size`` (28 does not divide most sizes)."""
        pad_h = -x.shape[-2] % patch_size
        pad_w = -x.shape[-1] % patch_size
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        y = F.conv2d(x, self.kernel(patch_size), self.proj.bias, stride=patch_size)
        return y.flatten(2).transpose(1, 2), (y.shape[-2], y.shape[-1])


def sample_pos_embed(
    pos_embed: torch.Tensor,
    source_grid: tuple[int, int],
    grid: tuple[int, int],
    patch_size: int,
    image_size: tuple[int, int],
) -> torch.Tensor:
    """Position embeddings ``[1, gh*gw, D]`` for a ``grid`` of ``patch_size`` tokens over an image
    of ``image_size``: the learned ``[1, sh*sw, D]`` grid stretched over the image and sampled
    bilinearly at each token centre (exact for the base grid at the training size)."""
    dim = pos_embed.shape[-1]
    table = pos_embed.reshape(1, source_grid[0], source_grid[1], dim).permute(0, 3, 1, 2)
    height, width = image_size
    ys = (torch.arange(grid[0], device=pos_embed.device, dtype=pos_embed.dtype) + 0.5) * patch_size / height
    xs = (torch.arange(grid[1], device=pos_embed.device, dtype=pos_embed.dtype) + 0.5) * patch_size / width
    gy, gx = torch.meshgrid(ys * 2 - 1, xs * 2 - 1, indexing="ij")
    coords = torch.stack([gx, gy], dim=-1).unsqueeze(0)
    sampled = F.grid_sample(table, coords, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled.flatten(2).transpose(1, 2)
