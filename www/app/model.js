// The model: its files fetched from this origin (with progress), loaded into the pool's workers,
// and what the page shows of the current head.
import { $, app, setStatus, seconds, progress } from "./state.js";
import { setClasses } from "./classes.js";

// The model's load in flight (null when none), and whether a job waits for it: a load the page
// starts on its own (`preloadModel`) keeps the status line quiet until a job joins it.
let loading = null;
let waited = false;

// Same-origin files, with a progress line while a job waits (these and the bundle are the only
// requests the page makes; the service worker serves them offline after the first visit).
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
    if (!waited) continue;
    if (total) progress(got / total);
    const left = total ? `, about ${seconds(((performance.now() - t0) / got) * (total - got))} left` : "";
    setStatus("busy", total ? `Downloading ${label}: ${Math.round((100 * got) / total)}%${left}` : `Downloading ${label}…`);
  }
  const bytes = new Uint8Array(got);
  let at = 0;
  for (const p of parts) { bytes.set(p, at); at += p.length; }
  return bytes;
}

// The model, loaded into the pool on first use (or joined while the page preloads it).
export async function getModel() {
  if (app.model.info) return app.model.info;
  waited = true;
  setStatus("busy", "Preparing the model…");
  return load();
}

// Loads the model while the page waits for a volume, so that the first Segment, Box or Teach
// encodes at once instead of first downloading and loading for about a second (the helpers'
// start included). Its failure is quiet: the first job loads again and shows why.
export function preloadModel() {
  if (!app.model.info) load().catch(() => {});
}

function load() {
  loading ??= (async () => {
    const weights = await fetchBytes("lite_medsam.int8.safetensors", "the encoder (LiteMedSAM, int8)");
    const head = await fetchBytes("heads/cardiac.safetensors", "the cardiac head");
    if (waited) setStatus("busy", "Preparing the model…");
    const info = await app.pool.load(weights, head, app.model.useGpu);
    headChanged(info);
    return info;
  })().finally(() => { loading = null; });
  return loading;
}

export function headChanged(info) {
  app.model.info = info;
  setClasses(info.classes);
  $("segment").textContent = `Segment (${info.classes.slice(1).map((c) => c.name).join(", ")})`;
  const t = info.head.training || {};
  const dice = t.val_dice ?? t.validation_dice;
  $("head-info").textContent = `Head: ${info.head.kind}, ${info.classes.length - 1} classes`
    + (t.trained_in ? `, trained in ${t.trained_in}` : "") + (typeof dice === "number" ? `, validation Dice ${dice.toFixed(3)}` : "");
}

// "on CPU (2 workers)" for status lines.
export function where(info) {
  const n = app.pool.size;
  return `on ${info.backend}${n > 1 ? ` (${n} workers)` : ""}`;
}
