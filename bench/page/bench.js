// Times one LiteMedSAM encoding per 256x256 slice in this browser, for bench/page/run.mjs:
//   ?engine=ours&workers=N  the page's own wasm bundle (dist/), in N of the page's workers
//                           (www/worker.js), each encoding its share of the slices;
//   ?engine=ort&threads=N   onnxruntime-web's wasm backend on the encoder exported to ONNX, with
//                           N threads (which need the cross-origin isolation run.mjs gives).
// &slices=S sets the slices timed after one warm-up slice per worker or session. The result,
// { msPerSlice, ... }, lands in window.benchResult (or { error }).

const params = new URLSearchParams(location.search);
const slices = Number(params.get("slices") || 4);

// A deterministic [0, 1] input: the runtimes' times do not depend on the values.
function input(seed) {
  const x = new Float32Array(3 * 256 * 256);
  let s = seed >>> 0;
  for (let i = 0; i < x.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    x[i] = (s >>> 8) / 16777216;
  }
  return x;
}

// One of the page's workers, answering { id, ok, value | error } as www/app/pool.js expects.
function worker() {
  const w = new Worker("/worker.js", { type: "module" });
  let next = 0;
  const waiting = new Map();
  w.onmessage = ({ data }) => {
    const { ok, fail } = waiting.get(data.id);
    waiting.delete(data.id);
    data.ok ? ok(data.value) : fail(new Error(data.error));
  };
  w.onerror = (e) => { for (const { fail } of waiting.values()) fail(new Error(e.message)); };
  return (op, args, transfer) => new Promise((ok, fail) => {
    const id = next++;
    waiting.set(id, { ok, fail });
    w.postMessage({ id, op, args }, transfer || []);
  });
}

async function ours(workers) {
  // The bundle's hashed names, from the built page's preload links, as the page itself does.
  const html = new DOMParser().parseFromString(await (await fetch("/index.html")).text(), "text/html");
  const js = new URL(html.querySelector('link[rel="modulepreload"][href$=".js"]').getAttribute("href"), location.href).href;
  const bg = new URL(html.querySelector('link[rel="preload"][href$=".wasm"]').getAttribute("href"), location.href).href;
  const weights = await (await fetch("/lite_medsam.int8.safetensors")).arrayBuffer();
  const head = await (await fetch("/heads/cardiac.safetensors")).arrayBuffer();
  const pool = [];
  for (let i = 0; i < workers; i++) {
    const call = worker();
    await call("init", { js, bg, probe: false });
    await call("load", { weights, head, useGpu: false });
    pool.push(call);
  }
  // Warm-up: one slice each, all at once, as a cold Segment's first round.
  await Promise.all(pool.map((call, i) => call("encode", { input: input(i) })));
  const t = performance.now();
  let done = 0;
  await Promise.all(pool.map(async (call, i) => {
    for (let k = i; k < slices; k += workers) {
      await call("encode", { input: input(100 + k) });
      done++;
    }
  }));
  const wall = performance.now() - t;
  const memory = await Promise.all(pool.map((call) => call("memory", {})));
  return { msPerSlice: wall / done, slices: done, workerMemoryBytes: memory.reduce((a, b) => a + b, 0) };
}

async function ort(threads) {
  const ortWeb = await import("/ort/ort.wasm.min.mjs");
  ortWeb.env.wasm.numThreads = threads;
  ortWeb.env.wasm.wasmPaths = "/ort/";
  const session = await ortWeb.InferenceSession.create("/encoder.onnx", { executionProviders: ["wasm"] });
  const run = async (seed) => {
    const feed = { [session.inputNames[0]]: new ortWeb.Tensor("float32", input(seed), [1, 3, 256, 256]) };
    const out = await session.run(feed);
    const e = out[session.outputNames[0]];
    if (e.dims.join("x") !== "1x256x64x64") throw new Error(`embedding of shape ${e.dims}`);
    return e;
  };
  await run(0);
  const t = performance.now();
  for (let k = 0; k < slices; k++) await run(100 + k);
  const wall = performance.now() - t;
  return { msPerSlice: wall / slices, slices, version: ortWeb.env.versions?.web || "" };
}

(async () => {
  try {
    if (!crossOriginIsolated) throw new Error("the page is not cross-origin isolated");
    const engine = params.get("engine");
    window.benchResult = engine === "ours"
      ? await ours(Number(params.get("workers") || 1))
      : await ort(Number(params.get("threads") || 1));
  } catch (e) {
    window.benchResult = { error: String(e && e.message || e) };
  }
})();
