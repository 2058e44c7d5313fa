"""End-to-end training on a handful of real COCO_MVal instances (tiny MST, 96 px, CPU)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from mst_geo.cli import main
from mst_geo.errors import MSTGeoError
from mst_geo.model import MSTLoss, load_checkpoint
from mst_geo.train.config import load_train_config
from mst_geo.train.datamodule import ClickDataModule
from mst_geo.train.module import ClickTrainingModule
from mst_geo.train.run import build_model, train

SMOKE = Path(__file__).parents[1] / "configs" / "train" / "smoke.yaml"


class BatchRecorder(Callback):
    """Remembers which samples each optimiser step saw."""

    def __init__(self):
        self.seen: dict[int, list[int]] = {}
        self.first_step: int | None = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.first_step is None:
            self.first_step = trainer.global_step
        self.seen[trainer.global_step] = batch["index"].tolist()


def smoke_config(out: Path, iseg_root: Path, **overrides):
    values = {"out": str(out), "data.root": str(iseg_root), "data.max_images": 8,
              "data.val_fraction": 0.3}
    values.update(overrides)
    return load_train_config(SMOKE, values)


def fixed_batch_loss(model, batch) -> float:
    """The training objective (focal + contrastive) on samples the run never drew."""
    model.eval()
    with torch.no_grad():
        output = model(batch["image"].float() / 255, batch["clicks"], torch.zeros_like(batch["target"]))
        return float(MSTLoss()(output, batch["target"], batch["clicks"], batch["ignore"])[0])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, iseg_root):
    """20 uninterrupted steps: the reference for the loss and for the resume test."""
    torch.set_num_threads(1)
    config = smoke_config(tmp_path_factory.mktemp("full"), iseg_root, **{"trainer.profile": True})
    L.seed_everything(config.trainer.seed, verbose=False)
    initial = build_model(config)
    recorder = BatchRecorder()
    exported = train(config, callbacks=[recorder])
    return config, initial, exported, recorder


def test_twenty_steps_lower_the_loss_and_write_a_checkpoint(full_run):
    config, initial, exported, recorder = full_run
    assert sorted(recorder.seen) == list(range(20))
    data = ClickDataModule(config)
    data.setup()
    held = torch.utils.data.default_collate([data.train_set[i] for i in range(5000, 5016)])
    trained, card = load_checkpoint(exported)
    before, after = fixed_batch_loss(initial, held), fixed_batch_loss(trained, held)
    assert after < 0.9 * before, (before, after)
    record = card["training"]
    assert record["steps"] == 20 and record["samples_seen"] == 80
    assert record["data"]["train"]["COCO_MVal"]["images"] >= 6
    assert record["recipe"]["name"] == "smoke" and record["wall_time_s"] > 0
    profile = (Path(config.out) / "fit-profile.txt").read_text()  # where a slice's time goes
    assert all(action in profile for action in ("no_grad_pass", "click_placement", "train_dataloader_next"))
    assert "CPU" in record["hardware"]
    assert "val/noc85" in card["metrics"]["held_out"]
    assert (Path(config.out) / "checkpoints" / "last.ckpt").is_file()
    assert (Path(config.out) / "checkpoints" / "best.ckpt").is_file()  # lowest held-out NoC
    assert (Path(config.out) / "logs").is_dir()


def test_resume_continues_with_the_same_next_batch(full_run, tmp_path, iseg_root):
    _, _, _, reference = full_run
    first = BatchRecorder()
    train(smoke_config(tmp_path, iseg_root, **{"trainer.max_steps": 10,
                                               "trainer.checkpoint_every_minutes": 1e-4}),
          callbacks=[first])
    assert (tmp_path / "checkpoints" / "timed.ckpt").is_file()  # the every-M-minutes checkpoint
    with pytest.raises(MSTGeoError, match="already holds checkpoints"):
        train(smoke_config(tmp_path, iseg_root))
    resumed = BatchRecorder()
    exported = train(smoke_config(tmp_path, iseg_root), resume="auto", callbacks=[resumed])
    assert resumed.first_step == 10
    assert resumed.seen == {s: reference.seen[s] for s in range(10, 20)}
    card = load_checkpoint(exported)[1]["training"]
    assert card["steps"] == 20 and card["samples_seen"] == 80
    assert card["resumed_from"].endswith(".ckpt")


def test_missing_data_root_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [
        "mst-geo", "train", "--config", str(SMOKE), "--data-root", str(tmp_path / "none"),
        "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "training data root not found" in error and str(tmp_path / "none") in error
    assert "Traceback" not in error and error.count("\n") == 1
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_ddp_two_cpu_processes(tmp_path, iseg_root):
    """Lightning DDP with gloo on the CPU: two processes split the batches of each step."""
    script = Path(sys.executable).parent / "mst-geo"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [str(script), "train", "--config", str(SMOKE), "--data-root", str(iseg_root),
         "--devices", "2", "--accelerator", "cpu", "--max-steps", "4", "--set", "trainer.strategy=ddp",
         "--set", "trainer.val_every_steps=2", "--set", "data.max_images=8", "--set", "data.val_fraction=0.3",
         "--out", str(tmp_path / "ddp")], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    card = load_checkpoint(tmp_path / "ddp" / "model.safetensors")[1]["training"]
    assert card["steps"] == 4 and card["samples_seen"] == 4 * 4 * 2
    assert card["hardware"].startswith("2 process")


def test_max_minutes_stops_early_and_still_exports(tmp_path, iseg_root):
    """A lent-GPU slice ends by wall time, not by step count, and must still leave the weights."""
    torch.set_num_threads(1)
    exported = train(smoke_config(tmp_path, iseg_root, **{"trainer.max_steps": 10_000,
                                                          "trainer.max_minutes": 0.02,
                                                          "trainer.val_every_steps": 0}))
    steps = load_checkpoint(exported)[1]["training"]["steps"]
    assert 0 < steps < 10_000


def test_click_threads_place_the_same_correction_clicks(tmp_path, iseg_root):
    """The no-grad rounds' clicks do not depend on how many threads place them (GPU runs use
    several), the batch's own clicks are kept and not written into, and the module still pickles
    (spawned DDP) until its thread pool is first used."""
    torch.set_num_threads(1)
    config = smoke_config(tmp_path, iseg_root, **{"data.workers": 0})
    data = ClickDataModule(config)
    data.setup("fit")
    batch = torch.utils.data.default_collate([data.train_set[i] for i in range(8)])
    torch.manual_seed(0)
    model = build_model(config)
    start = torch.cat([batch["clicks"], torch.full((8, 2, 3), -1.0)], 1)
    before = start.clone()
    placed = []
    for threads in (1, 3, 3):
        config.trainer.click_threads = threads
        module = ClickTrainingModule(model, config)
        pickle.dumps(module)
        clicks, _ = module.add_error_clicks(batch["image"].float() / 255, batch["target"],
                                            batch["ignore"], start, rounds=2,
                                            rng=np.random.default_rng(5))
        placed.append(clicks)
    assert torch.equal(start, before)
    assert torch.equal(placed[0], placed[1]) and torch.equal(placed[0], placed[2])
    given = start[:, :, 2] >= 0
    assert torch.equal(placed[0][given], start[given])
    assert (placed[0][:, :, 2] >= 0).sum() - given.sum() >= 12  # most samples got a click a round
