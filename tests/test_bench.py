"""The NoC bench: the shared loop on hand-made objects, the baselines on a real image, and
``mst-geo bench noc`` end to end on real GrabCut instances (files, ranges, resume, errors)."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mst_geo.bench.baselines import BASELINES, DiskBaseline, make_baseline
from mst_geo.bench.loop import ROWS_FILE, load_rows, run_noc
from mst_geo.clicks.session import clicks_to_reach, evaluate_instance, mask_iou
from mst_geo.bench.suite import run_noc_benchmark
from mst_geo.clicks.simulator import binarize, split_mask
from mst_geo.cli import app
from mst_geo.data.instance import Instance
from mst_geo.data.iseg import load_iseg_dataset
from mst_geo.errors import MSTGeoError, MSTGeoWarning


class _Listed(list):
    """Hand-made instances as a bench dataset."""

    def name_of(self, index: int) -> str:
        return self[index].name


def _disk_instance(radius: int, size: int = 100) -> Instance:
    ys, xs = np.mgrid[:size, :size]
    mask = ((ys - 50) ** 2 + (xs - 50) ** 2 <= radius**2).astype(np.uint8)
    image = np.dstack([mask * 200 + 20] * 3).astype(np.uint8)
    return Instance(image=image, mask=mask, name=f"disk{radius}", image_id="synthetic")


def test_loop_counts_one_click_when_the_first_click_solves_it():
    # The disk baseline draws radius 0.1 * 100 = 10 px around the first click, which the
    # clicker puts at the centre of a 10 px disk object: IoU 1 after one click.
    ious, _, clicks = evaluate_instance(DiskBaseline(), _disk_instance(10), max_clicks=3)
    assert clicks[0].positive and (clicks[0].y, clicks[0].x) == (50, 50)
    assert ious[0] == pytest.approx(1.0)
    assert clicks_to_reach(ious, 0.9, 3) == 1


def test_loop_counts_max_clicks_when_never_reached():
    # A 40 px disk needs far more than three 10 px disks: NoC is the cap.
    ious, _, clicks = evaluate_instance(DiskBaseline(), _disk_instance(40), max_clicks=3)
    assert all(c.positive for c in clicks)
    assert ious[0] < ious[1] < ious[2] < 0.85
    assert clicks_to_reach(ious, 0.85, 3) == 3


def test_every_baseline_gives_probabilities_on_a_real_image(iseg_root):
    instance = load_iseg_dataset("GrabCut", iseg_root)[0]  # 106024
    gt, ignore = split_mask(instance.mask)
    for name in BASELINES:
        ious, seconds, clicks = evaluate_instance(make_baseline(name), instance, max_clicks=3)
        method = make_baseline(name)
        method.set_image(instance.image)
        probabilities = method.predict(clicks)
        assert probabilities.shape == instance.mask.shape and probabilities.dtype == np.float32
        assert 0.0 <= probabilities.min() and probabilities.max() <= 1.0
        assert all(0.0 <= iou <= 1.0 for iou in ious) and all(s >= 0 for s in seconds)
        # each finds the object, better with more clicks (measured: 0.59 disk .. 0.93 grabcut)
        assert max(ious) > 0.5 and ious[-1] > ious[0], (name, ious)
        if name != "grabcut":  # no memory of the previous mask: the same clicks give the same answer
            assert mask_iou(gt, binarize(probabilities), ignore) == pytest.approx(ious[-1]), name
    with pytest.raises(MSTGeoError, match="unknown baseline 'snake'"):
        make_baseline("snake")


def test_grabcut_finds_most_of_a_real_object(iseg_root):
    instance = load_iseg_dataset("GrabCut", iseg_root)[0]  # 106024, a medium-size object
    ious, _, _ = evaluate_instance(make_baseline("grabcut"), instance, max_clicks=3)
    assert max(ious) > 0.7


def test_every_baseline_answers_on_an_image_its_seeds_cover(iseg_root):
    """An 8x8 crop of a real photo, a 4x4 object: the click disks leave GrabCut no background to
    model (OpenCV asserts); it answers the whole image, as the others answer something."""
    image = np.ascontiguousarray(load_iseg_dataset("GrabCut", iseg_root)[0].image[200:208, 200:208])
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 1
    tiny = Instance(image=image, mask=mask, name="tiny", image_id="tiny")
    for name in BASELINES:
        ious, _, _ = evaluate_instance(make_baseline(name), tiny, max_clicks=2)
        assert len(ious) == 2 and all(0.0 <= iou <= 1.0 for iou in ious), name


def test_grabcut_answers_do_not_depend_on_what_ran_before(iseg_root):
    """GrabCut draws its GMM initialisation from OpenCV's global RNG: without a reseed per call a
    resumed or sharded bench (other objects before this one) would give other numbers."""
    dataset = load_iseg_dataset("GrabCut", iseg_root)
    first, second = dataset[0], dataset[1]
    alone, _, _ = evaluate_instance(make_baseline("grabcut"), first, max_clicks=2)
    evaluate_instance(make_baseline("grabcut"), second, max_clicks=2)
    after_another, _, _ = evaluate_instance(make_baseline("grabcut"), first, max_clicks=2)
    assert after_another == alone


def test_resume_skips_finished_instances_and_survives_a_cut_line(tmp_path):
    data = {"synthetic": _Listed([_disk_instance(10), _disk_instance(20)])}
    methods = {"disk": DiskBaseline()}
    run_noc(methods, data, tmp_path, max_clicks=2, limit=1, progress=False)
    assert len(load_rows(tmp_path)) == 1
    rows_file = tmp_path / ROWS_FILE
    with open(rows_file, "a") as sink:
        sink.write('{"method": "disk", "datas')  # interrupted mid-write
    rows = run_noc(methods, data, tmp_path, max_clicks=2, progress=False)
    assert [r.name for r in rows] == ["disk10", "disk20"]
    assert [r.name for r in load_rows(tmp_path)] == ["disk10", "disk20"]  # the cut line is skipped
    assert len(rows_file.read_text().splitlines()) == 3
    with pytest.raises(MSTGeoError, match="other settings"):
        run_noc(methods, data, tmp_path, max_clicks=5, progress=False)
    (tmp_path / "run.json").write_text('{"max_clicks": 2}')  # rows of older readers: refused, not mixed in
    with pytest.raises(MSTGeoError, match="holds rows of bench protocol 1 .this version writes 3"):
        run_noc(methods, data, tmp_path, max_clicks=2, progress=False)
    (tmp_path / "run.json").write_text('{"max_clicks": 2, "protocol": 2}')  # areas counted in read pixels
    with pytest.raises(MSTGeoError, match="holds rows of bench protocol 2 .this version writes 3"):
        run_noc(methods, data, tmp_path, max_clicks=2, progress=False)


def test_cli_end_to_end_on_three_real_grabcut_instances(iseg_root, tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "noc", "--model", "watershed", "--model", "disk", "--datasets", "GrabCut", "--iou", "0.5,0.85",
            "--data-root", str(iseg_root), "--limit", "3", "--max-clicks", "4", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("results.json", "results.csv", "results.md", "sizes.csv", "instances.csv",
                 "instances.jsonl", "miou_vs_clicks.png", "miou_by_size.png"):
        assert (out / name).stat().st_size > 0, name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left

    # the summaries, recomputed from the per-instance IoU curves (instances.jsonl)
    rows = [json.loads(line) for line in (out / ROWS_FILE).read_text().splitlines()]
    summary = json.loads((out / "results.json").read_text())["results"]
    with open(out / "results.csv") as handle:
        table = {row["method"]: row for row in csv.DictReader(handle)}
    assert set(table) == {"watershed", "disk"}
    reached_early = 0
    for method in ("watershed", "disk"):
        curves = [row["ious"] for row in rows if row["method"] == method and row["dataset"] == "GrabCut"]
        assert len(curves) == 3 and all(len(curve) == 4 for curve in curves)
        grabcut = summary[method]["GrabCut"]
        assert grabcut["n"] == 3 and table[method]["n"] == "3"
        for key, threshold in (("50", 0.5), ("85", 0.85)):
            noc = [clicks_to_reach(curve, threshold, 4) for curve in curves]
            nof = sum(not any(iou >= threshold for iou in curve) for curve in curves)
            reached_early += sum(n < 4 for n in noc)
            assert grabcut["noc"][key] == pytest.approx(np.mean(noc)) and grabcut["nof"][key] == nof
            assert float(table[method][f"NoC@{key}"]) == pytest.approx(np.mean(noc), abs=0.005)
            assert int(table[method][f"NoF@{key}"]) == nof
        miou = np.mean(curves, axis=0)
        assert grabcut["miou"] == pytest.approx(miou.tolist())
        assert float(table[method]["mIoU@1"]) == pytest.approx(miou[0], abs=0.0005)
        assert grabcut["seconds_per_click"] > 0
        assert sum(part["n"] for part in grabcut["by_size"].values()) == 3
    assert reached_early > 0  # some NoC below the cap: the counts are not all max_clicks
    assert "| GrabCut | disk | 3 |" in (out / "results.md").read_text()

    # rerun: everything is already there, nothing is recomputed
    before = (out / ROWS_FILE).read_text()
    assert CliRunner().invoke(app, args).exit_code == 0
    assert (out / ROWS_FILE).read_text() == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data-root", "/nonexistent/iseg"], "data root is not a folder"),
        (["--datasets", "GrabKut"], "unknown dataset 'GrabKut'"),
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--datasets", "/nonexistent/GrabCut"], "dataset folder not found"),  # a path: not the data root's fault
        (["--iou", ""], "--iou names no threshold"),
    ],
)
def test_cli_user_errors_are_one_clear_line(iseg_root, tmp_path, extra, message):
    args = {"--model": "disk", "--datasets": "GrabCut", "--data-root": str(iseg_root)}
    args.update(dict(zip(extra[::2], extra[1::2])))
    flat = [item for pair in args.items() for item in pair]
    result = CliRunner().invoke(app, ["bench", "noc", *flat, "--limit", "1", "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, MSTGeoError)
    assert message in str(result.exception) and extra[1] in str(result.exception)  # names what is wrong
    assert "\n" not in str(result.exception)
    assert not (tmp_path / "o").exists()  # refused before writing anything


def test_benching_a_checkpoint_on_its_training_sets_warns(iseg_root, tmp_path):
    """The shipped model's card names COCO_MVal among its training sets: its rows there measure
    images it trained on, and the bench says so once, naming only that set (not GrabCut)."""
    with pytest.warns(MSTGeoWarning) as caught:
        run_noc_benchmark(["default"], ["COCO_MVal", "GrabCut"], tmp_path / "o", data_root=iseg_root, max_clicks=1,
                          limit=1, progress=False)
    notes = [str(w.message) for w in caught if "was trained on" in str(w.message)]
    assert notes == ["default was trained on COCO_MVal: its rows there measure images it trained on, all but its "
                     "held-out slice"]


def test_a_dataset_path_matches_its_folder_as_a_name_does(iseg_root, tmp_path):
    from mst_geo.bench.suite import load_bench_dataset

    name, instances, _ = load_bench_dataset(str(iseg_root / "grabcut"), tmp_path)  # the folder is GrabCut/
    assert name == "GrabCut" and len(instances) == 50


def test_a_fine_tune_inherits_what_its_init_was_trained_on(tmp_path):
    """A scene fine-tune of a model trained on VOC (by its alias) records no datasets of its own;
    its init's card does, and the bench reads the whole lineage."""
    from mst_geo.bench.methods import warn_if_trained_on
    from mst_geo.model import create_model, save_checkpoint

    model = create_model("mst_tiny", depth=2, embed_dim=96, num_heads=2, head_dim=32, input_size=128)
    lineage = {"training": {"recipe": {"data": {"datasets": ["VOC"]}}}}
    path = save_checkpoint(model, tmp_path / "fine.safetensors",
                           {"training": {"recipe": {"data": {"datasets": [], "labels": "ponds.gpkg"}}, "init_card": lineage}})
    with pytest.warns(MSTGeoWarning, match="fine was trained on PascalVOC: its rows there measure images it trained on"):
        warn_if_trained_on(str(path), "fine", [], ["GrabCut", "PascalVOC"])


