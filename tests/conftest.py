"""Shared fixtures: the real data under ../shared/data (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"


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


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small randomly initialised MST checkpoint (2 narrow blocks, 128 px input) for pipeline mechanics."""
    import torch

    from mst_geo.model import create_model, save_checkpoint

    torch.manual_seed(0)
    model = create_model("mst_tiny", depth=2, embed_dim=96, num_heads=2, head_dim=32, input_size=128)
    path = tmp_path_factory.mktemp("checkpoints") / "mst_tiny_random.safetensors"
    return save_checkpoint(model, path, {"training": "none: random weights for tests"})


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
