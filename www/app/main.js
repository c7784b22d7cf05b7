// The page: volumes in, slices on a canvas, labels from the model, boxes or the brush, a head
// taught here. Decoding, rendering and the cardiac measures are Rust (window.wasmBindings, set by
// trunk's loader); the model runs in a pool of Web Workers (pool.js) so the page never freezes.
// Nothing is uploaded anywhere. This module wires the events; each other module holds one job.
import { $, app, setStatus, startPool } from "./state.js";
import { setClasses, classesFromNames, keepBoxes } from "./classes.js";
import { draw, planes, pointer, readout, showVolume, step } from "./viewer.js";
import { exportNifti, loadFiles } from "./files.js";
import { boxMask, edited, paintAt, remember, undo } from "./tools.js";
import { segment } from "./segment.js";
import { exportHead, importHead, teach } from "./teach.js";
import { preloadModel } from "./model.js";

// The Teach menu, from the wasm's head kinds; each kind brings its own epoch count until the
// person types one.
function headMenu() {
  const select = $("head-kind"), d = app.description;
  for (const h of d.heads) select.add(new Option(h.label, h.kind));
  select.value = d.teachHead;
  const epochs = $("epochs");
  const kindEpochs = () => {
    if (!epochs.dataset.typed) epochs.value = String(d.heads.find((h) => h.kind === select.value).epochs);
  };
  kindEpochs();
  epochs.addEventListener("input", () => { epochs.dataset.typed = "1"; });
  select.addEventListener("change", kindEpochs);
}

function wire() {
  const drop = $("drop"), canvas = $("slice"), view = app.view;
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
    if (!app.current) setStatus("error", "Load the image first, then its label map");
    else loadFiles([...e.target.files], true);
    e.target.value = "";
  });
  $("volumes").addEventListener("change", (e) => showVolume(app.volumes[Number(e.target.value)]));
  canvas.addEventListener("wheel", (e) => { e.preventDefault(); step(e.deltaY > 0 ? 1 : -1); }, { passive: false });
  canvas.addEventListener("keydown", (e) => {
    const d = { ArrowUp: 1, ArrowRight: 1, PageUp: 5, ArrowDown: -1, ArrowLeft: -1, PageDown: -5 }[e.key];
    if (d) { e.preventDefault(); step(d); }
  });
  window.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); undo(); }
  });
  canvas.addEventListener("mousedown", (e) => {
    const current = app.current;
    if (!current) return;
    const [x, y] = pointer(e);
    view.drag = { x: e.clientX, y: e.clientY, at: [x, y], level: current.level, window: current.window };
    if (view.tool === "brush" || view.tool === "eraser") { remember(current); paintAt(e); }
  });
  window.addEventListener("mouseup", (e) => {
    const d = view.drag, current = app.current;
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
    const current = app.current;
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
    [app.current.level, app.current.window] = app.current.volume.defaultWindow();
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
      if (!app.current) return;
      app.current.volume.setViewAxis(Number(e.target.dataset.axis));
      planes();
      draw();
    });
  }
  window.addEventListener("resize", draw);
  $("segment").addEventListener("click", segment);
  $("cancel").addEventListener("click", () => { app.model.cancel = true; });
  $("export").addEventListener("click", exportNifti);
  $("undo").addEventListener("click", undo);
  $("train").addEventListener("click", teach);
  $("export-head").addEventListener("click", exportHead);
  $("import-head").addEventListener("change", (e) => { if (e.target.files.length) importHead(e.target.files[0]); e.target.value = ""; });
  headMenu();
  $("draw-class").addEventListener("change", keepBoxes);
  $("class-names").addEventListener("change", () => { setClasses(classesFromNames(0)); draw(); });
  $("opacity").addEventListener("input", (e) => { view.opacity = Number(e.target.value); draw(); });
}

// The service worker serves the page's own files from Cache Storage when offline. After the
// first visit the page asks it to keep the bundle, its modules and the model, so the next visit
// works offline.
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

function start() {
  app.description = JSON.parse(window.wasmBindings.appDescription());
  wire();
  setClasses(app.description.classes);
  setStatus("ready", "Ready: drop a volume");
  startPool().then((report) => {
    // A software adapter (SwiftShader) is far slower than the CPU backend: keep to the CPU then,
    // unless the address asks for a backend (?backend=webgpu or ?backend=cpu).
    const software = /swiftshader|llvmpipe|lavapipe/i.test(report);
    const asked = new URLSearchParams(location.search).get("backend");
    const trusted = report.startsWith("WebGPU");
    app.model.useGpu = trusted && (asked === "webgpu" || (!software && asked !== "cpu"));
    const why = asked && trusted ? `; ?backend=${asked} chose ${app.model.useGpu ? "WebGPU" : "the CPU"}`
      : software ? "; a software adapter, so the CPU runs the model" : "";
    $("backend").textContent = `Compute (in workers, up to ${navigator.hardwareConcurrency || 1} on the CPU): ${report}${why}`;
    preloadModel();
  }, (e) => {
    $("backend").textContent = `Compute: unavailable (${e.message || e})`;
  });
  offline();
}

// A module runs once the document is parsed; the wasm may still be on its way.
const wasmReady = new Promise((ok) =>
  window.wasmBindings ? ok() : addEventListener("TrunkApplicationStarted", ok, { once: true }));
wasmReady.then(start);
