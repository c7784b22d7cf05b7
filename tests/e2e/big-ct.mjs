// A CT-sized volume for the e2e and the page benchmark: 512 x 512 x SLICES int16 (150 MB at 300
// slices), a body-like ellipse with an organ and noise, air at -1000.
import { writeFile } from "node:fs/promises";

export function writeBigCt(path, nz = 300) {
  const [nx, ny] = [512, 512];
  const header = Buffer.alloc(352);
  header.writeInt32LE(348, 0);
  [3, nx, ny, nz, 1, 1, 1, 1].forEach((d, i) => header.writeInt16LE(d, 40 + 2 * i));
  header.writeInt16LE(4, 70); // int16
  header.writeInt16LE(16, 72);
  [1, 0.7, 0.7, 1.5].forEach((p, i) => header.writeFloatLE(p, 76 + 4 * i));
  header.writeFloatLE(352, 108);
  header.writeFloatLE(1, 112); // scl_slope
  header.write("n+1\0", 344, "latin1");
  const data = new Int16Array(nx * ny * nz);
  let seed = 1;
  for (let k = 0; k < nz; k++) {
    for (let j = 0; j < ny; j++) {
      for (let i = 0; i < nx; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        const inside = ((i - 256) / 200) ** 2 + ((j - 256) / 150) ** 2 < 1;
        const organ = ((i - 300) / 50) ** 2 + ((j - 240) / 40) ** 2 < 1;
        data[i + nx * (j + ny * k)] = (inside ? (organ ? 60 : 20) : -1000) + ((seed >>> 16) % 40) - 20;
      }
    }
  }
  return writeFile(path, Buffer.concat([header, Buffer.from(data.buffer)]));
}

// What the tab holds: the page's wasm memory, its workers' and the JS heap, in bytes.
export async function tabMemory(page) {
  return page.evaluate(async () => {
    const { app } = await import("/app/state.js");
    return { page: window.wasmBindings.memoryBytes(), workers: app.pool.memory, js: performance.memory?.usedJSHeapSize || 0, kept: app.current?.embeddings.size ?? 0 };
  });
}
