// The page's one mutable state, and the small helpers every module uses.
import { Pool } from "./pool.js";

export const $ = (id) => document.getElementById(id);

export const app = {
  // Loaded volumes: {name, volume (WebVolume), hash, labels: null | "file" | "drawn" | "model",
  // index: [per axis], level, window, embeddings: Map(slice -> Float32Array)}.
  volumes: [],
  current: null,
  view: { opacity: 0.5, drag: null, tool: "window", undo: [], three: false },
  // Names and colours of label codes, background first; from the head once one is loaded.
  classes: [],
  // From the wasm (appDescription): head kinds, default classes, palette, training defaults.
  description: null,
  model: { info: null, useGpu: false, cancel: false, busy: false },
  pool: null,
};

export function startPool() {
  app.pool = new Pool();
  // After a trap the primary starts afresh and loads the model again on next use (embeddings
  // stay cached in the page).
  app.pool.onPrimaryLost = () => { app.model.info = null; };
  return app.pool.start();
}

export function setStatus(state, message) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = message;
}

export const seconds = (ms) => (ms < 60000 ? `${Math.round(ms / 1000)} s` : `${(ms / 60000).toFixed(1)} min`);

export function progress(fraction) {
  const p = $("progress");
  p.hidden = false;
  p.value = fraction;
}

// Runs one job at a time (Segment, Teach, Box, a head import), with Cancel shown; failures and
// errors the wasm only logged end in an error status.
export async function job(name, fn) {
  const m = app.model;
  if (m.busy) return;
  m.busy = true;
  m.cancel = false;
  $("cancel").hidden = false;
  for (const id of ["segment", "train"]) $(id).disabled = true;
  try {
    await fn();
    // The primary counts since it started: only new ones belong to this job.
    const errors = await app.pool.call("errors"), fresh = errors - (app.pool.errors || 0);
    app.pool.errors = errors;
    if (fresh > 0) throw new Error(`the model logged ${fresh} error(s); see the console`);
  } catch (e) {
    setStatus("error", `${name} failed: ${e.message || e}`);
  } finally {
    m.busy = false;
    app.pool.drop();
    for (const id of ["segment", "train"]) $(id).disabled = false;
    $("cancel").hidden = true;
    $("progress").hidden = true;
  }
}
