// Per-class volumes of the shown labels; with two labelled frames of one heart (ED and ES), the
// cardiac function.
import { $, app } from "./state.js";

export function measures() {
  const t = $("measures"), f = $("function"), { current, classes } = app;
  t.hidden = f.hidden = true;
  if (!current || !current.volume.hasLabels()) return;
  const ml = current.volume.classVolumesMl(classes.length);
  t.textContent = "";
  t.createCaption().textContent = "Volumes";
  classes.slice(1).forEach((c, i) => {
    const row = t.insertRow();
    row.insertCell().textContent = c.name;
    row.insertCell().textContent = `${ml[i + 1].toFixed(1)} mL`;
  });
  t.hidden = false;
  const code = (name) => classes.findIndex((c) => c.name.toUpperCase() === name);
  const [lv, rv, myo] = ["LV", "RV", "MYO"].map(code);
  if (lv < 1) return;
  const frames = app.volumes.filter((s) => s.volume.hasLabels() && s.volume.sameGrid(current.volume));
  if (frames.length < 2) return;
  const json = window.wasmBindings.cardiacFunction(frames.map((s) => s.volume.classVolumesMl(classes.length)), lv, rv, myo);
  if (!json) return;
  const fn = JSON.parse(json);
  f.textContent = "";
  f.createCaption().textContent = `Cardiac function: ED ${frames[fn.ed].name}, ES ${frames[fn.es].name}`;
  const row = (name, value) => { const r = f.insertRow(); r.insertCell().textContent = name; r.insertCell().textContent = value; };
  for (const [name, c] of [["LV", fn.lv], ["RV", fn.rv]]) {
    if (!c) continue;
    row(`${name} EDV / ESV`, `${c.edv.toFixed(1)} / ${c.esv.toFixed(1)} mL`);
    row(`${name} stroke volume`, `${c.stroke_volume.toFixed(1)} mL`);
    row(`${name} ejection fraction`, c.ejection_fraction == null ? "–" : `${c.ejection_fraction.toFixed(1)} %`);
  }
  if (fn.myocardial_mass_g != null) row(`Myocardial mass (ED, ${fn.myocardial_density} g/mL)`, `${fn.myocardial_mass_g.toFixed(1)} g`);
  f.hidden = false;
}
