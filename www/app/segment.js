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
  const k = info.classes.length, largest = $("largest-pieces").checked;
  // The head on every slice (its view under `zoom` on the second look); false when cancelled.
  const pass = async (zoom, what) => {
    const slices = Array.from({ length: n }, (_, z) => ({ s, z, zoom, head: true }));
    const t1 = performance.now();
    let z = 0;
    // A slice a worker encodes comes with the head's logits from that worker; cached embeddings
    // go through the head on the primary, once per batch of those already there.
    for await (const batch of inBatches(slices, app.description.headBatch)) {
      if (app.model.cancel) return false;
      const cached = batch.filter((b) => !b.logits);
      if (cached.length) {
        const size = cached[0].embedding.length;
        const embeddings = new Float32Array(cached.length * size);
        cached.forEach((b, i) => embeddings.set(b.embedding, i * size));
        const logits = await app.pool.call("headLogits", { embedding: embeddings }, [embeddings.buffer]);
        const per = logits.length / cached.length;
        cached.forEach((b, i) => { b.logits = logits.subarray(i * per, (i + 1) * per); });
      }
      for (const { logits } of batch) {
        if (zoom) v.setLabelsFromZoomedLogits(z, logits, k, zoom);
        else v.setLabelsFromLogits(z, logits, k);
        z += 1;
      }
      s.labels = "model";
      const elapsed = performance.now() - t1, left = (elapsed / z) * (n - z);
      progress(z / n);
      setStatus("busy", `${what} ${s.name} ${where(info)}: slice ${z} of ${n}, about ${seconds(left)} left`);
      if (s === app.current) draw();
    }
    return true;
  };
  // Stray islands (a speck of "LV" outside the heart) are most of a head's errors on new scans.
  // The primary worker cuts them, so the page stays responsive through a whole CT's flood fills.
  const clean = async () => {
    const labels = largest ? v.allLabels() : new Uint8Array();
    if (!labels.length) return 0;
    const dims = v.labelDims();
    const kept = await app.pool.call("keepLargestPieces", { labels, dims, classes: k }, [labels.buffer]);
    if (kept.cleared) {
      v.restoreAllLabels(kept.labels);
      if (s === app.current) draw();
    }
    return kept.cleared;
  };
  if (!(await pass(undefined, "Segmenting"))) return setStatus("ready", "Segmentation cancelled");
  let cleared = await clean();
  // Structures far smaller than training showed them (a wider field of view) get a second look,
  // zoomed onto them; a head that records no training extent gets none.
  const extent = info.head.extent;
  const zoom = $("second-look").checked && typeof extent === "number" ? v.zoomPlan(info.inputSize, extent) : undefined;
  let zoomed = "";
  if (zoom) {
    zoomed = `; a second look zoomed x${zoom.scale.toFixed(2)}`;
    const done = await pass(zoom, `Second look (x${zoom.scale.toFixed(2)}) at`);
    zoom.free();
    if (!done) return setStatus("ready", "Segmentation cancelled during the second look");
    cleared = await clean();
  }
  listVolumes();
  measures();
  $("export").disabled = !app.current.volume.hasLabels();
  const cached = s.cacheHits ? ` (${s.cacheHits} embeddings cached)` : "";
  const undo = replaced ? `; Undo brings back the ${replaced === "file" ? "labels from the file" : "drawn labels"}` : "";
  const islands = cleared ? `; ${cleared} voxels of stray pieces cleared` : "";
  setStatus("done", `Segmented ${n} slices ${where(info)} in ${seconds(performance.now() - t0)}${cached}${zoomed}${islands}${undo}`);
  $("backend").dataset.workerMemory = String(app.pool.memory);
});
