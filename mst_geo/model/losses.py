"""Training losses: normalized focal loss on the mask (RITM/SimpleClick) and MST's token
contrastive loss between positively clicked tokens and the object / background tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mst_geo.model.click_maps import POSITIVE, click_token_index
from mst_geo.model.mst import MSTOutput


def normalized_focal_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                          alpha: float = 0.5, gamma: float = 2.0, eps: float = 1e-8) -> torch.Tensor:
    """Per-sample focal loss whose focal weights are rescaled to sum to the number of valid
    pixels (RITM's NFL), so easy pixels fade without shrinking the loss as training proceeds."""
    prob = torch.sigmoid(logits)
    p_true = torch.where(target > 0.5, prob, 1 - prob)
    alpha_t = torch.where(target > 0.5, alpha, 1 - alpha)
    focal = (1 - p_true) ** gamma * valid
    dims = tuple(range(1, logits.ndim))
    scale = (valid.sum(dim=dims, keepdim=True) / (focal.sum(dim=dims, keepdim=True) + eps)).detach()
    log_p = F.logsigmoid(torch.where(target > 0.5, logits, -logits))
    loss = -alpha_t * focal * scale * log_p
    return loss.sum(dim=dims) / (valid.sum(dim=dims) + eps)


def token_contrastive_loss(embeddings: torch.Tensor, grid_size: tuple[int, int], patch_size: int,
                           target: torch.Tensor, valid: torch.Tensor, clicks: torch.Tensor,
                           temperature: float = 0.1) -> torch.Tensor:
    """Per-sample InfoNCE: each positively clicked token is pulled towards the object tokens and
    pushed from the background tokens (token label = majority of its pixels). Samples without a
    positive click, object token or background token contribute 0."""
    fg_fraction = F.avg_pool2d(target * valid, patch_size).flatten(1)  # [B,Nb]
    valid_fraction = F.avg_pool2d(valid, patch_size).flatten(1)
    usable = valid_fraction > 0.5
    foreground = usable & (fg_fraction > 0.5 * valid_fraction)
    background = usable & ~foreground
    z = F.normalize(embeddings, dim=-1)
    anchor_index = click_token_index(clicks, grid_size, patch_size)  # [B,N]
    anchors = z.gather(1, anchor_index.unsqueeze(-1).expand(-1, -1, z.shape[-1]))  # [B,N,C]
    logits = torch.einsum("bnc,bmc->bnm", anchors, z) / temperature  # [B,N,Nb]
    not_self = anchor_index.unsqueeze(-1) != torch.arange(z.shape[1], device=z.device)
    denominator = torch.logsumexp(logits.masked_fill(~(usable.unsqueeze(1) & not_self), -torch.inf), dim=-1)
    numerator = torch.logsumexp(logits.masked_fill(~(foreground.unsqueeze(1) & not_self), -torch.inf), dim=-1)
    per_anchor = denominator - numerator  # -log(sum_fg / sum_all)
    use = (clicks[..., 2] == POSITIVE) & torch.isfinite(per_anchor)
    use &= (background.any(dim=1) & foreground.any(dim=1)).unsqueeze(1)
    per_anchor = torch.where(use, per_anchor, torch.zeros_like(per_anchor))
    return per_anchor.sum(dim=1) / use.sum(dim=1).clamp(min=1)


class MSTLoss(nn.Module):
    """``total = focal_weight * NFL + contrastive_weight * token contrastive``, batch means."""

    def __init__(self, focal_weight: float = 1.0, contrastive_weight: float = 0.1,
                 temperature: float = 0.1):
        super().__init__()
        self.focal_weight = focal_weight
        self.contrastive_weight = contrastive_weight
        self.temperature = temperature

    def forward(self, output: MSTOutput, target: torch.Tensor, clicks: torch.Tensor,
                ignore: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``output`` an ``MSTOutput``; ``target`` [B,1,H,W] 1 fg / 0 bg; ``ignore`` [B,1,H,W]
        true where the label is unknown (e.g. 255 in the dataset masks). Computed in float32,
        also under autocast."""
        with torch.autocast(output.logits.device.type, enabled=False):
            target = target.float()
            valid = torch.ones_like(target) if ignore is None else (~ignore.bool()).float()
            focal = normalized_focal_loss(output.logits.float(), target, valid).mean()
            contrastive = token_contrastive_loss(output.token_embeddings.float(), output.grid_size,
                                                 output.patch_size, target, valid, clicks.float(),
                                                 self.temperature).mean()
        total = self.focal_weight * focal + self.contrastive_weight * contrastive
        return total, {"focal": focal.detach(), "contrastive": contrastive.detach()}
