// What the page's browser scripts share: dist/ served on a free loopback port, and Debian's
// Chromium started headless with its WebGPU adapter and no background networking.
import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join } from "node:path";

const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css" };

// Returns { origin, close }.
export async function serve(dist) {
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
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

// `swiftshader`: insist on Chromium's software adapter (the tests), rather than a GPU if any.
export function launch({ swiftshader = true } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--enable-unsafe-webgpu", ...(swiftshader ? ["--use-webgpu-adapter=swiftshader"] : []),
      "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
}
