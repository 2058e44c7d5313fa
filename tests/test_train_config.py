"""Training recipes: the shipped YAML files load, and bad ones stop with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mst_geo.errors import MSTGeoError
from mst_geo.train.config import load_train_config, parse_override

CONFIGS = Path(__file__).parents[1] / "configs" / "train"


@pytest.mark.parametrize("name", sorted(path.stem for path in CONFIGS.glob("*.yaml")))
def test_shipped_recipes_load(name):
    config = load_train_config(CONFIGS / f"{name}.yaml")
    assert config.name == name
    assert config.data.crop_size % 16 == 0


def test_paper_recipe_matches_design_facts():
    config = load_train_config(CONFIGS / "mst_base_cocolvis.yaml")
    assert config.model.preset == "mst_base" and config.data.crop_size == 448
    assert config.clicks.max_points == 24 and config.clicks.gamma == 0.8
    assert config.clicks.max_next_clicks == 3
    assert config.optim.lr == 5e-6 and config.optim.betas == [0.9, 0.999]
    assert config.optim.lr_drop_epochs == [50, 70] and config.optim.lr_drop_factor == 0.1
    assert config.optim.samples_per_epoch == 30000


def test_overrides_apply_and_none_is_skipped():
    config = load_train_config(CONFIGS / "smoke.yaml", {
        "trainer.max_steps": 7, "data.root": "/elsewhere", "trainer.devices": None,
        **dict([parse_override("optim.lr=2e-4")])})
    assert config.trainer.max_steps == 7
    assert config.data.root == "/elsewhere"
    assert config.trainer.devices == 1
    assert config.optim.lr == pytest.approx(2e-4)


@pytest.mark.parametrize("text, message", [
    ("trainer: {max_stepz: 3}", "unknown key 'trainer.max_stepz'"),
    ("trainer: {max_steps: many}", "'trainer.max_steps' must be"),
    ("trainer: {batch_size: 0}", "'trainer.batch_size' must be > 0"),
    ("data: {crop_size: 100}", "multiple of 16"),
    ("data: {flip_prob: 2}", "probability"),
    ("data: [1, 2]", "'data' must be a mapping"),
    ("data: {scene: a.tif}", "go together"),
    ("trainer: {max_steps: [", "not valid YAML"),
])
def test_bad_recipe_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MSTGeoError, match=message) as error:
        load_train_config(path)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_config_and_bad_override(tmp_path):
    with pytest.raises(MSTGeoError, match="training config not found"):
        load_train_config(tmp_path / "nope.yaml")
    with pytest.raises(MSTGeoError, match="section.key=value"):
        parse_override("optim.lr")
    with pytest.raises(MSTGeoError, match="command-line override"):
        load_train_config(CONFIGS / "smoke.yaml", {"trainer.precision": 16})


def test_unknown_preset_or_override_is_one_clear_error(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: {preset: mst_huge}\n")
    with pytest.raises(MSTGeoError, match="'model.preset' is 'mst_huge'"):
        load_train_config(recipe)
    recipe.write_text("model: {preset: mst_tiny, overrides: {depthh: 2}}\n")
    with pytest.raises(MSTGeoError, match="unknown MSTConfig field"):
        load_train_config(recipe)
