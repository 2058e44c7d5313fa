"""Checkpoints: one ``.safetensors`` file whose metadata holds the JSON model card.

The card carries the full ``MSTConfig`` (so the file alone rebuilds the network) plus what the
trainer records (data, recipe, metrics). Only safetensors is read for MST checkpoints, so loading
a file never runs code; plain timm/MAE ViT weights in ``.pth`` files go through
``torch.load(weights_only=True)``, which refuses anything but tensors and containers.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from mst_geo.atomic import atomic_path
from mst_geo.errors import MSTGeoError, warn
from mst_geo.model.config import PRESETS, MSTConfig
from mst_geo.model.mst import MSTModel, create_model

CARD_KEY = "mst_geo.card"
PRETRAINING_KEY = "mst_geo.pretraining"
"""Metadata key of an encoder exported by a pretraining run (``task: mae``): its training record."""
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "mst_default.safetensors"


class CheckpointError(MSTGeoError):
    """A checkpoint (or weights file) that cannot be used: missing, unreadable, wrong preset."""


def save_checkpoint(model: MSTModel, path: str | Path, card: Mapping[str, Any] | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Write ``model``'s weights and its card (``card`` plus ``preset`` and ``config``) atomically.
    ``dtype=torch.float16`` halves the file for shipping; loading converts back."""
    path = Path(path)
    full_card = dict(card or {})
    full_card["preset"] = model.config.preset
    full_card["config"] = model.config.to_dict()
    tensors = {name: (t.detach().to(dtype) if dtype is not None and t.is_floating_point() else t.detach())
                      .contiguous().cpu() for name, t in model.state_dict().items()}
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={CARD_KEY: json.dumps(full_card)})
        temporary.chmod(0o644)  # safetensors writes 0600; a packaged model must be readable by all
    return path


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over tensor names, dtypes, shapes and bytes: lets a card name the exact weights it
    describes, independent of how the file was written."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _metadata(path: Path) -> dict[str, str]:
    """A safetensors file's header metadata, without loading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"not a readable safetensors file ({err})", path) from err


def read_card(path: str | Path) -> dict[str, Any]:
    """The model card of checkpoint ``path`` without loading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path)
    if path.suffix != ".safetensors":
        raise CheckpointError("MST checkpoints must be .safetensors files (other formats may run code)", path)
    metadata = _metadata(path)
    if CARD_KEY not in metadata and PRETRAINING_KEY in metadata:
        raise CheckpointError("is a pretrained encoder (`mst-geo train` with task: mae), not a segmenter: "
                              "click-train from it (`mst-geo train --init`, or model.init in the recipe)", path)
    if CARD_KEY not in metadata:
        raise CheckpointError("no mst-geo model card in the file metadata (not an MST checkpoint?)", path)
    try:
        return json.loads(metadata[CARD_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"model card is not valid JSON ({err})", path) from err


def read_pretraining_record(path: str | Path) -> dict[str, Any] | None:
    """The training record of an encoder a pretraining run exported; None for any other file."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    text = _metadata(path).get(PRETRAINING_KEY)
    try:
        return None if text is None else json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"pretraining record is not valid JSON ({err})", path) from err


def load_checkpoint(path: str | Path, preset: str | None = None) -> tuple[MSTModel, dict[str, Any]]:
    """Rebuild the model of checkpoint ``path`` (eval mode, on the CPU) and return it with its card.
    ``preset`` set: refuse a checkpoint of another preset. Every key must match (strict)."""
    card = read_card(path)
    try:
        config = MSTConfig.from_dict(card["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"model card holds no valid config ({err})", path) from err
    if preset is not None and config.preset != preset:
        raise CheckpointError(f"checkpoint is preset '{config.preset}', but '{preset}' was requested", path)
    model = MSTModel(config)
    state = load_file(str(path), device="cpu")
    reference = model.state_dict()
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not fit preset '{config.preset}': {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})", path)
    wrong = [name for name, t in state.items() if t.shape != reference[name].shape]
    if wrong:
        raise CheckpointError(f"weights do not fit preset '{config.preset}': shape differs for {wrong[:3]}", path)
    model.load_state_dict({name: t.to(reference[name].dtype) for name, t in state.items()})
    model.card = copy.deepcopy(card)  # its own: a caller editing the returned card (ship_model.py) leaves it be
    return model.eval(), card


def untrained_card(model: MSTModel) -> dict[str, Any]:
    """The card of a network that no checkpoint describes (a preset's random weights, or one built
    in Python): its preset and config, no training record."""
    return {"preset": model.config.preset, "config": model.config.to_dict(), "training": None}


def checkpoint_path(name_or_path: str | Path) -> Path:
    """The file a ``--model``/``--init`` value names: ``"default"`` is the packaged model, a path has
    its ``~`` expanded (a shell leaves ``--model=~/x`` as it is). Presets are not files: check first."""
    return DEFAULT_CHECKPOINT if str(name_or_path) == "default" else Path(name_or_path).expanduser()


def resolve_model(name_or_path: str | Path) -> tuple[MSTModel, dict[str, Any]]:
    """``"default"`` (the packaged model), a preset name (random weights, with a warning) or a
    checkpoint path -> (model in eval mode, card)."""
    name = str(name_or_path)
    if name == "default":
        if not DEFAULT_CHECKPOINT.is_file():
            raise CheckpointError("the packaged default model is missing from this install; "
                                  "pass a checkpoint path or a preset name", DEFAULT_CHECKPOINT)
        return load_checkpoint(DEFAULT_CHECKPOINT)
    if name in PRESETS:
        warn(f"model '{name}' is a preset with random weights: its masks are meaningless "
             "until it is trained")
        model = create_model(name).eval()
        return model, untrained_card(model)
    path = checkpoint_path(name)
    if not path.exists():
        raise CheckpointError(f"not found: no such checkpoint file, and not a preset ({', '.join(PRESETS)}) "
                              "nor 'default'", path)
    return load_checkpoint(path)
