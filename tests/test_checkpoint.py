"""Checkpoint round trip, strict preset checks and the user errors of mst_geo.model.checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from mst_geo.errors import MSTGeoError
from mst_geo.model import CheckpointError, create_model, load_checkpoint, read_card, resolve_model, save_checkpoint
from mst_geo.model import checkpoint as checkpoint_module

torch.set_num_threads(1)


def small_tiny(**overrides):
    return create_model("mst_tiny", depth=2, input_size=64, **overrides)


def _inputs(size: int = 64):
    torch.manual_seed(0)
    image = torch.rand(1, 3, size, size)
    clicks = torch.tensor([[[20.0, 30.0, 1.0], [5.0, 5.0, 0.0], [0.0, 0.0, -1.0]]])
    return image, clicks, torch.zeros(1, 1, size, size)


def test_round_trip_keeps_weights_outputs_and_card(tmp_path):
    model = small_tiny().eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors", card={"training": {"steps": 3}, "metrics": {"noc90": 7.5}})
    loaded, card = load_checkpoint(path, preset="mst_tiny")
    assert card["preset"] == "mst_tiny" and card["training"] == {"steps": 3} and card["metrics"]["noc90"] == 7.5
    assert loaded.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    with torch.no_grad():
        assert torch.allclose(model(*_inputs()).logits, loaded(*_inputs()).logits)
    assert not loaded.training
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_the_inference_settings_travel_with_the_weights_and_old_cards_still_load(tmp_path):
    model = small_tiny(inference_size=96, first_click_passes=2, flip=True)
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_checkpoint(path)[0].config
    assert loaded.inference_size == 96 and loaded.first_click_passes == 2 and loaded.flip is True
    card = read_card(path)
    for field in ("inference_size", "first_click_passes", "flip"):  # a card from before the fields
        del card["config"][field]
    legacy = tmp_path / "legacy.safetensors"
    save_file(dict(model.state_dict()), str(legacy), metadata={checkpoint_module.CARD_KEY: json.dumps(card)})
    loaded = load_checkpoint(legacy)[0].config
    assert loaded.inference_size is None and loaded.first_click_passes == 1 and loaded.flip is False
    with pytest.raises(ValueError, match="inference_size 90"):
        small_tiny(inference_size=90)


def test_several_inference_sizes_travel_with_the_weights(tmp_path):
    path = save_checkpoint(small_tiny(inference_size=(64, 96)), tmp_path / "views.safetensors")
    assert read_card(path)["config"]["inference_size"] == [64, 96]  # JSON keeps the list
    assert load_checkpoint(path)[0].config.inference_size == (64, 96)
    with pytest.raises(ValueError, match="inference_size 100 is not a positive multiple of patch_size 16"):
        small_tiny(inference_size=[96, 100])


def test_fp16_checkpoint_loads_as_float32(tmp_path):
    model = small_tiny().eval()
    path = save_checkpoint(model, tmp_path / "half.safetensors", dtype=torch.float16)
    loaded, _ = load_checkpoint(path)
    weight = loaded.backbone.patch_embed.proj.weight
    assert weight.dtype == torch.float32
    assert torch.allclose(weight, model.backbone.patch_embed.proj.weight, atol=1e-3)


def test_preset_mismatch_is_a_clear_error(tmp_path):
    path = save_checkpoint(small_tiny(), tmp_path / "tiny.safetensors")
    with pytest.raises(CheckpointError, match="preset 'mst_tiny', but 'mst_base' was requested") as info:
        load_checkpoint(path, preset="mst_base")
    assert isinstance(info.value, MSTGeoError) and info.value.path == str(path)


def test_weights_that_do_not_fit_the_card_are_refused(tmp_path):
    path = save_checkpoint(small_tiny(), tmp_path / "tiny.safetensors")
    card = read_card(path)
    card["config"]["depth"] = 3  # the card now promises a block the file does not hold
    tensors = {k: v.contiguous() for k, v in small_tiny().state_dict().items()}
    save_file(tensors, str(path), metadata={checkpoint_module.CARD_KEY: json.dumps(card)})
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(path)


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "not found"),
    (lambda p: p.write_bytes(b"this is not safetensors"), "not a readable safetensors"),
    (lambda p: save_file({"w": torch.zeros(2)}, str(p)), "no mst-geo model card"),
])
def test_unusable_files_raise_checkpoint_error(tmp_path, make, message):
    path = tmp_path / "bad.safetensors"
    make(path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_pickle_files_are_never_loaded(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(small_tiny().state_dict(), path)
    with pytest.raises(CheckpointError, match="must be .safetensors"):
        load_checkpoint(path)


def test_resolve_model_accepts_preset_path_and_default(tmp_path, monkeypatch):
    with pytest.warns(UserWarning, match="random weights"):
        model, card = resolve_model("mst_tiny")
    assert card["preset"] == "mst_tiny" and not model.training

    path = save_checkpoint(small_tiny(), tmp_path / "tiny.safetensors")
    model, card = resolve_model(str(path))
    assert model.config.depth == 2

    monkeypatch.setattr(checkpoint_module, "DEFAULT_CHECKPOINT", tmp_path / "absent.safetensors")
    with pytest.raises(CheckpointError, match="default model is missing"):
        resolve_model("default")
    monkeypatch.setattr(checkpoint_module, "DEFAULT_CHECKPOINT", path)
    model, _ = resolve_model("default")
    assert model.config.depth == 2

    with pytest.raises(CheckpointError, match="nowhere.safetensors: not found: no such checkpoint file, and not a preset"):
        resolve_model(tmp_path / "nowhere.safetensors")
