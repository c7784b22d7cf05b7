// Drawing: the shown slice (and optionally the two other planes) with its labels, at the voxels'
// true aspect; the plane buttons, slice stepping and the pointer's voxel.
import { $, app } from "./state.js";
import { measures } from "./measures.js";

// One scratch canvas for every plane: drawImage copies it at once, and a new canvas per draw
// (each mouse move while dragging the window) only makes garbage.
const scratch = document.createElement("canvas");

// Renders slice `index` along `axis` onto `target` at `cssW` CSS pixels wide, backed by device
// pixels so it stays crisp on high-DPI screens. Returns the context and the device pixels per
// voxel.
function paintPlane(target, v, axis, index, cssW) {
  const { current, view } = app;
  const [w, h] = v.planeSize(axis);
  const rgba = v.renderAlong(axis, index, current.level, current.window, view.opacity);
  const image = new ImageData(new Uint8ClampedArray(rgba.buffer, rgba.byteOffset, rgba.length), w, h);
  if (scratch.width !== w || scratch.height !== h) Object.assign(scratch, { width: w, height: h });
  scratch.getContext("2d").putImageData(image, 0, 0);
  const [sx, sy] = v.planeSpacing(axis);
  const aspect = (h * sy) / (w * sx) || h / w;
  const dpr = window.devicePixelRatio || 1;
  target.style.width = `${cssW}px`;
  target.style.height = `${cssW * aspect}px`;
  target.width = Math.round(cssW * dpr);
  target.height = Math.round(cssW * aspect * dpr);
  const g = target.getContext("2d");
  g.imageSmoothingEnabled = true;
  g.drawImage(scratch, 0, 0, target.width, target.height);
  return { g, kx: target.width / w, ky: target.height / h, w, h, dpr };
}

// Where the plane along `other` crosses a view along `axis`: a line on it.
function crossing(p, axis, other, index) {
  const [r, c] = [[1, 2], [0, 2], [0, 1]][axis];
  p.g.strokeStyle = "rgba(255, 220, 0, 0.6)";
  p.g.lineWidth = p.dpr;
  p.g.beginPath();
  if (other === r) {
    p.g.moveTo((index + 0.5) * p.kx, 0);
    p.g.lineTo((index + 0.5) * p.kx, p.h * p.ky);
  } else if (other === c) {
    p.g.moveTo(0, (p.h - index - 0.5) * p.ky);
    p.g.lineTo(p.w * p.kx, (p.h - index - 0.5) * p.ky);
  }
  p.g.stroke();
}

export function draw() {
  const s = app.current, view = app.view, canvas = $("slice");
  if (!s) return;
  const v = s.volume, axis = v.viewAxis();
  const [w, h] = v.planeSize(axis);
  const [sx, sy] = v.planeSpacing(axis);
  const aspect = (h * sy) / (w * sx) || h / w;
  const top = canvas.getBoundingClientRect().top + window.scrollY;
  // With three planes the two others sit below the main view and take a third of the height.
  const room = (window.innerHeight - top - 24) * (view.three ? 0.64 : 1);
  const cssW = Math.max(160, Math.min(window.innerWidth - 440, 720, room / aspect));
  const main = paintPlane(canvas, v, axis, s.index[axis], cssW);
  const others = [0, 1, 2].filter((a) => a !== axis);
  $("others").hidden = !view.three;
  if (view.three) {
    others.forEach((a, i) => {
      const p = paintPlane($(`plane-${i}`), v, a, s.index[a], cssW / 2 - 4);
      crossing(p, a, axis, s.index[axis]);
      $(`plane-${i}`).dataset.axis = String(a);
      $(`plane-${i}`).title = `${planeName(v, a)} slice ${s.index[a] + 1}: click to view it here`;
    });
    for (const a of others) crossing(main, axis, a, s.index[a]);
  }
  if (view.drag && view.drag.box) {
    const b = view.drag.box;
    main.g.strokeStyle = app.classes[Number($("draw-class").value)]?.color || "#ffff00";
    main.g.lineWidth = 2 * main.dpr;
    main.g.strokeRect(b[0] * main.kx, b[1] * main.ky, (b[2] - b[0]) * main.kx, (b[3] - b[1]) * main.ky);
  }
  $("position").textContent = `${planeName(v, axis)} slice ${s.index[axis] + 1} / ${v.sliceCount()} · `
    + `level ${s.level.toPrecision(4)} · window ${s.window.toPrecision(4)}`;
}

// The plane a slice along `axis` shows, from the orientation letters (RAS: i -> sagittal).
function planeName(v, axis) {
  // summary() scans every voxel: ask once per volume, not on every draw.
  v.orientation ??= v.summary().orientation || "";
  const letter = v.orientation[axis] || "";
  return { R: "sagittal", L: "sagittal", A: "coronal", P: "coronal", S: "axial", I: "axial" }[letter] || `axis ${"ijk"[axis]}`;
}

export function planes() {
  const span = $("planes"), view = app.view;
  span.textContent = "";
  const v = app.current.volume;
  for (const axis of [v.segAxis(), ...[0, 1, 2].filter((a) => a !== v.segAxis())]) {
    const b = document.createElement("button");
    b.textContent = planeName(v, axis) + (axis === v.segAxis() ? " (acquired)" : "");
    b.classList.toggle("on", axis === v.viewAxis());
    b.addEventListener("click", () => { v.setViewAxis(axis); planes(); draw(); });
    span.append(b);
  }
  const three = document.createElement("button");
  three.textContent = "3 planes";
  three.title = "show the other two planes below; click in the view to move where they cross";
  three.classList.toggle("on", view.three);
  three.addEventListener("click", () => { view.three = !view.three; planes(); draw(); });
  span.append(three);
}

export function step(delta) {
  const current = app.current;
  if (!current) return;
  const v = current.volume, axis = v.viewAxis();
  current.index[axis] = Math.max(0, Math.min(v.sliceCount() - 1, current.index[axis] + delta));
  draw();
}

// Display pixel under the pointer, in voxel units (fractional).
export function pointer(event) {
  const v = app.current.volume, r = $("slice").getBoundingClientRect();
  return [((event.clientX - r.left) / r.width) * v.width(), ((event.clientY - r.top) / r.height) * v.height()];
}

export function readout(event) {
  const current = app.current, v = current.volume, [px, py] = pointer(event), x = Math.floor(px), y = Math.floor(py);
  const index = current.index[v.viewAxis()];
  const value = v.valueAt(index, x, y);
  if (value === undefined) return "";
  const label = v.labelAt(index, x, y);
  const name = label === undefined ? "" : ` · ${app.classes[label] ? app.classes[label].name : label}`;
  return `(${x}, ${y}) ${value.toPrecision(5)}${name}`;
}

export function showVolume(s) {
  app.current = s;
  const v = s.volume;
  $("volumes").value = String(app.volumes.indexOf(s));
  $("file-name").textContent = s.name;
  $("summary").textContent = v.summaryText();
  $("export").disabled = !v.hasLabels();
  $("viewer").hidden = false;
  planes();
  draw();
  measures();
}

export function listVolumes() {
  const select = $("volumes");
  select.textContent = "";
  app.volumes.forEach((s, i) => select.add(new Option(`${s.name}${s.labels ? ` · labels (${s.labels})` : ""}`, String(i))));
  if (app.current) select.value = String(app.volumes.indexOf(app.current));
}
