"""End-to-end training on a handful of real COCO_MVal instances (tiny MST, 96 px, CPU)."""

from __future__ import annotations

import contextlib
import csv
import inspect
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from mst_geo.cli import main
from mst_geo.clicks.predictor import Predictor
from mst_geo.clicks.session import evaluate_instance
from mst_geo.errors import MSTGeoError, MSTGeoWarning
from mst_geo.model import MSTLoss, load_checkpoint, save_checkpoint
from mst_geo.model.checkpoint import resolve_model
from mst_geo.train.config import load_train_config
from mst_geo.data.instance import Instance
from mst_geo.train.datamodule import ClickDataModule, RankShare, first_item
from mst_geo.train.module import ClickTrainingModule, keep_first_clicks_bare
from mst_geo.train.run import build_model, build_trainer, check_resumable, train, warn_if_waiting_for_nodes

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
    import cv2

    cv2.setNumThreads(2)
    exported = train(config, callbacks=[recorder])
    recorder.opencv_threads_after = cv2.getNumThreads()
    return config, initial, exported, recorder


def test_twenty_steps_lower_the_loss_and_write_a_checkpoint(full_run):
    config, initial, exported, recorder = full_run
    assert recorder.opencv_threads_after == 2  # one OpenCV thread during the run, the caller's after it
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
    held_out = card["metrics"]["held_out"]  # best.ckpt's selection: the NoC, ties broken by the IoU curve
    step = 1 / config.trainer.val_instances  # one instance's NoC step, which the tie-break stays under
    assert held_out["step"] == 20  # which validation these are (an interrupted one is not rerun)
    assert held_out["val/noc85"] - step / 2 <= held_out["val/select"] <= held_out["val/noc85"]
    assert held_out["val/select"] < held_out["val/noc85"] or held_out["val/miou@1"] == 0
    assert (Path(config.out) / "checkpoints" / "last.ckpt").is_symlink()  # a link to the final step, not a copy
    assert (Path(config.out) / "checkpoints" / "best.ckpt").is_file()  # lowest held-out NoC
    assert (Path(config.out) / "logs").is_dir()


def test_resume_continues_with_the_same_next_batch(full_run, tmp_path, iseg_root, caplog):
    _, _, _, reference = full_run
    first = BatchRecorder()
    train(smoke_config(tmp_path, iseg_root, **{"trainer.max_steps": 10,
                                               "trainer.checkpoint_every_minutes": 1e-4}),
          callbacks=[first])
    assert (tmp_path / "checkpoints" / "timed.ckpt").is_file()  # the every-M-minutes checkpoint
    with pytest.raises(MSTGeoError, match="already holds checkpoints"):
        train(smoke_config(tmp_path, iseg_root))
    resumed = BatchRecorder()
    with warnings.catch_warnings(record=True) as warned, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        exported = train(smoke_config(tmp_path, iseg_root), resume="auto", callbacks=[resumed])
    said = [str(w.message) for w in warned] + [record.getMessage() for record in caplog.records]
    assert not [line for line in said if "exists and is not empty" in line], said
    assert resumed.first_step == 10
    assert resumed.seen == {s: reference.seen[s] for s in range(10, 20)}
    card = load_checkpoint(exported)[1]["training"]
    assert card["steps"] == 20 and card["samples_seen"] == 80
    assert card["resumed_from"].endswith(".ckpt")
    every_minutes = smoke_config(tmp_path, iseg_root).trainer.checkpoint_every_minutes
    extended_at_10 = {"step": 10, "changed": {"trainer.checkpoint_every_minutes": [1e-4, every_minutes],
                                              "trainer.max_steps": [10, 20]}}
    assert card["resume_changes"] == [extended_at_10]  # the card's recipe is the last one: it says what changed
    # exact: the same weights as 20 uninterrupted steps (the top-k noise is seeded by the step)
    ours, theirs = load_checkpoint(exported)[0].state_dict(), load_checkpoint(full_run[2])[0].state_dict()
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)
    # the finished step is the run's last checkpoint: extending the run starts at step 20
    checkpoints = tmp_path / "checkpoints"
    assert (checkpoints / "last.ckpt").resolve().name == "step0000020.ckpt"
    assert sorted(p.name for p in checkpoints.glob("step*.ckpt")) == ["step0000020.ckpt"]
    # resuming at --max-steps exports that checkpoint's weights (a run interrupted in its final
    # validation, or another checkpoint to export); before it is refused
    exported.rename(tmp_path / "first.safetensors")
    again = train(smoke_config(tmp_path, iseg_root), resume="auto")
    assert load_checkpoint(again)[1]["training"]["steps"] == 20
    ours = load_checkpoint(again)[0].state_dict()
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)
    with pytest.raises(MSTGeoError, match="already at step 20, past --max-steps 19; .* set it to 20 to export"):
        train(smoke_config(tmp_path, iseg_root, **{"trainer.max_steps": 19}), resume="auto")
    # extended at another resolution: each resume that changed the recipe is kept, a plain one adds nothing
    extended = train(smoke_config(tmp_path, iseg_root, **{"trainer.max_steps": 22, "data.crop_size": 128}), resume="auto")
    assert load_checkpoint(extended)[1]["training"]["resume_changes"] == [
        extended_at_10, {"step": 20, "changed": {"data.crop_size": [96, 128], "trainer.max_steps": [20, 22]}}]


