"""The MST architecture as one dataclass, and the registry of its size presets.

Everything needed to rebuild a network lives here, so a checkpoint's card can carry it as JSON.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from mst_geo.views import view_sizes

TOKEN_SELECTION_MODES = ("topk", "all", "none")


POSITIVE_WHOLE = ("embed_dim", "depth", "num_heads", "patch_size", "fine_patch_size", "coarse_patch_size",
                  "input_size", "first_click_passes", "click_radius", "topk_samples", "score_dim", "head_dim",
                  "refine_dim", "contrast_dim")
"""Fields that count something: a whole number of at least 1."""

NUMBER_RANGES = {"mlp_ratio": (0.0, None), "topk_ratio": (0.0, None), "topk_min_score": (None, None),
                 "topk_sigma": (0.0, None), "drop_path_rate": (None, 1.0)}
"""Fields that are real numbers: (above, below) bounds, exclusive; None: unbounded; at least 0 always."""


def _check_numbers(config: MSTConfig) -> None:
    """``ValueError`` naming a field of the wrong type or range (a recipe's ``model.overrides``
    such as ``depth: 0``, which would otherwise train a network without blocks)."""
    for name in POSITIVE_WHOLE:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    for name, (above, below) in NUMBER_RANGES.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and value >= 0 and (above is None or value > above) and (below is None or value < below)):
            bounds = f"above {above:g}" if above is not None else "0 or more"
            raise ValueError(f"{name} must be a number {bounds}{f' and below {below:g}' if below is not None else ''}, "
                             f"got {value!r}")
    if not isinstance(config.flip, bool):
        raise ValueError(f"flip must be true or false, got {config.flip!r}")


@dataclass
class MSTConfig:
    """Architecture of one MST network (ViT encoder, token selection, SimpleFPN, mask head)."""

    preset: str = "mst_tiny"
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    patch_size: int = 16  # base tokens; the learned kernel has this size
    fine_patch_size: int = 8  # extra small-scale tokens, kernel resampled from the base one
    coarse_patch_size: int = 28  # extra large-scale tokens, kernel resampled from the base one
    input_size: int = 448  # training resolution; the position-embedding grid is input_size/16
    # side the Predictor resizes a whole image or zoom crop to (bench, notebooks); None: input_size.
    # Chosen per checkpoint on held-out objects (finer boundaries until objects outgrow the trained
    # scales). Several sides: the Predictor averages the views' probabilities (multi-scale test-time
    # augmentation). The scene workflow's adaptive windows stay at input_size (measured better there).
    inference_size: int | tuple[int, ...] | None = None
    # model passes at a first click (bench, notebooks): each pass after the first is fed the one
    # before's probabilities as its previous mask, the state the click training teaches it to
    # correct, which the bare first click lacks. Chosen per checkpoint on held-out objects, like
    # inference_size; the scene workflow keeps one pass.
    first_click_passes: int = 1
    # mirror averaging (bench, notebooks): every window and its mirror image go through the model as
    # a batch of two and their probabilities are averaged (RITM's evaluation mirrors too); twice the
    # cost of a click. Chosen per checkpoint on held-out objects; the scene workflow keeps it off.
    flip: bool = False
    mean: tuple[float, float, float] = IMAGENET_DEFAULT_MEAN
    std: tuple[float, float, float] = IMAGENET_DEFAULT_STD
    click_radius: int = 5  # pixels, of the positive/negative click disks
    token_selection: str = "topk"  # "topk" (MST), "all" (every 8x8 and 28x28 token), "none" (plain ViT)
    topk_ratio: float = 1 / 16  # k = round(topk_ratio * number of base tokens), as in MST's code
    # > 0: inference keeps fewer than k tokens when fewer score above it (MST's code uses 0.65)
    topk_min_score: float = 0.0
    topk_samples: int = 100  # noise samples of the perturbed-maximum top-k (training only)
    topk_sigma: float = 0.05  # noise scale of the perturbed-maximum top-k (scores are in 0..1)
    score_dim: int = 64  # width of the projection in which tokens are compared to clicked tokens
    head_dim: int = 64  # channels of the all-MLP mask head at 1/4 resolution
    refine_dim: int = 16  # channels of the half-resolution refinement that sees image and clicks
    contrast_dim: int = 64  # width of the token embedding used by the contrastive loss
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        _check_numbers(self)
        if self.token_selection not in TOKEN_SELECTION_MODES:
            raise ValueError(f"token_selection must be one of {TOKEN_SELECTION_MODES}, got {self.token_selection!r}")
        if self.input_size % self.patch_size:
            raise ValueError(f"input_size {self.input_size} is not a multiple of patch_size {self.patch_size}")
        if isinstance(self.inference_size, (list, tuple)):  # several views; a card's JSON list
            self.inference_size = view_sizes(self.inference_size) or None
        for side in view_sizes(self.inference_size) if self.inference_size is not None else ():
            if side % self.patch_size or side <= 0:
                raise ValueError(f"inference_size {side} is not a positive multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")

    @property
    def views(self) -> tuple[int, ...]:
        """The sides the Predictor shows a whole image or zoom crop at: ``inference_size``, else ``input_size``."""
        return view_sizes(self.inference_size or self.input_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "MSTConfig":
        """Rebuild from ``to_dict`` output; unknown keys raise ``KeyError`` naming them."""
        check_fields(values)
        return cls(**values)


PRESETS: dict[str, MSTConfig] = {
    # SimpleClick's xTiny (dim 160, depth 8, 4 heads), which it trains from scratch without MAE
    # (Liu et al., ICCV 2023): the size that CPU-only or short GPU runs can actually train.
    "mst_xtiny": MSTConfig(preset="mst_xtiny", embed_dim=160, depth=8, num_heads=4, head_dim=48),
    "mst_tiny": MSTConfig(preset="mst_tiny", embed_dim=192, depth=12, num_heads=3, head_dim=64),
    "mst_small": MSTConfig(preset="mst_small", embed_dim=384, depth=12, num_heads=6, head_dim=96),
    "mst_base": MSTConfig(preset="mst_base", embed_dim=768, depth=12, num_heads=12, head_dim=128,
                          drop_path_rate=0.1),
    "mst_large": MSTConfig(preset="mst_large", embed_dim=1024, depth=24, num_heads=16, head_dim=192,
                           drop_path_rate=0.2),
}


def check_fields(values: Mapping[str, Any]) -> None:
    """``KeyError`` naming every key of ``values`` that is not an MSTConfig field (a typo in a
    card or in a recipe's ``model.overrides``)."""
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(MSTConfig)})
    if unknown:
        raise KeyError(f"unknown MSTConfig field(s): {', '.join(unknown)}")


def preset_config(name: str, **overrides: Any) -> MSTConfig:
    """The config of preset ``name`` with some fields replaced (``KeyError`` for an unknown name)."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)

