// Times each stage of the built page (dist/) in headless Chromium on one backend, for docs/page.md:
// model download and load, automatic segmentation, the same again from cached embeddings, one box,
// and one teach-mode epoch of a linear and an AutoSAM head.
// Usage: node timings.mjs DIST_DIR VOLUME.nii.gz cpu|webgpu [WORKERS]   (labels in VOLUME_gt.nii.gz;
// WORKERS caps the page's pool of encoder workers)
// With webgpu on a machine without a GPU, Chromium's adapter is SwiftShader.
import { resolve } from "node:path";
import { serve, launch } from "./harness.mjs";

const [dist, volumePath] = process.argv.slice(2, 4).map((p) => resolve(p));
const backend = process.argv[4] || "cpu";
const workers = process.argv[5] ? `&workers=${process.argv[5]}` : "";
const server = await serve(dist);
const origin = server.origin;
const browser = await launch({ swiftshader: false });
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

await page.goto(`${origin}/?backend=${backend}${workers}`);
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
