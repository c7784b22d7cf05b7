// Labelling by hand: SAM's mask for a dragged box, the brush and eraser, undo.
import { $, app, job, setStatus } from "./state.js";
import { keptClasses } from "./classes.js";
import { getModel } from "./model.js";
import { embedding } from "./embeddings.js";
import { draw, listVolumes, pointer } from "./viewer.js";
import { measures } from "./measures.js";

export function remember(s) {
  const view = app.view, v = s.volume, axis = v.viewAxis(), index = s.index[axis];
  view.undo.push({ s, axis, index, plane: v.sliceLabels(index) });
  if (view.undo.length > 50) view.undo.shift();
  $("undo").disabled = false;
}

// A whole volume's labels (before Segment or a dropped label map replaces them).
export function rememberAll(s) {
  app.view.undo.push({ s, all: s.volume.allLabels(), source: s.labels });
  $("undo").disabled = false;
}

export function undo() {
  const view = app.view, u = view.undo.pop();
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

export function edited(s) {
  s.labels = "drawn";
  $("export").disabled = false;
  listVolumes();
  measures();
}

export const boxMask = (s, a, b) => job("Box", async () => {
  const info = await getModel();
  const v = s.volume, z = s.index[v.viewAxis()];
  const box = v.encoderBox(info.inputSize, a, b);
  setStatus("busy", "Box: encoding the slice…");
  const logits = await app.pool.call("boxLogits", { embedding: await embedding(s, z), box });
  const cls = Number($("draw-class").value);
  remember(s);
  const n = v.applyMask(z, cls, logits, Uint8Array.from(keptClasses()));
  edited(s);
  draw();
  setStatus("done", `Box: ${n} pixels of ${app.classes[cls].name} on slice ${z + 1}`);
});

export function paintAt(event) {
  const current = app.current, [x, y] = pointer(event), v = current.volume;
  const cls = app.view.tool === "eraser" ? 0 : Number($("draw-class").value);
  v.paint(current.index[v.viewAxis()], x, y, Number($("radius").value), cls);
  draw();
}
