"""Where a run's first weights come from (--init), and what the training code may import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from mst_geo.errors import MSTGeoError
from mst_geo.model import create_model, save_checkpoint
from mst_geo.train.config import load_train_config
from mst_geo.train.module import start_weights
from mst_geo.train.run import build_model, init_lineage, total_samples

SMOKE = Path(__file__).parents[1] / "configs" / "train" / "smoke.yaml"


def test_init_from_an_mst_checkpoint_keeps_its_weights(tmp_path, tiny_model):
    source = tiny_model()
    path = save_checkpoint(source, tmp_path / "start.safetensors", {"name": "start"})
    model = build_model(load_train_config(SMOKE, {"model.init": str(path)}))
    assert model.training and model.card is None  # the init's card ("start") describes weights about to change
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_a_fine_tune_does_not_inherit_the_inits_inference_settings(tmp_path, tiny_model):
    source = tiny_model(inference_size=128, first_click_passes=2, flip=True)
    path = save_checkpoint(source, tmp_path / "start.safetensors")
    model = build_model(load_train_config(SMOKE, {"model.init": str(path)}))
    assert model.config.inference_size is None and model.config.input_size == 96
    assert model.config.first_click_passes == 1 and model.config.flip is False


def test_init_checkpoint_brings_its_own_architecture(tmp_path):
    source = create_model("mst_small", depth=1, input_size=96)
    path = save_checkpoint(source, tmp_path / "small.safetensors")
    with pytest.warns(UserWarning, match="mst_small network, not the recipe's mst_tiny"):
        model = build_model(load_train_config(SMOKE, {"model.init": str(path)}))
    assert model.config == source.config


def test_init_from_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(MSTGeoError, match="none.safetensors: not found"):
        build_model(load_train_config(SMOKE, {"model.init": str(tmp_path / "none.safetensors")}))


def test_init_from_a_corrupt_safetensors_file_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(MSTGeoError, match="not a readable safetensors file") as error:
        build_model(load_train_config(SMOKE, {"model.init": str(broken)}))
    assert str(broken) in str(error.value)


def test_init_from_a_file_that_is_no_tensor_file_is_one_short_line(tmp_path):
    """A ``.pt`` that is text, or a pickle holding more than tensors, is refused without torch's
    page of advice to unpickle it anyway."""
    import pickle

    text, pickled = tmp_path / "notes.pt", tmp_path / "object.pt"
    text.write_text("{}")
    pickled.write_bytes(pickle.dumps({"weights": print}))
    for path in (text, pickled):
        with pytest.raises(MSTGeoError, match="not a PyTorch file of plain tensors") as error:
            build_model(load_train_config(SMOKE, {"model.init": str(path)}))
        assert str(path) in str(error.value) and "\n" not in str(error.value) and len(str(error.value)) < 250


def test_init_from_plain_vit_weights_fills_the_backbone(tmp_path):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, embed_dim=64, depth=2,
                            num_heads=2, num_classes=0)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    model = build_model(load_train_config(SMOKE, {"model.init": str(path)}))
    assert torch.equal(model.backbone.blocks[1].mlp.fc2.weight, vit.blocks[1].mlp.fc2.weight)


def test_a_continued_run_records_where_its_weights_came_from(tmp_path, tiny_model):
    first = save_checkpoint(tiny_model(), tmp_path / "first.safetensors",
                            {"training": {"samples_seen": 100, "steps": 25}})
    lineage = init_lineage(str(first))
    assert lineage["training"]["steps"] == 25 and lineage["path"] == str(first)
    assert total_samples(40, lineage) == 140
    second = save_checkpoint(tiny_model(), tmp_path / "second.safetensors",
                             {"training": {"samples_seen": 40, "total_samples_seen": 140}})
    assert total_samples(10, init_lineage(str(second))) == 150  # the whole chain, not one link
    assert init_lineage(None) is None and total_samples(10, None) == 10


def test_plain_vit_weights_have_no_lineage(tmp_path):
    path = tmp_path / "vit.safetensors"
    save_file({"blocks.0.mlp.fc2.weight": torch.zeros(2, 2)}, str(path))
    assert init_lineage(str(path)) is None


def test_training_modules_import_no_geo_stack():
    code = ("import sys, mst_geo.train.run, mst_geo.train.pack, mst_geo.clicks.sampler;"
            "print([m for m in ('rasterio', 'geopandas', 'torchgeo') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_start_record_names_a_file_once_however_it_is_written(tmp_path, monkeypatch, tiny_model):
    """A resumed run must name the weights it started from; ``x``, ``./x`` and the full path (or a
    run resumed from another folder) are one file, "default" stays a name."""
    path = save_checkpoint(tiny_model(), tmp_path / "start.safetensors")
    monkeypatch.chdir(tmp_path)
    named = {start_weights(load_train_config(SMOKE, {"model.init": init}))["init"]
             for init in ("start.safetensors", "./start.safetensors", str(path))}
    assert named == {str(path.resolve())}
    assert start_weights(load_train_config(SMOKE, {"model.init": "default"})) == {"init": "default", "grow_depth": None}
