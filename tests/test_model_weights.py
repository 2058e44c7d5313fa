"""Starting the MST backbone from plain timm / MAE ViT weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed

from mst_geo.model import CheckpointError, create_model
from mst_geo.model.pretrained import load_vit_weights

torch.set_num_threads(1)


def test_timm_vit_state_dict_loads_into_the_backbone(tmp_path):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=4)
    path = tmp_path / "vit_tiny.pth"
    torch.save(vit.state_dict(), path)
    model = create_model("mst_tiny", depth=4)
    report = load_vit_weights(model, path)
    assert {"cls_token", "head.weight", "head.bias"} <= set(report["skipped"])
    assert "click_embed.proj.weight" in report["missing"]
    for i in range(4):
        assert torch.equal(model.backbone.blocks[i].mlp.fc1.weight, vit.blocks[i].mlp.fc1.weight)
    assert torch.equal(model.backbone.patch_embed.proj.weight, vit.patch_embed.proj.weight)
    # 14x14 grid (224 px) resized to the 28x28 grid of 448 px, class token dropped
    expected = resample_abs_pos_embed(vit.pos_embed.detach(), [28, 28], old_size=[14, 14], num_prefix_tokens=1)[:, 1:]
    assert torch.allclose(model.backbone.pos_embed, expected)


def test_mae_checkpoint_with_other_patch_size_loads(tmp_path):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, patch_size=14, img_size=224)
    state = dict(vit.state_dict(), **{"decoder_embed.weight": torch.zeros(4, 192), "mask_token": torch.zeros(1, 1, 4)})
    path = tmp_path / "mae.pth"
    torch.save({"model": state, "epoch": 799}, path)
    model = create_model("mst_tiny", depth=2, input_size=224)
    report = load_vit_weights(model, path)
    assert "decoder_embed.weight" in report["skipped"] and "patch_embed.proj.weight" in report["loaded"]
    assert model.backbone.patch_embed.proj.weight.shape[-2:] == (16, 16)
    output = model.eval()(torch.rand(1, 3, 224, 224), torch.tensor([[[50.0, 60.0, 1.0]]]), torch.zeros(1, 1, 224, 224))
    assert torch.isfinite(output.logits).all()


def test_wrong_width_and_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "vit_small.pth"
    torch.save(timm.create_model("vit_small_patch16_224", pretrained=False, depth=1).state_dict(), path)
    with pytest.raises(CheckpointError, match="preset 'mst_tiny' needs"):
        load_vit_weights(create_model("mst_tiny", depth=1), path)

    pickled = tmp_path / "arbitrary.pth"
    torch.save({"model": {"blocks.0.norm1.weight": torch.ones(192)}, "optimizer": Path("/")}, pickled)
    with pytest.raises(CheckpointError, match="not unpickled, for safety"):
        load_vit_weights(create_model("mst_tiny", depth=1), pickled)

    with pytest.raises(CheckpointError, match="missing.pth: not found: no such weights file, and not a timm model name"):
        load_vit_weights(create_model("mst_tiny", depth=1), tmp_path / "missing.pth")
