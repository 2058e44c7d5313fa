"""The analyst notebooks run top to bottom on the bundled example, the shipped model and the real
GrabCut images, and are committed without outputs.

Each notebook runs in a fresh ``python3`` kernel (ipykernel of this interpreter) with a temporary
working directory, so the files it writes land there and are checked here. The notebooks' own
parameters cells keep them small; only a few tests edit one (a clicks file, more steps). ``MSTGEO_MODEL`` (read by the notebooks)
picks another checkpoint than the shipped default.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import nbformat
import pytest
import rasterio
from nbclient import NotebookClient

from mst_geo.bench.methods import method_label
from mst_geo.model import read_card

REPO = Path(__file__).parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
STRIP_SCRIPT = REPO / "scripts" / "strip_notebook_outputs.py"
CELL_TIMEOUT_S = 900
MODEL_VARIABLE = "MSTGEO_MODEL"


def model_label() -> str:
    """The bench's name for the model the notebooks use."""
    return method_label(os.environ.get(MODEL_VARIABLE, "default"))


def execute(name: str, cwd: Path, parameter: tuple[str, str] | None = None) -> nbformat.NotebookNode:
    """Run every cell of ``notebooks/<name>`` in ``cwd``; any cell error fails with its traceback.
    ``parameter``: (old, new) text of a line of its parameters cell, as an analyst edits it.

    The executed notebook (up to the failing cell) is saved in ``cwd`` to look at its figures.
    """
    notebook = nbformat.read(REPO / "notebooks" / name, as_version=4)
    if parameter is not None:
        cell = next(cell for cell in notebook.cells if cell.cell_type == "code")
        assert parameter[0] in cell.source
        cell.source = cell.source.replace(*parameter)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()
    finally:
        nbformat.write(notebook, cwd / name)
    return notebook


def images(notebook: nbformat.NotebookNode) -> int:
    """How many PNG figures the executed notebook displayed."""
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells
               for output in cell.get("outputs", []))


def printed(notebook: nbformat.NotebookNode) -> str:
    """Everything the notebook printed to stdout."""
    return "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
                   if output.get("name") == "stdout")


def warnings_shown(notebook: nbformat.NotebookNode) -> list[str]:
    """The Python warnings the executed notebook showed an analyst (stderr lines naming one)."""
    stderr = "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
                     if output.get("name") == "stderr")
    return [line for line in stderr.splitlines() if "Warning:" in line]


def test_segment_scene_notebook_saves_polygons_in_the_scene_crs(tmp_path: Path):
    notebook = execute("01_segment_scene.ipynb", tmp_path)

    out = tmp_path / "outputs" / "01_segment_scene"
    polygons = gpd.read_file(out / "objects.gpkg")
    with rasterio.open(REPO / "examples" / "naip_scene.tif") as scene:
        assert polygons.crs == scene.crs
        scene_box = scene.bounds
    assert list(polygons["n_clicks"]) == [3, 1]  # the pond (2 positive + 1 negative), the field
    assert (polygons["area_m2"] > 0).all() and polygons.geometry.is_valid.all()
    left, bottom, right, top = polygons.total_bounds
    assert scene_box.left <= left and right <= scene_box.right and scene_box.bottom <= bottom and top <= scene_box.top
    assert (out / "clicks.geojson").is_file()
    assert images(notebook) >= 5  # the scene, then the objects after each step
    assert "Interactive clicking is off" in printed(notebook)
    assert warnings_shown(notebook) == []
    if model_label() == method_label("default"):  # the text says the negative click removes the leak
        leak = re.search(r"leak ([\d.]+) % -> ([\d.]+) %", printed(notebook))
        assert leak, printed(notebook)
        before, after = map(float, leak.groups())
        assert before > 0.5 and after < 0.1 * before


