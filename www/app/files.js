// Files in and out: dropped volumes decoded by the wasm, label maps paired with their images,
// downloads.
import { $, app, setStatus } from "./state.js";
import { setClasses, classesFromNames } from "./classes.js";
import { listVolumes, showVolume } from "./viewer.js";

const LABEL_NAME = /[_-](gt|seg|segmentation|label|labels|mask)(\.nii)?(\.gz)?$/i;
export const stem = (name) => name.replace(/\.nii(\.gz)?$/i, "").replace(/[_-](gt|seg|segmentation|label|labels|mask)$/i, "");

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
export async function loadFiles(files, asLabels) {
  const { volumes, view } = app;
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
    v.setPalette(app.classes.map((c) => c.color));
    volumes.push({ ...d, labels: null, index, level, window, embeddings: new Map() });
  }
  const current = app.current;
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
      if (max >= app.classes.length) setClasses(classesFromNames(max));
    } catch (e) {
      problems.push(`${m.name}: ${e.message || e}`);
    }
    m.volume.free();
  }
  listVolumes();
  if (shown) showVolume(shown);
  $("slice").focus({ preventScroll: true });
  if (problems.length) setStatus("error", problems.join(" · "));
  else if (shown) {
    const labelled = maps.length ? ` with labels (${maps.map((m) => m.name).join(", ")})` : "";
    setStatus("ready", `${images.map((d) => d.name).join(", ") || shown.name} loaded${labelled}`);
  }
}

export function download(bytes, name, type) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([bytes], { type }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

export function exportNifti() {
  try {
    download(app.current.volume.exportLabels(), `${stem(app.current.name)}_seg.nii.gz`, "application/gzip");
  } catch (e) {
    setStatus("error", `Export failed: ${e.message || e}`);
  }
}
