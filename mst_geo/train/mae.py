"""Self-supervised pretraining of the MST encoder on unlabelled images (masked autoencoding).

MAE (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022): three quarters of
an image's 16x16 patches are hidden, the encoder sees the rest, and a small decoder rebuilds the
hidden patches' pixels (each patch normalised by its own mean and variance, the paper's better
target). The encoder is the MST network's own image path (patch kernel, position grid, blocks,
final norm), so what it learns goes straight into click training: ``train`` exports those
weights as ``encoder.safetensors`` in plain ViT names, which ``--init`` loads
(``model.pretrained.load_vit_weights``). The images are the training crops of the click recipe
(same datasets, augmentation and held-out split), their masks and clicks unused. Paper defaults
kept: mask ratio 0.75, 2-D sin-cos positions in the decoder, loss on hidden patches only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.layers import build_sincos2d_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from mst_geo.atomic import atomic_path
from mst_geo.model import MSTModel
from mst_geo.model.backbone import MSTBackbone
from mst_geo.model.checkpoint import PRETRAINING_KEY
from mst_geo.train.config import MAESection, TrainConfig
from mst_geo.train.module import ClickTrainingModule

ENCODER_NAME = "encoder.safetensors"

ENCODER_PREFIXES = ("patch_embed.proj.", "pos_embed", "blocks.", "norm.")
"""The backbone weights masked autoencoding trains: the image path through the ViT."""


class MAEDecoder(nn.Module):
    """MAE's light decoder: visible tokens plus a shared mask token for every hidden patch, a few
    transformer blocks, and a linear map to each patch's pixels."""

    def __init__(self, embed_dim: int, patch_size: int, config: MAESection):
        super().__init__()
        self.dim = config.decoder_dim
        self.embed = nn.Linear(embed_dim, config.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_dim))
        self.blocks = nn.Sequential(*[Block(config.decoder_dim, config.decoder_heads, 4.0, qkv_bias=True)
                                      for _ in range(config.decoder_depth)])
        self.norm = nn.LayerNorm(config.decoder_dim, eps=1e-6)
        self.pred = nn.Linear(config.decoder_dim, patch_size * patch_size * 3)
        trunc_normal_(self.mask_token, std=0.02)

    def forward(self, visible: torch.Tensor, restore: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Pixels ``[B, N, p*p*3]`` of every patch from the encoded ``visible`` tokens; ``restore``
        puts the (visible, hidden) order back into the grid's."""
        tokens = self.embed(visible)
        hidden = restore.shape[1] - tokens.shape[1]
        tokens = torch.cat([tokens, self.mask_token.expand(len(tokens), hidden, -1)], dim=1)
        tokens = tokens.gather(1, restore[..., None].expand(-1, -1, self.dim))
        position = build_sincos2d_pos_embed(list(grid), self.dim, device=tokens.device, dtype=tokens.dtype)
        return self.pred(self.norm(self.blocks(tokens + position[None])))


def patchify(image: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``[B, 3, H, W]`` -> ``[B, N, 3*p*p]``, patches in the patch embedding's row-major order."""
    return F.unfold(image, patch_size, stride=patch_size).transpose(1, 2)


def reconstruction_loss(backbone: MSTBackbone, decoder: MAEDecoder, image: torch.Tensor,
                        mask_ratio: float, norm_pix_loss: bool = True) -> torch.Tensor:
    """Mean squared error of the rebuilt hidden patches of a normalised ``image`` (sides multiples
    of the patch size). Which patches hide is drawn from torch's generator: seed it per step."""
    patch = backbone.config.patch_size
    tokens, grid = backbone.image_tokens(image, patch)
    batch, count, dim = tokens.shape
    keep = max(1, round(count * (1 - mask_ratio)))
    shuffle = torch.rand(batch, count, device=image.device).argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    visible = tokens.gather(1, shuffle[:, :keep, None].expand(-1, -1, dim))
    predicted = decoder(backbone.norm(backbone.blocks(visible)), restore, grid)
    hidden = restore >= keep  # a patch hides when its place in the shuffle is past `keep`
    return hidden_patch_error(predicted, patch_targets(image, patch, norm_pix_loss), hidden)


def patch_targets(image: torch.Tensor, patch_size: int, normalise: bool) -> torch.Tensor:
    """What the decoder rebuilds: each patch's pixels, optionally normalised by the patch's own
    mean and variance (MAE's ``norm_pix_loss``: sharper reconstructions, better features)."""
    target = patchify(image, patch_size)
    if not normalise:
        return target
    mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + 1e-6).sqrt()


def hidden_patch_error(predicted: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the ``hidden`` patches alone: the visible ones were given."""
    per_patch = (predicted.float() - target.float()).pow(2).mean(dim=-1)
    weight = hidden.to(per_patch.dtype)
    return (per_patch * weight).sum() / weight.sum()


class MAEPretrainingModule(ClickTrainingModule):
    """Masked-autoencoder training of the network's encoder (recipe ``task: mae``), with the click
    trainer's bookkeeping: seeded steps, samples seen, wall time, resumable checkpoints. Only the
    encoder's image path and the decoder learn; the click embedding, token selector, neck and head
    stay as they are (frozen, so several processes' gradient sync has nothing unused to wait for)."""

    def __init__(self, model: MSTModel, config: TrainConfig):
        super().__init__(model, config)
        backbone = model.backbone
        self.decoder = MAEDecoder(model.config.embed_dim, model.config.patch_size, config.mae)
        model.requires_grad_(False)
        for name, parameter in backbone.named_parameters():
            parameter.requires_grad_(name.startswith(ENCODER_PREFIXES))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        image = self.model.normalise(batch["image"].float() / 255.0)
        self.seed_torch_for_step()
        mae = self.config.mae
        loss = reconstruction_loss(self.model.backbone, self.decoder, image, mae.mask_ratio, mae.norm_pix_loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(image))
        self.log_samples_seen(len(image))
        return loss


def encoder_weights(model: MSTModel) -> dict[str, torch.Tensor]:
    """The weights masked autoencoding trained, under the plain ViT names ``--init`` reads."""
    return {name: tensor.detach().contiguous().cpu() for name, tensor in model.backbone.state_dict().items()
            if name.startswith(ENCODER_PREFIXES)}


def save_encoder(model: MSTModel, path: str | Path, record: dict[str, Any]) -> Path:
    """Write the pretrained encoder atomically, with the run's ``record`` in its metadata. It has
    no model card on purpose: without a trained head it is no segmenter, so ``--model`` refuses
    it and ``--init`` reads it as ViT weights."""
    path = Path(path)
    with atomic_path(path) as temporary:
        save_file(encoder_weights(model), str(temporary), metadata={PRETRAINING_KEY: json.dumps(record)})
        temporary.chmod(0o644)
    return path