def test_a_bad_resume_is_refused_before_training(full_run, tmp_path, iseg_root):
    """Resuming with another network (here: narrower), from a file that is no checkpoint or from
    nowhere stops with one line before anything runs: the run folder is left as it was."""
    config, _, _, _ = full_run
    run = Path(config.out)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    narrower = {**config.model.overrides, "embed_dim": 32}  # the run's network, 32 wide instead of 64
    other = smoke_config(tmp_path / "other", iseg_root, **{"model.overrides": narrower, "trainer.max_steps": 30})
    with pytest.raises(MSTGeoError, match="holds another network than this recipe builds"):
        train(other, resume=str(run))
    other_data = smoke_config(tmp_path / "data", iseg_root, **{"data.datasets": ["DUTS_TR"], "trainer.max_steps": 30})
    with pytest.raises(MSTGeoError, match="the run trained on the datasets COCO_MVal, this command names the "
                                          "datasets DUTS_TR; resume with the same data"):
        train(other_data, resume=str(run))
    wider_split = smoke_config(tmp_path / "split", iseg_root, **{"data.val_fraction": 0.5, "trainer.max_steps": 30})
    with pytest.raises(MSTGeoError, match=r"names the datasets COCO_MVal \(data.val_fraction 0.3 -> 0.5\); resume"):
        train(wider_split, resume=str(run))  # images trained on so far would be held out, or the reverse
    more_images = smoke_config(tmp_path / "more", iseg_root, **{"data.max_images": 12, "trainer.max_steps": 30})
    with pytest.raises(MSTGeoError, match=r"\(data.max_images 8 -> 12\)"):
        train(more_images, resume=str(run))
    deeper = smoke_config(tmp_path / "deeper", iseg_root, **{"model.overrides": {**config.model.overrides, "depth": 3},
                                                           "trainer.max_steps": 30})
    with pytest.raises(MSTGeoError, match=r"holds another network .* weights missing, extra or of another shape"):
        train(deeper, resume=str(run))  # the checkpoint lacks a block: missing
    shallower_run = smoke_config(tmp_path / "shallow", iseg_root, **{"model.overrides": {**config.model.overrides, "depth": 1},
                                                                    "trainer.max_steps": 30})
    with pytest.raises(MSTGeoError, match=r"holds another network .* e.g. model.backbone.blocks.1"):
        train(shallower_run, resume=str(run))  # the checkpoint has a block more: extra, not a traceback
    started = save_checkpoint(build_model(config), tmp_path / "start.safetensors")
    other_start = smoke_config(tmp_path / "start", iseg_root, **{"model.init": str(started), "trainer.max_steps": 30})
    with pytest.raises(MSTGeoError, match=r"the run started from other weights \(model.init None -> .*start.safetensors\)"):
        train(other_start, resume=str(run))  # the card would record a lineage the weights never had
    other_lr = smoke_config(tmp_path / "lr", iseg_root, **{"optim.lr": config.optim.lr / 10, "trainer.max_steps": 30})
    with pytest.raises(MSTGeoError, match=f"the run's optimiser settings differ \\(optim.lr {config.optim.lr} -> "):
        train(other_lr, resume=str(run))
    batch = config.trainer.batch_size
    larger_batch = smoke_config(tmp_path / "batch", iseg_root, **{"trainer.batch_size": batch * 2, "trainer.max_steps": 30})
    with pytest.raises(MSTGeoError, match=f"the run took {batch} samples a step \\(batch size {batch} x 1 process\\(es\\)\\), "
                                          f"this command {batch * 2} "):
        train(larger_batch, resume=str(run))  # samples would be replayed and the LR drops moved
    by_path = smoke_config(tmp_path / "path", iseg_root, **{"data.datasets": [str(iseg_root / "COCO_MVal")],
                                                            "trainer.max_steps": 30})
    step = next((run / "checkpoints").glob("step*.ckpt"))
    check_resumable(step, ClickTrainingModule(build_model(by_path), by_path), 30, 1)  # the set by its path: the same set
    older = torch.load(step, weights_only=False)  # as checkpoints wrote it before: the set as given, fewer settings
    older["mst_geo"]["data"] = {"datasets": [str(iseg_root / "COCO_MVal")]}
    del older["mst_geo"]["optim"]["warmup_steps"], older["mst_geo"]["batch"]
    torch.save(older, tmp_path / "older.ckpt")
    check_resumable(tmp_path / "older.ckpt", ClickTrainingModule(build_model(config), config), 30, 1)
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    cut = tmp_path / "cut.ckpt"  # a copy that ran out of disk
    cut.write_bytes(next((run / "checkpoints").glob("step*.ckpt")).read_bytes()[:61440])
    junk_weights = tmp_path / "junk.safetensors"
    junk_weights.write_bytes(b"\xff" * 64)
    for resume, message in ((junk, "not a Lightning checkpoint"), (cut, "not a Lightning checkpoint"),
                            (run / "model.safetensors", "takes a training checkpoint .* start a new run with --init"),
                            (junk_weights, "takes a training checkpoint"),
                            (tmp_path / "nowhere.ckpt", "nowhere.ckpt: --resume: not found")):
        with pytest.raises(MSTGeoError, match=message):
            train(smoke_config(tmp_path / "again", iseg_root, **{"trainer.max_steps": 30}), resume=str(resume))
    with pytest.raises(MSTGeoError, match="fresh: --resume auto: no run there yet \\(start it without --resume\\)"):
        train(smoke_config(tmp_path / "fresh", iseg_root), resume="auto")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    assert not list((tmp_path / "other").rglob("interrupted.ckpt"))


