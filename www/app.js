// The page: volumes in, slices on a canvas, labels from the model, boxes or the brush, a head
// taught here. Decoding and rendering are Rust (window.wasmBindings, set by trunk's loader); the
// model runs in a Web Worker (worker.js) so the page never freezes. Nothing is uploaded anywhere.
"use strict";

const $ = (id) => document.getElementById(id);
// trunk puts this script in <head>: the elements exist once the document is parsed.
let status, canvas, ctx;

// Loaded volumes: {name, volume (WebVolume), hash, labels: null | "file" | "drawn" | "model",
// index: [per axis], level, window, embeddings: Map(slice -> Float32Array)}.
const volumes = [];
let current = null;
const view = { opacity: 0.5, drag: null, tool: "window", undo: [], three: false };
// Names and colours of label codes, background first; from the head once one is loaded.
const PALETTE = ["#000000", "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
  "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3"];
let classes = [];
const model = { info: null, useGpu: false, cancel: false, busy: false };

function setStatus(state, message) {
  status.dataset.state = state;
  status.textContent = message;
}

const seconds = (ms) => (ms < 60000 ? `${Math.round(ms / 1000)} s` : `${(ms / 60000).toFixed(1)} min`);

// ---- the worker -------------------------------------------------------------------------------

const worker = { w: null, next: 1, pending: new Map(), ready: null };

function call(op, args, transfer) {
  return new Promise((ok, fail) => {
    const id = worker.next++;
    worker.pending.set(id, { ok, fail });
    worker.w.postMessage({ id, op, args }, transfer || []);
  });
}

function startWorker() {
  // The bundle's hashed names, from trunk's preload links.
  const js = document.querySelector('link[rel="modulepreload"][href$=".js"]').href;
  const bg = document.querySelector('link[rel="preload"][href$=".wasm"]').href;
  worker.w = new Worker("worker.js", { type: "module" });
  worker.w.onmessage = (e) => {
    const { id, ok, value, error, fatal } = e.data;
    const p = worker.pending.get(id);
    worker.pending.delete(id);
    if (ok) p.ok(value); else p.fail(new Error(error));
    if (fatal) restartWorker();
  };
  // An uncaught error (a panic in an async step) would leave its caller waiting forever.
  worker.w.onerror = (e) => {
    e.preventDefault();
    for (const p of worker.pending.values()) p.fail(new Error(`the model's worker failed: ${e.message}`));
    worker.pending.clear();
    restartWorker();
  };
  worker.errors = 0;
  worker.ready = call("init", { js, bg });
  return worker.ready;
}

// After a wasm trap the worker's memory cannot be trusted: start a fresh one, and load the model
// again on next use (embeddings stay cached in the page).
function restartWorker() {
  worker.w.terminate();
  model.info = null;
  for (const p of worker.pending.values()) p.fail(new Error("the model's worker was restarted"));
  worker.pending.clear();
  startWorker().catch(() => {});
}

// ---- classes ----------------------------------------------------------------------------------

function setClasses(list) {
  classes = list.map((c, i) => ({ name: c.name, color: c.color || PALETTE[i % PALETTE.length] }));
  $("class-names").value = classes.slice(1).map((c) => c.name).join(", ");
  for (const v of volumes) v.volume.setPalette(classes.map((c) => c.color));
  const select = $("draw-class");
  const keep = select.value;
  select.textContent = "";
  classes.slice(1).forEach((c, i) => select.add(new Option(`${i + 1} ${c.name}`, String(i + 1))));
  if (keep && Number(keep) < classes.length) select.value = keep;
  keepBoxes();
  legend();
}

// From the "Classes" field: names for codes 1..n, at least as many as the labels use.
function classesFromNames(atLeast) {
  const names = $("class-names").value.split(",").map((s) => s.trim()).filter(Boolean);
  while (names.length < atLeast) names.push(`class ${names.length + 1}`);
  return [{ name: "background" }, ...names.map((name) => ({ name }))]
    .map((c, i) => ({ name: c.name, color: (classes[i] && classes[i].name === c.name && classes[i].color) || PALETTE[i % PALETTE.length] }));
}

// "Box mask minus": classes whose pixels a new box mask leaves alone (the LV inside a
// myocardium box).
function keepBoxes() {
  const div = $("keep");
  const drawn = Number($("draw-class").value);
  const checked = new Set([...div.querySelectorAll("input:checked")].map((i) => Number(i.value)));
  div.textContent = "Box mask minus: ";
  classes.forEach((c, i) => {
    if (i === 0 || i === drawn) return;
    const label = document.createElement("label");
    const box = Object.assign(document.createElement("input"), { type: "checkbox", value: String(i) });
    box.checked = checked.has(i) || (/^myo/i.test(classes[drawn]?.name || "") && /^lv$/i.test(c.name));
    label.append(box, ` ${c.name} `);
    div.append(label);
  });
}

// ---- viewing ----------------------------------------------------------------------------------

