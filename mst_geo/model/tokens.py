"""Multi-scale token selection (MST): score every 8x8 / 28x28 token by similarity to the tokens
under the clicks, keep the top k, and fold the kept tokens back onto the 16x16 grid afterwards.

Training uses the perturbed-maximum top-k (Berthet et al. 2020, as used by STTS and Cordonnier et
al. 2021): the selection is the expectation of hard top-k indicators under Gaussian noise on the
scores, and its gradient is the noise-weighted expectation, so the scorer learns from the mask
loss. Inference uses the exact hard top-k.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from mst_geo.model.click_maps import NEGATIVE, POSITIVE


class PerturbedTopK(torch.autograd.Function):
    """Soft top-k indicator ``[B,k,N]`` (rows: the k slots in ascending token order)."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, k: int, num_samples: int, sigma: float) -> torch.Tensor:
        batch, n = scores.shape
        noise = torch.randn(batch, num_samples, n, device=scores.device, dtype=scores.dtype)
        perturbed = scores.unsqueeze(1) + sigma * noise
        index = perturbed.topk(k, dim=-1).indices.sort(dim=-1).values  # [B,S,k]
        slots = index.transpose(1, 2)  # [B,k,S]: for each slot, the token each sample put there
        indicator = torch.zeros(batch, k, n, device=scores.device, dtype=scores.dtype)
        indicator.scatter_add_(2, slots, torch.full(slots.shape, 1.0 / num_samples, device=scores.device,
                                                    dtype=scores.dtype))
        ctx.save_for_backward(noise, index)
        ctx.sigma = sigma
        return indicator

    @staticmethod
    def backward(ctx, grad_indicator: torch.Tensor):
        noise, index = ctx.saved_tensors
        num_samples = noise.shape[1]
        # d E[Y]/d scores = E[Y (x) Z] / sigma, contracted with the incoming gradient:
        # per noise sample, sum the gradient at the k chosen entries, then weight that sample's noise.
        picked = grad_indicator.gather(2, index.transpose(1, 2)).sum(dim=1)  # [B,S]
        grad_scores = torch.einsum("bs,bsn->bn", picked, noise) / (num_samples * ctx.sigma)
        return grad_scores, None, None, None


def perturbed_topk(scores: torch.Tensor, k: int, num_samples: int, sigma: float) -> torch.Tensor:
    """Differentiable top-k indicator ``[B,k,N]`` of ``scores`` ``[B,N]``."""
    return PerturbedTopK.apply(scores, k, num_samples, sigma)


def hard_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k: indices ``[B,k]`` in ascending order and their one-hot indicator ``[B,k,N]``."""
    index = scores.topk(k, dim=-1).indices.sort(dim=-1).values
    indicator = F.one_hot(index, scores.shape[-1]).to(scores.dtype)
    return index, indicator


@dataclass
class Selection:
    """Selected tokens and how they map onto the candidates."""

    tokens: torch.Tensor  # [B,k,D]
    indicator: torch.Tensor  # [B,k,Nc], soft in training, one-hot in eval
    index: torch.Tensor | None  # [B,k] in eval, None in training
    scores: torch.Tensor  # [B,Nc] in 0..1


class TokenSelector(nn.Module):
    """Scores candidate tokens against the clicked base tokens and keeps the top k.

    A "kernel" is the normalised mean of the clicked base tokens of one label (positive or
    negative), compared in a learned projection; a candidate scores (cos + 1) / 2 against the
    kernel it resembles most. Labels without any click do not take part.
    """

    def __init__(self, embed_dim: int, score_dim: int, num_samples: int, sigma: float):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.proj = nn.Linear(embed_dim, score_dim)
        self.num_samples = num_samples
        self.sigma = sigma

    def score(self, base: torch.Tensor, candidates: torch.Tensor, click_index: torch.Tensor,
              click_label: torch.Tensor) -> torch.Tensor:
        """``[B,Nc]`` float32 similarity in 0..1 of each candidate to the clicked tokens (float32
        even under autocast: the top-k noise is small next to bfloat16 steps)."""
        base_q = F.normalize(self.proj(self.norm(base)).float(), dim=-1)
        cand_q = F.normalize(self.proj(self.norm(candidates)).float(), dim=-1)
        clicked = base_q.gather(1, click_index.unsqueeze(-1).expand(-1, -1, base_q.shape[-1]))  # [B,N,S]
        best = torch.zeros(candidates.shape[:2], device=candidates.device)
        for label in (POSITIVE, NEGATIVE):
            weight = (click_label == label).to(clicked.dtype)  # [B,N]
            kernel = F.normalize((clicked * weight.unsqueeze(-1)).sum(dim=1), dim=-1)  # [B,S]
            similarity = (torch.einsum("bns,bs->bn", cand_q, kernel) + 1) / 2
            present = (weight.sum(dim=1, keepdim=True) > 0).to(similarity.dtype)
            best = torch.maximum(best, similarity * present)
        return best

    def forward(self, base: torch.Tensor, candidates: torch.Tensor, click_index: torch.Tensor,
                click_label: torch.Tensor, k: int, min_score: float = 0.0) -> Selection:
        """Keep ``k`` tokens; at inference only as many as score above ``min_score`` in the sample
        with the most such tokens (at least one), as MST's code does."""
        scores = self.score(base, candidates, click_index, click_label)
        k = min(k, candidates.shape[1])
        if not self.training and min_score > 0:
            k = max(1, min(k, int((scores > min_score).sum(dim=-1).max())))
        if self.training:
            indicator = perturbed_topk(scores, k, self.num_samples, self.sigma)
            return Selection(torch.bmm(indicator.to(candidates.dtype), candidates), indicator, None, scores)
        index, indicator = hard_topk(scores, k)
        tokens = candidates.gather(1, index.unsqueeze(-1).expand(-1, -1, candidates.shape[-1]))
        return Selection(tokens, indicator, index, scores)


