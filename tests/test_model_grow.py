"""Deepening a trained network (model/grow.py, the recipe's ``model.grow_depth``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mst_geo.errors import MSTGeoError
from mst_geo.model import MSTLoss, load_checkpoint, save_checkpoint
from mst_geo.model.grow import block_slots, deepen
from mst_geo.train.config import load_train_config
from mst_geo.train.run import build_model, train

SMOKE = Path(__file__).parents[1] / "configs" / "train" / "smoke.yaml"


def grabcut_input(iseg_root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A real image at 96 px with a positive click on the object and a negative in a corner."""
    picture = Image.open(next((iseg_root / "GrabCut" / "data_GT").glob("*.jpg"))).convert("RGB")
    image = torch.from_numpy(np.asarray(picture.resize((96, 96)), dtype=np.float32) / 255)
    clicks = torch.tensor([[[48.0, 48.0, 1.0], [4.0, 4.0, 0.0]]])
    return image.permute(2, 0, 1)[None], clicks, torch.zeros(1, 1, 96, 96)


def test_trained_blocks_are_spread_among_the_new_ones():
    assert block_slots(8, 12) == [0, 1, 3, 4, 6, 7, 9, 10]
    assert block_slots(2, 4) == [0, 2]


def test_a_deepened_network_computes_the_same_masks(iseg_root, tiny_model):
    torch.manual_seed(0)
    model = tiny_model().eval()
    with torch.no_grad():  # trained-looking weights: not the zero biases of a fresh network
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    grown = deepen(model, 5)
    assert grown.config.depth == 5 and len(grown.backbone.blocks) == 5 and not grown.training
    inputs = grabcut_input(iseg_root)
    with torch.no_grad():
        before, after = model(*inputs), grown(*inputs)
    assert before.logits.abs().max() > 0.1  # a real output, not a zero map both agree on
    torch.testing.assert_close(after.logits, before.logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(after.token_embeddings, before.token_embeddings, rtol=1e-4, atol=1e-5)
    assert torch.equal(after.selected_index, before.selected_index)


def test_the_new_blocks_learn(iseg_root, tiny_model):
    torch.manual_seed(0)
    grown = deepen(tiny_model(), 4)  # trained blocks at 0 and 2, new at 1 and 3
    image, clicks, prev = grabcut_input(iseg_root)
    target = torch.zeros(1, 1, 96, 96)
    target[..., 24:72, 24:72] = 1
    loss = MSTLoss()(grown(image, clicks, prev), target, clicks, torch.zeros_like(target))[0]
    loss.backward()
    for slot in (1, 3):  # the zeroed output projections get gradients, so the identity is left
        block = grown.backbone.blocks[slot]
        assert block.attn.proj.weight.grad.abs().sum() > 0
        assert block.mlp.fc2.weight.grad.abs().sum() > 0


def test_deepening_must_add_blocks(tiny_model):
    with pytest.raises(ValueError, match="cannot deepen a 2-block network to 2 blocks"):
        deepen(tiny_model(), 2)


def test_grow_depth_in_a_recipe_deepens_the_init(tmp_path, tiny_model):
    source = tiny_model()
    path = save_checkpoint(source, tmp_path / "start.safetensors")
    model = build_model(load_train_config(SMOKE, {"model.init": str(path), "model.grow_depth": 4}))
    assert model.config.depth == 4 and model.training
    trained = source.backbone.blocks[1].state_dict()
    moved = model.backbone.blocks[2].state_dict()
    assert all(torch.equal(moved[key], value) for key, value in trained.items())
    assert not model.backbone.blocks[3].mlp.fc2.weight.any()


def test_grow_depth_needs_a_shallower_mst_init(tmp_path, tiny_model):
    with pytest.raises(MSTGeoError, match="'model.grow_depth' deepens the MST checkpoint that 'model.init' names"):
        load_train_config(SMOKE, {"model.grow_depth": 4})
    path = save_checkpoint(tiny_model(), tmp_path / "start.safetensors")
    with pytest.raises(MSTGeoError, match="'model.grow_depth' is 2, but --init .* already has 2 blocks"):
        build_model(load_train_config(SMOKE, {"model.init": str(path), "model.grow_depth": 2}))
    plain = tmp_path / "vit.pth"
    torch.save({"blocks.0.norm1.weight": torch.ones(64)}, plain)
    with pytest.raises(MSTGeoError, match="is plain ViT weights"):
        build_model(load_train_config(SMOKE, {"model.init": str(plain), "model.grow_depth": 4}))


def test_a_deepened_run_resumes_and_exports_the_deeper_network(tmp_path, iseg_root, tiny_model):
    torch.set_num_threads(1)
    start = save_checkpoint(tiny_model(), tmp_path / "start.safetensors")
    values = {"out": str(tmp_path / "run"), "data.root": str(iseg_root), "data.max_images": 8,
              "data.val_fraction": 0.3, "model.init": str(start), "model.grow_depth": 3,
              "trainer.val_every_steps": 0, "trainer.max_steps": 2}
    train(load_train_config(SMOKE, values))
    exported = train(load_train_config(SMOKE, {**values, "trainer.max_steps": 4}), resume="auto")
    model, card = load_checkpoint(exported)
    assert model.config.depth == 3 and card["config"]["depth"] == 3
    assert card["training"]["steps"] == 4