// Renders slice `index` along `axis` onto `target` at `cssW` CSS pixels wide, with the voxels'
// true aspect, backed by device pixels so it stays crisp on high-DPI screens. Returns the
// context and the device pixels per voxel.
// One scratch canvas for every plane: drawImage copies it at once, and a new canvas per draw
// (each mouse move while dragging the window) only makes garbage.
const scratch = document.createElement("canvas");

function paintPlane(target, v, axis, index, cssW) {
  const [w, h] = v.planeSize(axis);
  const rgba = v.renderAlong(axis, index, current.level, current.window, view.opacity);
  const image = new ImageData(new Uint8ClampedArray(rgba.buffer, rgba.byteOffset, rgba.length), w, h);
  if (scratch.width !== w || scratch.height !== h) Object.assign(scratch, { width: w, height: h });
  scratch.getContext("2d").putImageData(image, 0, 0);
  const [sx, sy] = v.planeSpacing(axis);
  const aspect = (h * sy) / (w * sx) || h / w;
  const dpr = window.devicePixelRatio || 1;
  target.style.width = `${cssW}px`;
  target.style.height = `${cssW * aspect}px`;
  target.width = Math.round(cssW * dpr);
  target.height = Math.round(cssW * aspect * dpr);
  const g = target.getContext("2d");
  g.imageSmoothingEnabled = true;
  g.drawImage(scratch, 0, 0, target.width, target.height);
  return { g, kx: target.width / w, ky: target.height / h, w, h, dpr };
}

// Where the plane along `other` crosses a view along `axis`: a line on it.
function crossing(p, axis, other, index) {
  const [r, c] = [[1, 2], [0, 2], [0, 1]][axis];
  p.g.strokeStyle = "rgba(255, 220, 0, 0.6)";
  p.g.lineWidth = p.dpr;
  p.g.beginPath();
  if (other === r) {
    p.g.moveTo((index + 0.5) * p.kx, 0);
    p.g.lineTo((index + 0.5) * p.kx, p.h * p.ky);
  } else if (other === c) {
    p.g.moveTo(0, (p.h - index - 0.5) * p.ky);
    p.g.lineTo(p.w * p.kx, (p.h - index - 0.5) * p.ky);
  }
  p.g.stroke();
}

function draw() {
  const s = current;
  if (!s) return;
  const v = s.volume, axis = v.viewAxis();
  const [w, h] = v.planeSize(axis);
  const [sx, sy] = v.planeSpacing(axis);
  const aspect = (h * sy) / (w * sx) || h / w;
  const top = canvas.getBoundingClientRect().top + window.scrollY;
  // With three planes the two others sit below the main view and take a third of the height.
  const room = (window.innerHeight - top - 24) * (view.three ? 0.64 : 1);
  const cssW = Math.max(160, Math.min(window.innerWidth - 440, 720, room / aspect));
  const main = paintPlane(canvas, v, axis, s.index[axis], cssW);
  const others = [0, 1, 2].filter((a) => a !== axis);
  $("others").hidden = !view.three;
  if (view.three) {
    others.forEach((a, i) => {
      const p = paintPlane($(`plane-${i}`), v, a, s.index[a], cssW / 2 - 4);
      crossing(p, a, axis, s.index[axis]);
      $(`plane-${i}`).dataset.axis = String(a);
      $(`plane-${i}`).title = `${planeName(v, a)} slice ${s.index[a] + 1}: click to view it here`;
    });
    for (const a of others) crossing(main, axis, a, s.index[a]);
  }
  if (view.drag && view.drag.box) {
    const b = view.drag.box;
    ctx.strokeStyle = classes[Number($("draw-class").value)]?.color || "#ffff00";
    ctx.lineWidth = 2 * main.dpr;
    ctx.strokeRect(b[0] * main.kx, b[1] * main.ky, (b[2] - b[0]) * main.kx, (b[3] - b[1]) * main.ky);
  }
  $("position").textContent = `${planeName(v, axis)} slice ${s.index[axis] + 1} / ${v.sliceCount()} · `
    + `level ${s.level.toPrecision(4)} · window ${s.window.toPrecision(4)}`;
}

// The plane a slice along `axis` shows, from the orientation letters (RAS: i -> sagittal).
function planeName(v, axis) {
  // summary() scans every voxel: ask once per volume, not on every draw.
  v.orientation ??= v.summary().orientation || "";
  const letter = v.orientation[axis] || "";
  return { R: "sagittal", L: "sagittal", A: "coronal", P: "coronal", S: "axial", I: "axial" }[letter] || `axis ${"ijk"[axis]}`;
}

function planes() {
  const span = $("planes");
  span.textContent = "";
  const v = current.volume;
  for (const axis of [v.segAxis(), ...[0, 1, 2].filter((a) => a !== v.segAxis())]) {
    const b = document.createElement("button");
    b.textContent = planeName(v, axis) + (axis === v.segAxis() ? " (acquired)" : "");
    b.classList.toggle("on", axis === v.viewAxis());
    b.addEventListener("click", () => { v.setViewAxis(axis); planes(); draw(); });
    span.append(b);
  }
  const three = document.createElement("button");
  three.textContent = "3 planes";
  three.title = "show the other two planes below; click in the view to move where they cross";
  three.classList.toggle("on", view.three);
  three.addEventListener("click", () => { view.three = !view.three; planes(); draw(); });
  span.append(three);
}

