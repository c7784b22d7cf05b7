// Segment: the current head on every slice of the shown volume, slices encoded ahead on every
// worker of the pool while the primary runs the head on those already encoded.
import { $, app, job, progress, seconds, setStatus } from "./state.js";
import { getModel, where } from "./model.js";
import { inBatches } from "./embeddings.js";
import { rememberAll } from "./tools.js";
import { draw, listVolumes } from "./viewer.js";
import { measures } from "./measures.js";

export const segment = () => job("Segmentation", async () => {
  const s = app.current;
  if (!s) return;
  const info = await getModel();
  const v = s.volume, n = v.segSliceCount(), t0 = performance.now();
  s.cacheHits = 0;
  // Labels from a file or drawn by hand are worth getting back: Undo restores them.
  const replaced = v.hasLabels() && s.labels !== "model" ? s.labels : null;
  if (v.hasLabels()) rememberAll(s);
  const slices = Array.from({ length: n }, (_, z) => ({ s, z }));
  let z = 0;
  // The head runs once per batch of slices already encoded (one slice while the encoder leads).
  for await (const batch of inBatches(slices, app.description.headBatch)) {
    if (app.model.cancel) {
      setStatus("ready", "Segmentation cancelled");
      return;
    }
    const embeddings = new Float32Array(batch.reduce((n, e) => n + e.length, 0));
    batch.forEach((e, i) => embeddings.set(e, i * e.length));
    const logits = await app.pool.call("headLogits", { embedding: embeddings }, [embeddings.buffer]);
    const per = logits.length / batch.length;
    for (let i = 0; i < batch.length; i++) {
      v.setLabelsFromLogits(z, logits.subarray(i * per, (i + 1) * per), info.classes.length);
      z += 1;
    }
    s.labels = "model";
    const elapsed = performance.now() - t0, left = (elapsed / z) * (n - z);
    progress(z / n);
    setStatus("busy", `Segmenting ${s.name} ${where(info)}: slice ${z} of ${n}, about ${seconds(left)} left`);
    if (s === app.current) draw();
  }
  // Stray islands (a speck of "LV" outside the heart) are most of a head's errors on new scans.
  const cleared = $("largest-pieces").checked ? v.keepLargestPieces(info.classes.length) : 0;
  if (cleared && s === app.current) draw();
  listVolumes();
  measures();
  $("export").disabled = !app.current.volume.hasLabels();
  const cached = s.cacheHits ? ` (${s.cacheHits} embeddings cached)` : "";
  const undo = replaced ? `; Undo brings back the ${replaced === "file" ? "labels from the file" : "drawn labels"}` : "";
  const islands = cleared ? `; ${cleared} voxels of stray pieces cleared` : "";
  setStatus("done", `Segmented ${n} slices ${where(info)} in ${seconds(performance.now() - t0)}${cached}${islands}${undo}`);
  $("backend").dataset.workerMemory = String(app.pool.memory);
});