def test_resume_auto_passes_over_a_checkpoint_cut_short(full_run, tmp_path):
    """A kill while interrupted.ckpt was written leaves it cut short: --resume auto takes the
    checkpoint before it, with a warning, rather than refusing the run."""
    import os
    import shutil

    from mst_geo.train.run import find_resume_checkpoint

    config, _, _, _ = full_run
    good = next((Path(config.out) / "checkpoints").glob("step*.ckpt"))
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    shutil.copy(good, folder / good.name)
    (folder / "interrupted.ckpt").write_bytes(good.read_bytes()[:61440])
    os.utime(folder / good.name, (1, 1))  # older than the cut one
    with pytest.warns(MSTGeoWarning, match="interrupted.ckpt: --resume: not a Lightning checkpoint .*older checkpoint"):
        assert find_resume_checkpoint("auto", tmp_path / "run") == folder / good.name
    (folder / "last.ckpt").symlink_to("step9999999.ckpt")  # a link to a step checkpoint deleted since
    with pytest.warns(MSTGeoWarning, match="interrupted.ckpt"):
        assert find_resume_checkpoint("auto", tmp_path / "run") == folder / good.name


def test_benchmark_sets_are_never_training_data(tmp_path, iseg_root):
    for datasets in (["GrabCut"], ["COCO_MVal", "berkeley"]):
        with pytest.raises(MSTGeoError, match="benchmark set"):
            train(smoke_config(tmp_path, iseg_root, **{"data.datasets": datasets}))


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
    """Lightning DDP with gloo on the CPU: two processes split the batches of each step, and the
    held-out scores (3 objects on 2 ranks) count each object once."""
    script = Path(sys.executable).parent / "mst-geo"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    settings = {"trainer.val_every_steps": 2, "trainer.val_instances": 3, "data.max_images": 12,
                "data.val_fraction": 0.3}
    result = subprocess.run(
        [str(script), "train", "--config", str(SMOKE), "--data-root", str(iseg_root),
         "--devices", "2", "--accelerator", "cpu", "--max-steps", "4", "--set", "trainer.strategy=ddp",
         *[f"--set={key}={value}" for key, value in settings.items()],
         "--out", str(tmp_path / "ddp")], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    model, card = load_checkpoint(tmp_path / "ddp" / "model.safetensors")
    training = card["training"]
    assert training["steps"] == 4 and training["samples_seen"] == 4 * 4 * 2
    assert training["hardware"].startswith("2 process")
    assert result.stdout.count("model written to") == 1  # not once per process

    logged = [row["val/noc85"] for row in csv.DictReader(open(next((tmp_path / "ddp").rglob("metrics.csv"))))
              if row.get("val/noc85")]
    assert len(logged) == 2  # steps 2 and 4: the rank holding one object and a padding step synced with the other


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_ddp_run_stopped_by_a_scheduler_saves_and_resumes(tmp_path, iseg_root, stop, code):
    """SIGTERM (a scheduler's stop) or Ctrl-C to every process of a 2-process run: raised wherever
    each rank was, they left the ranks in mismatched collectives (exit 1 or a hang); now the run
    exits 143 (130) with interrupted.ckpt and one hint line, and --resume auto continues from there."""
    script = Path(sys.executable).parent / "mst-geo"
    out = tmp_path / "ddp"
    command = [str(script), "train", "--config", str(SMOKE), "--data-root", str(iseg_root), "--devices", "2",
               "--accelerator", "cpu", "--set", "trainer.strategy=ddp", "--set", "trainer.checkpoint_every_steps=5",
               "--set", "trainer.val_every_steps=0", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.Popen([*command, "--max-steps", "100000"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + 240
    while not list((out / "checkpoints").glob("step*.ckpt")) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.5)
    os.killpg(run.pid, stop)
    try:
        _, stderr = run.communicate(timeout=120)
    finally:  # a hung rank must not outlive the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == code, stderr[-3000:]
    assert (out / "checkpoints" / "interrupted.ckpt").is_file()
    assert stderr.count("interrupted: continue with --resume auto") == 1
    assert "weights_only" not in stderr  # Lightning's note on a default it took: nothing for the user
    step = int(torch.load(out / "checkpoints" / "interrupted.ckpt", weights_only=False, mmap=True)["global_step"])
    resumed = subprocess.run([*command, "--max-steps", str(step + 2), "--resume", "auto"], capture_output=True,
                             text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(out / "model.safetensors")[1]["training"]["steps"] == step + 2


def test_ranks_score_each_held_out_object_once(tmp_path, iseg_root):
    """3 held-out objects on 2 ranks: rank 0 scores objects 0 and 2, rank 1 object 1 and a padding
    step that weighs nothing (a DistributedSampler gave rank 1 object 0 again)."""
    settings = {"trainer.val_instances": 3, "data.max_images": 12, "data.val_fraction": 0.3}
    config = smoke_config(tmp_path / "run", iseg_root, **settings)
    data = ClickDataModule(config)
    data.setup("fit")
    shares = [RankShare(data.val_set, rank, 2) for rank in (0, 1)]
    assert [share.indices for share in shares] == [[0, 2], [1, None]]
    model, _ = resolve_model("default")  # trained weights: IoUs that differ between objects
    module = ClickTrainingModule(model, config)
    first_ious = [evaluate_instance(Predictor(model), data.val_set[i], 3)[0][0] for i in range(3)]
    assert len(set(first_ious)) == 3
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    for share, objects in zip(shares, ([0, 2], [1]), strict=True):
        data.val_dataloader = lambda share=share: DataLoader(share, batch_size=1, collate_fn=first_item)
        trainer.validate(module, datamodule=data, verbose=False)  # its hook keeps instances on the host
        expected = np.mean([first_ious[i] for i in objects])
        assert float(trainer.callback_metrics["val/miou@1"]) == pytest.approx(expected, abs=1e-5)

    # an object with nothing to find (a held-out polygon over nodata) weighs nothing either
    real = data.val_set[1]
    blank = Instance(real.image, np.where(real.mask == 1, 255, real.mask).astype(np.uint8), "blank", "blank")
    data.val_dataloader = lambda: DataLoader([real, blank], batch_size=1, collate_fn=first_item)
    trainer.validate(module, datamodule=data, verbose=False)
    assert float(trainer.callback_metrics["val/miou@1"]) == pytest.approx(first_ious[1], abs=1e-5)


def test_several_nodes_without_a_launcher_say_how_to_start_them(tmp_path, iseg_root, monkeypatch):
    """--num-nodes 2 on a plain machine would wait at 127.0.0.1 in silence: it says what to set."""

    for name in ("NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    config = smoke_config(tmp_path / "run", iseg_root, **{"trainer.num_nodes": 2, "trainer.strategy": "ddp"})
    with pytest.warns(MSTGeoWarning, match=r"num_nodes is 2 .* wait as node 0 at 127\.0\.0\.1:\d+; .*NODE_RANK"):
        warn_if_waiting_for_nodes(build_trainer(config, tmp_path / "run"))

    monkeypatch.setenv("NODE_RANK", "0")  # 1 would make this process rank 2 for the tests after it
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MSTGeoWarning)
        warn_if_waiting_for_nodes(build_trainer(config, tmp_path / "run"))  # set up by hand: nothing to say
        warn_if_waiting_for_nodes(build_trainer(smoke_config(tmp_path / "one", iseg_root), tmp_path / "one"))


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


def test_held_out_objects_a_run_never_scores_are_said_at_the_callers_line(tmp_path, iseg_root):
    """A validation interval past the run's end scores nothing: said once, as a warning pointing
    at the caller's line (through Lightning's rank-zero wrapper)."""
    config = smoke_config(tmp_path, iseg_root, **{"trainer.max_steps": 5, "trainer.val_every_steps": 10})
    data = ClickDataModule(config)
    with pytest.warns(MSTGeoWarning, match=r"trainer.val_every_steps \(10\) is past --max-steps \(5\)") as notes:
        setup_line = inspect.currentframe().f_lineno + 1
        data.setup("fit")
    assert [(n.filename, n.lineno) for n in notes if n.category is MSTGeoWarning] == [(__file__, setup_line)]


def test_bare_first_clicks_skip_the_correction_rounds(tmp_path, iseg_root):
    """With clicks.bare_first_click, samples of one positive click reach the gradient pass with that
    click alone and an empty previous mask, while the other samples keep their correction clicks."""
    torch.set_num_threads(1)
    config = smoke_config(tmp_path, iseg_root, **{"data.workers": 0, "clicks.first_click_prob": 0.5,
                                                  "clicks.bare_first_click": True})
    data = ClickDataModule(config)
    data.setup("fit")
    batch = torch.utils.data.default_collate([data.train_set[i] for i in range(8)])
    module = ClickTrainingModule(build_model(config), config)
    start = torch.cat([batch["clicks"], torch.full((8, 2, 3), -1.0)], 1)
    corrected, after_rounds = module.add_error_clicks(batch["image"].float() / 255, batch["target"], batch["ignore"],
                                                      start, rounds=2, rng=np.random.default_rng(5))
    clicks, prev_mask, bare = keep_first_clicks_bare(start, corrected, after_rounds)
    assert 0 < int(bare.sum()) < 8  # the core-click samples, and RITM draws beside them
    assert torch.equal(clicks[bare], start[bare]) and not prev_mask[bare].any()
    assert torch.equal(clicks[~bare], corrected[~bare]) and torch.equal(prev_mask[~bare], after_rounds[~bare])
    assert not torch.equal(corrected[bare], start[bare])  # the rounds had added clicks to them too

    run = smoke_config(tmp_path / "run", iseg_root, **{"data.workers": 0, "clicks.first_click_prob": 0.5,
                                                       "clicks.bare_first_click": True, "trainer.max_steps": 3,
                                                       "trainer.val_every_steps": 0})
    train(run)  # the training step takes the option: it logs the share of bare samples
    logged = (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    assert "train/bare_first_click" in logged[0]


def test_a_run_without_held_out_objects_says_so(tmp_path, iseg_root):
    """Validation asked for, nothing held out (a handful of tiles or polygons): one warning, not
    just Lightning's note about an empty DataLoader and a card without metrics."""

    data = ClickDataModule(smoke_config(tmp_path, iseg_root, **{"data.val_fraction": 0.001}))
    with pytest.warns(MSTGeoWarning, match="no held-out object"):
        data.setup("fit")
    assert len(data.val_set) == 0 and len(data.train_set) > 0


def test_a_run_ending_before_its_first_validation_says_so(tmp_path, iseg_root):
    """--max-steps 5 with validation every 10 steps withholds objects it never scores: said once.
    The split itself does not depend on --max-steps, so extending the run keeps it."""

    short = ClickDataModule(smoke_config(tmp_path, iseg_root, **{"trainer.max_steps": 5}))
    with pytest.warns(MSTGeoWarning, match=r"val_every_steps \(10\) is past --max-steps \(5\): \d+ held-out"):
        short.setup("fit")
    longer = ClickDataModule(smoke_config(tmp_path, iseg_root, **{"trainer.max_steps": 50}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", MSTGeoWarning)
        longer.setup("fit")
    assert longer.val_set.picks == short.val_set.picks and len(longer.train_set) == len(short.train_set)


class RaiseAt(Callback):
    """Raises ``error`` at the start of step ``step``."""

    def __init__(self, step: int, error: BaseException):
        self.step, self.error = step, error

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise self.error


def logged_rows(run: Path) -> set[tuple[str, str, str]]:
    """(kind, step, value) of every training and validation row the run's CSV logs hold."""
    rows = set()
    for metrics in run.glob("logs/version_*/metrics.csv"):
        for row in csv.DictReader(metrics.open()):
            if row.get("train/samples_seen"):
                rows.add(("train", row["step"], row["train/samples_seen"]))
            if row.get("val/noc85"):
                rows.add(("val", row["step"], row["val/noc85"]))
    return rows


class RaiseInBackward(RaiseAt):
    """Raises ``error`` after step ``step``'s backward pass, before its optimiser step."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        pass

    def on_after_backward(self, trainer, module):
        if trainer.global_step == self.step:
            raise self.error


@pytest.mark.parametrize("interrupt", [RaiseAt, RaiseInBackward], ids=["before the step", "during backward"])
def test_a_run_resumed_after_ctrl_c_logs_and_validates_at_the_same_steps(full_run, tmp_path, iseg_root, interrupt):
    """Ctrl-C after a batch was fetched, before its step: Lightning restores its logging step and
    batch count one ahead (as for a save at a batch's end), so every metric was logged one step
    late and validation ran one batch early; the resumed run now logs what the uninterrupted one did.
    A Ctrl-C during backward (most of a step) counted the batch's samples twice: once before the
    interrupt and again when the resumed run took the step."""
    config, _, exported, _ = full_run
    with pytest.raises(KeyboardInterrupt):
        train(smoke_config(tmp_path, iseg_root), callbacks=[interrupt(7, KeyboardInterrupt())])
    saved = torch.load(tmp_path / "checkpoints" / "interrupted.ckpt", weights_only=False, map_location="cpu")
    assert (saved["global_step"], saved["mst_geo"]["samples_seen"]) == (7, 7 * 4)
    resumed = train(smoke_config(tmp_path, iseg_root), resume="auto")
    reference = logged_rows(Path(config.out))
    assert any(kind == "val" for kind, _, _ in reference)  # validations are compared too
    assert logged_rows(tmp_path) == reference
    assert load_checkpoint(resumed)[1]["training"]["samples_seen"] == load_checkpoint(exported)[1]["training"]["samples_seen"]
    assert load_checkpoint(resumed)[1]["metrics"]["held_out"]["step"] == load_checkpoint(exported)[1]["metrics"]["held_out"]["step"]


def test_only_an_interrupt_leaves_interrupted_ckpt(tmp_path, iseg_root):
    """Ctrl-C saves interrupted.ckpt to resume from; a run that fails saves nothing that
    --resume auto would pick over the good checkpoints."""
    with pytest.raises(RuntimeError, match="a bug"):
        train(smoke_config(tmp_path / "failed", iseg_root), callbacks=[RaiseAt(3, RuntimeError("a bug"))])
    assert not (tmp_path / "failed" / "checkpoints" / "interrupted.ckpt").exists()
    with pytest.raises(KeyboardInterrupt, match="at step 3"):
        train(smoke_config(tmp_path / "stopped", iseg_root), callbacks=[RaiseAt(3, KeyboardInterrupt())])
    assert (tmp_path / "stopped" / "checkpoints" / "interrupted.ckpt").is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again (a notebook's too)


def _children(parent: int) -> dict[int, int]:
    """The live child processes of ``parent`` and their process groups (from /proc: no psutil)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            children[int(stat.parent.name)] = int(fields[2])
    return children


def test_sigterm_to_the_process_group_saves_interrupted_ckpt(tmp_path, iseg_root):
    """A scheduler (Slurm's scancel, `timeout`) sends SIGTERM to every process of the job's group:
    the loader workers have left it, so the trainer saves interrupted.ckpt and exits 143 with the
    resume hint, instead of dying in a DataLoader error with nothing saved."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mst_geo", "train", "--config", str(SMOKE), "--data-root", str(iseg_root),
               "--out", str(out), "--max-steps", "100000", "--set", "data.workers=1", "--set", "data.max_images=8",
               "--set", "trainer.val_every_steps=0"]
    job = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        for _ in range(600):  # a loader worker is up, so Lightning's handlers are installed and steps run
            if job.poll() is not None or _children(job.pid):
                break
            subprocess.run(["sleep", "0.2"])
        assert job.poll() is None, job.stderr.read()
        for _ in range(100):  # the worker leaves the group in its init, a moment after its fork
            if job.pid not in _children(job.pid).values():
                break
            subprocess.run(["sleep", "0.1"])
        assert job.pid not in _children(job.pid).values()  # the loader worker left the job's group
        subprocess.run(["sleep", "2"])
        os.killpg(job.pid, signal.SIGTERM)  # as `timeout` and schedulers do: every process of the job's group
        _, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 143, err
    assert "Traceback" not in err and "interrupted:" in err.strip().splitlines()[-1], err
    assert (out / "checkpoints" / "interrupted.ckpt").is_file()


def test_set_reaches_keys_that_also_have_flags(tmp_path, iseg_root, monkeypatch, capsys):
    """`--set trainer.max_steps=2` counts when --max-steps is not given (a flag left out is no value)."""
    monkeypatch.setattr(sys, "argv", [
        "mst-geo", "train", "--config", str(SMOKE), "--data-root", str(iseg_root), "--out", str(tmp_path / "run"),
        "--set", "trainer.max_steps=2", "--set", "trainer.batch_size=2", "--set", "data.max_images=8"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    card = load_checkpoint(tmp_path / "run" / "model.safetensors")[1]["training"]
    assert card["steps"] == 2 and card["samples_seen"] == 4
