"""Training recipes: the shipped YAML files load, and bad ones stop with one clear line."""

from __future__ import annotations

import re
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


def test_a_list_given_as_text_says_how_to_write_one():
    with pytest.raises(MSTGeoError, match=r"'data.datasets' must be list, got 'COCO_MVal,DUTS_TR' \(a YAML list: "
                                          r"--set key=\[a,b\]\)"):
        load_train_config(CONFIGS / "smoke.yaml", dict([parse_override("data.datasets=COCO_MVal,DUTS_TR")]))
    config = load_train_config(CONFIGS / "smoke.yaml", dict([parse_override("data.datasets=[COCO_MVal,DUTS_TR]")]))
    assert config.data.datasets == ["COCO_MVal", "DUTS_TR"]


def test_overrides_apply_merge_into_mappings_and_null_resets():
    """``--set model.overrides.depth=1`` changes that key (the recipe's other overrides stay), and
    ``--set model.init=null`` trains from scratch (null was dropped as if not given)."""
    recipe = load_train_config(CONFIGS / "finetune_scene.yaml")
    assert recipe.model.init is not None
    config = load_train_config(CONFIGS / "finetune_scene.yaml", {
        "trainer.max_steps": 7, "data.root": "/elsewhere",
        **dict(parse_override(item) for item in ("optim.lr=2e-4", "model.init=null"))})
    assert config.trainer.max_steps == 7
    assert config.data.root == "/elsewhere"
    assert config.optim.lr == pytest.approx(2e-4)
    assert config.model.init is None
    smoke = load_train_config(CONFIGS / "smoke.yaml")
    deeper = load_train_config(CONFIGS / "smoke.yaml", dict([parse_override("model.overrides.depth=1")]))
    assert deeper.model.overrides == {**smoke.model.overrides, "depth": 1} and len(smoke.model.overrides) > 1
    dropped = next(iter(smoke.model.overrides))  # null removes a key: the preset's own value again
    reset = load_train_config(CONFIGS / "smoke.yaml", dict([parse_override(f"model.overrides.{dropped}=null")]))
    assert dropped not in reset.model.overrides and len(reset.model.overrides) == len(smoke.model.overrides) - 1


@pytest.mark.parametrize("text, message", [
    ("trainer: {max_stepz: 3}", "unknown key 'trainer.max_stepz'"),
    ("trainer: {max_steps: many}", "'trainer.max_steps' must be"),
    ("trainer: {batch_size: 0}", "'trainer.batch_size' must be > 0"),
    ("data: {crop_size: 100}", "multiple of 16"),
    ("data: {flip_prob: 2}", "'data.flip_prob' is a probability"),
    ("clicks: {first_click_prob: -0.1}", "'clicks.first_click_prob' is a probability"),
    ("data: [1, 2]", "'data' must be a mapping"),
    ("data: {scene: a.tif}", "go together"),
    ("data: {scene_bands: [4, 3, 2]}", "set the scene too"),
    ("data: {scene: a.tif, labels: b.gpkg, scene_bands: [4, 3]}", "'data.scene_bands': bands takes 1 band"),
    ("data: {scene: a.tif, labels: b.gpkg, scene_bands: [0, 1, 2]}", "band numbers from 1 such as"),
    ("data: {scene: a.tif, labels: b.gpkg, scene_bands: [true, 1, 2]}", "band numbers from 1 such as"),
    ("trainer: {max_steps: [", "not valid YAML"),
    ("data: {scale_range: [0.5]}", "'data.scale_range' must be a list of 2 floats"),
    ("data: {contrast: [a, 0.5]}", "'data.contrast' must be a list of 2 floats"),
    ("data: {datasets: [1]}", "'data.datasets' must be a list of strs"),
    ("optim: {betas: [0.9, 0.99, 0.9]}", "'optim.betas' must be a list of 2 floats"),
    ("model: {preset: mst_tiny, overrides: {embed_dim: 100}}", "do not make a valid mst_tiny"),
    ("model: {preset: mst_tiny, overrides: {depth: x}}", "depth must be a whole number of at least 1, got 'x'"),
    ("model: {preset: mst_tiny, overrides: {depth: 0}}", "depth must be a whole number of at least 1, got 0"),
    ("model: {preset: mst_tiny, overrides: {embed_dim: 0}}", "embed_dim must be a whole number of at least 1"),
    ("model: {preset: mst_tiny, overrides: {topk_samples: -1}}", "topk_samples must be a whole number of at least 1"),
    ("model: {preset: mst_tiny, overrides: {depth: [1]}}", "depth must be a whole number of at least 1, got [1]"),
    ("model: {preset: mst_tiny, overrides: {mlp_ratio: 0}}", "mlp_ratio must be a number above 0, got 0"),
    ("model: {preset: mst_tiny, overrides: {mlp_ratio: .inf}}", "mlp_ratio must be a number above 0, got inf"),
    ("model: {preset: mst_tiny, overrides: {drop_path_rate: 1.5}}", "drop_path_rate must be a number 0 or more and below 1"),
    ("model: {preset: mst_tiny, overrides: {flip: 2}}", "flip must be true or false, got 2"),
    ("trainer: {seed: -1}", "'trainer.seed' must be in 0..4294967295, got -1"),
    ("clicks: {max_next_clicks: -1}", "'clicks.max_next_clicks' must be 0 or more"),
    ("data: {workers: -2}", "'data.workers' must be 0 or more"),
    ("trainer: {val_instances: -3}", "'trainer.val_instances' must be 0 or more"),
    ("optim: {betas: [1.5, 0.9]}", "'optim.betas' must each be in [0, 1)"),
    ("optim: {weight_decay: -1}", "'optim.weight_decay' must be 0 or more"),
    ("clicks: {gamma: -1}", "'clicks.gamma' must be > 0"),
    ("clicks: {erode_prob: 1.2}", "'clicks.erode_prob' is a probability"),
    ("optim: {lr_drop_factor: -1}", "'optim.lr_drop_factor' must be > 0"),
    ("trainer: {max_minutes: -1}", "'trainer.max_minutes' must be > 0"),
    ("trainer: {log_every_steps: 0}", "'trainer.log_every_steps' must be > 0"),
    ("trainer: {val_iou: 1.5}", "'trainer.val_iou' is an IoU in (0, 1]"),
    ("trainer: {val_max_clicks: 0}", "'trainer.val_max_clicks' must be > 0"),
])
def test_bad_recipe_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MSTGeoError, match=re.escape(message)) as error:
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