def test_segment_scene_notebook_segments_a_clicks_file_instead_of_the_guided_clicks(tmp_path: Path):
    """CLICKS set in the parameters cell: every object of the file, the guided clicks skipped."""
    clicks = REPO / "examples" / "clicks.geojson"
    notebook = execute("01_segment_scene.ipynb", tmp_path, ("CLICKS = None ", f"CLICKS = {str(clicks)!r} "))
    polygons = gpd.read_file(tmp_path / "outputs" / "01_segment_scene" / "objects.gpkg")
    written = json.loads(clicks.read_text())["features"]
    assert sorted(polygons["object"]) == sorted({feature["properties"]["object"] for feature in written})
    assert polygons["n_clicks"].sum() == len(written)
    assert "leak " not in printed(notebook)  # the guided negative click did not run
    assert warnings_shown(notebook) == []


def test_benchmark_notebook_reports_the_model_beside_the_baselines(tmp_path: Path):
    notebook = execute("02_benchmark.ipynb", tmp_path)

    out = tmp_path / "outputs" / "02_benchmark"
    report = json.loads((out / "results.json").read_text())
    methods = report["results"]
    assert set(methods) == {model_label(), "grabcut", "watershed", "disk"}
    for per_dataset in methods.values():
        summary = per_dataset["GrabCut"]
        assert summary["n"] == 2 and len(summary["miou"]) == 5  # the notebook's INSTANCES and MAX_CLICKS
        assert all(0.0 <= iou <= 1.0 for iou in summary["miou"])
    rows = [json.loads(line) for line in (out / "instances.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 4 and all(len(row["clicks"]) == 5 for row in rows)
    assert images(notebook) >= 3  # the mIoU curves and the two hardest instances
    assert warnings_shown(notebook) == []  # e.g. tqdm's "IProgress not found" without ipywidgets


def test_finetune_notebook_trains_on_the_scene_and_compares_held_out_ponds(tmp_path: Path):
    notebook = execute("03_finetune_on_your_scene.ipynb", tmp_path)

    out = tmp_path / "outputs" / "03_finetune"
    card = read_card(out / "run" / "model.safetensors")
    assert card["training"]["steps"] == 15 and card["training"]["init"] == os.environ.get(MODEL_VARIABLE, "default")
    assert card["training"]["recipe"]["data"]["scene"].endswith("naip_scene.tif")
    for stage, folder in (("before", "noc_before"), ("after", "noc_after_15_steps")):  # more STEPS: another folder
        rows = [json.loads(line) for line in (out / folder / "instances.jsonl").read_text().splitlines()]
        assert sorted(row["name"] for row in rows) == ["pond 40", "pond 56", "pond 8", "pond 90"]
        assert all(row["method"] == stage and len(row["ious"]) == 5 for row in rows)
    text = printed(notebook)
    assert "before {" in text and "after {" in text  # one-click IoU per held-out pond, both models
    assert images(notebook) >= 3
    assert warnings_shown(notebook) == []

    # run again with more steps, as the text offers: the run continues from its last checkpoint
    # (the labels cell writes its GeoPackages again, with other bytes and the same polygons)
    execute("03_finetune_on_your_scene.ipynb", tmp_path, ("STEPS = 15 ", "STEPS = 18 "))
    training = read_card(out / "run" / "model.safetensors")["training"]
    assert training["steps"] == 18 and training["resumed_from"].endswith(".ckpt")
    assert (out / "noc_after_18_steps" / "instances.jsonl").is_file()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path: Path, tmp_path: Path):
    """git's copy (the index) and the working copy hold no outputs or execution counts."""
    copies = [path]
    tracked = subprocess.run(["git", "show", f":{path.relative_to(REPO).as_posix()}"], cwd=REPO,
                             capture_output=True, text=True)
    if tracked.returncode == 0:
        copies.append(tmp_path / f"index_{path.name}")
        copies[-1].write_text(tracked.stdout)
    check = subprocess.run([sys.executable, str(STRIP_SCRIPT), "--check", *map(str, copies)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
