// Times each stage of the built page (dist/) in headless Chromium on one backend, for docs/page.md:
// model download and load, automatic segmentation, the same again from cached embeddings, one box,
// and one teach-mode epoch of a linear and an AutoSAM head.
// Usage: node timings.mjs DIST_DIR VOLUME.nii.gz cpu|webgpu   (labels in VOLUME_gt.nii.gz)
// With webgpu, Chromium gets its SwiftShader adapter unless the machine has a GPU.
import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, resolve } from "node:path";

const [dist, volumePath] = process.argv.slice(2, 4).map((p) => resolve(p));
const backend = process.argv[4] || "cpu";
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css" };
const server = createServer(async (req, res) => {
  const path = join(dist, decodeURIComponent(new URL(req.url, "http://x").pathname).replace(/\/$/, "/index.html"));
  try {
    const body = await readFile(path);
    res.writeHead(200, { "content-type": types[extname(path)] || "application/octet-stream" });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const origin = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking", "--no-first-run"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.on("console", (m) => { if (m.type() === "error") console.log(`console error: ${m.text()}`); });

async function stage(name, start, until) {
  // So that the previous stage's "done" is not taken for this one's.
  await page.evaluate(() => { document.querySelector('[data-testid="status"]').dataset.state = "timing"; });
  const t = Date.now();
  await start();
  const text = await page.waitForFunction((re) => {
    const e = document.querySelector('[data-testid="status"]');
    return (new RegExp(re).test(e.dataset.state) || e.dataset.state === "error") && `${e.dataset.state}: ${e.textContent}`;
  }, until, { timeout: 60 * 60000 }).then((h) => h.jsonValue());
  const s = ((Date.now() - t) / 1000).toFixed(1);
  console.log(`| ${name} | ${s} s | ${text.replace(/\|/g, "/")} |`);
  if (text.startsWith("error")) process.exitCode = 1;
}

await page.goto(`${origin}/?backend=${backend}`);
await page.waitForFunction(() => document.getElementById("backend").textContent !== "", null, { timeout: 120000 });
console.log(`backend: ${await page.locator("#backend").textContent()}\n`);
console.log("| stage | wall | status |\n|---|---:|---|");
await stage("load the volume and its labels", () => page.getByTestId("volume-input")
  .setInputFiles([volumePath, volumePath.replace(/\.nii\.gz$/, "_gt.nii.gz")]), "ready");
const segment = () => page.getByTestId("segment").click();
await stage("segment (download, load, encode every slice, head)", segment, "done");
await stage("segment again (embeddings cached)", segment, "done");
await page.locator('[data-tool="box"]').click();
const r = await page.locator("#slice").boundingBox();
await stage("one box (embedding cached)", async () => {
  await page.mouse.move(r.x + r.width * 0.35, r.y + r.height * 0.35);
  await page.mouse.down();
  await page.mouse.move(r.x + r.width * 0.65, r.y + r.height * 0.65, { steps: 4 });
  await page.mouse.up();
}, "done");
await page.locator("#epochs").fill("1");
for (const kind of ["linear", "autosam"]) {
  await page.locator("#head-kind").selectOption(kind);
  await stage(`teach one epoch, ${kind} head`, () => page.getByTestId("train").click(), "done");
}
await browser.close();
server.close();
