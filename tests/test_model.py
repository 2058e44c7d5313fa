"""MSTModel behaviour on real images: shapes, multi-scale kernels, token selection, training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mst_geo.model import MSTLoss, create_model, list_presets

torch.set_num_threads(1)


def load_instance(iseg_root: Path, size: int, name: str = "ILSVRC2012_test_00000004"):
    """A real DUTS-TR image and its salient-object mask, resized to ``size`` x ``size``."""
    image = Image.open(iseg_root / "DUTS_TR" / "img" / f"{name}.jpg").convert("RGB").resize((size, size))
    mask = Image.open(iseg_root / "DUTS_TR" / "gt" / f"{name}.png").convert("L").resize((size, size), Image.NEAREST)
    image_t = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).unsqueeze(0)
    mask_t = torch.from_numpy((np.asarray(mask) > 127).astype(np.float32))[None, None]
    return image_t, mask_t


def interior_click(mask: torch.Tensor) -> torch.Tensor:
    """``[1,1,3]`` positive click at the object pixel farthest from the background."""
    import cv2

    dist = cv2.distanceTransform(mask[0, 0].numpy().astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(np.argmax(dist), dist.shape)
    return torch.tensor([[[float(y), float(x), 1.0]]])


def test_presets_are_registered():
    assert list_presets() == ["mst_tiny", "mst_small", "mst_base", "mst_large"]
    widths = {name: create_model(name, depth=1).config.embed_dim for name in list_presets()}
    assert widths == {"mst_tiny": 192, "mst_small": 384, "mst_base": 768, "mst_large": 1024}


def test_tiny_forward_backward_on_a_real_image(iseg_root):
    image, mask = load_instance(iseg_root, 224)
    clicks = torch.cat([interior_click(mask), torch.tensor([[[2.0, 2.0, 0.0], [0.0, 0.0, -1.0]]])], dim=1)
    model = create_model("mst_tiny", input_size=224).train()
    output = model(image, clicks, torch.zeros_like(mask))
    assert output.logits.shape == (1, 1, 224, 224)
    loss, parts = MSTLoss(focal_weight=1.0, contrastive_weight=0.1)(output, mask, clicks)
    assert torch.isfinite(loss) and set(parts) == {"focal", "contrastive"}
    loss.backward()
    assert model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.backbone.click_embed.proj.weight.grad.abs().sum() > 0
