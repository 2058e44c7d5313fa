"""Start the MST backbone from plain ViT weights (timm ``vision_transformer`` or MAE encoders).

MST's blocks are timm ``Block``s with timm's names, so block and norm weights load by name; the
16x16 patch kernel is resampled if the source used another patch size, and the absolute position
embedding drops its class token and is resized to the MST grid. The click embedding, token
selector, neck and head keep their initialisation.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.layers import resample_abs_pos_embed
from timm.layers.patch_embed import resample_patch_embed

from mst_geo.model.checkpoint import CheckpointError
from mst_geo.model.mst import MSTModel

_LOADABLE_PREFIXES = ("blocks.", "norm.", "patch_embed.proj.", "pos_embed")


def _unwrap(state: Mapping) -> dict[str, torch.Tensor]:
    """The tensor dict inside a training checkpoint (MAE's ``{"model": ...}``, DDP ``module.``)."""
    for key in ("model", "state_dict"):
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def read_vit_state_dict(source: str | Path | Mapping) -> dict[str, torch.Tensor]:
    """ViT weights from a state dict, a local file (``.safetensors``, or ``.pth/.pt/.bin`` read
    with ``weights_only=True``), or a timm pretrained model name (needs network access)."""
    if isinstance(source, Mapping):
        return _unwrap(source)
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix == ".safetensors":
            try:
                return _unwrap(load_file(str(path)))
            except SafetensorError as err:
                raise CheckpointError(f"not a readable safetensors file ({err})", path) from None
        try:
            return _unwrap(torch.load(path, map_location="cpu", weights_only=True))
        except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError) as err:  # KeyError: not a torch file
            # torch's own message is a page long and advises weights_only=False, which is what this refuses
            raise CheckpointError("not a PyTorch file of plain tensors (anything else is not unpickled, for safety: "
                                  f"{type(err).__name__})", path) from None
    name = str(source)
    if not timm.is_model(timm.models.split_model_name_tag(name)[0]):
        raise CheckpointError("not found: no such weights file, and not a timm model name", path)
    try:
        return _unwrap(timm.create_model(name, pretrained=True).state_dict())
    except Exception as err:  # timm raises many kinds (offline, no pretrained tag, hub errors)
        raise CheckpointError(f"timm could not provide pretrained weights ({err})", name) from err


def load_vit_weights(model: MSTModel, source: str | Path | Mapping) -> dict[str, list[str]]:
    """Copy ViT weights into ``model.backbone``; returns the ``loaded`` and ``skipped`` source keys
    and the backbone keys left ``missing`` (initialised as before)."""
    state = read_vit_state_dict(source)
    backbone = model.backbone
    where = source if isinstance(source, (str, Path)) else None
    target = backbone.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, value in state.items():
        if not key.startswith(_LOADABLE_PREFIXES):
            skipped.append(key)
            continue
        if key == "patch_embed.proj.weight" and value.shape[-2:] != target[key].shape[-2:]:
            value = resample_patch_embed(value, list(target[key].shape[-2:]))
        if key == "pos_embed":
            side = math.isqrt(value.shape[1])
            prefix = value.shape[1] - side * side  # class / register tokens
            value = resample_abs_pos_embed(value, list(backbone.pos_grid), old_size=[side, side],
                                           num_prefix_tokens=prefix)[:, prefix:]
        if key not in target:
            raise CheckpointError(f"ViT weight '{key}' has no place in preset '{model.config.preset}' "
                                  f"(depth {model.config.depth})", where)
        if value.shape != target[key].shape:
            raise CheckpointError(f"ViT weight '{key}' has shape {tuple(value.shape)}, preset "
                                  f"'{model.config.preset}' needs {tuple(target[key].shape)}", where)
        mapped[key] = value.to(target[key].dtype)
    if not mapped:
        if any(".backbone." in key or key.startswith("backbone.") for key in skipped):
            raise CheckpointError("is a checkpoint of `mst-geo train`: continue its run with --resume, or start "
                                  "from the run's exported model.safetensors", where)
        raise CheckpointError("no ViT weights (blocks.*, patch_embed.*, pos_embed) found", where)
    backbone.load_state_dict(mapped, strict=False)
    return {"loaded": sorted(mapped), "skipped": sorted(skipped),
            "missing": sorted(set(target) - set(mapped))}
