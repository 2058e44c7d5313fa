"""``mst-geo app`` as a user runs it: a real server process on a free port, and its bad-input errors."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

CLI = [sys.executable, "-c", "from mst_geo.cli import main; main()"]


def test_app_serves_the_scene_on_localhost(naip_scene: Path, app_checkpoint: Path) -> None:
    process = subprocess.Popen(
        [*CLI, "app", str(naip_scene), "--model", str(app_checkpoint), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("mst-geo app: open http://127.0.0.1:"), line + process.stderr.read()
        url = line.split()[3]
        with urllib.request.urlopen(url + "api/scene", timeout=30) as response:
            scene = json.load(response)
        assert scene["name"] == "naip_scene.tif" and scene["crs_name"] == "EPSG:26914"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert b"leaflet.js" in response.read()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_app_serves_a_scene_at_a_url(naip_scene: Path, app_checkpoint: Path, serve_file, tmp_path: Path) -> None:
    copy = tmp_path / naip_scene.name
    copy.write_bytes(naip_scene.read_bytes())
    url = serve_file(copy)
    process = subprocess.Popen(
        [*CLI, "app", url, "--model", str(app_checkpoint), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("mst-geo app: open http://127.0.0.1:"), line + process.stderr.read()
        with urllib.request.urlopen(line.split()[3] + "api/scene", timeout=30) as response:
            scene = json.load(response)
        assert (scene["name"], scene["path"], scene["width"]) == ("naip_scene.tif", url, 934)
        assert scene["default_save_path"] == str(Path.cwd() / "naip_scene_objects.gpkg")  # not beside a URL
        with urllib.request.urlopen(line.split()[3] + scene["tile_url"].format(z=0, x=0, y=0), timeout=30) as tile:
            assert tile.read().startswith(b"\x89PNG")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_app_starts_from_a_clicks_file(naip_scene: Path, app_checkpoint: Path) -> None:
    clicks = Path(__file__).parents[1] / "examples" / "clicks.geojson"
    expected = list(dict.fromkeys(f["properties"]["object"] for f in json.loads(clicks.read_text())["features"]))
    process = subprocess.Popen(
        [*CLI, "app", str(naip_scene), "--model", str(app_checkpoint), "--port", "0", "--clicks", str(clicks)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("mst-geo app: open http://127.0.0.1:"), line + process.stderr.read()
        with urllib.request.urlopen(line.split()[3] + "api/objects", timeout=30) as response:
            listed = json.load(response)["scene"]["features"]
        assert [f["properties"]["object"] for f in listed] == expected
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_busy_port_and_missing_scene_are_one_line_errors(naip_scene: Path, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = subprocess.run([*CLI, "app", str(naip_scene), "--port", str(port)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert len(result.stderr.strip().splitlines()) == 1

    missing = tmp_path / "nowhere.tif"
    result = subprocess.run([*CLI, "app", str(missing), "--port", "0"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {missing}: raster not found"

    no_clicks = tmp_path / "nowhere.geojson"
    result = subprocess.run([*CLI, "app", str(naip_scene), "--port", "0", "--clicks", str(no_clicks)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {no_clicks}: clicks file not found"


def _ipv6_loopback() -> bool:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("host, page, stop", [
    pytest.param("::1", "http://[::1]:", signal.SIGINT,
                 marks=pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")),
    ("127.0.0.1", "http://127.0.0.1:", signal.SIGTERM),
])
def test_ipv6_loopback_and_unsaved_work_on_stop(naip_scene: Path, app_checkpoint: Path, host: str, page: str,
                                                stop: signal.Signals) -> None:
    """--host ::1 serves at http://[::1]:PORT/; Ctrl-C (or SIGTERM, as kill and service managers
    stop it) after a click that was never saved says so."""
    process = subprocess.Popen(
        [*CLI, "app", str(naip_scene), "--model", str(app_checkpoint), "--port", "0", "--host", host],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith(f"mst-geo app: open {page}"), line + process.stderr.read()
        url = line.split()[3]
        x, y = 485899.0 + 5 * 364.5, 5209246.0 - 5 * 351.5  # a pond, in the scene CRS
        request = urllib.request.Request(url + "api/click", json.dumps({"x": x, "y": y, "space": "scene"}).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert json.load(response)["feature"] is not None
    finally:
        process.send_signal(stop)
        _, err = process.communicate(timeout=30)
    assert "warning: click changes made since the last Save or Export clicks (new clicks, undos, deletions) were not kept" in err
    assert "Traceback" not in err
    assert stop != signal.SIGTERM or process.returncode == 143


def test_listening_beyond_this_machine_is_announced(naip_scene: Path, app_checkpoint: Path) -> None:
    process = subprocess.Popen(
        [*CLI, "app", str(naip_scene), "--model", str(app_checkpoint), "--port", "0", "--host", "0.0.0.0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout.readline().startswith("mst-geo app: open http://0.0.0.0:")
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert "warning: --host 0.0.0.0: anyone who can reach this machine sees the scene" in err
    assert "not kept" not in err  # nothing was clicked