def _overlap_1d(length: int, base_patch: int, patch: int, device: torch.device) -> torch.Tensor:
    """``[n_base, n_patch]`` pixels shared by each base interval and each ``patch`` interval,
    clipped to ``length`` (the padded tail of the last coarse token covers nothing)."""
    n_base = -(-length // base_patch)
    n_patch = -(-length // patch)
    b0 = torch.arange(n_base, device=device).unsqueeze(1) * base_patch
    p0 = torch.arange(n_patch, device=device).unsqueeze(0) * patch
    lo = torch.maximum(b0, p0)
    hi = torch.minimum(torch.minimum(b0 + base_patch, p0 + patch), torch.tensor(length, device=device))
    return (hi - lo).clamp(min=0).float()


@lru_cache(maxsize=16)
def candidate_coverage(image_size: tuple[int, int], base_patch: int, patches: tuple[int, ...],
                       device: torch.device) -> torch.Tensor:
    """Sparse ``[Nb, Nc]``: the fraction of each base cell that each candidate token covers,
    candidates ordered as concatenated grids of ``patches`` (row-major each).

    Built outside inference mode even when first asked for there: the cached tensor is reused by
    later training steps (e.g. a notebook that segments, then fine-tunes), which autograd refuses
    for inference tensors."""
    with torch.inference_mode(False):
        blocks = []
        for patch in patches:
            rows = _overlap_1d(image_size[0], base_patch, patch, device)
            cols = _overlap_1d(image_size[1], base_patch, patch, device)
            blocks.append(torch.kron(rows, cols) / (base_patch * base_patch))
        return torch.cat(blocks, dim=1).to_sparse()


def fold_selected(base: torch.Tensor, selected: torch.Tensor, indicator: torch.Tensor,
                  coverage: torch.Tensor) -> torch.Tensor:
    """Base tokens ``[B,Nb,D]`` averaged with the selected tokens ``[B,k,D]`` that cover them,
    each weighted by the fraction of the cell it covers (soft indicators spread the weight).
    Computed in float32 (sparse products lack reduced-precision kernels on some devices)."""
    batch, k, n_cand = indicator.shape
    with torch.autocast(base.device.type, enabled=False):
        slot_cover = torch.sparse.mm(coverage.float(), indicator.float().reshape(batch * k, n_cand).t())  # [Nb,B*k]
        slot_cover = slot_cover.t().reshape(batch, k, -1)  # [B,k,Nb]
        summed = base.float() + torch.einsum("bkn,bkd->bnd", slot_cover, selected.float())
        return (summed / (1 + slot_cover.sum(dim=1)).unsqueeze(-1)).to(base.dtype)
