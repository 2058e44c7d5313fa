"""SimpleFPN (ViTDet, used by SimpleClick and MST): a 1/4, 1/8, 1/16, 1/32 pyramid built from the
last 1/16 feature map alone, by transposed convolutions and pooling."""

from __future__ import annotations

import torch
from timm.layers import LayerNorm2d
from torch import nn


class SimpleFPN(nn.Module):
    """Pyramid with ``out_dims = (D/4, D/2, D, D)`` channels at strides 4, 8, 16, 32."""

    def __init__(self, embed_dim: int):
        super().__init__()
        half, quarter = embed_dim // 2, embed_dim // 4
        self.out_dims = (quarter, half, embed_dim, embed_dim)
        self.to_4 = nn.Sequential(
            nn.ConvTranspose2d(embed_dim, half, 2, stride=2), LayerNorm2d(half), nn.GELU(),
            nn.ConvTranspose2d(half, quarter, 2, stride=2),
        )
        self.to_8 = nn.ConvTranspose2d(embed_dim, half, 2, stride=2)
        self.to_32 = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, feature_map: torch.Tensor) -> list[torch.Tensor]:
        return [self.to_4(feature_map), self.to_8(feature_map), feature_map, self.to_32(feature_map)]
