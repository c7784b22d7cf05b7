// End-to-end check of the built page (dist/) in Debian's headless Chromium: it loads, a dropped
// volume shows its summary and slice, the wheel moves slices, the model loads quietly while the
// page waits (and a failed load is tried again by Segment, which says why), automatic
// segmentation with the default head labels it, the exported .nii.gz has the source geometry, a
// label map teaches a new head for one epoch (live plot, export as .safetensors), a box gives
// SAM's mask and undo takes it back, image and label map dropped together pair up and give the
// cardiac function, the page works offline from its cache and reuses its cached embeddings, a
// broken file gives a readable error without breaking the page, no console errors, and no
// request leaves for another origin.
// Usage: node page.mjs DIST_DIR VOLUME.nii.gz OUT_DIR (VOLUME_gt.nii.gz beside VOLUME, and a
// second frame VOLUME2.nii.gz with VOLUME2_gt.nii.gz)
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { gunzipSync } from "node:zlib";
import { join, resolve } from "node:path";
import { serve, launch } from "./harness.mjs";
import { writeBigCt, tabMemory } from "./big-ct.mjs";

const [dist, volumePath, outDir] = process.argv.slice(2).map((p) => resolve(p));
const server = await serve(dist);
const origin = server.origin;
const browser = await launch();
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 2 });
const page = await context.newPage();
page.setDefaultTimeout(15000);
const consoleErrors = [], foreign = [];
page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
page.on("pageerror", (e) => consoleErrors.push(String(e)));
// The context sees the page's, its workers' and its service worker's requests.
context.on("request", (r) => { if (!r.url().startsWith(origin + "/")) foreign.push(r.url()); });
const labelsPath = volumePath.replace(/\.nii\.gz$/, "_gt.nii.gz");
const frame2Path = volumePath.replace(/\.nii\.gz$/, "2.nii.gz");
const frame2LabelsPath = frame2Path.replace(/\.nii\.gz$/, "_gt.nii.gz");

const results = [];
async function check(name, fn) {
  const t = Date.now();
  try {
    await fn();
    results.push(true);
    console.log(`ok   ${name} (${Date.now() - t} ms)`);
  } catch (e) {
    results.push(false);
    console.log(`FAIL ${name}: ${e.message}`);
  }
}
const status = page.getByTestId("status");
// Marks the status as not yet answered, so that a state left over from the previous step is not
// taken for the answer to the next.
const pending = () => page.evaluate(() => { document.querySelector('[data-testid="status"]').dataset.state = "pending"; });
// Waits for `state`; an error state on the way fails at once, with its message.
async function waitState(state, timeout = 60000) {
  const got = await page.waitForFunction((s) => {
    const e = document.querySelector('[data-testid="status"]');
    return (e.dataset.state === s || (s !== "error" && e.dataset.state === "error")) && `${e.dataset.state}: ${e.textContent}`;
  }, state, { timeout });
  const text = await got.jsonValue();
  if (!text.startsWith(`${state}:`)) throw new Error(text);
}

