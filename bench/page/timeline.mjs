// A cold Segment's timeline: the page (built, with ?trace) segments a volume from a fresh
// browser profile, and each worker logs its operations; prints, per run, the wall time from the
// click to the last label and each operation's start and end in seconds from the click (the
// first `init`, the primary's, starts before the click). Where docs/page.md's timelines come from.
// Usage: node timeline.mjs DIST VOLUME.nii.gz [RUNS]   (DIST: trunk build --release)
import { resolve } from "node:path";
import { serve, launch } from "../../tests/e2e/harness.mjs";

const [dist, volume] = process.argv.slice(2, 4).map((p) => resolve(p));
const runs = Number(process.argv[4] || 1);
const server = await serve(dist, { isolated: true });
const browser = await launch({ swiftshader: false });
for (let run = 1; run <= runs; run++) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const ops = [];
  let t = 0;
  page.on("console", (m) => {
    const [tag, op, start, end] = m.text().split(" ");
    if (tag === "trace") ops.push(`${op} ${((start - t) / 1000).toFixed(2)}-${((end - t) / 1000).toFixed(2)}`);
  });
  await page.goto(`${server.origin}/?backend=cpu&trace`);
  await page.waitForFunction(() => document.getElementById("backend").textContent !== "", null, { timeout: 120000 });
  await page.getByTestId("volume-input").setInputFiles(volume);
  await page.waitForFunction(() => document.querySelector('[data-testid="status"]').dataset.state === "ready", null, { timeout: 120000 });
  t = Date.now();
  await page.getByTestId("segment").click();
  const state = await page.waitForFunction(() => {
    const s = document.querySelector('[data-testid="status"]').dataset.state;
    return ["done", "error"].includes(s) && s;
  }, null, { timeout: 60 * 60000 }).then((h) => h.jsonValue());
  console.log(`run ${run}: ${state} in ${((Date.now() - t) / 1000).toFixed(1)} s; ${ops.slice(1).join(", ")}`);
  await context.close();
}
await browser.close();
server.close();
