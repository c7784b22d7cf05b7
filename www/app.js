// The page: file in, slice on a canvas. All decoding and rendering is in Rust (window.wasmBindings,
// set by trunk's loader); this file only wires events. Nothing is uploaded anywhere.
"use strict";

const $ = (id) => document.getElementById(id);
// trunk puts this script in <head>: the elements exist once the document is parsed.
let status, canvas, ctx;

const view = { volume: null, name: "", index: 0, level: 0, window: 1, opacity: 0.5, drag: null, image: null };
// The model is fetched from this page's origin on first use and kept; `classes` comes with the head.
const model = { value: null, classes: [], useGpu: false, backendKnown: null, cancel: false, busy: false };

function setStatus(state, message) {
  status.dataset.state = state;
  status.textContent = message;
}

function draw() {
  const v = view.volume;
  if (!v) return;
  const w = v.width(), h = v.height();
  const rgba = v.renderSlice(view.index, view.level, view.window, view.opacity);
  const image = new ImageData(new Uint8ClampedArray(rgba.buffer, rgba.byteOffset, rgba.length), w, h);
  const off = view.image && view.image.width === w && view.image.height === h
    ? view.image : Object.assign(document.createElement("canvas"), { width: w, height: h });
  off.getContext("2d").putImageData(image, 0, 0);
  view.image = off;
  // Fit the viewport, then back the canvas with device pixels so it stays crisp on high-DPI screens.
  const spacing = v.summary().spacing_mm;
  const aspect = (h * spacing[1]) / (w * spacing[0]) || h / w;
  const top = canvas.getBoundingClientRect().top + window.scrollY;
  const cssW = Math.max(160, Math.min(window.innerWidth - 420, 720, (window.innerHeight - top - 24) / aspect));
  const cssH = cssW * aspect;
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
  $("position").textContent =
    `slice ${view.index + 1} / ${v.sliceCount()} · level ${view.level.toPrecision(4)} · window ${view.window.toPrecision(4)}`;
}

function load(file) {
  setStatus("busy", `Reading ${file.name}…`);
  file.arrayBuffer().then((buffer) => {
    const { WebVolume } = window.wasmBindings;
    let volume;
    try {
      volume = new WebVolume(new Uint8Array(buffer), 0);
    } catch (e) {
      setStatus("error", `${file.name}: ${e.message || e}`);
      return;
    }
    if (model.busy) model.cancel = true;
    if (view.volume) view.volume.free();
    view.volume = volume;
    view.name = file.name;
    $("export").disabled = true;
    $("legend").textContent = "";
    $("measures").hidden = true;
    view.index = Math.floor(volume.sliceCount() / 2);
    [view.level, view.window] = volume.defaultWindow();
    $("file-name").textContent = file.name;
    $("summary").textContent = volume.summaryText();
    $("viewer").hidden = false;
    draw();
    canvas.focus({ preventScroll: true });
    setStatus("ready", `${file.name} loaded`);
  }, (e) => setStatus("error", `${file.name}: cannot read the file (${e})`));
}

function step(delta) {
  if (!view.volume) return;
  const n = view.volume.sliceCount();
  view.index = Math.max(0, Math.min(n - 1, view.index + delta));
  draw();
}

function voxelUnder(event) {
  const v = view.volume, r = canvas.getBoundingClientRect();
  const x = Math.floor(((event.clientX - r.left) / r.width) * v.width());
  const y = Math.floor(((event.clientY - r.top) / r.height) * v.height());
  const value = v.valueAt(view.index, x, y);
  if (value === undefined) return "";
  const label = v.labelAt(view.index, x, y);
  const name = label === undefined ? "" : ` · ${model.classes[label] ? model.classes[label].name : label}`;
  return `(${x}, ${y}) ${value.toPrecision(5)}${name}`;
}

