// A model worker: the encoder, the heads, box decoding and training run here, so the page never
// freezes. The page starts a pool of them (www/app/pool.js): the primary does everything, the
// others only encode. It loads the same wasm as the page (the page passes the bundle's URLs,
// which trunk hashes) and answers {id, op, args} with {id, ok, value | error}, one operation at
// a time: the wasm objects are not reentrant, and a second call would interleave at its awaits.

let wasm = null; // the bindings
let model = null; // WebModel
let trainer = null; // WebTrainer
let trace = false; // log each operation's start and end (epoch milliseconds)

// Returns [value, transferables].
const ops = {
  // `probe`: run the CPU/WebGPU agreement probe (the primary only; helpers use the CPU).
  async init({ js, bg, probe, trace: traced }) {
    trace = Boolean(traced);
    wasm = await import(js);
    await wasm.default({ module_or_path: bg });
    return [probe ? await wasm.backendReport() : "CPU"];
  },
  async load({ weights, head, useGpu }) {
    if (model) model.free();
    model = null;
    model = await wasm.loadModel(new Uint8Array(weights), new Uint8Array(head), useGpu);
    return [describe()];
  },
  // With `head`, the current head's logits on the new embedding too: Segment then runs the head
  // on the worker that encoded the slice, while the next slice waits for no other worker.
  async encode({ input, head }) {
    const embedding = await model.encode(input);
    const logits = head ? await model.headLogits(embedding) : null;
    return [{ embedding, logits }, logits ? [embedding.buffer, logits.buffer] : [embedding.buffer]];
  },
  async headLogits({ embedding }) {
    const l = await model.headLogits(embedding);
    return [l, [l.buffer]];
  },
  async boxLogits({ embedding, box }) {
    const l = await model.boxLogits(embedding, box);
    return [l, [l.buffer]];
  },
  async setHead({ bytes }) {
    model.setHead(new Uint8Array(bytes));
    return [describe()];
  },
  async exportHead() {
    const b = await model.exportHead();
    return [b, [b.buffer]];
  },
  async teachStart({ kind, classes, lr, batch, seed, samples }) {
    if (trainer) trainer.free();
    trainer = null;
    trainer = new wasm.WebTrainer(model, kind, classes, lr, batch, seed);
    for (const s of samples) {
      trainer.addSample(s.embedding, s.labels, s.validation);
      for (const v of s.views || []) trainer.addView(v.embedding, v.labels);
    }
    return [{ stepsPerEpoch: trainer.stepsPerEpoch() }];
  },
  async teachStep() {
    return [await trainer.step()];
  },
  async teachValidate() {
    return [await trainer.validate()];
  },
  async teachApply({ summary, extent }) {
    trainer.apply(model, JSON.stringify(summary), extent);
    return [describe()];
  },
  // Segment's cleanup, off the page's thread: a whole CT's flood fills take seconds.
  async keepLargestPieces({ labels, dims, classes }) {
    const cleared = wasm.keepLargestPieces(labels, dims, classes);
    return [{ labels, cleared }, [labels.buffer]];
  },
  // The wasm memory's size, which only grows: this worker's peak so far.
  async memory() {
    return [wasm.memoryBytes()];
  },
  // Errors the wasm logged (a WGSL shader that failed to compile is only logged): the page
  // treats any as a failure.
  async errors() {
    return [wasm.errorsLogged()];
  },
};

function describe() {
  return {
    backend: model.backend(), classes: model.classes(), inputSize: model.inputSize(),
    encoder: model.encoderId(), head: JSON.parse(model.headSummary()),
  };
}

let queue = Promise.resolve();
onmessage = (e) => {
  queue = queue.then(() => handle(e.data));
};

async function handle({ id, op, args }) {
  try {
    if (!ops[op]) throw new Error(`unknown operation ${op}`);
    if (op !== "init" && !wasm) throw new Error("the worker is not started");
    if (!["init", "load", "errors", "memory"].includes(op) && !model) throw new Error("the model is not loaded");
    const start = performance.timeOrigin + performance.now();
    const [value, transfer] = await ops[op](args || {});
    if (trace) console.debug(`trace ${op} ${start.toFixed(0)} ${(performance.timeOrigin + performance.now()).toFixed(0)}`);
    postMessage({ id, ok: true, value }, transfer || []);
  } catch (err) {
    // A trap (a Rust panic) leaves the wasm instance unusable: the page starts a new worker.
    const fatal = err instanceof WebAssembly.RuntimeError;
    postMessage({ id, ok: false, error: String((err && err.message) || err), fatal });
  }
}
