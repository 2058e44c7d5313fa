// mst-geo app: a Leaflet map over the scene's own pixel grid (L.CRS.Simple).
// The server owns all state (objects, clicks, masks); this page only sends clicks and redraws
// what GET api/objects returns, so what is drawn is always what the server would save.
"use strict";

// Object ids are numbers, or names from a loaded clicks file; the output holds them as text when
// both kinds mix, so ids are compared as text.
const sameObject = (a, b) => a !== null && b !== null && String(a) === String(b);
// Each object keeps the colour it was first drawn with while the page is open. Hues step by the
// golden angle, so no two objects share a colour and neighbours in the list are far apart; the
// first is yellow, which stands out on vegetation and is neither click colour (green, red).
const colourOrder = new Map();
const colour = (id) => {
  const key = String(id);
  if (!colourOrder.has(key)) colourOrder.set(key, colourOrder.size);
  const hue = (50 + colourOrder.get(key) * 137.508) % 360;
  return `hsl(${hue}, 90%, ${hue > 200 && hue < 290 ? 68 : 50}%)`;  // pure blues are lightened: dark water
};

const REQUEST_TIMEOUT_MS = 10 * 60_000;  // a model call on a huge window on a slow CPU stays well under it
const SYNC_MS = 2000;  // how often an idle page asks whether another tab changed the session
let seenVersion = null;  // the session's change count this page last drew
let map, scene, polygonLayer, clickLayer;
let current = null;  // id of the object that the next click extends (null: server picks)

async function api(method, url, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  // a request that never ends would hold every queued action behind it: give up after a while
  options.signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  let response;
  try {
    response = await fetch(url, options);
  } catch (error) {  // nothing answered at all (the browser says only "Failed to fetch")
    if (error.name === "TimeoutError") throw new Error(`no answer from the server in ${REQUEST_TIMEOUT_MS / 60000} minutes`);
    throw new Error("the app's server does not answer: was mst-geo app stopped?");
  }
  // An error from outside the app's handlers (a crash, a proxy) is not JSON: report its status.
  const data = await response.json().catch(() => null);
  if (!response.ok || data === null) {
    const detail = data && data.detail ? data.detail : `${response.status} ${response.statusText} from the server`;
    throw Object.assign(new Error(detail), { status: response.status });
  }
  return data;
}

function setStatus(text, isError = false) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

// Runs an action after the ones before it, reporting its error in the status line instead of
// losing it. One after another, each on the state the previous one left: a click made while the
// model is busy goes to the object that is current when its turn comes, as the user saw it
// (a New object pressed in between included), not to the one current when it was made.
// A background check (``counted`` false) queues the same way without counting as an action the
// user waits for.
let queue = Promise.resolve();
let waiting = 0;
function guarded(action, counted = true) {
  if (counted) {
    waiting += 1;
    if (waiting > 1) setStatus(`working… ${waiting - 1} more waiting`);
  }
  queue = queue.then(async () => {
    try {
      await action();
    } catch (error) {
      setStatus(error.message, true);
    } finally {
      if (counted) waiting -= 1;
    }
  });
  return queue;
}

async function refresh() {
  const data = await api("GET", "api/objects");
  seenVersion = data.version;
  current = data.current;
  data.scene.features.forEach((feature) => colour(feature.properties.object));  // list order sets colours
  polygonLayer.clearLayers().addData(data.page);
  clickLayer.clearLayers().addData(data.page_clicks);
  renderList(data.scene.features);
}

function renderList(features) {
  const list = document.getElementById("objects");
  list.replaceChildren();
  for (const feature of features) {
    const p = feature.properties;
    const item = document.createElement("li");
    item.style.setProperty("--colour", colour(p.object));
    item.className = sameObject(p.object, current) ? "current" : "";
    const area = p.area_m2 == null
      ? `${p.area.toFixed(1)} units²`
      : `${Math.round(p.area_m2).toLocaleString()} m²`;
    item.textContent = `Object ${p.object} — ${area} · ${p.n_clicks} click${p.n_clicks === 1 ? "" : "s"}`;
    item.onclick = () => guarded(async () => {
      await api("PUT", "api/current", { object: p.object });
      await refresh();
      setStatus(`object ${p.object} is current: clicks extend it`);
    });
    list.appendChild(item);
  }
}

async function click(latlng, positive) {
  setStatus("segmenting…");
  const result = await api("POST", "api/click", { x: latlng.lng, y: latlng.lat, positive, object: current });
  await refresh();
  const kind = positive ? "positive" : "negative";
  const missed = result.uncovered
    ? ` · ${result.uncovered} positive click${result.uncovered === 1 ? "" : "s"} outside the polygon: check it`
    : "";
  setStatus(`object ${result.object}: ${kind} click, ${result.seconds.toFixed(2)} s${missed}`);
}

async function newObject() {
  const result = await api("POST", "api/objects");
  current = result.object;
  await refresh();
  setStatus(`object ${current} started: click on it`);
}

async function undo() {
  const result = await api("POST", "api/undo", { object: current });
  await refresh();
  if (result.cancelled) setStatus(`new object ${result.object} cancelled`);
  else if (!result.remaining) setStatus(`object ${result.object} removed: its only click undone`);
  else setStatus(`undid the last click of object ${result.object}`);
}

