"""Masked-autoencoder pretraining of the encoder (task: mae) on real COCO_MVal images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mst_geo.errors import MSTGeoError
from mst_geo.model import save_checkpoint
from mst_geo.model.checkpoint import CheckpointError, load_checkpoint, read_pretraining_record
from mst_geo.train.config import MAESection, load_train_config
from mst_geo.train.mae import ENCODER_NAME, MAEDecoder, hidden_patch_error, patchify, reconstruction_loss
from mst_geo.train.run import build_model, init_lineage, train

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "configs" / "train" / "smoke.yaml"
MAE_RECIPE = ROOT / "configs" / "train" / "mae_xtiny.yaml"


def mae_config(out: Path, iseg_root: Path, **overrides):
    values = {"out": str(out), "task": "mae", "data.root": str(iseg_root), "data.max_images": 8,
              "data.val_fraction": 0.3, "trainer.val_every_steps": 0, "trainer.max_steps": 4,
              "mae.decoder_dim": 32, "mae.decoder_heads": 2, "mae.decoder_depth": 1}
    values.update(overrides)
    return load_train_config(SMOKE, values)


def coco_images(iseg_root: Path, count: int, size: int = 96) -> torch.Tensor:
    """``count`` real COCO_MVal photos, resized to ``size``², normalised as the model does."""
    paths = sorted((iseg_root / "COCO_MVal" / "img").glob("*.jpg"))[:count]
    images = [cv2.resize(cv2.imread(str(p))[:, :, ::-1], (size, size), interpolation=cv2.INTER_AREA) for p in paths]
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (batch - mean) / std


def test_patches_follow_the_patch_embeddings_grid():
    image = torch.arange(2 * 3 * 32 * 48, dtype=torch.float32).view(2, 3, 32, 48)
    patches = patchify(image, 16)
    assert patches.shape == (2, 6, 3 * 16 * 16)
    row, col = 1, 2  # patch 5 of a 2 x 3 grid, row-major like the embedding's tokens
    assert torch.equal(patches[1, 5], image[1, :, row * 16:(row + 1) * 16, col * 16:(col + 1) * 16].reshape(-1))


def test_the_loss_counts_hidden_patches_only():
    target = torch.randn(2, 36, 12)
    hidden = torch.zeros(2, 36, dtype=torch.bool)
    hidden[:, 9:] = True
    predicted = target.clone()
    predicted[~hidden] += 100.0  # visible patches: whatever the decoder says about them is not scored
    assert hidden_patch_error(predicted, target, hidden) == 0
    predicted[hidden] += 1.0
    assert torch.isclose(hidden_patch_error(predicted, target, hidden), torch.tensor(1.0))


def test_the_encoder_sees_a_quarter_of_a_real_images_patches(iseg_root, tiny_model):
    model = tiny_model()
    decoder = MAEDecoder(64, 16, MAESection(decoder_dim=32, decoder_heads=2, decoder_depth=1))
    seen = []
    model.backbone.blocks.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
    loss = reconstruction_loss(model.backbone, decoder, coco_images(iseg_root, 2), mask_ratio=0.75)
    assert seen == [torch.Size([2, 9, 64])]  # 96 px: 36 patches, 9 visible
    assert torch.isfinite(loss) and loss > 0


def test_pretraining_learns_to_rebuild_real_images(iseg_root, tiny_model):
    torch.manual_seed(0)
    model = tiny_model()
    decoder = MAEDecoder(64, 16, MAESection(decoder_dim=32, decoder_heads=2, decoder_depth=1))
    image = coco_images(iseg_root, 4)
    parameters = [*model.backbone.parameters(), *decoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=2e-3)
    losses = []
    for step in range(40):
        torch.manual_seed(step)
        loss = reconstruction_loss(model.backbone, decoder, image, mask_ratio=0.75)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


def test_a_pretraining_run_exports_the_encoder_that_click_training_starts_from(tmp_path, iseg_root, tiny_model):
    start = tiny_model()
    init = save_checkpoint(start, tmp_path / "start.safetensors")
    exported = train(mae_config(tmp_path / "mae", iseg_root, **{"model.init": str(init)}))
    assert exported == tmp_path / "mae" / ENCODER_NAME
    encoder = load_file(str(exported))
    assert set(encoder) == {k for k in start.backbone.state_dict()
                            if k.startswith(("patch_embed.proj.", "pos_embed", "blocks.", "norm."))}
    assert not torch.equal(encoder["blocks.0.attn.qkv.weight"], start.backbone.blocks[0].attn.qkv.weight)
    record = read_pretraining_record(exported)
    assert record["training"]["steps"] == 4 and record["training"]["recipe"]["task"] == "mae"
    assert record["training"]["samples_seen"] == 16

    # the untouched parts were frozen: the run's last checkpoint holds them as they started
    state = torch.load(tmp_path / "mae" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    for name, tensor in start.state_dict().items():
        if name.startswith(("neck.", "head.", "backbone.click_embed.", "backbone.selector.")):
            assert torch.equal(state[f"model.{name}"], tensor), name

    clicks = load_train_config(SMOKE, {"model.init": str(exported)})
    model = build_model(clicks)
    assert torch.equal(model.backbone.blocks[1].mlp.fc2.weight, encoder["blocks.1.mlp.fc2.weight"])
    lineage = init_lineage(str(exported))
    assert lineage["pretraining"]["training"]["steps"] == 4 and "training" not in lineage


def test_a_pretraining_run_resumes_exactly(tmp_path, iseg_root):
    straight = load_file(str(train(mae_config(tmp_path / "straight", iseg_root))))
    train(mae_config(tmp_path / "parts", iseg_root, **{"trainer.max_steps": 2}))
    resumed = load_file(str(train(mae_config(tmp_path / "parts", iseg_root), resume="auto")))
    for name, tensor in straight.items():
        assert torch.equal(resumed[name], tensor), name


def test_an_encoder_is_no_segmenter(tmp_path, iseg_root):
    exported = train(mae_config(tmp_path / "mae", iseg_root, **{"trainer.max_steps": 1}))
    with pytest.raises(CheckpointError, match="pretrained encoder .* not a segmenter"):
        load_checkpoint(exported)


def test_the_recipe_runs_from_the_cli_and_names_the_encoder(tmp_path, iseg_root):
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "mst_geo", "train", "--config", str(MAE_RECIPE), "--data-root", str(iseg_root),
               "--datasets", "COCO_MVal", "--max-steps", "1", "--batch-size", "2", "--workers", "0", "--out", str(out),
               "--threads", "1", "--set", "data.max_images=6", "--set", "model.overrides.depth=1",
               "--set", "data.crop_size=96", "--set", "model.overrides.input_size=96"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"encoder written to {out / ENCODER_NAME}: start click training from it with --init" in result.stdout


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"task": "masks"}, "'task' is 'masks'; known: clicks, mae"),
    ({"trainer.val_every_steps": 10}, "scores no held-out NoC: set trainer.val_every_steps: 0"),
    ({"mae.mask_ratio": 1.0}, r"'mae.mask_ratio' must be in \(0, 1\)"),
    ({"mae.decoder_dim": 30, "mae.decoder_heads": 4}, "'mae.decoder_dim' 30 is not divisible"),
])
def test_pretraining_recipe_mistakes_are_named(tmp_path, iseg_root, overrides, problem):
    with pytest.raises(MSTGeoError, match=problem):
        mae_config(tmp_path / "bad", iseg_root, **overrides)
