"""Bad input to bench, app and segment outputs: one line naming the file, a non-zero exit, nothing
half-written (``test_segment_cli.py`` covers the scene/clicks/checkpoint cases of ``segment``)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

EXAMPLE_CLICKS = Path(__file__).parents[1] / "examples" / "clicks.geojson"


def assert_one_line_error(result: tuple[int, str, str], *fragments: str, code: int = 2) -> None:
    """The error is stderr's last line (progress bars may come before it), with no traceback."""
    exit_code, _out, err = result
    assert exit_code == code, err
    assert "Traceback" not in err, err
    message = err.replace("\r", "\n").strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in message, (fragment, err)


def test_bench_out_that_is_a_file(cli, tmp_path, iseg_root):
    taken = tmp_path / "results.txt"
    taken.write_text("something else")
    result = cli("bench", "noc", "-m", "disk", "-d", "GrabCut", "--data-root", iseg_root, "--out", taken)
    assert_one_line_error(result, str(taken), "--out must be a folder")
    assert taken.read_text() == "something else"
    result = cli("bench", "report", tmp_path, "--to", taken)
    assert_one_line_error(result, str(taken), "--to must be a folder")


def test_bench_interrupt_says_how_to_resume(cli, tmp_path, iseg_root, monkeypatch):
    """Ctrl-C in ``bench noc``: exit 130 and a hint; the rerun finishes what is missing."""
    import mst_geo.bench.loop as loop

    real = loop.evaluate_instance
    calls = []

    def interrupted_after_one(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_instance", interrupted_after_one)
    command = ("bench", "noc", "-m", "disk", "-d", "GrabCut", "--data-root", iseg_root, "--limit", "2",
               "--max-clicks", "2", "--out", tmp_path / "bench")
    assert_one_line_error(cli(*command), "rerun the same command to resume", code=130)
    rows = (tmp_path / "bench" / "instances.jsonl").read_text().splitlines()
    assert len(rows) == 1  # the finished object was kept

    monkeypatch.setattr(loop, "evaluate_instance", real)
    code, _out, err = cli(*command)
    assert code == 0, err
    assert len((tmp_path / "bench" / "instances.jsonl").read_text().splitlines()) == 2


def test_bench_sigterm_keeps_finished_objects_and_says_how_to_resume(cli, tmp_path, iseg_root, monkeypatch):
    """SIGTERM (kill, timeout, a scheduler) unwinds like Ctrl-C: the hint, exit 143, the finished
    object kept, and SIGTERM's own handler given back afterwards."""
    import os
    import signal

    import mst_geo.bench.loop as loop

    real = loop.evaluate_instance
    calls = []

    def terminated_after_one(*args, **kwargs):
        if calls:
            os.kill(os.getpid(), signal.SIGTERM)
        calls.append(1)
        return real(*args, **kwargs)

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(loop, "evaluate_instance", terminated_after_one)
    command = ("bench", "noc", "-m", "disk", "-d", "GrabCut", "--data-root", iseg_root, "--limit", "2",
               "--max-clicks", "2", "--out", tmp_path / "bench")
    assert_one_line_error(cli(*command), "rerun the same command to resume", code=143)
    assert len((tmp_path / "bench" / "instances.jsonl").read_text().splitlines()) == 1
    assert not (tmp_path / "bench" / "results.csv").exists()
    assert signal.getsignal(signal.SIGTERM) is before


def test_bench_with_no_object_left_is_one_line(cli, tmp_path, iseg_root):
    """--limit and --shard that leave a process nothing: a one-line error, no half-written report."""
    result = cli("bench", "noc", "-m", "disk", "-d", "GrabCut", "--data-root", iseg_root, "--limit", "1",
                 "--shard", "2/2", "--out", tmp_path / "bench")
    assert_one_line_error(result, "no object to report")
    assert not list((tmp_path / "bench").glob("results.*")) and not list((tmp_path / "bench").glob("*.png"))


def test_bench_speed_flags_are_checked_before_timing(cli, tmp_path):
    assert_one_line_error(cli("bench", "speed", "--presets", "mst_tiny", "--device", "gpu9"), "unknown device 'gpu9'")
    assert_one_line_error(cli("bench", "speed", "--presets", "mst_tiny", "--device", "cuda:7"), "cuda:7")
    assert_one_line_error(cli("bench", "speed", "--presets", "mst_tiny", "--json", tmp_path),
                          str(tmp_path), "output is a directory")
    code, _out, err = cli("bench", "speed", "--presets", "mst_tiny", "--repeats", "0")
    assert code == 2 and "--repeats" in err


def test_bench_model_device_is_checked(cli, tmp_path, iseg_root, tiny_checkpoint):
    result = cli("bench", "noc", "-m", tiny_checkpoint, "-d", "GrabCut", "--data-root", iseg_root,
                 "--device", "cuda:7", "--out", tmp_path / "bench")
    assert_one_line_error(result, "device 'cuda:7'")


def test_bench_labels_without_geometry(cli, tmp_path, naip_scene):
    table = tmp_path / "labels.csv"
    table.write_text("name,area\npond,12\n")
    result = cli("bench", "noc", "-m", "disk", "--scene", naip_scene, "--labels", table, "--out", tmp_path / "b")
    assert_one_line_error(result, str(table), "no geometry column")


def test_app_port_out_of_range(cli, naip_scene):
    code, _out, err = cli("app", naip_scene, "--port", "70000")
    assert code == 2 and "--port" in err and "Traceback" not in err


def test_clicks_with_non_object_properties(cli, tmp_path, naip_scene, tiny_checkpoint):
    feature = json.loads(EXAMPLE_CLICKS.read_text())["features"][0]
    feature["properties"] = ["positive"]
    clicks = tmp_path / "clicks.geojson"
    clicks.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    result = cli("segment", naip_scene, "--clicks", clicks, "-o", tmp_path / "o.gpkg", "--model", tiny_checkpoint, "-q")
    assert_one_line_error(result, str(clicks), "feature #1", "properties must be a JSON object")
    assert not (tmp_path / "o.gpkg").exists()


def test_failed_polygon_write_leaves_no_mask_either(cli, tmp_path, naip_scene, tiny_checkpoint, monkeypatch):
    """Polygons and mask are renamed into place together: a failure writes neither."""
    import mst_geo.geo.io

    real_write = mst_geo.geo.io.polygons_to_file

    def disk_full(frame, path, driver, target):
        if path.parent != target.parent:  # the format's CRS check, in a scratch folder
            return real_write(frame, path, driver, target)
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(mst_geo.geo.io, "polygons_to_file", disk_full)
    features = json.loads(EXAMPLE_CLICKS.read_text())["features"][:1]
    clicks = tmp_path / "clicks.geojson"
    clicks.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    out = tmp_path / "out"
    result = cli("segment", naip_scene, "--clicks", clicks, "-o", out / "o.gpkg", "--mask-out", out / "m.tif",
                 "--model", tiny_checkpoint, "-q", "--no-resume")
    assert_one_line_error(result, str(out / "o.gpkg"), "cannot write it (No space left on device: free some space")
    assert sorted(path.name for path in out.iterdir()) == []


def test_full_disk_while_bench_appends_a_row(cli, tmp_path, iseg_root, monkeypatch):
    """A full disk hits a stream write that names no file: one line that says what to do, and the
    rerun (with space again) finishes the bench."""
    import mst_geo.bench.loop as loop

    if not (os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode)):
        pytest.skip("no /dev/full device here (it answers every write with ENOSPC)")
    real = loop._open_rows_for_append
    monkeypatch.setattr(loop, "_open_rows_for_append", lambda out_dir: open("/dev/full", "a", buffering=1))
    command = ("bench", "noc", "-m", "disk", "-d", "GrabCut", "--data-root", iseg_root, "--limit", "1",
               "--max-clicks", "2", "--out", tmp_path / "bench")
    assert_one_line_error(cli(*command), "No space left on device", "free some space")

    monkeypatch.setattr(loop, "_open_rows_for_append", real)
    code, _out, err = cli(*command)
    assert code == 0, err
    assert len((tmp_path / "bench" / "instances.jsonl").read_text().splitlines()) == 1
