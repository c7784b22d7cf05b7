// The page: file in, slice on a canvas. All decoding and rendering is in Rust (window.wasmBindings,
// set by trunk's loader); this file only wires events. Nothing is uploaded anywhere.
"use strict";

const $ = (id) => document.getElementById(id);
// trunk puts this script in <head>: the elements exist once the document is parsed.
let status, canvas, ctx;

const view = { volume: null, index: 0, level: 0, window: 1, drag: null, image: null };

function setStatus(state, message) {
  status.dataset.state = state;
  status.textContent = message;
}

function draw() {
  const v = view.volume;
  if (!v) return;
  const w = v.width(), h = v.height();
  const rgba = v.renderSlice(view.index, view.level, view.window);
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
    if (view.volume) view.volume.free();
    view.volume = volume;
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
  return value === undefined ? "" : `(${x}, ${y}) ${value.toPrecision(5)}`;
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
}

async function start() {
  status = $("status");
  canvas = $("slice");
  ctx = canvas.getContext("2d");
  wire();
  setStatus("ready", "Ready: drop a volume");
  try {
    $("backend").textContent = `Compute: ${await window.wasmBindings.backendReport()}`;
  } catch (e) {
    $("backend").textContent = `Compute: CPU (${e.message || e})`;
  }
}

const domReady = new Promise((ok) =>
  document.readyState === "loading" ? addEventListener("DOMContentLoaded", ok, { once: true }) : ok());
const wasmReady = new Promise((ok) =>
  window.wasmBindings ? ok() : addEventListener("TrunkApplicationStarted", ok, { once: true }));
Promise.all([domReady, wasmReady]).then(start);
