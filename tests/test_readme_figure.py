"""scripts/make_readme_figure.py draws the example scene, its clicks and the segmented objects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).parents[1]


def test_figure_shows_the_scene_and_every_click(tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "img" / "result.png"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "make_readme_figure.py"),
                           "--model", str(tiny_checkpoint), "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(out)
    picture = Image.open(out)
    assert picture.mode == "P" and picture.width > picture.height > 400  # palette PNG, overview + zooms
    pixels = np.asarray(picture.convert("RGB")).reshape(-1, 3).astype(int)
    lime = np.all(np.abs(pixels - (0, 255, 0)) < 40, axis=1).sum()
    red = np.all(np.abs(pixels - (255, 0, 0)) < 40, axis=1).sum()
    assert lime > 200 and red > 100  # the positive and negative click markers survive the palette
    assert not list(out.parent.glob(".*"))  # no temp file left
