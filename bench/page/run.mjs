// The page against onnxruntime-web in one run, in headless Chromium on this machine:
//  1. the LiteMedSAM encoder per 256x256 slice: the page's wasm bundle in 1 and 2 of its workers,
//     and onnxruntime-web (wasm backend) on the same encoder exported to ONNX at 1 and 2 threads;
//  2. Segment from a cold page (a fresh browser profile: no cached model, bundle or embeddings)
//     for a 10-slice and a 100-slice volume, with the pool as the page sizes it;
//  3. with --ct, Segment of a whole 512 x 512 x 300 CT volume (int16, 150 MB) from a cold page,
//     and the tab's peak memory over the run (the page's and its workers' wasm memory and the JS
//     heap, sampled every 2 s).
// Everything is served from one loopback origin with the cross-origin isolation headers, so
// onnxruntime-web's threads work. Prints a markdown report.
// Usage: node run.mjs DIST ENCODER.onnx VOLUME_10.nii.gz [--slices S] [--rounds R] [--skip-segment]
//   [--ct] [--skip-encoder]
// (VOLUME_10 is a 10-slice volume; the 100-slice one is made from it by repeating its slices.)
import { readFile, writeFile, mkdtemp } from "node:fs/promises";
import { gunzipSync } from "node:zlib";
import { tmpdir, cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { serve, launch } from "../../tests/e2e/harness.mjs";
import { writeBigCt, tabMemory } from "../../tests/e2e/big-ct.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const [dist, onnx, volume] = args.filter((a, i) => !a.startsWith("--") && !["--slices", "--rounds"].includes(args[i - 1])).map((p) => resolve(p));
const slices = Number(option("--slices", 6));
const rounds = Number(option("--rounds", 2));

const server = await serve(dist, {
  isolated: true,
  mounts: {
    "/bench/": here,
    "/ort/": join(here, "node_modules/onnxruntime-web/dist"),
    "/encoder.onnx": onnx,
  },
});
const browser = await launch({ swiftshader: false });

async function encoder(query) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") console.error(`console error: ${m.text()}`); });
  page.on("response", (r) => { if (r.status() >= 400) console.error(`${r.status()}: ${r.url()}`); });
  await page.goto(`${server.origin}/bench/bench.html?${query}&slices=${slices}`);
  const result = await page.waitForFunction(() => window.benchResult, null, { timeout: 30 * 60000 }).then((h) => h.jsonValue());
  await context.close();
  if (result.error) throw new Error(`${query}: ${result.error}`);
  return result;
}

// The same header with more slices: the 10-slice volume's slices, repeated.
async function repeated(path, times) {
  let bytes = await readFile(path);
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
  const offset = Math.round(bytes.readFloatLE(108));
  const header = Buffer.from(bytes.subarray(0, offset));
  header.writeInt16LE(times * header.readInt16LE(46), 46);
  const data = bytes.subarray(offset);
  const out = join(await mkdtemp(join(tmpdir(), "autosam-bench-")), `repeated-${times}.nii`);
  await writeFile(out, Buffer.concat([header, ...Array(times).fill(data)]));
  return out;
}

// Wall time from the click to labels on every slice, on a cold page.
async function segment(path) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${server.origin}/?backend=cpu`);
  await page.waitForFunction(() => document.getElementById("backend").textContent !== "", null, { timeout: 120000 });
  await page.getByTestId("volume-input").setInputFiles(path);
  await page.waitForFunction(() => document.querySelector('[data-testid="status"]').dataset.state === "ready", null, { timeout: 120000 });
  const t = Date.now();
  let peak = 0;
  const sample = async () => {
    const m = await tabMemory(page).catch(() => null);
    if (m) peak = Math.max(peak, m.page + m.workers + m.js);
  };
  const sampler = setInterval(sample, 2000);
  await page.getByTestId("segment").click();
  const text = await page.waitForFunction(() => {
    const e = document.querySelector('[data-testid="status"]');
    return ["done", "error"].includes(e.dataset.state) && `${e.dataset.state}: ${e.textContent}`;
  }, null, { timeout: 60 * 60000 }).then((h) => h.jsonValue());
  const s = (Date.now() - t) / 1000;
  clearInterval(sampler);
  await sample();
  const workers = await page.evaluate(async () => (await import("/app/state.js")).app.pool.size);
  await context.close();
  if (!text.startsWith("done")) throw new Error(`Segment of ${path}: ${text}`);
  return { s, workers, peak };
}

if (!flag("--skip-encoder")) {
  // Rounds alternate the runtimes, and each figure is its best round: other work on the machine
  // only ever adds time.
  const best = (a, b) => (!a || b.msPerSlice < a.msPerSlice ? b : a);
  const rows = [1, 2].map((n) => ({ n, ours: null, ort: null }));
  for (let round = 0; round < rounds; round++) {
    for (const row of rows) {
      const ours = await encoder(`engine=ours&workers=${row.n}`);
      const ort = await encoder(`engine=ort&threads=${row.n}`);
      row.ours = best(row.ours, ours);
      row.ort = best(row.ort, ort);
      console.error(`round ${round + 1}, ${row.n}: ours ${ours.msPerSlice.toFixed(0)} ms, onnxruntime-web ${ort.msPerSlice.toFixed(0)} ms`);
    }
  }
  const version = rows[0].ort.version;
  const cores = cpus().length;
  console.log(`Encoder per 256x256 slice in headless Chromium (${await browser.version()}), ${cores} cores, ` +
    `${slices} slices timed after a warm-up; the best of ${rounds} rounds that alternate the runtimes, ` +
    `all in one run (\`scripts/bench-page\`).\n`);
  console.log(`| threads or workers | the page's wasm (workers) | onnxruntime-web ${version} (threads) | ratio |`);
  console.log("|---:|---:|---:|---:|");
  for (const { n, ours, ort } of rows) {
    console.log(`| ${n} | ${ours.msPerSlice.toFixed(0)} ms | ${ort.msPerSlice.toFixed(0)} ms | ${(ours.msPerSlice / ort.msPerSlice).toFixed(2)}x |`);
  }
  console.log(`\nThe page's figure with N workers is the wall time over the slices divided by their number ` +
    `(the workers encode different slices at once); onnxruntime-web's is one slice's latency with N ` +
    `threads. Two workers' wasm memory: ${(rows[1].ours.workerMemoryBytes / 2 ** 20).toFixed(0)} MiB.`);
}
const mib = (b) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const segmentRows = [];
if (!flag("--skip-segment")) {
  segmentRows.push(["the 10-slice volume", volume, 10], ["its slices repeated 10 times", await repeated(volume, 10), 100]);
}
if (flag("--ct")) {
  const ct = join(await mkdtemp(join(tmpdir(), "autosam-bench-")), "ct-512x512x300.nii");
  await writeBigCt(ct);
  segmentRows.push(["a 512 x 512 x 300 CT (int16, 150 MB)", ct, 300]);
}
if (segmentRows.length) {
  console.log("\n| Segment from a cold page | slices | workers | wall | per slice | the tab's peak memory |\n|---|---:|---:|---:|---:|---:|");
  for (const [label, path, count] of segmentRows) {
    const { s, workers, peak } = await segment(path);
    console.log(`| ${label} | ${count} | ${workers} | ${s.toFixed(1)} s | ${(s / count).toFixed(2)} s | ${mib(peak)} |`);
  }
  console.log("\nThe tab's memory is the page's and its workers' wasm memory plus the JS heap, " +
    "sampled every 2 s from the click to the last label.");
}
await browser.close();
server.close();
