import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join } from "node:path";
const dist = "/work/main/dist";
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css" };
const server = createServer(async (req, res) => {
  const path = join(dist, decodeURIComponent(new URL(req.url, "http://x").pathname).replace(/\/$/, "/index.html"));
  try { const body = await readFile(path); res.writeHead(200, { "content-type": types[extname(path)] || "application/octet-stream" }); res.end(body); } catch { res.writeHead(404).end(); }
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const origin = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-background-networking"] });
const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 2 });
page.on("console", (m) => { if (m.type() !== "log") console.log("console", m.type(), m.text().slice(0, 300)); });
page.on("pageerror", (e) => console.log("pageerror", String(e)));
page.on("download", async (d) => { await d.saveAs("/tmp/acdc_" + d.suggestedFilename()); console.log("saved", d.suggestedFilename()); });
const st = () => page.evaluate(() => { const e = document.querySelector('[data-testid="status"]'); return e.dataset.state + " " + e.textContent; });
async function until(re, max = 3600) { const t = Date.now(); for (;;) { const s = await st(); if (re.test(s) || /^error/.test(s)) { console.log(((Date.now() - t) / 1000).toFixed(1) + " s:", s); return; } await page.waitForTimeout(1000); } }
await page.goto(origin + "/");
await until(/^ready/);
await page.getByTestId("volume-input").setInputFiles(["/work/shared/data/acdc/patient001_frame01.nii.gz", "/work/shared/data/acdc/patient001_frame01_gt.nii.gz", "/work/shared/data/acdc/patient001_frame02.nii.gz", "/work/shared/data/acdc/patient001_frame02_gt.nii.gz"]);
await until(/^(ready|done)/);
console.log("volumes:", await page.locator("#volumes option").allTextContents());
console.log("function:", (await page.locator("#function").textContent()).replace(/\s+/g, " "));
await page.locator("#epochs").fill(process.env.EPOCHS || "3");
await page.locator("#head-kind").selectOption(process.env.KIND || "autosam");
await page.getByTestId("train").click();
await until(/^done/);
await page.screenshot({ path: "/tmp/acdc_taught.png" });
console.log("head:", await page.locator("#head-info").textContent());
await page.getByTestId("volume-input").setInputFiles(["/work/shared/data/acdc/patient002_frame01.nii.gz"]);
await until(/loaded/);
await page.getByTestId("segment").click();
await until(/^done/);
await page.getByTestId("export-nifti").click();
await page.waitForTimeout(2000);
await page.screenshot({ path: "/tmp/acdc_segmented.png" });
await browser.close(); server.close();
