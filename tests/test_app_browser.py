"""End to end in a real headless Chromium: load the page, click objects, see polygons, save, export.

Uses Debian's ``chromium`` (``apt-get install chromium``) driven by Playwright's Python package;
Playwright's own browser download is never used. ``MSTGEO_SCREENSHOT=1`` writes the README's
screenshot to docs/img/app.png; ``MSTGEO_APP_MODEL`` picks the model (default: the small random
test checkpoint; set it to ``default`` for the shipped model when taking the screenshot).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pytest
import uvicorn

from mst_geo.api import Segmenter
from mst_geo.app.server import create_app, listen, url_of

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync",
]
SCREENSHOT = Path(__file__).parents[1] / "docs" / "img" / "app.png"
POND = (351.5, 364.5)  # (row, col) inside a pond of about 40 px
LAKE = (280.5, 699.5)  # inside the scene's largest pond


@pytest.fixture()
def app_segmenter(naip_scene: Path, app_checkpoint: Path) -> Iterator[Segmenter]:
    """The session the served app works on (a test may slow its model down)."""
    with Segmenter(naip_scene, model=os.environ.get("MSTGEO_APP_MODEL", app_checkpoint)) as segmenter:
        yield segmenter


@pytest.fixture()
def app_url(app_segmenter: Segmenter) -> Iterator[str]:
    """The app served by uvicorn in a thread on a free localhost port."""
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(app_segmenter), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture()
def page(app_url: str):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(app_url)
        yield page
        browser.close()
        assert not errors, f"JavaScript errors: {errors}"


def on_screen(page, pixel: tuple[float, float]) -> tuple[float, float]:
    """Where scene pixel (row, col) is drawn, in the page's coordinates."""
    return page.evaluate(
        """([row, col]) => {
            const scale = 2 ** scene.max_zoom;  // page units are scene px / 2**max_zoom
            const point = map.latLngToContainerPoint([-row / scale, col / scale]);
            const box = document.getElementById("map").getBoundingClientRect();
            return [box.left + point.x, box.top + point.y];
        }""",
        list(pixel),
    )


def click_pixel(page, pixel: tuple[float, float], button: str = "left", shift: bool = False) -> None:
    """Click the map where scene pixel (row, col) is drawn."""
    x, y = on_screen(page, pixel)
    if shift:
        page.keyboard.down("Shift")
    page.mouse.click(x, y, button=button)
    if shift:
        page.keyboard.up("Shift")


def take_screenshot(page) -> None:
    """The README's picture: both objects at twice native resolution, every tile loaded."""
    row, col = (POND[0] + LAKE[0]) / 2, (POND[1] + LAKE[1]) / 2
    page.evaluate(
        "([row, col]) => map.setView([-row / 2 ** scene.max_zoom, col / 2 ** scene.max_zoom], scene.max_zoom + 1)",
        [row, col],
    )
    page.wait_for_function("document.querySelectorAll('img.leaflet-tile-loading').length === 0")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))


def wait_for_status(page, text: str) -> None:
    page.wait_for_function(
        "text => document.getElementById('status').textContent.includes(text)", arg=text, timeout=60_000
    )


def test_click_objects_see_polygons_save_and_export(page, tmp_path: Path) -> None:
    page.wait_for_selector("img.leaflet-tile-loaded")
    assert page.text_content("#scene-name") == "naip_scene.tif · 934×723 px · EPSG:26914 · bands 1,2,3 as R,G,B"

    click_pixel(page, POND)
    wait_for_status(page, "object 1: positive click")
    page.wait_for_selector("path.leaflet-interactive")
    assert page.locator("#objects li").count() == 1
    assert page.text_content("#objects li").endswith("· 1 click")

    click_pixel(page, (POND[0] + 10, POND[1] + 14), button="right")
    wait_for_status(page, "object 1: negative click")
    page.wait_for_function("document.querySelector('#objects li').textContent.endsWith('2 clicks')")
    click_pixel(page, (POND[0] - 10, POND[1] - 14), shift=True)
    wait_for_status(page, "object 1: negative click")
    page.wait_for_function("document.querySelector('#objects li').textContent.endsWith('3 clicks')")

    page.keyboard.press("n")
    wait_for_status(page, "object 2 started")
    click_pixel(page, LAKE)
    wait_for_status(page, "object 2: positive click")
    assert page.locator("#objects li").count() == 2
    assert page.locator("#objects li.current").text_content().startswith("Object 2 — ")
    assert page.locator(".leaflet-overlay-pane path").count() == 6  # two polygons + four click markers
    listed = page.eval_on_selector_all("#objects li", "items => items.map(i => i.style.getPropertyValue('--colour'))")
    drawn = page.evaluate("() => polygonLayer.getLayers().map(layer => layer.options.color)")
    assert sorted(listed) == sorted(drawn) and len(set(listed)) == 2  # one colour per object, list and map agree
    if os.environ.get("MSTGEO_SCREENSHOT") == "1":
        take_screenshot(page)

    out = tmp_path / "objects.gpkg"
    page.once("dialog", lambda dialog: dialog.accept(str(out)))
    page.click("#save")
    wait_for_status(page, f"saved 2 object(s) to {out}")
    saved = gpd.read_file(out)
    assert saved.crs.to_epsg() == 26914
    assert saved["object"].tolist() == [1, 2] and saved["n_clicks"].tolist() == [3, 1]

    dialogs: list[str] = []  # saving again asks before replacing the file
    page.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.accept(str(out))))
    page.evaluate("document.getElementById('status').textContent = ''")
    page.click("#save")
    wait_for_status(page, f"saved 2 object(s) to {out}")
    assert dialogs == ["prompt", "confirm"]

    with page.expect_download() as download:
        page.click("#export")
    exported = json.loads(Path(download.value.path()).read_text())
    labels = [(f["properties"]["object"], f["properties"]["label"]) for f in exported["features"]]
    assert labels == [(1, "positive"), (1, "negative"), (1, "negative"), (2, "positive")]

    page.keyboard.press("z")  # undo the lake click: object 2 disappears
    wait_for_status(page, "object 2 removed: its only click undone")
    assert page.locator("#objects li").count() == 1
    page.keyboard.press("z")
    wait_for_status(page, "undid the last click of object 1")


