// The label codes' names and colours (background first), the class menus, the legend.
import { $, app } from "./state.js";

const color = (i) => app.description.palette[i % app.description.palette.length];

export function setClasses(list) {
  app.classes = list.map((c, i) => ({ name: c.name, color: c.color || color(i) }));
  const classes = app.classes;
  $("class-names").value = classes.slice(1).map((c) => c.name).join(", ");
  for (const v of app.volumes) v.volume.setPalette(classes.map((c) => c.color));
  const select = $("draw-class");
  const keep = select.value;
  select.textContent = "";
  classes.slice(1).forEach((c, i) => select.add(new Option(`${i + 1} ${c.name}`, String(i + 1))));
  if (keep && Number(keep) < classes.length) select.value = keep;
  keepBoxes();
  legend();
}

// From the "Classes" field: names for codes 1..n, at least as many as the labels use.
export function classesFromNames(atLeast) {
  const names = $("class-names").value.split(",").map((s) => s.trim()).filter(Boolean);
  while (names.length < atLeast) names.push(`class ${names.length + 1}`);
  const old = app.classes;
  return [{ name: "background" }, ...names.map((name) => ({ name }))]
    .map((c, i) => ({ name: c.name, color: (old[i] && old[i].name === c.name && old[i].color) || color(i) }));
}

// "Box mask minus": classes whose pixels a new box mask leaves alone (the LV inside a
// myocardium box).
export function keepBoxes() {
  const div = $("keep"), classes = app.classes;
  const drawn = Number($("draw-class").value);
  const checked = new Set([...div.querySelectorAll("input:checked")].map((i) => Number(i.value)));
  div.textContent = "Box mask minus: ";
  classes.forEach((c, i) => {
    if (i === 0 || i === drawn) return;
    const label = document.createElement("label");
    const box = Object.assign(document.createElement("input"), { type: "checkbox", value: String(i) });
    box.checked = checked.has(i) || (/^myo/i.test(classes[drawn]?.name || "") && /^lv$/i.test(c.name));
    label.append(box, ` ${c.name} `);
    div.append(label);
  });
}

export function keptClasses() {
  return [...$("keep").querySelectorAll("input:checked")].map((i) => Number(i.value));
}

function legend() {
  const ul = $("legend");
  ul.textContent = "";
  app.classes.slice(1).forEach((c) => {
    const li = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = c.color;
    li.append(swatch, c.name);
    ul.append(li);
  });
}