function step(delta) {
  if (!current) return;
  const v = current.volume, axis = v.viewAxis();
  current.index[axis] = Math.max(0, Math.min(v.sliceCount() - 1, current.index[axis] + delta));
  draw();
}

// Display pixel under the pointer, in voxel units (fractional).
function pointer(event) {
  const v = current.volume, r = canvas.getBoundingClientRect();
  return [((event.clientX - r.left) / r.width) * v.width(), ((event.clientY - r.top) / r.height) * v.height()];
}

function readout(event) {
  const v = current.volume, [px, py] = pointer(event), x = Math.floor(px), y = Math.floor(py);
  const index = current.index[v.viewAxis()];
  const value = v.valueAt(index, x, y);
  if (value === undefined) return "";
  const label = v.labelAt(index, x, y);
  const name = label === undefined ? "" : ` · ${classes[label] ? classes[label].name : label}`;
  return `(${x}, ${y}) ${value.toPrecision(5)}${name}`;
}

function showVolume(s) {
  current = s;
  const v = s.volume;
  $("volumes").value = String(volumes.indexOf(s));
  $("file-name").textContent = s.name;
  $("summary").textContent = v.summaryText();
  $("export").disabled = !v.hasLabels();
  $("viewer").hidden = false;
  planes();
  draw();
  measures();
}

function listVolumes() {
  const select = $("volumes");
  select.textContent = "";
  volumes.forEach((s, i) => select.add(new Option(`${s.name}${s.labels ? ` · labels (${s.labels})` : ""}`, String(i))));
  if (current) select.value = String(volumes.indexOf(current));
}

// ---- loading ----------------------------------------------------------------------------------

const LABEL_NAME = /[_-](gt|seg|segmentation|label|labels|mask)(\.nii)?(\.gz)?$/i;
const stem = (name) => name.replace(/\.nii(\.gz)?$/i, "").replace(/[_-](gt|seg|segmentation|label|labels|mask)$/i, "");