def test_a_rerun_with_fewer_methods_says_whose_rows_its_tables_leave_out(iseg_root, tmp_path):
    out = tmp_path / "o"
    run_noc_benchmark(["disk", "watershed"], ["GrabCut"], str(out), data_root=iseg_root, max_clicks=1, limit=1,
                      progress=False)  # the folder as text, as Python callers often give it
    with pytest.warns(MSTGeoWarning, match=r"rows of watershed from earlier runs stay in instances.jsonl but not in "
                                           r"these tables \(`mst-geo bench report"):
        tables = run_noc_benchmark(["disk"], ["GrabCut"], out, data_root=iseg_root, max_clicks=1, limit=1,
                                   progress=False)
    assert list(tables) == ["disk"] and {row.method for row in load_rows(out)} == {"disk", "watershed"}


def test_a_wrong_model_is_said_before_any_data_is_read(tmp_path):
    """`--model` is checked first: a typo is not found only after minutes of scanning tiles."""
    with pytest.raises(MSTGeoError, match="unknown model 'defualt'"):
        run_noc_benchmark(["defualt"], ["GrabCut"], tmp_path / "out", data_root=tmp_path / "no_data_here",
                          progress=False)


def test_cli_process_prints_the_error_without_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "from mst_geo.cli import main; main()", "bench", "noc", "--model", "disk",
         "--datasets", "GrabCut", "--data-root", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert "data root is not a folder" in done.stderr and "Traceback" not in done.stderr