// Reads a same-origin file with a progress line (these are the only requests the page makes).
async function fetchBytes(url, label) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${label}: ${url} answered ${response.status}`);
  const total = Number(response.headers.get("content-length")) || 0;
  const reader = response.body.getReader();
  const parts = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    got += value.length;
    setStatus("busy", total ? `Downloading ${label}: ${Math.round((100 * got) / total)}%` : `Downloading ${label}…`);
  }
  const bytes = new Uint8Array(got);
  let at = 0;
  for (const p of parts) { bytes.set(p, at); at += p.length; }
  return bytes;
}

async function getModel() {
  if (model.value) return model.value;
  await model.backendKnown;
  const weights = await fetchBytes("lite_medsam.int8.safetensors", "the encoder (LiteMedSAM, int8)");
  const head = await fetchBytes("heads/cardiac.safetensors", "the cardiac head");
  setStatus("busy", "Preparing the model…");
  model.value = await window.wasmBindings.loadModel(weights, head, model.useGpu);
  model.classes = model.value.classes();
  return model.value;
}

const seconds = (ms) => (ms < 60000 ? `${Math.round(ms / 1000)} s` : `${(ms / 60000).toFixed(1)} min`);

async function segment() {
  const v = view.volume;
  if (!v || model.busy) return;
  model.busy = true;
  model.cancel = false;
  $("segment").disabled = true;
  $("cancel").hidden = false;
  const progress = $("progress");
  try {
    const m = await getModel();
    v.setPalette(model.classes.map((c) => c.color));
    const n = v.sliceCount(), size = m.inputSize(), t0 = performance.now();
    progress.hidden = false;
    for (let z = 0; z < n; z++) {
      if (model.cancel || view.volume !== v) {
        setStatus("ready", "Segmentation cancelled");
        return;
      }
      const logits = await m.segmentInput(v.encoderInput(z, size));
      v.setLabelsFromLogits(z, logits, model.classes.length);
      const elapsed = performance.now() - t0, left = (elapsed / (z + 1)) * (n - z - 1);
      progress.value = (z + 1) / n;
      setStatus("busy", `Segmenting on ${m.backend()}: slice ${z + 1} of ${n}, about ${seconds(left)} left`);
      draw();
      // Let the page paint and take input between slices.
      await new Promise((ok) => setTimeout(ok, 0));
    }
    legend();
    measures();
    $("export").disabled = false;
    setStatus("done", `Segmented ${n} slices on ${m.backend()} in ${seconds(performance.now() - t0)}`);
  } catch (e) {
    setStatus("error", `Segmentation failed: ${e.message || e}`);
  } finally {
    model.busy = false;
    $("segment").disabled = false;
    $("cancel").hidden = true;
    progress.hidden = true;
  }
}

function legend() {
  const ul = $("legend");
  ul.textContent = "";
  model.classes.slice(1).forEach((c) => {
    const li = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = c.color;
    li.append(swatch, c.name);
    ul.append(li);
  });
}

function measures() {
  const ml = view.volume.classVolumesMl(model.classes.length);
  const t = $("measures");
  t.textContent = "";
  t.createCaption().textContent = "Volumes";
  model.classes.slice(1).forEach((c, i) => {
    const row = t.insertRow();
    row.insertCell().textContent = c.name;
    row.insertCell().textContent = `${ml[i + 1].toFixed(1)} mL`;
  });
  t.hidden = false;
}

function exportNifti() {
  const bytes = view.volume.exportLabels();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([bytes], { type: "application/gzip" }));
  a.download = `${view.name.replace(/\.nii(\.gz)?$/i, "")}_seg.nii.gz`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function wire() {
  const drop = $("drop");
  for (const target of [document.body]) {
    target.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    target.addEventListener("dragleave", () => drop.classList.remove("over"));
    target.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer.files.length) load(e.dataTransfer.files[0]);
    });
  }
  $("volume-input").addEventListener("change", (e) => { if (e.target.files.length) load(e.target.files[0]); });
  canvas.addEventListener("wheel", (e) => { e.preventDefault(); step(e.deltaY > 0 ? 1 : -1); }, { passive: false });
  canvas.addEventListener("keydown", (e) => {
    const d = { ArrowUp: 1, ArrowRight: 1, PageUp: 5, ArrowDown: -1, ArrowLeft: -1, PageDown: -5 }[e.key];
    if (d) { e.preventDefault(); step(d); }
  });
  canvas.addEventListener("mousedown", (e) => {
    view.drag = { x: e.clientX, y: e.clientY, level: view.level, window: view.window };
  });
  window.addEventListener("mouseup", () => { view.drag = null; });
  canvas.addEventListener("mousemove", (e) => {
    if (!view.volume) return;
    $("readout").textContent = voxelUnder(e);
    if (!view.drag) return;
    // One canvas width of drag doubles or halves the window; height moves the level by a window.
    const r = canvas.getBoundingClientRect(), d = view.drag;
    view.window = Math.max(1e-6, d.window * Math.pow(2, (e.clientX - d.x) / r.width * 2));
    view.level = d.level - ((e.clientY - d.y) / r.height) * d.window;
    draw();
  });
  canvas.addEventListener("dblclick", () => {
    [view.level, view.window] = view.volume.defaultWindow();
    draw();
  });
  window.addEventListener("resize", draw);
  $("segment").addEventListener("click", segment);
  $("cancel").addEventListener("click", () => { model.cancel = true; });
  $("export").addEventListener("click", exportNifti);
  $("opacity").addEventListener("input", (e) => { view.opacity = Number(e.target.value); draw(); });
}

async function start() {
  status = $("status");
  canvas = $("slice");
  ctx = canvas.getContext("2d");
  wire();
  setStatus("ready", "Ready: drop a volume");
  model.backendKnown = window.wasmBindings.backendReport().then((report) => {
    // A software adapter (SwiftShader) is far slower than the CPU backend: keep to the CPU then.
    const software = /swiftshader|llvmpipe|lavapipe/i.test(report);
    model.useGpu = report.startsWith("WebGPU") && !software;
    $("backend").textContent = `Compute: ${report}${software ? "; a software adapter, so the CPU runs the model" : ""}`;
  }, (e) => {
    $("backend").textContent = `Compute: CPU (${e.message || e})`;
  });
  await model.backendKnown;
}

const domReady = new Promise((ok) =>
  document.readyState === "loading" ? addEventListener("DOMContentLoaded", ok, { once: true }) : ok());
const wasmReady = new Promise((ok) =>
  window.wasmBindings ? ok() : addEventListener("TrunkApplicationStarted", ok, { once: true }));
Promise.all([domReady, wasmReady]).then(start);
