// What the page's browser scripts share: dist/ served on a free loopback port, and Debian's
// Chromium started headless with its WebGPU adapter and no background networking.
import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join } from "node:path";

const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".css": "text/css" };

// Returns { origin, close }. `mounts` maps a URL prefix ("/ort/") to another folder, or a URL
// ("/encoder.onnx") to a file; `isolated` adds the headers that make the page cross-origin
// isolated (what wasm threads need).
export async function serve(dist, { mounts = {}, isolated = false } = {}) {
  const headers = isolated ? { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" } : {};
  const server = createServer(async (req, res) => {
    const url = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const mount = Object.keys(mounts).find((m) => (m.endsWith("/") ? url.startsWith(m) : url === m));
    const path = mount
      ? (mount.endsWith("/") ? join(mounts[mount], url.slice(mount.length)) : mounts[mount])
      : join(dist, url.replace(/\/$/, "/index.html"));
    try {
      const body = await readFile(path);
      res.writeHead(200, { "content-type": types[extname(path)] || "application/octet-stream", ...headers });
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
