"""The model, the predictor and the trainer on a CUDA GPU (skipped where there is none, as in CI).

They need only the model and training stack (torch, timm, Lightning), not the geo stack, so they
also run on a GPU machine without rasterio: ``python -m pytest tests/test_cuda.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mst_geo.clicks.predictor import Predictor
from mst_geo.clicks.session import evaluate_instance
from mst_geo.data.iseg import load_iseg_dataset
from mst_geo.model import load_checkpoint, resolve_model
from mst_geo.train.config import load_train_config
from mst_geo.train.run import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SMOKE = Path(__file__).parents[1] / "configs" / "train" / "smoke.yaml"


def test_the_shipped_model_clicks_the_same_on_cuda_as_on_the_cpu(iseg_root):
    """The first GrabCut image, five clicks: the same clicks and masks to within float noise."""
    instance = load_iseg_dataset("GrabCut", iseg_root)[0]
    model, _ = resolve_model("default")
    cpu_ious, _, cpu_clicks = evaluate_instance(Predictor(model, device="cpu"), instance, max_clicks=5)
    gpu_ious, _, gpu_clicks = evaluate_instance(Predictor(model, device="cuda"), instance, max_clicks=5)
    assert next(model.parameters()).is_cuda
    np.testing.assert_allclose(gpu_ious, cpu_ious, atol=0.01)
    assert gpu_clicks[:3] == cpu_clicks[:3]  # later ones may move a pixel with the masks' noise
    assert gpu_ious[-1] > 0.7


def test_three_bf16_training_steps_on_cuda(tmp_path, iseg_root):
    config = load_train_config(SMOKE, {
        "out": str(tmp_path), "data.root": str(iseg_root), "data.max_images": 8,
        "data.val_fraction": 0.3, "trainer.accelerator": "gpu", "trainer.precision": "bf16-mixed",
        "trainer.max_steps": 3, "trainer.val_every_steps": 0})
    model, card = load_checkpoint(train(config))
    assert card["training"]["steps"] == 3
    assert card["training"]["recipe"]["trainer"]["precision"] == "bf16-mixed"
    assert all(torch.isfinite(p).all() for p in model.parameters())