await check("page loads and becomes ready", async () => {
  await page.goto(origin + "/");
  await waitState("ready");
});
await check("a dropped volume shows its summary and a slice", async () => {
  await page.getByTestId("volume-input").setInputFiles(volumePath);
  await page.waitForFunction(() => /loaded/.test(document.querySelector('[data-testid="status"]').textContent));
  const summary = await page.locator("#summary").textContent();
  if (!/dims\s+128 x 144 x 8/.test(summary)) throw new Error(`summary: ${summary}`);
  const bright = await page.evaluate(() => {
    const c = document.getElementById("slice");
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) n += d[i] > 128;
    return n / (d.length / 4);
  });
  if (!(bright > 0.01 && bright < 0.9)) throw new Error(`bright pixel fraction ${bright}`);
});
await check("the wheel moves through slices", async () => {
  const before = await page.locator("#position").textContent();
  await page.locator("#slice").hover();
  await page.mouse.wheel(0, 100);
  await page.waitForFunction((b) => document.getElementById("position").textContent !== b, before);
});
await check("the model loads while the page waits for a click, with nothing said in the status line", async () => {
  const seen = [];
  await page.exposeFunction("__statusSeen", (t) => seen.push(t));
  await page.evaluate(() => {
    const e = document.querySelector('[data-testid="status"]');
    new MutationObserver(() => window.__statusSeen(e.textContent)).observe(e, { childList: true, characterData: true, subtree: true });
  });
  await page.waitForFunction(async () => {
    const { app } = await import("/app/state.js");
    return app.model.info !== null && app.pool.size === Math.min(2, navigator.hardwareConcurrency);
  }, null, { timeout: 60000 });
  const said = seen.filter((t) => /Downloading|Preparing/.test(t));
  if (said.length) throw new Error(`the status line said: ${said[0]}`);
  if (!/Segment \(RV, MYO, LV\)/.test(await page.getByTestId("segment").textContent())) throw new Error("Segment does not name the head's classes");
});
await mkdir(outDir, { recursive: true });
await page.screenshot({ path: join(outDir, "page-volume.png") });

