// Teach: a new head trained in the primary worker on the labelled slices' embeddings (encoded
// ahead on every worker), with a live plot; head files in and out.
import { $, app, job, progress, seconds, setStatus } from "./state.js";
import { classesFromNames } from "./classes.js";
import { getModel, headChanged, where } from "./model.js";
import { inOrder } from "./embeddings.js";
import { download } from "./files.js";

const label = (kind) => app.description.heads.find((h) => h.kind === kind).label;

export const teach = () => job("Teaching", async () => {
  const info = await getModel(), call = (op, args) => app.pool.call(op, args);
  // Slices a person labelled (a dropped label map, boxes or the brush), not the model's own.
  const sources = app.volumes.filter((s) => (s.labels === "file" || s.labels === "drawn") && s.volume.hasLabels());
  if (!sources.length) throw new Error("no labelled volume: drop a label map with its image, or label slices with Box or Brush");
  const max = Math.max(...sources.map((s) => s.volume.maxLabel()));
  const names = classesFromNames(max).slice(0, max + 1);
  const slices = sources.flatMap((s) => Array.from(s.volume.labelledSlices(), (z) => ({ s, z })));
  // Every fifth slice validates, when there are enough to spare; each training slice comes with
  // its augmented views (`teachViews`), encoded once and cached like the slices.
  const validation = (i) => slices.length >= 5 && i % 5 === 4;
  const views = app.description.teachViews, size = info.inputSize;
  const items = slices.flatMap(({ s, z }, i) => [{ s, z, i },
    ...(validation(i) ? [] : Array.from({ length: views }, (_, view) => ({ s, z, i, view })))]);
  const samples = [], t0 = performance.now();
  let k = 0;
  for await (const embedding of inOrder(items)) {
    if (app.model.cancel) return setStatus("ready", "Teaching cancelled");
    const { s, z, i, view } = items[k++];
    progress(k / items.length);
    const left = `, about ${seconds(((performance.now() - t0) / k) * (items.length - k))} left`;
    setStatus("busy", `Teaching: embedded ${k} of ${items.length} (${slices.length} slices and their views)${left}`);
    if (view === undefined) samples.push({ embedding, labels: s.volume.trainingLabels(z, size), validation: validation(i), views: [] });
    else samples.at(-1).views.push({ embedding, labels: s.volume.viewLabels(z, size, 0, view) });
  }
  const kind = $("head-kind").value, epochs = Math.max(1, Number($("epochs").value) || 1);
  const { lr, batchSize } = app.description;
  const { stepsPerEpoch } = await call("teachStart", { kind, classes: names, lr, batch: batchSize, seed: 0, samples });
  const history = { loss: [], dice: [], steps: stepsPerEpoch * epochs };
  const t1 = performance.now();
  let dice;
  for (let e = 0; e < epochs; e++) {
    for (let k = 0; k < stepsPerEpoch; k++) {
      if (app.model.cancel) {
        setStatus("ready", `Teaching stopped after ${history.loss.length} steps; the head so far is applied`);
        break;
      }
      const r = await call("teachStep");
      history.loss.push(r.loss);
      const done = history.loss.length, left = ((performance.now() - t1) / done) * (history.steps - done);
      progress(done / history.steps);
      setStatus("busy", `Teaching ${a(label(kind))} head on ${info.backend}: epoch ${e + 1} of ${epochs}, loss ${r.loss.toFixed(4)}, about ${seconds(left)} left`);
      plot(history);
    }
    if (app.model.cancel) break;
    dice = await call("teachValidate");
    history.dice.push({ at: history.loss.length, dice });
    plot(history);
  }
  const summary = { epochs: history.dice.length, steps: history.loss.length, final_loss: history.loss.at(-1), sources: sources.map((s) => s.name) };
  if (typeof dice === "number") summary.val_dice = dice;
  // The scale the head learns its structures at, for Segment's second look: the median of the
  // volumes' spans on the encoder grid.
  const spans = sources.map((s) => s.volume.labelSpan(info.inputSize)).filter((x) => x !== undefined).sort((a, b) => a - b);
  const mid = spans.length >> 1;
  const extent = spans.length === 0 ? undefined : spans.length % 2 ? spans[mid] : (spans[mid - 1] + spans[mid]) / 2;
  headChanged(await call("teachApply", { summary, extent }));
  await app.pool.headChanged();
  if (!app.model.cancel) {
    const n = history.dice.length;
    const perStep = (performance.now() - t1) / Math.max(1, history.loss.length);
    setStatus("done", `Taught ${a(label(kind))} head: ${n} epoch${n === 1 ? "" : "s"} on ${samples.length} slices (${views} views of each training slice) in ${seconds(performance.now() - t0)} (${(perStep / 1000).toFixed(2)} s a step; slices embedded ${where(info)})`
      + (typeof dice === "number" ? `, validation Dice ${dice.toFixed(3)}` : "") + "; Segment now uses it");
  }
});

const a = (word) => (/^[aeiou]/i.test(word) ? `an ${word}` : `a ${word}`);

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

export async function importHead(file) {
  await job("Importing the head", async () => {
    await getModel();
    const bytes = new Uint8Array(await file.arrayBuffer());
    headChanged(await app.pool.call("setHead", { bytes: bytes.buffer }, [bytes.buffer]));
    await app.pool.headChanged();
    setStatus("done", `${file.name}: head loaded (${app.classes.slice(1).map((c) => c.name).join(", ")})`);
  });
}

export const exportHead = () => job("Exporting the head", async () => {
  await getModel();
  const bytes = await app.pool.call("exportHead");
  download(bytes, `autosam-head-${app.model.info.head.kind}.safetensors`, "application/octet-stream");
  setStatus("done", "Head exported");
});