def test_bad_override_values_and_binary_recipes_are_one_line_errors(tmp_path):
    with pytest.raises(MSTGeoError, match="'optim.lr=\\[': the value is not valid YAML"):
        parse_override("optim.lr=[")
    with pytest.raises(MSTGeoError, match="'data.root' conflicts"):
        load_train_config(CONFIGS / "smoke.yaml", {"data": 1, "data.root": "x"})
    binary = tmp_path / "recipe.yaml"
    binary.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(MSTGeoError, match="not a text") as error:
        load_train_config(binary)
    assert str(binary) in str(error.value)


@pytest.mark.parametrize("override, message", [
    ({"trainer.precision": "bf17"}, "trainer settings: .*bf17"),
    ({"trainer.accelerator": "tpu"}, "trainer settings"),
])
def test_bad_trainer_settings_fail_before_any_data_is_read(tmp_path, override, message):
    """Lightning's own checks, reported as one line naming the recipe, before data or model load."""
    from mst_geo.train.run import train

    config = load_train_config(CONFIGS / "smoke.yaml", {
        **override, "out": str(tmp_path / "run"), "data.root": str(tmp_path / "no_data_here")})
    with pytest.raises(MSTGeoError, match=message) as error:
        train(config)
    assert str(CONFIGS / "smoke.yaml") in str(error.value)


def test_run_folder_that_is_a_file_is_refused(tmp_path):
    from mst_geo.train.run import train

    (tmp_path / "run").write_text("not a folder")
    config = load_train_config(CONFIGS / "smoke.yaml", {"out": str(tmp_path / "run")})
    with pytest.raises(MSTGeoError, match="is a file"):
        train(config)


def test_extends_lays_the_recipe_over_its_parent(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "name: base\nmodel: {preset: mst_xtiny, overrides: {input_size: 224}}\n"
        "data: {crop_size: 288, scale_range: [0.5, 1.6]}\noptim: {lr: 3.0e-4, lr_drop_epochs: [5]}\n")
    (tmp_path / "phase.yaml").write_text(
        "extends: base.yaml\nname: phase\nout: runs/phase\nmodel: {overrides: {click_radius: 3}}\n"
        "data: {scale_range: [0.8, 1.2]}\noptim: {lr_drop_epochs: []}\n")
    (tmp_path / "child.yaml").write_text("extends: phase.yaml\nname: child\nout: runs/child\noptim: {lr: 1.0e-5}\n")
    config = load_train_config(tmp_path / "child.yaml")
    assert config.name == "child" and config.out == "runs/child" and config.model.preset == "mst_xtiny"
    assert config.model.overrides == {"input_size": 224, "click_radius": 3}  # mappings merge
    assert config.data.crop_size == 288 and config.data.scale_range == [0.8, 1.2]  # lists replace
    assert config.optim.lr == pytest.approx(1e-5) and config.optim.lr_drop_epochs == []
    assert config.source == str(tmp_path / "child.yaml")


@pytest.mark.parametrize("files, message, culprit", [
    ({"a.yaml": "extends: b.yaml\nout: a\n", "b.yaml": "extends: a.yaml\nout: b\n"}, "extends itself", "a.yaml"),
    ({"a.yaml": "extends: missing.yaml\nout: a\n"}, "training config not found \\(extended by", "missing.yaml"),
    ({"a.yaml": "extends: [b.yaml]\nout: a\n"}, "'extends' must be a file name", "a.yaml"),
    ({"a.yaml": "extends: b.yaml\nout: a\n", "b.yaml": "trainer: {max_stepz: 3}\n"},
     "unknown key 'trainer.max_stepz'", "b.yaml"),
    ({"a.yaml": "extends: b.yaml\n", "b.yaml": "out: runs/b\n"}, "sets no 'out' of its own", "a.yaml"),
])
def test_bad_extends_is_one_clear_error_naming_the_file(tmp_path, files, message, culprit):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(MSTGeoError, match=message) as error:
        load_train_config(tmp_path / "a.yaml")
    assert str(error.value).startswith(str(tmp_path / culprit))
    assert "\n" not in str(error.value)