// NIfTI-1 header fields the export must carry over from the source.
function header(gz) {
  const b = gunzipSync(gz);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const f32 = (o, n) => Array.from({ length: n }, (_, i) => v.getFloat32(o + 4 * i, true));
  const dims = Array.from({ length: 3 }, (_, i) => v.getInt16(42 + 2 * i, true));
  return {
    bytes: b, dims, datatype: v.getInt16(70, true), pixdim: f32(80, 3),
    qform: v.getInt16(252, true), sform: v.getInt16(254, true), srow: f32(280, 12),
    offset: Math.round(v.getFloat32(108, true)),
  };
}
let segmentMs = 0;
await check("automatic segmentation labels the volume with the default head", async () => {
  // The model runs in a worker: the page's own thread must keep ticking meanwhile.
  await page.evaluate(() => {
    window.__stall = { last: performance.now(), max: 0 };
    setInterval(() => {
      const now = performance.now();
      window.__stall.max = Math.max(window.__stall.max, now - window.__stall.last);
      window.__stall.last = now;
    }, 20);
  });
  const t = Date.now();
  await pending();
  await page.getByTestId("segment").click();
  await waitState("done", 15 * 60000);
  segmentMs = Date.now() - t;
  const stall = await page.evaluate(() => window.__stall.max);
  console.log(`     longest pause of the page's thread while segmenting: ${Math.round(stall)} ms`);
  if (stall > 1000) throw new Error(`the page froze for ${Math.round(stall)} ms`);
  const legend = await page.locator("#legend").textContent();
  if (!/RV/.test(legend) || !/MYO/.test(legend) || !/LV/.test(legend)) throw new Error(`legend: ${legend}`);
  const text = await status.textContent();
  // Every core encodes (a pool of workers), within the tab's memory budget.
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  const workers = Number((/\((\d+) workers\)/.exec(text) || [0, 1])[1]);
  const memory = Number(await page.locator("#backend").getAttribute("data-worker-memory"));
  console.log(`     ${text}; ${cores} cores; workers' memory ${(memory / 2 ** 20).toFixed(0)} MiB`);
  if (workers < Math.min(2, cores)) throw new Error(`${workers} worker(s) on ${cores} cores`);
  if (!(memory > 0 && memory < 1.5 * 2 ** 30)) throw new Error(`workers' memory ${memory} bytes`);
});
await page.screenshot({ path: join(outDir, "page-segmented.png") });
await check("the exported segmentation opens with the source geometry and the head's labels", async () => {
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByTestId("export-nifti").click()]);
  const saved = join(outDir, download.suggestedFilename());
  await download.saveAs(saved);
  const seg = header(await readFile(saved));
  const src = header(await readFile(volumePath));
  const same = (a, b) => a.every((x, i) => Math.abs(x - b[i]) < 1e-4);
  if (!same(seg.dims, src.dims) || !same(seg.pixdim, src.pixdim) || !same(seg.srow, src.srow)
    || seg.qform !== src.qform || seg.sform !== src.sform) {
    throw new Error(`geometry differs: ${JSON.stringify({ seg: { ...seg, bytes: 0 }, src: { ...src, bytes: 0 } })}`);
  }
  if (seg.datatype !== 2) throw new Error(`datatype ${seg.datatype}, want uint8 (2)`);
  const labels = seg.bytes.subarray(seg.offset, seg.offset + seg.dims[0] * seg.dims[1] * seg.dims[2]);
  const counts = [0, 0, 0, 0];
  for (const l of labels) {
    if (l > 3) throw new Error(`label ${l} is not a class of the head`);
    counts[l]++;
  }
  if (counts[0] === labels.length) throw new Error("nothing was labelled");
  console.log(`     ${download.suggestedFilename()}: voxels per class ${counts.join(" / ")}`);
});
const times = { segment: 0 };
await check("a label map for the shown volume teaches a new head for one epoch", async () => {
  await page.getByTestId("label-input").setInputFiles(labelsPath);
  await page.waitForFunction(() => /with labels/.test(document.querySelector('[data-testid="status"]').textContent));
  // The linear head is the default and each kind brings its epochs until the person types some.
  const teachDefaults = async () => [await page.locator("#head-kind").inputValue(), await page.locator("#epochs").inputValue()].join(" ");
  if ((await teachDefaults()) !== "linear 100") throw new Error(`teach defaults: ${await teachDefaults()}`);
  await page.locator("#head-kind").selectOption("autosam");
  if ((await teachDefaults()) !== "autosam 20") throw new Error(`AutoSAM's epochs: ${await teachDefaults()}`);
  await page.locator("#epochs").fill("1");
  await page.locator("#head-kind").selectOption("linear");
  if ((await teachDefaults()) !== "linear 1") throw new Error(`typed epochs were replaced: ${await teachDefaults()}`);
  const t = Date.now();
  await pending();
  await page.getByTestId("train").click();
  await waitState("done", 10 * 60000);
  times.teach = Date.now() - t;
  const text = await status.textContent();
  // Each training slice was taught with its augmented views too.
  if (!/Taught a linear head: 1 epoch on \d+ slices \([1-9]\d* views of each training slice\)/.test(text)) throw new Error(`status: ${text}`);
  if (await page.locator("#plot").isHidden()) throw new Error("no training plot");
  // The loss is drawn in the plot's blue (#8ab4f8).
  const blue = await page.evaluate(() => {
    const c = document.getElementById("plot"), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) n += Math.abs(d[i] - 0x8a) < 8 && Math.abs(d[i + 1] - 0xb4) < 8 && Math.abs(d[i + 2] - 0xf8) < 8;
    return n;
  });
  if (blue < 10) throw new Error(`the plot shows no loss (${blue} blue pixels)`);
  await page.locator("#plot").scrollIntoViewIfNeeded();
  await page.locator("#plot").screenshot({ path: join(outDir, "page-training-plot.png") });
  console.log(`     ${text}`);
});
await page.screenshot({ path: join(outDir, "page-taught.png") });
await check("the taught head exports as .safetensors with its classes and training extent", async () => {
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByTestId("export-head").click()]);
  const saved = join(outDir, download.suggestedFilename());
  await download.saveAs(saved);
  const b = await readFile(saved);
  const n = Number(b.readBigUInt64LE(0));
  const meta = JSON.parse(b.subarray(8, 8 + n).toString()).__metadata__;
  const head = JSON.parse(meta.head);
  if (head.kind !== "linear" || head.classes.map((c) => c.name).join() !== "background,RV,MYO,LV" || head.training.trained_in !== "the page") {
    throw new Error(`head metadata: ${meta.head}`);
  }
  // The scale of the taught structures on the encoder grid, for Segment's second look.
  if (!(head.extent > 0 && head.extent <= 1)) throw new Error(`head extent: ${head.extent}`);
  console.log(`     ${download.suggestedFilename()}: ${b.length} bytes, extent ${head.extent.toFixed(3)}, ${meta.head.slice(0, 160)}…`);
});
await check("the taught head segments, and undo brings back the label map it replaced", async () => {
  await pending();
  await page.getByTestId("segment").click();
  await waitState("done", 5 * 60000);
  const text = await status.textContent();
  if (!/8 embeddings cached/.test(text)) throw new Error(`status: ${text}`);
  if (!/labels \(model\)/.test(await page.locator("#volumes").textContent())) throw new Error("not labelled by the model");
  await page.locator("#undo").click();
  const after = await page.locator("#volumes").textContent();
  if (!/labels \(file\)/.test(after)) throw new Error(`after undo: ${after}`);
  console.log(`     ${text}`);
});
await check("a box gives SAM's mask for the class, and undo takes it back", async () => {
  await page.locator('[data-tool="box"]').click();
  await page.locator("#draw-class").selectOption("3");
  const r = await page.locator("#slice").boundingBox();
  // The phantom's LV is centred near voxel (66, 72) of 128 x 144, radius about 15.
  const at = (x, y) => [r.x + (x / 128) * r.width, r.y + (y / 144) * r.height];
  await pending();
  await page.mouse.move(...at(44, 50));
  await page.mouse.down();
  await page.mouse.move(...at(66, 72), { steps: 3 });
  await page.mouse.move(...at(88, 94), { steps: 3 });
  await page.mouse.up();
  await waitState("done", 5 * 60000);
  const text = await status.textContent();
  const n = Number((/Box: (\d+) pixels of LV/.exec(text) || [])[1]);
  if (!(n > 100)) throw new Error(`status: ${text}`);
  if (await page.locator("#undo").isDisabled()) throw new Error("undo is not offered");
  await page.locator("#undo").click();
  console.log(`     ${text}`);
});
await check("an image and its label map dropped together pair up and give the cardiac function", async () => {
  await pending();
  await page.getByTestId("volume-input").setInputFiles([frame2Path, frame2LabelsPath]);
  await waitState("ready");
  const options = await page.locator("#volumes option").allTextContents();
  if (options.length !== 2 || !/2\.nii\.gz · labels \(file\)/.test(options[1])) throw new Error(`volumes: ${options.join(" | ")}`);
  const table = await page.locator("#function").textContent();
  if (!/LV ejection fraction/.test(table) || !/Myocardial mass/.test(table)) throw new Error(`function: ${table}`);
  console.log(`     ${table.replace(/\s+/g, " ").slice(0, 200)}`);
});
await check("slices encoded on helpers get the taught head's labels, as the primary gives them", async () => {
  await pending();
  // Counts the encodings that came back with the head's logits from the worker that encoded them.
  await page.evaluate(async () => {
    const { app } = await import("/app/state.js");
    const encode = app.pool.encode.bind(app.pool);
    window.encodings = { all: 0, withLogits: 0 };
    app.pool.encode = async (...args) => {
      const r = await encode(...args);
      window.encodings.all += 1;
      window.encodings.withLogits += r.logits ? 1 : 0;
      return r;
    };
  });
  await page.getByTestId("segment").click();
  await waitState("done", 15 * 60000);
  const encodings = await page.evaluate(async () => {
    const { app } = await import("/app/state.js");
    window.workerLabels = app.current.volume.allLabels();
    delete app.pool.encode;
    return window.encodings;
  });
  if (encodings.all !== 8 || encodings.withLogits !== 8) throw new Error(`encodings: ${JSON.stringify(encodings)}`);
  await page.locator("#undo").click();
  // Again from the cached embeddings, through the head on the primary.
  await pending();
  await page.getByTestId("segment").click();
  await waitState("done", 5 * 60000);
  const text = await status.textContent();
  if (!/\(8 embeddings cached\)/.test(text)) throw new Error(`status: ${text}`);
  const [differ, n] = await page.evaluate(async () => {
    const { app } = await import("/app/state.js");
    const a = window.workerLabels, b = app.current.volume.allLabels();
    let d = Math.abs(a.length - b.length);
    for (let i = 0; i < Math.min(a.length, b.length); i++) d += a[i] !== b[i];
    return [d, a.length];
  });
  if (differ) throw new Error(`${differ} of ${n} voxels differ between the workers' heads and the primary's`);
  await page.locator("#undo").click();
  console.log(`     ${n} voxels labelled alike; ${text}`);
});
await check("a worker lost mid-Segment is replaced and every slice still gets its labels", async () => {
  await pending();
  // The slices again as a new file's, so that the workers encode them.
  await page.evaluate(async () => {
    const { app } = await import("/app/state.js");
    app.current.hash += "/again";
    app.current.embeddings.clear();
  });
  await page.getByTestId("segment").click();
  // The path a crashed worker takes (pool.lost), on a helper while it encodes a slice.
  const killed = await page.evaluate(async () => {
    const { app } = await import("/app/state.js");
    for (let i = 0; i < 1200; i++) {
      const h = app.pool.helpers.find((w) => w.loaded && w.encoding);
      if (h) { app.pool.lost(h, "stopped by the test"); return true; }
      await new Promise((ok) => setTimeout(ok, 50));
    }
    return false;
  });
  if (!killed) throw new Error("no helper was encoding within a minute");
  await waitState("done", 15 * 60000);
  const text = await status.textContent();
  if (!/Segmented 8 slices/.test(text)) throw new Error(`status: ${text}`);
  const helpers = await page.evaluate(async () => (await import("/app/state.js")).app.pool.helpers.length);
  if (helpers < 1) throw new Error("the lost helper was not replaced");
  await page.locator("#undo").click();
  console.log(`     ${text}`);
});
await check("a second look zooms onto small structures, encodes the zoomed slices and labels the volume", async () => {
  // The shipped head, not the one taught above for one epoch (validation Dice 0), whose labels
  // after a zoom were there or not by chance (the full suite once failed here, the e2e alone
  // passed on the same build).
  await pending();
  await page.locator("#import-head").setInputFiles(resolve(dist, "heads/cardiac.safetensors"));
  await waitState("done");
  // The phantom's heart fills its grid as training hearts did, so the test asks for the zoom
  // that a wider field of view gets from the first pass.
  await page.evaluate(async () => {
    const { app } = await import("/app/state.js");
    app.current.volume.zoomPlan = (size) => new window.wasmBindings.WebZoom(1.5, 10, -5, size);
  });
  await pending();
  await page.getByTestId("segment").click();
  await waitState("done", 15 * 60000);
  const text = await status.textContent();
  const labelled = await page.evaluate(async () => {
    const { app } = await import("/app/state.js");
    delete app.current.volume.zoomPlan;
    return app.current.volume.hasLabels();
  });
  if (!/Segmented 8 slices.*\(8 embeddings cached\); a second look zoomed x1\.50/.test(text)) throw new Error(`status: ${text}`);
  if (!labelled) throw new Error("no labels after the second look");
  await page.locator("#undo").click();
  console.log(`     ${text}`);
});
await check("the other two planes show, alone or all three together", async () => {
  const before = await page.locator("#position").textContent();
  await page.locator("#planes button").nth(1).click();
  const after = await page.locator("#position").textContent();
  if (after.split(" ")[0] === before.split(" ")[0]) throw new Error(`${before} -> ${after}`);
  await page.locator("#planes button", { hasText: "3 planes" }).click();
  for (const id of ["#plane-0", "#plane-1"]) {
    const box = await page.locator(id).boundingBox();
    if (!box || box.width < 50 || box.height < 10) throw new Error(`${id}: ${JSON.stringify(box)}`);
  }
  await page.screenshot({ path: join(outDir, "page-three-planes.png") });
  await page.locator("#planes button").nth(0).click();
});
await check("a broken file gives a readable error and the page keeps working", async () => {
  await page.getByTestId("volume-input").setInputFiles({ name: "broken.nii", mimeType: "application/octet-stream", buffer: Buffer.alloc(100, 7) });
  await waitState("error");
  const text = await status.textContent();
  if (!/broken\.nii: not a NIfTI file/.test(text)) throw new Error(`status: ${text}`);
  await page.getByTestId("volume-input").setInputFiles(volumePath);
  await waitState("ready");
});
await check("a model that fails to load while the page waits is loaded again by Segment, which says why", async () => {
  // Without a service worker, so that every request of the model meets the route.
  const ctx = await browser.newContext({ serviceWorkers: "block" });
  let asked = 0;
  await ctx.route("**/lite_medsam.int8.safetensors", (r) => { asked += 1; r.fulfill({ status: 503, body: "" }); });
  try {
    const p = await ctx.newPage();
    await p.goto(origin + "/");
    for (let i = 0; i < 1800 && asked < 1; i++) await p.waitForTimeout(100);
    if (asked < 1) throw new Error("the page never asked for the model while it waited");
    // The model is asked for once the backend is chosen; the volume, dropped after that, takes
    // a cold page a while longer to show with its Segment button.
    await p.getByTestId("volume-input").setInputFiles(volumePath);
    await p.waitForFunction(() => {
      const e = document.querySelector('[data-testid="status"]');
      return e.dataset.state === "error" || /loaded/.test(e.textContent);
    }, null, { timeout: 180000 });
    const quiet = await p.getByTestId("status").getAttribute("data-state");
    if (quiet === "error") throw new Error("the failed preload showed an error before anyone asked");
    await p.getByTestId("segment").click();
    await p.waitForFunction(() => document.querySelector('[data-testid="status"]').dataset.state === "error", null, { timeout: 60000 });
    const text = await p.getByTestId("status").textContent();
    if (!/answered 503/.test(text)) throw new Error(`status: ${text}`);
    if (asked < 2) throw new Error(`Segment did not ask for the model again (${asked} requests)`);
  } finally {
    await ctx.close();
  }
});
await check("offline after the first visit, with the embeddings cached in the browser", async () => {
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 60000 });
  // The page asks its service worker to keep the bundle and the model: give it time to.
  await page.waitForFunction(async () => (await (await caches.open("autosam-v1")).keys()).length >= 6, null, { timeout: 60000 });
  // An older build's bundle, as a new deploy leaves it: the next visit must drop it.
  await page.evaluate(async () => (await caches.open("autosam-v1")).put("/autosam-0ld_bg.wasm", new Response("old")));
  await context.setOffline(true);
  await page.reload();
  await waitState("ready");
  await page.waitForFunction(async () => {
    const c = await caches.open("autosam-v1");
    return !(await c.match("/autosam-0ld_bg.wasm")) && (await c.keys()).length >= 6;
  }, null, { timeout: 60000 });
  await page.getByTestId("volume-input").setInputFiles(volumePath);
  await page.waitForFunction(() => /loaded/.test(document.querySelector('[data-testid="status"]').textContent));
  const t = Date.now();
  await pending();
  await page.getByTestId("segment").click();
  await waitState("done", 15 * 60000);
  times.offline = Date.now() - t;
  const text = await status.textContent();
  // After the reload only IndexedDB can have them.
  if (!/8 embeddings cached/.test(text)) throw new Error(`status: ${text}`);
  // Kept at half precision: 2 bytes per value of the 256 x 64 x 64 embedding.
  const bytes = await page.evaluate(() => new Promise((ok) => {
    const open = indexedDB.open("autosam", 1);
    open.onsuccess = () => {
      const all = open.result.transaction("embeddings").objectStore("embeddings").getAll();
      all.onsuccess = () => ok(all.result.map((v) => (v.f16 ? v.f16.byteLength : v.byteLength)));
    };
  }));
  if (bytes.length < 8 || bytes.some((b) => b !== 256 * 64 * 64 * 2)) throw new Error(`stored embeddings: ${bytes}`);
  await context.setOffline(false);
  console.log(`     ${text}`);
});
await check("a 512 x 512 x 300 CT volume segments slice by slice within the memory cap, and cancels", async () => {
  const big = join(outDir, "big-ct.nii");
  await writeBigCt(big);
  await pending();
  await page.getByTestId("volume-input").setInputFiles(big);
  await waitState("ready", 120000);
  const summary = await page.locator("#summary").textContent();
  if (!/512 x 512 x 300/.test(summary)) throw new Error(`summary: ${summary}`);
  await pending();
  await page.getByTestId("segment").click();
  await page.waitForFunction(() => /slice [3-9]\d* of 300|slice \d{2,} of 300/.test(document.querySelector('[data-testid="status"]').textContent), null, { timeout: 10 * 60000 });
  await page.locator("#cancel").click();
  await waitState("ready", 5 * 60000);
  const text = await status.textContent();
  if (!/cancelled/.test(text)) throw new Error(`status: ${text}`);
  const memory = await tabMemory(page);
  const total = memory.page + memory.workers + memory.js;
  const mib = (b) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  console.log(`     page wasm ${mib(memory.page)}, workers ${mib(memory.workers)}, JS heap ${mib(memory.js)}: ${mib(total)}; ${memory.kept} embeddings in memory`);
  if (total > 1.5 * 2 ** 30) throw new Error(`the tab holds ${mib(total)}`);
  // The page still answers: the first volume comes back.
  await page.locator("#volumes").selectOption("0");
});
await check("a browser without WebAssembly SIMD is told so instead of a dead page", async () => {
  // Such a browser fails to validate www/simd.js's probe and cannot compile the bundle: both are
  // simulated in a fresh context, before any script of the page runs.
  const bare = await browser.newContext();
  await bare.addInitScript(() => {
    const refuse = () => Promise.reject(new WebAssembly.CompileError("no SIMD (simulated)"));
    WebAssembly.validate = () => false;
    for (const f of ["compile", "compileStreaming", "instantiate", "instantiateStreaming"]) WebAssembly[f] = refuse;
  });
  const p = await bare.newPage();
  await p.goto(origin + "/");
  const said = await p.waitForFunction(() => {
    const e = document.querySelector('[data-testid="status"]');
    return /lacks WebAssembly SIMD/.test(e.textContent) && `${e.dataset.state}: ${e.textContent}`;
  }, null, { timeout: 30000 }).then((h) => h.jsonValue());
  // Nothing replaces the message later (the page never starts without its bundle).
  await p.waitForTimeout(2000);
  const after = await p.evaluate(() => document.querySelector('[data-testid="status"]').dataset.state);
  await bare.close();
  if (!said.startsWith("error:") || after !== "error") throw new Error(`${said}; then ${after}`);
  console.log(`     ${said}`);
});
await check("no console errors", async () => {
  if (consoleErrors.length) throw new Error(consoleErrors.join("\n"));
});
await check("no request left the page's origin", async () => {
  if (foreign.length) throw new Error(foreign.join("\n"));
});
await page.waitForFunction(() => document.getElementById("backend").textContent !== "", null, { timeout: 60000 }).catch(() => {});
const backend = await page.locator("#backend").textContent().catch((e) => `unknown (${e.message})`);
console.log(`page compute backend: ${backend}`);
console.log(`automatic segmentation (all slices; the model loaded while the page waited): ${segmentMs} ms`);
console.log(`teach mode, one epoch (embeddings cached): ${times.teach} ms; offline segmentation from cached embeddings: ${times.offline} ms`);
await writeFile(join(outDir, "page-backend.txt"), backend + "\n");
await browser.close();
server.close();
const passed = results.filter(Boolean).length;
console.log(`e2e: ${passed} passed, ${results.length - passed} failed`);
process.exit(passed === results.length ? 0 : 1);
