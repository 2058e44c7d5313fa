"""mst_geo.model: the MST network (pure torch + timm), its losses and its checkpoints."""

from mst_geo.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_card,
    resolve_model,
    save_checkpoint,
)
from mst_geo.model.config import MSTConfig
from mst_geo.model.losses import MSTLoss
from mst_geo.model.mst import MSTModel, MSTOutput, create_model, list_presets
from mst_geo.model.pretrained import load_vit_weights

__all__ = [
    "CheckpointError", "MSTConfig", "MSTLoss", "MSTModel", "MSTOutput", "create_model", "list_presets",
    "load_checkpoint", "load_vit_weights", "read_card", "resolve_model", "save_checkpoint",
]