def test_actions_made_while_the_model_works_apply_in_order(page, app_segmenter, monkeypatch) -> None:
    """A click, New object and a click on another pond, made before the first answer came back:
    the second click goes to the new object (it went to the first, which kept the stale id)."""
    import time

    page.wait_for_selector("img.leaflet-tile-loaded")
    model_call = app_segmenter.add_click

    def slow_model(*args, **kwargs):  # a CPU model on a large window
        time.sleep(1.5)
        return model_call(*args, **kwargs)

    monkeypatch.setattr(app_segmenter, "add_click", slow_model)
    click_pixel(page, POND)
    page.keyboard.press("n")
    click_pixel(page, LAKE, button="right")
    page.mouse.click(*on_screen(page, LAKE), button="right")  # a right double click: one negative prompt
    wait_for_status(page, "object 2: negative click")
    page.wait_for_function("document.querySelectorAll('#objects li').length === 2")
    assert app_segmenter.polygons()["n_clicks"].tolist() == [1, 1]
    assert page.locator("#objects li.current").text_content().startswith("Object 2 — ")


def test_double_click_is_one_click_and_delete_asks_first(page) -> None:
    page.wait_for_selector("img.leaflet-tile-loaded")
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if request.url.endswith("/api/click") else None)
    page.mouse.dblclick(*on_screen(page, POND))
    wait_for_status(page, "object 1: positive click")  # both click events fired long before this answer
    assert len(sent) == 1
    assert page.text_content("#objects li").endswith("· 1 click")

    dialogs: list[str] = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.keyboard.press("Delete")
    assert dialogs and "cannot be undone" in dialogs[0]
    assert page.locator("#objects li").count() == 1  # dismissed: kept
    page.once("dialog", lambda dialog: dialog.accept())
    page.keyboard.press("Delete")
    wait_for_status(page, "object deleted")
    assert page.locator("#objects li").count() == 0
    page.click("#export")  # nothing to export: said, no empty file that --clicks would refuse
    wait_for_status(page, "no clicks to export yet")



def test_a_second_tab_on_the_session_follows_the_first(page, app_url: str) -> None:
    """Two tabs on one server: the idle one redraws within seconds what the other one clicked."""
    other = page.context.browser.new_page(viewport={"width": 1280, "height": 800})
    other.goto(app_url)
    other.wait_for_selector("img.leaflet-tile-loaded")
    page.wait_for_selector("img.leaflet-tile-loaded")
    click_pixel(page, POND)
    wait_for_status(page, "object 1: positive click")
    other.wait_for_function("document.querySelectorAll('#objects li').length === 1", timeout=15_000)
    assert other.text_content("#objects li").endswith("· 1 click")
    other.keyboard.press("n")
    wait_for_status(other, "object 2 started")
    click_pixel(other, LAKE)
    wait_for_status(other, "object 2: positive click")
    page.wait_for_function("document.querySelectorAll('#objects li').length === 2", timeout=15_000)


def test_objects_never_share_a_colour(page) -> None:
    """Ids 1, 9 and 17 (and names) once fell on one of eight colours; each object now has its own."""
    page.wait_for_selector("img.leaflet-tile-loaded")
    ids = [1, 9, 17, 2, "pond", "lake", "field", "road", *range(20, 32)]
    colours = page.evaluate("ids => ids.map(colour)", ids)
    assert len(set(colours)) == len(ids)
    assert page.evaluate("() => colour('9') === colour(9) && colour(1) === colour(1)")  # stable, ids as text


def test_a_server_that_does_not_answer_is_said_in_words(page) -> None:
    """The browser's own "Failed to fetch" tells an analyst nothing: the status says what happened."""
    page.wait_for_selector("img.leaflet-tile-loaded")
    page.route("**/api/click", lambda route: route.abort())
    click_pixel(page, POND)
    wait_for_status(page, "the app's server does not answer: was mst-geo app stopped?")
    assert page.locator("#status.error").count() == 1