async function hashHex(buffer) {
  const d = await crypto.subtle.digest("SHA-256", buffer);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function decode(file) {
  const buffer = await file.arrayBuffer();
  const volume = new window.wasmBindings.WebVolume(new Uint8Array(buffer), 0);
  return { name: file.name, volume, hash: await hashHex(buffer) };
}

// Images first, then label maps matched to them by name, else by grid. `asLabels`: the user
// says these files are label maps for the shown volume.
async function loadFiles(files, asLabels) {
  const problems = [], images = [], maps = [];
  setStatus("busy", `Reading ${files.length} file${files.length > 1 ? "s" : ""}…`);
  for (const file of files) {
    try {
      const d = await decode(file);
      const isLabel = asLabels || LABEL_NAME.test(file.name) || (d.volume.looksLikeLabels() && volumes.length + images.length > 0);
      (isLabel ? maps : images).push(d);
    } catch (e) {
      problems.push(`${file.name}: ${e.message || e}`);
    }
  }
  for (const d of images) {
    const v = d.volume;
    const [level, window] = v.defaultWindow();
    const index = [0, 1, 2].map((a) => { v.setViewAxis(a); return Math.floor(v.sliceCount() / 2); });
    v.setViewAxis(v.segAxis());
    v.setPalette(classes.map((c) => c.color));
    volumes.push({ ...d, labels: null, index, level, window, embeddings: new Map() });
  }
  let shown = images.length ? volumes[volumes.length - 1] : current;
  for (const m of maps) {
    const target = asLabels ? current
      : volumes.find((s) => stem(s.name) === stem(m.name) && s.volume.sameGrid(m.volume))
        || [...images.map((d) => volumes.find((s) => s.hash === d.hash)), current].find((s) => s && s.volume.sameGrid(m.volume));
    try {
      if (!target) throw new Error("no loaded image has its size: drop it together with its image");
      const replaced = target.volume.hasLabels() && { s: target, all: target.volume.allLabels(), source: target.labels };
      target.volume.setLabelsFrom(m.volume);
      if (replaced) { view.undo.push(replaced); $("undo").disabled = false; }
      target.labels = "file";
      shown = target;
      const max = target.volume.maxLabel();
      if (max >= classes.length) setClasses(classesFromNames(max));
    } catch (e) {
      problems.push(`${m.name}: ${e.message || e}`);
    }
    m.volume.free();
  }
  listVolumes();
  if (shown) showVolume(shown);
  canvas.focus({ preventScroll: true });
  if (problems.length) setStatus("error", problems.join(" · "));
  else if (shown) {
    const labelled = maps.length ? ` with labels (${maps.map((m) => m.name).join(", ")})` : "";
    setStatus("ready", `${images.map((d) => d.name).join(", ") || shown.name} loaded${labelled}`);
  }
}

// Same-origin files with a progress line (these and the bundle are the only requests the page
// makes; the service worker serves them offline after the first visit).
async function fetchBytes(url, label) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${label}: ${url} answered ${response.status}`);
  const total = Number(response.headers.get("content-length")) || 0;
  const reader = response.body.getReader();
  const parts = [], t0 = performance.now();
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    got += value.length;
    if (total) progress(got / total);
    const left = total ? `, about ${seconds(((performance.now() - t0) / got) * (total - got))} left` : "";
    setStatus("busy", total ? `Downloading ${label}: ${Math.round((100 * got) / total)}%${left}` : `Downloading ${label}…`);
  }
  const bytes = new Uint8Array(got);
  let at = 0;
  for (const p of parts) { bytes.set(p, at); at += p.length; }
  return bytes;
}

async function getModel() {
  if (model.info) return model.info;
  await worker.ready;
  const weights = await fetchBytes("lite_medsam.int8.safetensors", "the encoder (LiteMedSAM, int8)");
  const head = await fetchBytes("heads/cardiac.safetensors", "the cardiac head");
  setStatus("busy", "Preparing the model…");
  const info = await call("load", { weights: weights.buffer, head: head.buffer, useGpu: model.useGpu }, [weights.buffer, head.buffer]);
  headChanged(info);
  return info;
}

function headChanged(info) {
  model.info = info;
  setClasses(info.classes);
  $("segment").textContent = `Segment (${info.classes.slice(1).map((c) => c.name).join(", ")})`;
  const t = info.head.training || {};
  const dice = t.val_dice ?? t.validation_dice;
  $("head-info").textContent = `Head: ${info.head.kind}, ${info.classes.length - 1} classes`
    + (t.trained_in ? `, trained in ${t.trained_in}` : "") + (typeof dice === "number" ? `, validation Dice ${dice.toFixed(3)}` : "");
}

// ---- embeddings: memory, then IndexedDB by the file's SHA-256, then the encoder ----------------

const db = new Promise((ok) => {
  const open = indexedDB.open("autosam", 1);
  open.onupgradeneeded = () => open.result.createObjectStore("embeddings");
  open.onsuccess = () => ok(open.result);
  open.onerror = () => ok(null); // private windows may refuse: then encode every session
});

function idb(mode, fn) {
  return db.then((d) => d && new Promise((ok) => {
    const tx = d.transaction("embeddings", mode);
    const r = fn(tx.objectStore("embeddings"));
    tx.oncomplete = () => ok(r.result);
    tx.onerror = tx.onabort = () => ok(undefined);
  }));
}

// Embeddings are kept at half precision where the browser has Float16Array, as the native cache
// keeps them: 2 MiB a slice instead of 4.
function toStored(e) {
  return typeof Float16Array === "function" ? { f16: new Float16Array(e).buffer } : e;
}

function fromStored(v) {
  if (v instanceof Float32Array) return v;
  if (v && v.f16 instanceof ArrayBuffer && typeof Float16Array === "function") return new Float32Array(new Float16Array(v.f16));
  return null;
}

async function embedding(s, z) {
  if (s.embeddings.has(z)) {
    s.cacheHits = (s.cacheHits || 0) + 1;
    return s.embeddings.get(z);
  }
  const key = `${s.hash}/${model.info.encoder}/${s.volume.segAxis()}/${z}`;
  let e = fromStored(await idb("readonly", (store) => store.get(key)));
  if (e) {
    s.cacheHits = (s.cacheHits || 0) + 1;
  } else {
    e = await call("encode", { input: s.volume.encoderInput(z, model.info.inputSize) });
    idb("readwrite", (store) => store.put(toStored(e), key));
  }
  s.embeddings.set(z, e);
  return e;
}

// ---- segmenting -------------------------------------------------------------------------------

async function job(name, fn) {
  if (model.busy) return;
  model.busy = true;
  model.cancel = false;
  $("cancel").hidden = false;
  for (const id of ["segment", "train"]) $(id).disabled = true;
  try {
    await fn();
    // The worker counts since it started: only new ones belong to this job.
    const errors = await call("errors"), fresh = errors - (worker.errors || 0);
    worker.errors = errors;
    if (fresh > 0) throw new Error(`the model logged ${fresh} error(s); see the console`);
  } catch (e) {
    setStatus("error", `${name} failed: ${e.message || e}`);
  } finally {
    model.busy = false;
    for (const id of ["segment", "train"]) $(id).disabled = false;
    $("cancel").hidden = true;
    $("progress").hidden = true;
  }
}

function progress(fraction) {
  const p = $("progress");
  p.hidden = false;
  p.value = fraction;
}

const segment = () => job("Segmentation", async () => {
  const s = current;
  if (!s) return;
  const info = await getModel();
  const v = s.volume, n = v.segSliceCount(), t0 = performance.now();
  s.cacheHits = 0;
  // Labels from a file or drawn by hand are worth getting back: Undo restores them.
  const replaced = v.hasLabels() && s.labels !== "model" ? s.labels : null;
  if (v.hasLabels()) {
    view.undo.push({ s, all: v.allLabels(), source: s.labels });
    $("undo").disabled = false;
  }
  for (let z = 0; z < n; z++) {
    if (model.cancel) {
      setStatus("ready", "Segmentation cancelled");
      return;
    }
    const logits = await call("headLogits", { embedding: await embedding(s, z) });
    v.setLabelsFromLogits(z, logits, info.classes.length);
    s.labels = "model";
    const elapsed = performance.now() - t0, left = (elapsed / (z + 1)) * (n - z - 1);
    progress((z + 1) / n);
    setStatus("busy", `Segmenting ${s.name} on ${info.backend}: slice ${z + 1} of ${n}, about ${seconds(left)} left`);
    if (s === current) draw();
  }
  listVolumes();
  measures();
  $("export").disabled = !current.volume.hasLabels();
  const cached = s.cacheHits ? ` (${s.cacheHits} embeddings cached)` : "";
  const undo = replaced ? `; Undo brings back the ${replaced === "file" ? "labels from the file" : "drawn labels"}` : "";
  setStatus("done", `Segmented ${n} slices on ${info.backend} in ${seconds(performance.now() - t0)}${cached}${undo}`);
});

function legend() {
  const ul = $("legend");
  ul.textContent = "";
  classes.slice(1).forEach((c) => {
    const li = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = c.color;
    li.append(swatch, c.name);
    ul.append(li);
  });
}

// Per-class volumes; with two labelled frames of one heart (ED and ES), the cardiac function.
function measures() {
  const t = $("measures"), f = $("function");
  t.hidden = f.hidden = true;
  if (!current || !current.volume.hasLabels()) return;
  const ml = current.volume.classVolumesMl(classes.length);
  t.textContent = "";
  t.createCaption().textContent = "Volumes";
  classes.slice(1).forEach((c, i) => {
    const row = t.insertRow();
    row.insertCell().textContent = c.name;
    row.insertCell().textContent = `${ml[i + 1].toFixed(1)} mL`;
  });
  t.hidden = false;
  const code = (name) => classes.findIndex((c) => c.name.toUpperCase() === name);
  const [lv, rv, myo] = ["LV", "RV", "MYO"].map(code);
  if (lv < 1) return;
  const frames = volumes.filter((s) => s.volume.hasLabels() && s.volume.sameGrid(current.volume));
  if (frames.length < 2) return;
  const vols = frames.map((s) => ({ s, ml: s.volume.classVolumesMl(classes.length) }));
  vols.sort((a, b) => b.ml[lv] - a.ml[lv]);
  const ed = vols[0], es = vols[vols.length - 1];
  f.textContent = "";
  f.createCaption().textContent = `Cardiac function: ED ${ed.s.name}, ES ${es.s.name}`;
  const row = (name, value) => { const r = f.insertRow(); r.insertCell().textContent = name; r.insertCell().textContent = value; };
  for (const [name, k] of [["LV", lv], ["RV", rv]]) {
    if (k < 1) continue;
    const edv = ed.ml[k], esv = es.ml[k], sv = edv - esv;
    row(`${name} EDV / ESV`, `${edv.toFixed(1)} / ${esv.toFixed(1)} mL`);
    row(`${name} stroke volume`, `${sv.toFixed(1)} mL`);
    row(`${name} ejection fraction`, edv > 0 ? `${((100 * sv) / edv).toFixed(1)} %` : "–");
  }
  if (myo > 0) row("Myocardial mass (ED, 1.05 g/mL)", `${(ed.ml[myo] * 1.05).toFixed(1)} g`);
  f.hidden = false;
}

function download(bytes, name, type) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([bytes], { type }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function exportNifti() {
  try {
    download(current.volume.exportLabels(), `${stem(current.name)}_seg.nii.gz`, "application/gzip");
  } catch (e) {
    setStatus("error", `Export failed: ${e.message || e}`);
  }
}

// ---- labelling: boxes, brush, undo ------------------------------------------------------------

function remember(s) {
  const v = s.volume, axis = v.viewAxis(), index = s.index[axis];
  view.undo.push({ s, axis, index, plane: v.sliceLabels(index) });
  if (view.undo.length > 50) view.undo.shift();
  $("undo").disabled = false;
}

function undo() {
  const u = view.undo.pop();
  $("undo").disabled = view.undo.length === 0;
  if (!u) return;
  if (u.all) {
    // A whole segmentation: the labels it replaced come back with where they came from.
    u.s.volume.restoreAllLabels(u.all);
    u.s.labels = u.source;
    listVolumes();
    draw();
    measures();
    return;
  }
  const v = u.s.volume, axis = v.viewAxis();
  v.setViewAxis(u.axis);
  v.restoreSliceLabels(u.index, u.plane);
  v.setViewAxis(axis);
  draw();
  measures();
}

function edited(s) {
  s.labels = "drawn";
  $("export").disabled = false;
  listVolumes();
  measures();
}

const boxMask = (s, a, b) => job("Box", async () => {
  const info = await getModel();
  const v = s.volume, z = s.index[v.viewAxis()];
  const box = v.encoderBox(info.inputSize, a, b);
  setStatus("busy", "Box: encoding the slice…");
  const logits = await call("boxLogits", { embedding: await embedding(s, z), box });
  const cls = Number($("draw-class").value);
  const keep = [...$("keep").querySelectorAll("input:checked")].map((i) => Number(i.value));
  remember(s);
  const n = v.applyMask(z, cls, logits, Uint8Array.from(keep));
  edited(s);
  draw();
  setStatus("done", `Box: ${n} pixels of ${classes[cls].name} on slice ${z + 1}`);
});

function paintAt(event) {
  const [x, y] = pointer(event), v = current.volume;
  const cls = view.tool === "eraser" ? 0 : Number($("draw-class").value);
  v.paint(current.index[v.viewAxis()], x, y, Number($("radius").value), cls);
  draw();
}

// ---- teaching ---------------------------------------------------------------------------------

const KINDS = { autosam: "an AutoSAM", cnn: "a CNN", linear: "a linear" };

const teach = () => job("Teaching", async () => {
  const info = await getModel();
  // Slices a person labelled (a dropped label map, boxes or the brush), not the model's own.
  const sources = volumes.filter((s) => (s.labels === "file" || s.labels === "drawn") && s.volume.hasLabels());
  if (!sources.length) throw new Error("no labelled volume: drop a label map with its image, or label slices with Box or Brush");
  const max = Math.max(...sources.map((s) => s.volume.maxLabel()));
  const names = classesFromNames(max).slice(0, max + 1);
  const slices = sources.flatMap((s) => Array.from(s.volume.labelledSlices(), (z) => ({ s, z })));
  const samples = [], t0 = performance.now();
  for (const [i, { s, z }] of slices.entries()) {
    if (model.cancel) return setStatus("ready", "Teaching cancelled");
    progress(i / slices.length);
    const left = i ? `, about ${seconds(((performance.now() - t0) / i) * (slices.length - i))} left` : "";
    setStatus("busy", `Teaching: embedding slice ${i + 1} of ${slices.length}${left}`);
    // Every fifth slice validates, when there are enough to spare.
    samples.push({ embedding: await embedding(s, z), labels: s.volume.trainingLabels(z, info.inputSize), validation: slices.length >= 5 && i % 5 === 4 });
  }
  const kind = $("head-kind").value, epochs = Math.max(1, Number($("epochs").value) || 1);
  const { stepsPerEpoch } = await call("teachStart", { kind, classes: names, lr: 5e-4, batch: 4, seed: 0, samples });
  const history = { loss: [], dice: [], steps: stepsPerEpoch * epochs };
  const t1 = performance.now();
  let dice;
  for (let e = 0; e < epochs; e++) {
    for (let k = 0; k < stepsPerEpoch; k++) {
      if (model.cancel) {
        setStatus("ready", `Teaching stopped after ${history.loss.length} steps; the head so far is applied`);
        break;
      }
      const r = await call("teachStep");
      history.loss.push(r.loss);
      const done = history.loss.length, left = ((performance.now() - t1) / done) * (history.steps - done);
      progress(done / history.steps);
      setStatus("busy", `Teaching ${KINDS[kind]} head on ${info.backend}: epoch ${e + 1} of ${epochs}, loss ${r.loss.toFixed(4)}, about ${seconds(left)} left`);
      plot(history);
    }
    if (model.cancel) break;
    dice = await call("teachValidate");
    history.dice.push({ at: history.loss.length, dice });
    plot(history);
  }
  const summary = { epochs: history.dice.length, steps: history.loss.length, final_loss: history.loss.at(-1), sources: sources.map((s) => s.name) };
  if (typeof dice === "number") summary.val_dice = dice;
  headChanged(await call("teachApply", { summary }));
  if (!model.cancel) {
    const n = history.dice.length;
    const perStep = (performance.now() - t1) / Math.max(1, history.loss.length);
    setStatus("done", `Taught ${KINDS[kind]} head: ${n} epoch${n === 1 ? "" : "s"} on ${samples.length} slices in ${seconds(performance.now() - t0)} (${(perStep / 1000).toFixed(2)} s a step)`
      + (typeof dice === "number" ? `, validation Dice ${dice.toFixed(3)}` : "") + "; Segment now uses it");
  }
});

// Loss per step (left scale) and validation Dice per epoch (0-1, right scale).
function plot(h) {
  const c = $("plot"), g = c.getContext("2d"), dpr = window.devicePixelRatio || 1;
  c.hidden = false;
  const W = 320, H = 150;
  c.style.width = `${W}px`;
  c.style.height = `${H}px`;
  c.width = W * dpr;
  c.height = H * dpr;
  g.scale(dpr, dpr);
  g.fillStyle = "#202328";
  g.fillRect(0, 0, W, H);
  const x0 = 34, x1 = W - 30, y0 = 10, y1 = H - 22, top = Math.max(...h.loss, 1e-6);
  g.strokeStyle = "#3c4043";
  g.strokeRect(x0, y0, x1 - x0, y1 - y0);
  g.fillStyle = "#9aa0a6";
  g.font = "11px system-ui";
  g.fillText(top.toPrecision(2), 2, y0 + 8);
  g.fillText("0", 2, y1);
  g.fillText("loss", x0 + 4, H - 6);
  g.fillText("Dice", x1 - 24, H - 6);
  g.fillText("1", x1 + 6, y0 + 8);
  g.fillText("0", x1 + 6, y1);
  const x = (step) => x0 + ((x1 - x0) * step) / Math.max(1, h.steps);
  const line = (points, scale, color) => {
    g.strokeStyle = g.fillStyle = color;
    g.beginPath();
    points.forEach(([step, v], i) => { const py = y1 - (y1 - y0) * (v / scale); i ? g.lineTo(x(step), py) : g.moveTo(x(step), py); });
    g.stroke();
    for (const [step, v] of points) g.fillRect(x(step) - 2, y1 - (y1 - y0) * (v / scale) - 2, 4, 4);
  };
  line(h.loss.map((v, i) => [i + 1, v]), top, "#8ab4f8");
  line(h.dice.filter((d) => typeof d.dice === "number").map((d) => [d.at, d.dice]), 1, "#3cb44b");
}

async function importHead(file) {
  await job("Importing the head", async () => {
    await getModel();
    const bytes = new Uint8Array(await file.arrayBuffer());
    headChanged(await call("setHead", { bytes: bytes.buffer }, [bytes.buffer]));
    setStatus("done", `${file.name}: head loaded (${classes.slice(1).map((c) => c.name).join(", ")})`);
  });
}

const exportHead = () => job("Exporting the head", async () => {
  await getModel();
  const bytes = await call("exportHead");
  download(bytes, `autosam-head-${model.info.head.kind}.safetensors`, "application/octet-stream");
  setStatus("done", "Head exported");
});

// ---- events -----------------------------------------------------------------------------------

function wire() {
  const drop = $("drop");
  document.body.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  document.body.addEventListener("dragleave", () => drop.classList.remove("over"));
  document.body.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    // A dropped head file is imported; everything else is read as a volume.
    const files = [...e.dataTransfer.files], heads = files.filter((f) => /\.safetensors$/i.test(f.name));
    if (heads.length) importHead(heads[0]);
    const rest = files.filter((f) => !heads.includes(f));
    if (rest.length) loadFiles(rest, false);
  });
  $("volume-input").addEventListener("change", (e) => { if (e.target.files.length) loadFiles([...e.target.files], false); e.target.value = ""; });
  $("label-input").addEventListener("change", (e) => {
    if (!e.target.files.length) return;
    if (!current) setStatus("error", "Load the image first, then its label map");
    else loadFiles([...e.target.files], true);
    e.target.value = "";
  });
  $("volumes").addEventListener("change", (e) => showVolume(volumes[Number(e.target.value)]));
  canvas.addEventListener("wheel", (e) => { e.preventDefault(); step(e.deltaY > 0 ? 1 : -1); }, { passive: false });
  canvas.addEventListener("keydown", (e) => {
    const d = { ArrowUp: 1, ArrowRight: 1, PageUp: 5, ArrowDown: -1, ArrowLeft: -1, PageDown: -5 }[e.key];
    if (d) { e.preventDefault(); step(d); }
  });
  window.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); undo(); }
  });
  canvas.addEventListener("mousedown", (e) => {
    if (!current) return;
    const [x, y] = pointer(e);
    view.drag = { x: e.clientX, y: e.clientY, at: [x, y], level: current.level, window: current.window };
    if (view.tool === "brush" || view.tool === "eraser") { remember(current); paintAt(e); }
  });
  window.addEventListener("mouseup", (e) => {
    const d = view.drag;
    view.drag = null;
    if (!d || !current) return;
    const still = Math.abs(e.clientX - d.x) + Math.abs(e.clientY - d.y) < 3;
    if (view.tool === "window" && still && e.target === canvas) {
      // A click moves where the other planes cross to the voxel under the pointer.
      const v = current.volume, ijk = v.ijkAt(current.index[v.viewAxis()], Math.floor(d.at[0]), Math.floor(d.at[1]));
      if (ijk) [0, 1, 2].filter((a) => a !== v.viewAxis()).forEach((a) => { current.index[a] = ijk[a]; });
    } else if (view.tool === "box" && d.box && d.box[2] - d.box[0] >= 2 && d.box[3] - d.box[1] >= 2) {
      boxMask(current, [d.box[0], d.box[1]], [d.box[2], d.box[3]]);
    } else if (view.tool === "brush" || view.tool === "eraser") {
      edited(current);
    }
    draw();
  });
  canvas.addEventListener("mousemove", (e) => {
    if (!current) return;
    $("readout").textContent = readout(e);
    const d = view.drag;
    if (!d) return;
    if (view.tool === "window") {
      // One canvas width of drag doubles or halves the window; height moves the level by a window.
      const r = canvas.getBoundingClientRect();
      current.window = Math.max(1e-6, d.window * Math.pow(2, ((e.clientX - d.x) / r.width) * 2));
      current.level = d.level - ((e.clientY - d.y) / r.height) * d.window;
    } else if (view.tool === "box") {
      const [x, y] = pointer(e);
      d.box = [Math.min(d.at[0], x), Math.min(d.at[1], y), Math.max(d.at[0], x), Math.max(d.at[1], y)];
    } else {
      paintAt(e);
      return;
    }
    draw();
  });
  canvas.addEventListener("dblclick", () => {
    if (view.tool !== "window") return;
    [current.level, current.window] = current.volume.defaultWindow();
    draw();
  });
  for (const b of document.querySelectorAll("[data-tool]")) {
    b.addEventListener("click", () => {
      view.tool = b.dataset.tool;
      for (const o of document.querySelectorAll("[data-tool]")) o.classList.toggle("on", o === b);
      canvas.focus({ preventScroll: true });
    });
  }
  for (const i of [0, 1]) {
    $(`plane-${i}`).addEventListener("click", (e) => {
      if (!current) return;
      current.volume.setViewAxis(Number(e.target.dataset.axis));
      planes();
      draw();
    });
  }
  window.addEventListener("resize", draw);
  $("segment").addEventListener("click", segment);
  $("cancel").addEventListener("click", () => { model.cancel = true; });
  $("export").addEventListener("click", exportNifti);
  $("undo").addEventListener("click", undo);
  $("train").addEventListener("click", teach);
  $("export-head").addEventListener("click", exportHead);
  $("import-head").addEventListener("change", (e) => { if (e.target.files.length) importHead(e.target.files[0]); e.target.value = ""; });
  // Each kind brings its own epoch count (its option's data-epochs) until the person types one.
  const kindEpochs = () => { if (!$("epochs").dataset.typed) $("epochs").value = $("head-kind").selectedOptions[0].dataset.epochs; };
  kindEpochs();
  $("epochs").addEventListener("input", () => { $("epochs").dataset.typed = "1"; });
  $("head-kind").addEventListener("change", kindEpochs);
  $("draw-class").addEventListener("change", keepBoxes);
  $("class-names").addEventListener("change", () => { setClasses(classesFromNames(0)); draw(); });
  $("opacity").addEventListener("input", (e) => { view.opacity = Number(e.target.value); draw(); });
}

// ---- offline ----------------------------------------------------------------------------------

// The service worker serves the page's own files from Cache Storage when offline. After the
// first visit the page asks it to keep the bundle and the model, so the next visit works offline.
async function offline() {
  if (!("serviceWorker" in navigator)) return;
  try {
    await navigator.serviceWorker.register("sw.js");
    const ready = await navigator.serviceWorker.ready;
    const urls = [location.pathname, "worker.js", "lite_medsam.int8.safetensors", "heads/cardiac.safetensors",
      ...performance.getEntriesByType("resource").map((r) => r.name).filter((u) => u.startsWith(location.origin))];
    ready.active.postMessage({ keep: [...new Set(urls.map((u) => new URL(u, location.href).href))] });
  } catch (e) {
    console.warn(`offline use unavailable: ${e.message || e}`);
  }
}

async function start() {
  status = $("status");
  canvas = $("slice");
  ctx = canvas.getContext("2d");
  wire();
  setClasses(classesFromNames(3));
  setStatus("ready", "Ready: drop a volume");
  startWorker().then((report) => {
    // A software adapter (SwiftShader) is far slower than the CPU backend: keep to the CPU then,
    // unless the address asks for a backend (?backend=webgpu or ?backend=cpu).
    const software = /swiftshader|llvmpipe|lavapipe/i.test(report);
    const asked = new URLSearchParams(location.search).get("backend");
    const trusted = report.startsWith("WebGPU");
    model.useGpu = trusted && (asked === "webgpu" || (!software && asked !== "cpu"));
    const why = asked && trusted ? `; ?backend=${asked} chose ${model.useGpu ? "WebGPU" : "the CPU"}`
      : software ? "; a software adapter, so the CPU runs the model" : "";
    $("backend").textContent = `Compute (in a worker): ${report}${why}`;
  }, (e) => {
    $("backend").textContent = `Compute: unavailable (${e.message || e})`;
  });
  offline();
}

const domReady = new Promise((ok) =>
  document.readyState === "loading" ? addEventListener("DOMContentLoaded", ok, { once: true }) : ok());
const wasmReady = new Promise((ok) =>
  window.wasmBindings ? ok() : addEventListener("TrunkApplicationStarted", ok, { once: true }));
Promise.all([domReady, wasmReady]).then(start);
