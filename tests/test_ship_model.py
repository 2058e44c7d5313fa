"""scripts/ship_model.py: the packaged fp16 file, its digest and the bench table in its card."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mst_geo.model.checkpoint import load_checkpoint, read_card, weights_digest

REPO = Path(__file__).parents[1]


def mst_geo(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "mst_geo", *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]


def test_ship_model_records_the_bench_with_variants_apart_from_baselines(tiny_checkpoint, iseg_root, tmp_path):
    bench = tmp_path / "bench"
    common = ["--datasets", "GrabCut", "--limit", "1", "--max-clicks", "2", "--data-root", str(iseg_root),
              "--out", str(bench)]
    mst_geo("bench", "noc", "--model", f"{tiny_checkpoint},grabcut", *common)
    mst_geo("bench", "noc", "--model", str(tiny_checkpoint), "--flip", *common)
    mst_geo("bench", "report", str(bench))
    shipped = tmp_path / "shipped.safetensors"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "ship_model.py"), str(tiny_checkpoint),
                           "--bench", str(bench), "--method", tiny_checkpoint.stem, "--out", str(shipped),
                           "--inference-size", "96"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    card = read_card(shipped)
    metrics = card["metrics"]
    assert set(metrics["noc"]) == {"GrabCut"} and metrics["noc"]["GrabCut"]["n"] == 1
    assert set(metrics["noc_variants"]) == {f"{tiny_checkpoint.stem} (flip)"}
    assert set(metrics["baselines"]) == {"grabcut"}
    model, _ = load_checkpoint(shipped)
    assert model.config.inference_size == 96
    assert card["weights_dtype"] == "float16"
    half = {name: t.half() if t.is_floating_point() else t for name, t in model.state_dict().items()}
    assert card["weights_sha256"] == weights_digest(half)