def test_model_and_baseline_share_one_run(iseg_root, tmp_path):
    import torch

    from mst_geo.bench.methods import InferenceOptions, resolve_method
    from mst_geo.clicks.predictor import Predictor

    torch.set_num_threads(1)
    with pytest.warns(UserWarning, match="random weights"):
        assert isinstance(resolve_method("mst_tiny", options=InferenceOptions(zoom_in=False)), Predictor)
        results = run_noc_benchmark(
            ["mst_tiny", "disk"], ["GrabCut"], tmp_path, data_root=iseg_root, max_clicks=2,
            limit=1, inference=InferenceOptions(zoom_in=False), progress=False,
        )
    assert set(results) == {"mst_tiny (no zoom)", "disk"}
    assert len(results["mst_tiny (no zoom)"]["GrabCut"]["miou"]) == 2
    settings = json.loads((tmp_path / "results.json").read_text())["settings"]
    assert settings["views_px"] == {"mst_tiny (no zoom)": 448}  # each model's view, for like-for-like reading
    assert "views_px={'mst_tiny (no zoom)': 448}" in (tmp_path / "results.md").read_text()


def test_view_runs_every_model_at_one_size(iseg_root, tmp_path, tiny_checkpoint):
    """--view: a fine-tune and the model it started from, compared at one view (their cards differ)."""
    result = CliRunner().invoke(app, ["bench", "noc", "--model", f"{tiny_checkpoint},disk", "--datasets", "GrabCut",
                                      "--data-root", str(iseg_root), "--limit", "1", "--max-clicks", "1",
                                      "--view", "96", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "out" / "results.json").read_text())["settings"]
    label = f"{Path(tiny_checkpoint).stem} (96 px)"
    assert settings["views_px"] == {label: 96} and settings["view"] == 96
    assert set(json.loads((tmp_path / "out" / "results.json").read_text())["results"]) == {label, "disk"}
    averaged = CliRunner().invoke(app, ["bench", "noc", "--model", str(tiny_checkpoint), "--datasets", "GrabCut",
                                        "--data-root", str(iseg_root), "--limit", "1", "--max-clicks", "1",
                                        "--view", "64,96", "--out", str(tmp_path / "views")])
    assert averaged.exit_code == 0, averaged.output
    settings = json.loads((tmp_path / "views" / "results.json").read_text())["settings"]
    label = f"{Path(tiny_checkpoint).stem} (64+96 px)"  # several views: their mean
    assert settings["views_px"] == {label: [64, 96]} and settings["view"] == [64, 96]
    not_a_size = CliRunner().invoke(app, ["bench", "noc", "--model", "disk", "--datasets", "GrabCut", "--view", "9x",
                                          "--data-root", str(iseg_root), "--out", str(tmp_path / "bad")])
    assert "--view must be a side in px or comma-separated sides, got '9x'" in str(not_a_size.exception)
    too_small = CliRunner().invoke(app, ["bench", "noc", "--model", "disk", "--datasets", "GrabCut", "--view", "8",
                                         "--data-root", str(iseg_root), "--out", str(tmp_path / "small")])
    assert "--view must be at least 16 px, got 8" in str(too_small.exception)


