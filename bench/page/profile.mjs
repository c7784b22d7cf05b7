// Where an encoder pass spends its time in the browser: the page's wasm bundle encodes a slice on
// a page's own thread in headless Chromium, a few times to warm up (V8 compiles hot functions
// again once they run), then once under the DevTools CPU profiler. Prints the warm-up times and
// the functions with the most time of their own and in all (wasm function names from the
// bundle's name section), and writes the .cpuprofile (which Chrome's DevTools open).
// With --head, the profile is of the default head on 4 slices' embeddings instead (after timing it
// on 1 and 4).
// Usage: node profile.mjs DIST [OUT.cpuprofile] [--warm N] [--head]   (DIST: trunk build --release)
import { writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { serve, launch } from "../../tests/e2e/harness.mjs";

const args = process.argv.slice(2);
const warm = args.includes("--warm") ? Number(args[args.indexOf("--warm") + 1]) : 3;
const head = args.includes("--head");
const [dist, out = "encoder.cpuprofile"] = args.filter((a, i) => !a.startsWith("--") && args[i - 1] !== "--warm");
const here = dirname(fileURLToPath(import.meta.url));
const server = await serve(resolve(dist), { mounts: { "/profile.html": join(here, "profile.html") } });
const browser = await launch({ swiftshader: false });
const page = await browser.newPage();
page.on("pageerror", (e) => { console.error(`page error: ${e}`); process.exitCode = 1; });
await page.goto(`${server.origin}/profile.html`);
await page.waitForFunction(() => window.ready, null, { timeout: 120000 });
for (let i = 0; i < warm; i++) console.log(`warm-up pass ${i + 1}: ${(await page.evaluate(() => window.encode())).toFixed(0)} ms`);
if (head) for (const b of [1, 1, 4, 4]) console.log(`head, ${b} slice(s): ${(await page.evaluate((b) => window.head(b), b)).toFixed(0)} ms`);
const cdp = await page.context().newCDPSession(page);
await cdp.send("Profiler.enable");
await cdp.send("Profiler.setSamplingInterval", { interval: 500 });
await cdp.send("Profiler.start");
if (head) console.log(`profiled head, 4 slices: ${(await page.evaluate(() => window.head(4))).toFixed(0)} ms`);
else console.log(`profiled pass: ${(await page.evaluate(() => window.encode())).toFixed(0)} ms`);
const { profile } = await cdp.send("Profiler.stop");
await writeFile(out, JSON.stringify(profile));
await browser.close();
server.close();

// Self time per sample node, then per function name: its own, and inclusive (once per stack).
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children || []) parent.set(c, n.id);
const own = new Map(), all = new Map();
const add = (m, k, v) => m.set(k, (m.get(k) || 0) + v);
profile.samples.forEach((id, i) => {
  const dt = profile.timeDeltas[i + 1] || 0;
  add(own, nodes.get(id).callFrame.functionName || "(anonymous)", dt);
  const seen = new Set();
  for (let x = id; x !== undefined; x = parent.get(x)) {
    const name = nodes.get(x).callFrame.functionName || "(anonymous)";
    if (!seen.has(name)) add(all, name, dt), seen.add(name);
  }
});
const total = [...own.values()].reduce((a, b) => a + b, 0);
const table = (title, m, n) => {
  console.log(`\n| ${title} | ms | share |\n|---|---:|---:|`);
  for (const [name, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n))
    console.log(`| \`${name.replace(/::h[0-9a-f]{16}$/, "").slice(0, 110)}\` | ${(us / 1000).toFixed(0)} | ${((100 * us) / total).toFixed(1)}% |`);
};
table("own time", own, 15);
table("inclusive", all, 25);
console.log(`\nprofile: ${out}`);
