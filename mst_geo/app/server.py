"""The local web app: a JSON API over one ``Segmenter`` plus the static Leaflet page.

The server holds no segmentation logic of its own: every click, undo, delete and save goes to
the same ``mst_geo.api.Segmenter`` that notebooks use, so what the page shows is exactly what
``mst-geo segment`` computes from the exported clicks. One lock serialises the segmenter calls
(it is not thread-safe); tiles are rendered concurrently.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import socket
import threading
import time
import warnings
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlparse

import shapely
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, StrictInt, StrictStr

from mst_geo.app.pagegrid import PageGrid
from mst_geo.app.tiles import WARNING_FILTERS, SceneTiles
from mst_geo.errors import MSTGeoError, MSTGeoWarning, os_error_line
from mst_geo.geo.io import epsg_code
from mst_geo.geo.raster import scene_name, scene_stem

if TYPE_CHECKING:
    from mst_geo.api import Segmenter

STATIC_DIR = Path(__file__).parent / "static"

ObjectId = int | str
"""New objects get integer ids; objects loaded from a clicks file keep theirs ("pond")."""
RequestedId = StrictInt | StrictStr
"""An object id in a request: ``true`` or ``1.5`` is refused, not read as object 1."""


class ClickRequest(BaseModel):
    """A click at ``x, y`` in page coordinates (Leaflet lng/lat) or in the scene CRS."""

    x: float = Field(description="Easting (page: lng) of the click.", strict=True, allow_inf_nan=False)
    y: float = Field(description="Northing (page: lat) of the click.", strict=True, allow_inf_nan=False)
    positive: bool = Field(True, description="True: part of the object; false: not part of it.")
    object: RequestedId | None = Field(None, description="Object the click belongs to; default: the current object.")
    space: Literal["page", "scene"] = Field("page", description="Coordinates of x/y: the page's map or the scene CRS.")


class ObjectRequest(BaseModel):
    """Names an object; ``null`` means the current one (not for delete, which must name it)."""

    object: RequestedId | None = Field(None, description="Object id; default: the current object.")


class SaveRequest(BaseModel):
    """Where to write the polygons (.gpkg, .geojson or .fgb, on the server's disk)."""

    path: str = Field(description="Output file; relative paths are relative to the server's working directory.")
    overwrite: bool = Field(False, description="Replace an existing file.")


class _Session:
    """The app's state beside the segmenter: which object the next click extends."""

    def __init__(self, segmenter: Segmenter, grid: PageGrid):
        self.segmenter = segmenter
        self.grid = grid
        self.lock = threading.Lock()
        self.current: ObjectId | None = segmenter.last_clicked()
        """The object the next click extends: at the start the one clicked last of loaded clicks
        (``--clicks``), so Z undoes that click as it would have before the export."""
        self.before_new: ObjectId | None = None
        """The current object when N started a new one: cancelling the new one goes back to it."""
        self.saved_clicks = segmenter.clicks_geojson()
        """The clicks as last saved or exported (or as loaded at the start): what a shutdown would not lose."""
        self.exported_clicks = self.saved_clicks
        """The clicks as last exported (or loaded): what ``--clicks`` can restart the session from."""
        self.issued: set[ObjectId] = set(segmenter.objects())
        """Ids given to objects (loaded ones too), deleted ones kept: a later object never takes a
        deleted one's id."""
        self.version = 0
        """Counts the changes made to the session: a page that saw another number redraws (another tab)."""

    def unsaved(self) -> bool:
        """Whether clicks changed since the last save (or the start)."""
        with self.lock:
            return self.segmenter.clicks_geojson() != self.saved_clicks

    def unexported(self) -> bool:
        """Whether clicks changed since the last export (or the start): saved polygons alone cannot
        restart the session."""
        with self.lock:
            return self.segmenter.clicks_geojson() != self.exported_clicks

    def new_object(self) -> ObjectId:
        """Start a new object, numbered past the objects; a new object still waiting for its first
        click stays the one (N pressed twice starts one object, and cancelling it goes back)."""
        if self.current is not None and self.current not in self.segmenter.objects():
            return self.current
        self.before_new = self.current  # None or an object with clicks: new_object_id counts it
        self.current = self.segmenter.new_object_id(self.issued)
        self.issued.add(self.current)
        return self.current

    def cancel_new(self, object_id: ObjectId | None) -> ObjectId | None:
        """Drop the current object when it is new (no clicks yet) and ``object_id`` means it (None:
        the current one), returning its id: undo or delete right after N cancels it, not a 404. The
        object that was current before N is current again (the next undo undoes its last click)."""
        new = self.current
        if new is None or new in self.segmenter.objects():
            return None
        if object_id is not None and str(object_id) != str(new):
            return None
        self.current = self.before_new if self.before_new in self.segmenter.objects() else None
        self.issued.discard(new)  # never used: N, Z, N gives the same number again
        return new

    def resolve(self, object_id: ObjectId | None, allow_new: bool = False) -> ObjectId:
        """The object a request means (None: the current one); 404 when it has no clicks to act on.

        ``allow_new`` (clicks) also accepts the current object before its first click, and starts
        a new object when there is no current one.
        """
        if object_id is None:
            if self.current is None and not allow_new:
                raise HTTPException(404, "no current object: click on the map first")
            object_id = self.current if self.current is not None else self.new_object()
        object_id = self.segmenter.existing_id(object_id)  # "7" (ids as text) is object 7
        if self.current is not None and str(object_id) == str(self.current):
            object_id = self.current
        if object_id in self.segmenter.objects() or (allow_new and object_id == self.current):
            return object_id
        if object_id == self.current:
            raise HTTPException(404, f"object {object_id} has no clicks yet")
        raise HTTPException(404, f"unknown object {object_id}")


def create_app(segmenter: Segmenter, tiles: SceneTiles | None = None,
               trusted_hosts: Sequence[str] | None = None) -> FastAPI:
    """The FastAPI app serving ``segmenter``'s scene; ``tiles`` defaults to the scene's own bands and stretch.

    ``trusted_hosts`` (the names this machine is reached by when the app listens on loopback)
    refuses requests for any other ``Host`` (a DNS-rebinding page); a request that changes the
    session from a page of another origin is always refused (a cross-site form post).
    """
    tiles = tiles or SceneTiles(segmenter.raster)
    session = _Session(segmenter, tiles.grid)
    source = segmenter.raster.path
    stem = scene_stem(source)
    save_folder = source.parent if isinstance(source, Path) else Path.cwd()  # a URL's scene: here
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        tiles.close()  # the segmenter's own scene is its owner's to close

    app = FastAPI(title="mst-geo app", summary="Click on a GeoTIFF scene and get polygons back.", lifespan=lifespan)
    app.state.session = session
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_error_handlers(app)

    @app.middleware("http")
    async def count_changes(request: Request, call_next: Any) -> Response:
        """Every session change that succeeds moves ``version`` on, before its answer leaves."""
        response = await call_next(request)
        if request.method not in ("GET", "HEAD") and request.url.path.startswith("/api/") and response.status_code < 400:
            session.version += 1
        return response

    _add_request_guards(app, trusted_hosts)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/api/scene")
    def scene() -> dict[str, Any]:
        """What the page needs to draw the scene: size, CRS, bounds, bands and the tile pyramid."""
        return {
            "name": scene_name(source),
            "path": str(source),
            "width": segmenter.width,
            "height": segmenter.height,
            "crs": segmenter.crs.to_wkt(),
            "crs_name": _short_crs_name(segmenter.crs),
            "palette": tiles.palette is not None,  # a paletted band shows its colours, not grey
            "bounds": list(segmenter.bounds),
            "bands": list(tiles.bands),
            "tile_url": f"tiles/{{z}}/{{x}}/{{y}}.png?v={tiles.version}",
            "tile_size": session.grid.tile_size,
            "max_zoom": session.grid.max_zoom,
            "page_bounds": session.grid.page_bounds,
            "default_save_path": str(save_folder / f"{stem}_objects.gpkg"),
            "clicks_filename": f"{stem}_clicks.geojson",
        }

    @app.get("/tiles/{z}/{x}/{y}.png", response_class=Response)
    def tile(z: int, x: int, y: int) -> Response:
        """Tile z/x/y of the scene in its own pixel grid (zoom ``max_zoom`` = native pixels)."""
        if not session.grid.has_tile(z, x, y):
            raise HTTPException(404, f"no tile {z}/{x}/{y}: zoom runs 0..{session.grid.max_zoom} inside the scene")
        try:
            png = tiles.render(z, x, y)
        except MSTGeoError as error:  # the scene went away (a URL's server, a file cut short): 502, not 500
            raise HTTPException(502, str(error)) from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/objects")
    def new_object() -> dict[str, ObjectId]:
        """Start a new object: the next click without an object id goes to it."""
        with session.lock:
            return {"object": session.new_object()}

    @app.put("/api/current")
    def set_current(request: ObjectRequest) -> dict[str, ObjectId]:
        """Make an existing object the one the next click extends."""
        with session.lock:
            session.current = session.resolve(request.object)
            return {"object": session.current}

    @app.post("/api/click")
    def click(request: ClickRequest) -> dict[str, Any]:
        """Add a click and return the object's new polygon (page coordinates), the server time and
        how many of the object's positive clicks its polygon leaves out."""
        if request.space == "page":
            x, y = session.grid.page_to_scene(request.x, request.y)
        else:
            x, y = request.x, request.y
        if not (math.isfinite(x) and math.isfinite(y)):  # 1e308 on the page: no scene coordinate at all
            raise HTTPException(400, f"click at ({request.x:g}, {request.y:g}) lies outside the scene")
        with session.lock:
            object_id = session.resolve(request.object, allow_new=True)
            start = time.perf_counter()
            segmenter.add_click(x, y, positive=request.positive, object=object_id)
            seconds = time.perf_counter() - start
            session.current = object_id
            page = _page_features(session, _object_features(segmenter, object_id))
            uncovered = segmenter.uncovered_clicks().get(object_id, 0)
        return {"object": object_id, "seconds": seconds, "uncovered": uncovered,
                "feature": page["features"][0] if page["features"] else None}

    @app.post("/api/undo")
    def undo(request: ObjectRequest | None = None) -> dict[str, Any]:
        """Remove the last click of an object (default: the current one)."""
        with session.lock:
            asked = request.object if request else None
            cancelled = session.cancel_new(asked)
            if cancelled is not None:
                return {"object": cancelled, "remaining": False, "cancelled": True}
            object_id = session.resolve(asked)
            segmenter.undo(object_id)
            remaining = object_id in segmenter.objects()
            if not remaining and session.current == object_id:  # its only click went: the one clicked before it
                session.current = segmenter.last_clicked()
            return {"object": object_id, "remaining": remaining}

    @app.delete("/api/objects")  # the id in the body: a name such as ".." or "a/b" is no path segment
    def delete(request: ObjectRequest) -> dict[str, ObjectId]:
        """Delete an object and all its clicks."""
        if request.object is None:
            raise HTTPException(422, "name the object to delete")
        object_id = request.object
        with session.lock:
            cancelled = session.cancel_new(object_id)
            if cancelled is not None:
                return {"deleted": cancelled}
            object_id = session.resolve(object_id)
            segmenter.delete(object_id)
            if session.current == object_id:
                session.current = segmenter.last_clicked()
            return {"deleted": object_id}

    @app.get("/api/version")
    def version() -> dict[str, int]:
        """The session's change count: what a page polls to notice another tab's clicks."""
        return {"version": session.version}

    @app.get("/api/objects")
    def objects() -> dict[str, Any]:
        """All objects: GeoJSON in the scene CRS, the same in page coordinates, and the clicks for the page."""
        with session.lock:
            scene_fc = segmenter.polygons().to_geo_dict(na="null")
            clicks = segmenter.clicks_geojson()
            current = session.current
            changes = session.version
        return {
            "version": changes,
            "current": current,
            "crs": segmenter.crs.to_string(),
            "scene": scene_fc,
            "page": _page_features(session, scene_fc),
            "page_clicks": _page_features(session, clicks),
        }

    @app.post("/api/save")
    def save(request: SaveRequest) -> dict[str, Any]:
        """Write the polygons (GeoPackage, GeoJSON or FlatGeobuf by extension, atomic) with `segment`'s writer."""
        path = _save_path(request.path)
        segmenter.refuse_input_as_output(path)  # the scene or a loaded clicks file: never offered for replacing
        with session.lock, WARNING_FILTERS, warnings.catch_warnings(record=True) as notes:
            if path.is_file() and not request.overwrite:  # 409: the page asks; under the lock, as two saves race
                raise HTTPException(409, f"{path}: exists (save with overwrite to replace it)")
            warnings.simplefilter("always", MSTGeoWarning)  # objects that came out empty, a WGS84 fallback
            segmenter.save(path, overwrite=request.overwrite)
            n_objects = len(segmenter.objects())
            session.saved_clicks = segmenter.clicks_geojson()
            exported = session.saved_clicks == session.exported_clicks
        said = [str(note.message) for note in notes if issubclass(note.category, MSTGeoWarning)]
        return {"path": str(path), "n_objects": n_objects, "warnings": said, "clicks_exported": exported}

    @app.get("/api/export-clicks")
    def export_clicks(request: Request) -> JSONResponse:
        """The clicks as a clicks GeoJSON that `mst-geo segment --clicks` reproduces."""
        with session.lock:
            clicks = segmenter.clicks_geojson()
            if request.headers.get("sec-fetch-site", "same-origin") == "same-origin":  # not another site's <img>
                session.saved_clicks = session.exported_clicks = clicks  # the download holds them: --clicks restores the session
        return JSONResponse(clicks, headers={"Content-Disposition": _attachment(f"{stem}_clicks.geojson")})  # curl -OJ

    return app


def _short_crs_name(crs: Any) -> str:
    """The CRS as the header names it: its EPSG code, else its name (a WKT would fill the page)."""
    code = epsg_code(crs)
    return f"EPSG:{code}" if code is not None else crs.name


def _attachment(filename: str) -> str:
    """A Content-Disposition naming ``filename`` in any script: RFC 6266's ``filename*`` in UTF-8,
    beside an ASCII fallback (an HTTP header holds Latin-1 only)."""
    fallback = filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"


def _save_path(text: str) -> Path:
    """The absolute path a save asks for; a name no file can have (a NUL byte, too long, a link
    loop) is a user error naming it, not a server crash."""
    try:
        path = Path(text).expanduser().resolve()
        path.is_file()  # the file system judges the name here
    except (ValueError, OSError, RuntimeError) as error:
        raise MSTGeoError(f"not a usable file name ({error})", repr(text)[1:-1]) from None
    return path


def _object_features(segmenter: Segmenter, object_id: ObjectId) -> dict[str, Any]:
    polygons = segmenter.polygons()
    return polygons[polygons["object"].astype(str) == str(object_id)].to_geo_dict(na="null")  # text when ids mix


def _page_features(session: _Session, collection: dict[str, Any]) -> dict[str, Any]:
    """A copy of a scene-CRS FeatureCollection in page coordinates."""
    features = []
    for feature in collection["features"]:
        geometry = feature["geometry"]
        if geometry is not None:  # an empty mask has no geometry
            geometry = shapely.geometry.mapping(session.grid.scene_to_page(shapely.geometry.shape(geometry)))
        features.append({**feature, "geometry": geometry})
    return {"type": "FeatureCollection", "features": features}


def _add_error_handlers(app: FastAPI) -> None:
    """User errors become 4xx JSON ``{"detail": "<one clear line>"}``; the server keeps running."""

    @app.exception_handler(MSTGeoError)
    def user_error(request: Request, error: MSTGeoError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    @app.exception_handler(OSError)
    def file_error(request: Request, error: OSError) -> JSONResponse:  # a save the file system refused
        line = os_error_line(error)
        if line is None:
            raise error
        return JSONResponse({"detail": line}, status_code=400)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for problem in error.errors():
            if problem["type"] == "json_invalid":
                reason = problem.get("ctx", {}).get("error", "parse error")
                problems.append(f"request body is not valid JSON ({reason})")
            else:
                where = ".".join(str(part) for part in problem["loc"] if part != "body")
                problems.append(f"{where or 'body'}: {problem['msg']}")
        # without the inputs: a NaN or Infinity sent back would make the answer itself invalid JSON
        errors = [{key: value for key, value in problem.items() if key != "input"} for problem in error.errors()]
        return JSONResponse({"detail": "; ".join(problems), "errors": jsonable_encoder(errors)}, status_code=422)


def _add_request_guards(app: FastAPI, trusted_hosts: Sequence[str] | None) -> None:
    """Refuse session changes posted from another origin, and unknown Host names when given."""

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        host = request.headers.get("host", "")
        if trusted_hosts is not None and urlparse(f"//{host}").hostname not in trusted_hosts:
            return JSONResponse({"detail": f"refused: this app answers to {', '.join(trusted_hosts)} only, "
                                           f"not {host!r}"}, status_code=403)
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD", "OPTIONS") and origin is not None and urlparse(origin).netloc != host:
            return JSONResponse({"detail": f"refused: a page from {origin} cannot change this session"},
                                status_code=403)
        return await call_next(request)


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
"""Host names a browser on this machine reaches a loopback server by."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a --host value) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A listening socket (port 0: any free port), bound before the model loads so a busy port fails fast."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as error:
        message = f"cannot listen on {host}:{port} ({error.strerror}); choose another --port or --host"
        raise MSTGeoError(message) from None


def url_of(sock: socket.socket) -> str:
    """The page's URL for a listening socket."""
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Run ``app`` with uvicorn on ``sock`` until Ctrl-C."""
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