def test_first_click_passes_run_apart_from_the_cards_own(iseg_root, tmp_path, tiny_checkpoint):
    """--first-click-passes: the model with another number of first-click passes is its own row,
    recorded per label; the card's own setting is recorded for a plain run."""
    out = tmp_path / "out"
    common = ["--datasets", "GrabCut", "--data-root", str(iseg_root), "--limit", "1", "--max-clicks", "2"]
    plain = CliRunner().invoke(app, ["bench", "noc", "--model", str(tiny_checkpoint), *common, "--out", str(out)])
    assert plain.exit_code == 0, plain.output
    stem = Path(tiny_checkpoint).stem
    assert json.loads((out / "results.json").read_text())["settings"]["first_click_passes"] == {stem: 1}
    passes = CliRunner().invoke(app, ["bench", "noc", "--model", f"{tiny_checkpoint},disk", *common,
                                      "--first-click-passes", "2", "--out", str(out)])
    assert passes.exit_code == 0, passes.output
    report = json.loads((out / "results.json").read_text())
    assert report["settings"]["first_click_passes"] == {f"{stem} (2 first-click passes)": 2}
    assert set(report["results"]) == {f"{stem} (2 first-click passes)", "disk"}
    rows = [json.loads(line) for line in (out / "instances.jsonl").read_text().splitlines()]
    first_ious = {row["method"]: row["ious"][0] for row in rows}
    assert first_ious[stem] != first_ious[f"{stem} (2 first-click passes)"]  # the second pass changed the mask
    bad = CliRunner().invoke(app, ["bench", "noc", "--model", str(tiny_checkpoint), *common,
                                   "--first-click-passes", "0", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "Invalid value for '--first-click-passes'" in bad.output


def test_flip_follows_the_card_unless_told(iseg_root, tmp_path, local_checkpoint):
    """A card that asks for mirror averaging gets it in a plain run; --no-flip is its own row, and
    the mirror changes the masks."""
    from mst_geo.model import load_checkpoint, save_checkpoint

    model, card = load_checkpoint(local_checkpoint)
    model.config = dataclasses.replace(model.config, flip=True)
    path = save_checkpoint(model, tmp_path / "mirrored.safetensors", card)
    out = tmp_path / "out"
    common = ["--datasets", "GrabCut", "--data-root", str(iseg_root), "--limit", "1", "--max-clicks", "2",
              "--out", str(out)]
    for option in ([], ["--no-flip"]):
        done = CliRunner().invoke(app, ["bench", "noc", "--model", str(path), *option, *common])
        assert done.exit_code == 0, done.output
    report = json.loads((out / "results.json").read_text())
    assert report["settings"]["flip"] == {"mirrored (no flip)": False}
    rows = {row["method"]: row["ious"] for row in map(json.loads, (out / "instances.jsonl").read_text().splitlines())}
    assert set(rows) == {"mirrored", "mirrored (no flip)"} and rows["mirrored"] != rows["mirrored (no flip)"]


def test_cli_speed_writes_its_table_and_json(tmp_path):
    out = tmp_path / "speed.json"
    result = CliRunner().invoke(app, ["bench", "speed", "--presets", "mst_tiny", "--size", "64",
                                      "--repeats", "1", "--threads", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "| mst_tiny | mst |" in result.output
    saved = json.loads(out.read_text())
    assert saved["size"] == 64 and {row["variant"] for row in saved["rows"]} == {"vit", "mst", "all"}
    assert all(row["latency_ms"] > 0 for row in saved["rows"])


def test_method_labels_say_which_inference_options_differ():
    from mst_geo.bench.methods import method_label, split_names

    from mst_geo.bench.methods import InferenceOptions as Options

    assert method_label("grabcut", Options(zoom_in=False, flip=True)) == "grabcut"
    assert method_label("runs/best.safetensors") == "best"
    assert method_label("default", Options(zoom_in=False, flip=True)) == "default (no zoom, flip)"
    assert method_label("default", Options(view=224)) == "default (224 px)"
    assert method_label("grabcut", Options(view=224)) == "grabcut"
    assert method_label("default", Options(first_click_passes=1)) == "default (1 first-click pass)"
    assert method_label("default", Options(view=(288, 416), first_click_passes=2)) == \
        "default (288+416 px, 2 first-click passes)"
    assert method_label("default", Options(flip=False)) == "default (no flip)" and method_label("default") == "default"
    assert split_names(["grabcut,disk", "disk", " watershed "]) == ["grabcut", "disk", "watershed"]


def test_two_runs_exports_are_told_apart(tmp_path, iseg_root, tiny_checkpoint, local_checkpoint):
    """Every training run exports model.safetensors: two in one bench get their folders in the
    label, and another file under a label that already has rows in --out is refused."""
    first, second = tmp_path / "run1" / "model.safetensors", tmp_path / "run2" / "model.safetensors"
    for source, copy in ((tiny_checkpoint, first), (local_checkpoint, second)):
        copy.parent.mkdir()
        shutil.copy(source, copy)
    both = run_noc_benchmark([str(first), str(second)], ["GrabCut"], tmp_path / "both", data_root=iseg_root,
                             max_clicks=1, limit=1, progress=False)
    assert set(both) == {"run1/model", "run2/model"}
    run_noc_benchmark([str(first)], ["GrabCut"], tmp_path / "one", data_root=iseg_root, max_clicks=1, limit=1,
                      progress=False)
    with pytest.raises(MSTGeoError, match="holds rows of another model labelled 'model'"):
        run_noc_benchmark([str(second)], ["GrabCut"], tmp_path / "one", data_root=iseg_root, max_clicks=1, limit=1,
                          progress=False)


def test_report_of_a_partial_run_keeps_common_instances(tmp_path):
    data = {"synthetic": _Listed([_disk_instance(10), _disk_instance(20)])}
    run_noc({"disk": DiskBaseline(), "watershed": make_baseline("watershed")}, data, tmp_path,
            max_clicks=2, limit=1, progress=False)
    run_noc({"disk": DiskBaseline()}, data, tmp_path, max_clicks=2, progress=False)  # disk ran further
    result = CliRunner().invoke(app, ["bench", "report", str(tmp_path), "--common", "--to", str(tmp_path / "common")])
    assert result.exit_code == 0, result.output
    common = json.loads((tmp_path / "common" / "results.json").read_text())["results"]
    assert common["disk"]["synthetic"]["n"] == common["watershed"]["synthetic"]["n"] == 1
    assert CliRunner().invoke(app, ["bench", "report", str(tmp_path)]).exit_code == 0
    everything = json.loads((tmp_path / "results.json").read_text())["results"]
    assert everything["disk"]["synthetic"]["n"] == 2
    missing = CliRunner().invoke(app, ["bench", "report", str(tmp_path / "nothing")])
    assert isinstance(missing.exception, MSTGeoError) and "run.json missing" in str(missing.exception)


def test_rows_repeated_count_once_and_a_folder_without_rows_says_so(tmp_path):
    """The same command started twice on one --out (or rows files joined with overlaps) repeats
    rows: the report counts each object once, as the resumed run does; an --out whose run finished
    no row (it failed, was stopped, or is still on its first object) is refused without claiming rows."""
    data = {"synthetic": _Listed([_disk_instance(10), _disk_instance(20)])}
    run_noc({"disk": DiskBaseline()}, data, tmp_path / "twice", max_clicks=2, progress=False)
    rows_file = tmp_path / "twice" / ROWS_FILE
    rows_file.write_text(rows_file.read_text() * 2)
    assert CliRunner().invoke(app, ["bench", "report", str(tmp_path / "twice")]).exit_code == 0
    assert json.loads((tmp_path / "twice" / "results.json").read_text())["results"]["disk"]["synthetic"]["n"] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "run.json").write_text('{"max_clicks": 5, "protocol": 3}')
    (empty / "datasets.json").write_text('{"synthetic": "another copy"}')
    (empty / ROWS_FILE).write_text("")
    with pytest.raises(MSTGeoError, match=re.escape("(no finished row yet: if the run that started it has stopped, "
                                                    "remove the folder)")):
        run_noc({"disk": DiskBaseline()}, data, empty, max_clicks=2, progress=False)
    (empty / "run.json").unlink()
    with pytest.raises(MSTGeoError, match="holds rows of another dataset labelled 'synthetic' .another copy.*no finished row"):
        run_noc({"disk": DiskBaseline()}, data, empty, max_clicks=2, progress=False, origins={"synthetic": "here"})


def test_report_refuses_rows_of_another_click_count(tmp_path):
    """Rows files of two runs joined by hand (the README's merge recipe) with another --max-clicks:
    one clear line, not an IndexError or rows silently cut to run.json's count."""
    data = {"synthetic": _Listed([_disk_instance(10)])}
    run_noc({"disk": DiskBaseline()}, data, tmp_path / "three", max_clicks=3, progress=False)
    run_noc({"watershed": make_baseline("watershed")}, data, tmp_path / "two", max_clicks=2, progress=False)
    for run in ("three", "two"):
        merged = tmp_path / f"merged_{run}"
        merged.mkdir()
        shutil.copy(tmp_path / run / "run.json", merged)
        (merged / ROWS_FILE).write_text((tmp_path / "three" / ROWS_FILE).read_text()
                                        + (tmp_path / "two" / ROWS_FILE).read_text())
        result = CliRunner().invoke(app, ["bench", "report", str(merged)])
        assert isinstance(result.exception, MSTGeoError), result.output
        assert "another --max-clicks" in str(result.exception) and ROWS_FILE in str(result.exception)
        assert not (merged / "results.json").exists()


def test_thresholds_keep_their_own_columns(tmp_path):
    """NoC@85.5 is its own column (it was labelled NoC@86), and a threshold given twice is refused
    (0.85 and 0.854 shared one column, which showed one of the two numbers twice; now only
    thresholds equal to six significant digits would share one)."""
    data = {"synthetic": _Listed([_disk_instance(10)])}
    run_noc({"disk": DiskBaseline()}, data, tmp_path, max_clicks=2, progress=False)
    assert CliRunner().invoke(app, ["bench", "report", str(tmp_path), "--iou", "0.85,0.855"]).exit_code == 0
    noc = json.loads((tmp_path / "results.json").read_text())["results"]["disk"]["synthetic"]["noc"]
    assert set(noc) == {"85", "85.5"}
    assert "NoC@85.5" in (tmp_path / "results.md").read_text()
    twice = CliRunner().invoke(app, ["bench", "report", str(tmp_path), "--iou", "0.85,0.8500001"])
    assert isinstance(twice.exception, MSTGeoError) and "threshold twice" in str(twice.exception)


def test_shards_split_the_instances_between_processes(tmp_path):
    data = {"synthetic": _Listed([_disk_instance(r) for r in (8, 10, 12)])}
    first = run_noc({"disk": DiskBaseline()}, data, tmp_path, max_clicks=1, progress=False, shard=(1, 2))
    second = run_noc({"disk": DiskBaseline()}, data, tmp_path, max_clicks=1, progress=False, shard=(2, 2))
    assert [r.name for r in first] == ["disk8", "disk12"] and [r.name for r in second] == ["disk10"]
    assert sorted(r.name for r in load_rows(tmp_path)) == ["disk10", "disk12", "disk8"]
    bad = CliRunner().invoke(app, ["bench", "noc", "--model", "disk", "--shard", "3/2", "--out", str(tmp_path / "x")])
    assert isinstance(bad.exception, MSTGeoError) and "--shard" in str(bad.exception) and "3/2" in str(bad.exception)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--presets", "mst_nope"], "unknown preset(s) mst_nope"),
    (["--presets", ""], "--presets names no preset"),
    (["--size", "50"], "--size must be a positive multiple of 16, got 50"),
])
def test_speed_bench_user_errors_are_one_clear_line(args, message, tmp_path):
    result = CliRunner().invoke(app, ["bench", "speed", *args, "--json", str(tmp_path / "speed.json")])
    assert isinstance(result.exception, MSTGeoError)
    assert message in str(result.exception)
    assert list(tmp_path.iterdir()) == []  # no --json written


def test_a_cut_off_settings_file_is_a_clear_error(iseg_root, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "run.json").write_text('{"max_clicks": 2')
    result = CliRunner().invoke(app, ["bench", "noc", "--model", "disk", "--datasets", "GrabCut",
                                      "--data-root", str(iseg_root), "--limit", "1", "--out", str(out)])
    assert isinstance(result.exception, MSTGeoError)
    assert str(result.exception).startswith(f"{out / 'run.json'}: is not valid JSON")
    assert [p.name for p in out.iterdir()] == ["run.json"]  # nothing written, the settings file untouched
    assert (out / "run.json").read_text() == '{"max_clicks": 2'
    (out / "instances.jsonl").write_text("")
    result = CliRunner().invoke(app, ["bench", "report", str(out)])  # the report reads it too
    assert str(result.exception).startswith(f"{out / 'run.json'}: is not valid JSON")
    (out / "run.json").write_text("{}")
    result = CliRunner().invoke(app, ["bench", "report", str(out)])
    assert str(result.exception).startswith(f"{out / 'run.json'}: holds no max_clicks")


def test_cli_benchmarks_a_set_in_the_images_folder_layout_by_path(iseg_root, tmp_path):
    """A set without a layout of its own (RITM's img/ + gt/), named by its folder's path: its
    folder name is its row, and one name given twice is refused before anything runs."""
    folder = tmp_path / "sets" / "MyPhotos"
    (folder / "img").mkdir(parents=True)
    (folder / "gt").mkdir()
    for stem in ("106024", "124080"):
        shutil.copy(iseg_root / "GrabCut" / "data_GT" / f"{stem}.jpg", folder / "img" / f"{stem}.jpg")
        shutil.copy(iseg_root / "GrabCut" / "boundary_GT" / f"{stem}.bmp", folder / "gt" / f"{stem}.bmp")
    out = tmp_path / "o"
    base = ["bench", "noc", "--model", "disk", "--max-clicks", "3", "--out", str(out)]
    result = CliRunner().invoke(app, [*base, "--datasets", str(folder)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())["results"]["disk"]
    assert list(summary) == ["MyPhotos"] and summary["MyPhotos"]["n"] == 2
    # the same two GrabCut objects under their own layout score the same
    reference = run_noc_benchmark(["disk"], ["GrabCut"], tmp_path / "ref", data_root=iseg_root, limit=2,
                                  max_clicks=3, progress=False)["disk"]["GrabCut"]
    assert summary["MyPhotos"]["miou"] == pytest.approx(reference["miou"])

    twice = CliRunner().invoke(app, [*base, "--datasets", f"{folder},MyPhotos", "--data-root", str(folder.parent),
                                     "--out", str(tmp_path / "o2")])
    assert isinstance(twice.exception, MSTGeoError) and "'MyPhotos' twice" in str(twice.exception)
    assert not (tmp_path / "o2").exists()


def test_a_rerun_on_another_copy_of_a_dataset_is_refused(iseg_root, tmp_path):
    """Rows are resumed by dataset and instance name: a copy of GrabCut elsewhere (fixed masks, say)
    must not reuse the first copy's rows; ``-d`` repeats like ``--model``."""
    copy = tmp_path / "copy"
    shutil.copytree(iseg_root / "GrabCut", copy / "GrabCut")
    out = tmp_path / "o"
    base = ["bench", "noc", "--model", "disk", "--limit", "1", "--max-clicks", "2", "--out", str(out)]
    first = CliRunner().invoke(app, [*base, "-d", "GrabCut", "-d", "Berkeley", "--data-root", str(copy.parent / "copy")])
    assert isinstance(first.exception, MSTGeoError) and "no Berkeley folder" in str(first.exception)
    assert CliRunner().invoke(app, [*base, "-d", "GrabCut", "--data-root", str(copy)]).exit_code == 0
    again = CliRunner().invoke(app, [*base, "-d", "GrabCut", "--data-root", str(iseg_root)])
    assert isinstance(again.exception, MSTGeoError)
    assert "holds rows of another dataset labelled 'GrabCut'" in str(again.exception)
    both = CliRunner().invoke(app, [*base, "-d", "GrabCut", "-d", "Berkeley", "--data-root", str(iseg_root),
                                    "--out", str(tmp_path / "o2")])
    assert both.exit_code == 0, both.output
    assert set(json.loads((tmp_path / "o2" / "results.json").read_text())["results"]["disk"]) == {"GrabCut", "Berkeley"}
