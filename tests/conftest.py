"""Shared fixtures: the real data under ../shared/data (never copied into the repo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# ../shared/data beside the checkout, or a copy elsewhere (a GPU machine's scratch folder)
SHARED_DATA = Path(os.environ.get("MST_GEO_SHARED_DATA") or Path(__file__).parents[1].parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the shared real data (iseg/ benchmarks, rs/ scenes)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def iseg_root(shared_data: Path) -> Path:
    """The RITM-layout interactive segmentation datasets (GrabCut, Berkeley, ...)."""
    return shared_data / "iseg"


EXAMPLE_SCENE = Path(__file__).parents[1] / "examples" / "naip_scene.tif"


@pytest.fixture(scope="session")
def naip_scene() -> Path:
    """The bundled real NAIP scene: 4 bands R,G,B,NIR uint8, 934x723 px at 5 m, EPSG:26914, nodata 0."""
    return EXAMPLE_SCENE


@pytest.fixture
def write_geotiff(tmp_path: Path):
    """Writes a real GeoTIFF (bands-first array) under tmp_path; profile keys override the defaults."""
    import rasterio

    def write(name: str, data, crs="EPSG:26914", transform=None, **profile) -> Path:
        from affine import Affine

        path = tmp_path / name
        options = dict(driver="GTiff", count=data.shape[0], height=data.shape[1], width=data.shape[2],
                       dtype=data.dtype, crs=crs, transform=transform or Affine(5.0, 0, 485899.0, 0, -5.0, 5209246.0))
        options.update(profile)
        with rasterio.open(path, "w", **options) as dst:
            dst.write(data)
        return path

    return write


def _random_tiny_checkpoint(folder: Path, seed: int) -> Path:
    """The tiny test architecture (2 narrow blocks, 128 px input) with random weights from ``seed``."""
    import torch

    from mst_geo.model import create_model, save_checkpoint

    torch.manual_seed(seed)
    model = create_model("mst_tiny", depth=2, embed_dim=96, num_heads=2, head_dim=32, input_size=128)
    path = folder / f"mst_tiny_seed{seed}.safetensors"
    return save_checkpoint(model, path, {"training": f"none: random weights (seed {seed}) for tests"})


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small random MST checkpoint for pipeline mechanics (its masks may be empty)."""
    return _random_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints"), seed=0)


@pytest.fixture(scope="session")
def local_checkpoint(tmp_path_factory) -> Path:
    """The tiny architecture with seed 3: random weights whose masks for every example object
    (and for two-object click sets on the multi-band layouts) are non-empty and local, in
    disjoint windows, so each object's pixels on a --mask-out grid are its own. (The
    tiny_checkpoint gives empty pond and farm-building masks; app_checkpoint grows most example
    objects to the whole scene, where they overlap.) Tests using it assert non-empty masks."""
    return _random_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints"), seed=3)


@pytest.fixture(scope="session")
def app_checkpoint(tmp_path_factory, naip_scene: Path) -> Path:
    """A small random MST (224 px input) whose one-click mask on a NAIP pond is a local polygon.

    Random weights give a near-constant probability, so some seeds predict nothing and others
    the whole scene (slow: the window grows to the scene); the app's tests need a polygon to
    draw, save and compare, so take the first seed whose mask is neither.
    """
    import torch

    from mst_geo.api import Segmenter
    from mst_geo.model import create_model, save_checkpoint

    folder = tmp_path_factory.mktemp("app_checkpoints")
    for seed in range(20):
        torch.manual_seed(seed)
        model = create_model("mst_tiny", depth=2, input_size=224)
        card = {"training": f"none: random weights (seed {seed}) for tests"}
        path = save_checkpoint(model, folder / f"mst_tiny_seed{seed}.safetensors", card)
        with Segmenter(naip_scene, model=path) as segmenter:
            pond = segmenter.add_click(*(segmenter.transform * (364.5, 351.5)))
            result = segmenter.mask(pond)
            if result.mask.any() and result.window.width < segmenter.width:
                return path
    raise RuntimeError("no random seed in 0..19 gives a local mask on the NAIP pond")


@pytest.fixture
def serve_file():
    """Serves files over HTTP with range requests (``range_server.py``, a process of its own): URL of each."""
    servers = []

    def serve(path: Path) -> str:
        server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("range_server.py")), str(path)],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        servers.append(server)
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), f"range_server.py did not start: {url!r}"
        return url

    yield serve
    for server in servers:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``mst-geo ARGS`` in-process through the console-script entry point; returns
    (exit code, stdout, stderr)."""
    from mst_geo.cli import main

    def run(*args) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["mst-geo", *map(str, args)])
        capsys.readouterr()  # drop what the test's own set-up printed (e.g. rasterio warnings)
        with pytest.raises(SystemExit) as exit_info:
            main()
        captured = capsys.readouterr()
        return exit_info.value.code or 0, captured.out, captured.err

    return run


@pytest.fixture()
def full_disk(tmp_path: Path):
    """A folder on a 64 KiB tmpfs, full once a few files are written (skipped where mounting is
    not allowed: it needs root or CAP_SYS_ADMIN)."""
    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def open_handles():
    """How many file descriptors of this process point at a path (Linux /proc; skips elsewhere)."""
    folder = Path("/proc/self/fd")
    if not folder.is_dir():
        pytest.skip("counts file descriptors through /proc")

    def count(path: Path) -> int:
        total = 0
        for fd in folder.iterdir():
            try:
                total += Path(fd.readlink()) == Path(path).resolve()
            except OSError:
                continue
        return total

    return count


SMOKE_RECIPE = Path(__file__).parents[1] / "configs" / "train" / "smoke.yaml"


@pytest.fixture(scope="session")
def tiny_model():
    """Builds the smoke recipe's tiny MST (64 wide, 2 blocks, 96 px; keyword arguments override
    its config): fast networks for the weights and training tests, one definition for all."""
    from mst_geo.model import create_model
    from mst_geo.train.config import load_train_config

    recipe = load_train_config(SMOKE_RECIPE).model

    def build(**overrides):
        return create_model(recipe.preset, **{**recipe.overrides, **overrides})

    return build