async function deleteCurrent() {
  if (current === null) return;
  const drawn = document.querySelector("#objects li.current");  // a new object without clicks needs no question
  if (drawn && !window.confirm(`Delete object ${current} and all its clicks? This cannot be undone.`)) return;
  await api("DELETE", "api/objects", { object: current });
  await refresh();
  setStatus("object deleted");
}

async function save() {
  const question = "Save polygons to (.gpkg, .geojson or .fgb, on the server's disk):";
  const path = window.prompt(question, document.body.dataset.savePath);
  if (!path) {
    setStatus("not saved");
    return;
  }
  document.body.dataset.savePath = path;
  let result;
  try {
    result = await api("POST", "api/save", { path, overwrite: false });
  } catch (error) {
    if (error.status !== 409) throw error;
    if (!window.confirm(`${path} exists. Replace it?`)) {
      setStatus(`not saved: ${path} kept as it was`);
      return;
    }
    result = await api("POST", "api/save", { path, overwrite: true });
  }
  // what the writer noted (objects that came out empty, a CRS written as WGS84) is said here too
  const notes = result.warnings.length ? ` · warning: ${result.warnings.join(" · ")}` : "";
  // the polygons alone cannot restart a session: the clicks file can (app --clicks)
  const reopen = result.clicks_exported ? "" : " · Export clicks too, to continue this session later";
  setStatus(`saved ${result.n_objects} object(s) to ${result.path}${notes}${reopen}`, notes !== "");
}

// The clicks as a download, after the actions before it (a plain link would save the clicks as
// they were before queued ones ran, and would swallow an error).
async function exportClicks() {
  const clicks = await api("GET", "api/export-clicks");
  if (clicks.features.length === 0) {
    setStatus("no clicks to export yet");
    return;
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([JSON.stringify(clicks)], { type: "application/geo+json" }));
  link.download = scene.clicks_filename;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  setStatus(`exported ${clicks.features.length} click(s) as ${scene.clicks_filename} (the browser's downloads)`);
}

function onKey(event) {
  if (event.target.tagName === "INPUT") return;
  const actions = { n: newObject, z: undo, Delete: deleteCurrent };
  const action = actions[event.key] || actions[event.key.toLowerCase()];
  if (action && !event.ctrlKey && !event.metaKey) guarded(action);
}

async function init() {
  scene = await api("GET", "api/scene");
  const size = `${scene.width}×${scene.height} px`;
  const grey = scene.bands.every((band) => band === scene.bands[0]);
  const one = scene.palette ? "in its colour table" : "as grey";
  const bands = grey ? `band ${scene.bands[0]} ${one}` : `bands ${scene.bands.join(",")} as R,G,B`;
  document.getElementById("scene-name").textContent = `${scene.name} · ${size} · ${scene.crs_name} · ${bands}`;
  document.body.dataset.savePath = scene.default_save_path;

  map = L.map("map", {
    crs: L.CRS.Simple, minZoom: -3, maxZoom: scene.max_zoom + 3, zoomSnap: 0.5, attributionControl: false,
    doubleClickZoom: false,  // every click is a prompt: two quick clicks must not also zoom
  });
  L.tileLayer(scene.tile_url, {
    tileSize: scene.tile_size, minNativeZoom: 0, maxNativeZoom: scene.max_zoom, noWrap: true,
    bounds: scene.page_bounds,
  }).addTo(map);
  map.fitBounds(scene.page_bounds);

  polygonLayer = L.geoJSON(null, {
    style: (f) => ({
      color: colour(f.properties.object), weight: sameObject(f.properties.object, current) ? 3 : 2, fillOpacity: 0.3,
    }),
  }).addTo(map);
  clickLayer = L.geoJSON(null, {
    pointToLayer: (f, latlng) => L.circleMarker(latlng, {
      radius: 5, weight: 2, color: "#fff", fillOpacity: 1,
      fillColor: f.properties.label === "positive" ? "#2e7d32" : "#c62828",
    }),
    interactive: false,
  }).addTo(map);

  // the second click of a double click (detail 2) is the same prompt again, not a new one
  map.on("click", (e) => e.originalEvent.detail < 2 && guarded(() => click(e.latlng, !e.originalEvent.shiftKey)));
  // a right double click is one negative prompt too: the second menu event of a pair is dropped
  let lastMenu = { time: -Infinity, point: null };
  map.on("contextmenu", (e) => {
    const again = e.originalEvent.timeStamp - lastMenu.time < 500 && lastMenu.point.distanceTo(e.containerPoint) < 5;
    lastMenu = { time: e.originalEvent.timeStamp, point: e.containerPoint };
    if (!again) guarded(() => click(e.latlng, false));
  });
  document.addEventListener("keydown", onKey);
  document.getElementById("new-object").onclick = () => guarded(newObject);
  document.getElementById("undo").onclick = () => guarded(undo);
  document.getElementById("delete").onclick = () => guarded(deleteCurrent);
  document.getElementById("save").onclick = () => guarded(save);
  document.getElementById("export").onclick = () => guarded(exportClicks);
  await refresh();
  setStatus("ready");
  // another tab on the same session: an idle, visible page redraws when the server's state moved on
  setInterval(() => {
    if (waiting > 0 || document.hidden) return;
    guarded(async () => {
      if ((await api("GET", "api/version")).version !== seenVersion) await refresh();
    }, false);
  }, SYNC_MS);
}

guarded(init);
