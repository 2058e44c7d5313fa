"""scripts/ship_model.py: the packaged fp16 file, its digest and the bench table in its card."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from mst_geo.model.checkpoint import load_checkpoint, read_card, weights_digest

REPO = Path(__file__).parents[1]


def test_ship_model_records_the_bench_with_variants_apart_from_baselines(cli, tiny_checkpoint, iseg_root, tmp_path):
    bench = tmp_path / "bench"
    common = ["--datasets", "GrabCut", "--limit", "1", "--max-clicks", "2", "--data-root", iseg_root,
              "--out", bench]
    assert cli("bench", "noc", "--model", f"{tiny_checkpoint},grabcut", *common)[0] == 0
    assert cli("bench", "noc", "--model", tiny_checkpoint, "--flip", *common)[0] == 0
    assert cli("bench", "report", bench)[0] == 0
    shipped = tmp_path / "shipped.safetensors"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "ship_model.py"), str(tiny_checkpoint),
                           "--bench", str(bench), "--method", tiny_checkpoint.stem, "--out", str(shipped),
                           "--inference-size", "96", "--first-click-passes", "2", "--flip"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    card = read_card(shipped)
    metrics = card["metrics"]
    assert set(metrics["noc"]) == {"GrabCut"} and metrics["noc"]["GrabCut"]["n"] == 1
    assert set(metrics["noc_variants"]) == {f"{tiny_checkpoint.stem} (flip)"}
    assert set(metrics["baselines"]) == {"grabcut"}
    model, _ = load_checkpoint(shipped)
    assert model.config.inference_size == 96 and model.config.first_click_passes == 2 and model.config.flip is True
    stored = load_file(str(shipped))
    assert card["weights_dtype"] == "float16"
    assert all(t.dtype == torch.float16 for t in stored.values() if t.is_floating_point())
    assert card["weights_sha256"] == weights_digest(stored)


def test_ship_model_refuses_settings_the_config_cannot_hold(tiny_checkpoint, tmp_path):
    """A side that is no multiple of the patch, or no first-click pass: one line, no file written."""
    shipped = tmp_path / "shipped.safetensors"
    for option, value, message in (("--inference-size", "90", "inference_size 90 is not a positive multiple of "
                                     "patch_size 16"), ("--first-click-passes", "0", "first_click_passes must be a "
                                                        "whole number of at least 1, got 0")):
        done = subprocess.run([sys.executable, str(REPO / "scripts" / "ship_model.py"), str(tiny_checkpoint),
                               "--out", str(shipped), option, value], capture_output=True, text=True, timeout=600)
        assert done.returncode != 0 and done.stderr.strip() == f"ship_model.py: {message}"
        assert not shipped.exists()
