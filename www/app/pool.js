// The model's workers. The primary loads the encoder and the head and runs everything (heads,
// boxes, training); helpers load the encoder and a copy of the head, and encode, with the head's
// logits on the slice when Segment asks. Encodings go to whichever worker has none in flight, so
// a volume's slices are encoded on every core the pool has, and no slice's head waits behind
// another slice's encoding on the primary. Helpers
// start with the primary, as many as the cores and the tab's memory allow at a worker's prior
// size; the primary's first encoding then measures that size, and the pool grows or shrinks to
// fit. A worker that crashes is replaced and its slice encoded again, while the others' finished
// slices stay.

// What the whole tab may use for a 20-slice volume, the page's own memory included.
const TAB_BUDGET = 1.5 * 2 ** 30;
// An embedding ([256, 64, 64] f32) and its encoder input kept by the page, per slice.
const PAGE_PER_SLICE = 4 * 2 ** 20 + 0.75 * 2 ** 20;
// The page's JavaScript heap and the rest where the browser does not say.
const PAGE_BASE = 96 * 2 ** 20;
// One worker's memory until the primary's first encoding measures it: LiteMedSAM's int8 encoder
// at 256 x 256 takes 343 MiB, and the prior leaves half as much again, so that helpers started
// before the measure never take the tab past its budget.
const PRIOR_PER_WORKER = 512 * 2 ** 20;

class ModelWorker {
  constructor(urls, onDead) {
    this.next = 1;
    this.pending = new Map();
    this.encoding = null; // the encode job in flight
    this.w = new Worker("worker.js", { type: "module" });
    this.w.onmessage = (e) => {
      const { id, ok, value, error, fatal } = e.data;
      const p = this.pending.get(id);
      this.pending.delete(id);
      if (ok) p.ok(value); else p.fail(new Error(error));
      // After a wasm trap this worker's memory cannot be trusted.
      if (fatal) onDead(this);
    };
    // An uncaught error (a panic in an async step) would leave its callers waiting forever.
    this.w.onerror = (e) => {
      e.preventDefault();
      onDead(this, e.message);
    };
    this.urls = urls;
  }

  call(op, args, transfer) {
    return new Promise((ok, fail) => {
      const id = this.next++;
      this.pending.set(id, { ok, fail });
      this.w.postMessage({ id, op, args }, transfer || []);
    });
  }

  stop(why) {
    this.w.terminate();
    for (const p of this.pending.values()) p.fail(new Error(why));
    this.pending.clear();
  }
}

export class Pool {
  constructor() {
    // The bundle's hashed names, from trunk's preload links.
    this.urls = {
      js: document.querySelector('link[rel="modulepreload"][href$=".js"]').href,
      bg: document.querySelector('link[rel="preload"][href$=".wasm"]').href,
      // ?trace in the address: each worker logs its operations' times (bench/page/timeline.mjs).
      trace: new URLSearchParams(location.search).has("trace"),
    };
    this.helpers = [];
    this.queue = []; // encode jobs not yet on a worker
    this.target = 1; // workers wanted, the primary included
    this.perWorker = 0; // measured bytes of one worker's memory (0 until the first encoding)
    this.model = null; // {weights, head, headVersion, useGpu} to load into a new helper
    // Bumped whenever the primary's head changes; a helper whose copy is older encodes without it.
    this.headVersion = 0;
    this.onPrimaryLost = () => {};
  }

  // Starts the primary; resolves with its backend report.
  start() {
    this.primary = new ModelWorker(this.urls, (w, why) => this.lost(w, why));
    this.errors = 0;
    this.primary.ready = this.primary.call("init", { ...this.urls, probe: true });
    return this.primary.ready;
  }

  // An operation on the primary: load, heads, boxes, training, errors.
  call(op, args, transfer) {
    return this.primary.call(op, args, transfer);
  }

  // Loads the model into the primary and keeps copies of its files for the helpers, which load it
  // at the same time: the first slices of a cold Segment then already encode on every core.
  async load(weights, head, useGpu) {
    await this.primary.ready;
    this.model = { weights: weights.slice(), head: head.slice(), headVersion: ++this.headVersion, useGpu };
    if (!useGpu) this.resize(this.affordable(this.perWorker || PRIOR_PER_WORKER));
    const info = await this.call("load", { weights: weights.buffer, head: head.buffer, useGpu }, [weights.buffer, head.buffer]);
    this.primary.loaded = true;
    // A GPU does not get faster with more workers sharing it.
    if (info.backend !== "CPU") this.resize(1);
    // Helpers of an earlier load (before the primary was restarted) may hold a taught head.
    this.syncHeads();
    return info;
  }

  // The primary's head changed (taught or imported): the helpers get a copy of it.
  async headChanged() {
    const version = ++this.headVersion;
    const head = await this.call("exportHead");
    if (version !== this.headVersion) return;
    Object.assign(this.model, { head, headVersion: version });
    this.syncHeads();
  }

  syncHeads() {
    const { head, headVersion } = this.model;
    for (const h of this.helpers) {
      if (!h.loaded || h.headVersion === headVersion || h.syncing === headVersion) continue;
      h.syncing = headVersion;
      const copy = head.slice();
      h.call("setHead", { bytes: copy.buffer }, [copy.buffer]).then(() => { h.headVersion = headVersion; }, () => {});
    }
  }

  // A promise of one slice's {embedding, logits}, encoded on the next free worker; logits (the
  // current head's on it) only with `head` and from a worker that holds the current head, else
  // null.
  encode(input, head = false) {
    return new Promise((ok, fail) => {
      this.queue.push({ input, head, ok, fail, tries: 0 });
      this.pump();
    });
  }

  // Encode jobs not yet started are dropped (a cancelled job's slices).
  drop() {
    for (const job of this.queue.splice(0)) job.fail(new Error("cancelled"));
  }

  get size() {
    return 1 + this.helpers.filter((h) => h.loaded).length;
  }

  // Bytes the workers' memories take now (each only grows, so this is their peak).
  get memory() {
    return this.perWorker * this.size;
  }

  pump() {
    for (const w of [this.primary, ...this.helpers]) {
      if (!this.queue.length) return;
      if (!w.loaded || w.encoding) continue;
      const job = this.queue.shift();
      w.encoding = job;
      // A copy stays with the job, so that a crashed worker's slice can be encoded again.
      const input = job.input.slice();
      const version = this.headVersion;
      const head = job.head && (w === this.primary || w.headVersion === version);
      w.call("encode", { input, head }, [input.buffer]).then(({ embedding, logits }) => {
        w.encoding = null;
        job.ok({ embedding, logits: version === this.headVersion ? logits : null });
        if (w === this.primary && !this.perWorker) this.measure();
        this.pump();
      }, (err) => {
        if (w.encoding === job) w.encoding = null;
        // A job its crashed worker handed back is already queued again.
        if (job.requeued) job.requeued = false; else job.fail(err);
        this.pump();
      });
    }
  }

  // Sizes the pool from the primary's memory after its first encoding.
  async measure() {
    this.perWorker = await this.call("memory");
    if (!this.model.useGpu) this.resize(this.affordable(this.perWorker));
  }

  // Workers the tab can run at `perWorker` bytes each: at most the cores, what fits the tab's
  // budget (a quarter of the device's memory where the browser says, at most TAB_BUDGET) and
  // ?workers=N in the address (the benchmark compares 1 and 2).
  affordable(perWorker) {
    const page = window.wasmBindings.memoryBytes() + (performance.memory?.usedJSHeapSize || PAGE_BASE);
    const device = navigator.deviceMemory ? (navigator.deviceMemory * 2 ** 30) / 4 : TAB_BUDGET;
    const budget = Math.min(TAB_BUDGET, device) - page - 20 * PAGE_PER_SLICE;
    const cores = navigator.hardwareConcurrency || 1;
    const asked = Number(new URLSearchParams(location.search).get("workers")) || Infinity;
    return Math.max(1, Math.min(cores, Math.floor(budget / perWorker), asked));
  }

  // Starts helpers up to `target` workers, or stops the newest beyond it (their slices go back to
  // the queue).
  resize(target) {
    this.target = target;
    while (1 + this.helpers.length > this.target) {
      const h = this.helpers.pop();
      if (h.encoding) {
        h.encoding.requeued = true;
        this.queue.unshift(h.encoding);
        h.encoding = null;
      }
      h.retired = true;
      h.stop("the pool shrank");
    }
    this.grow();
    this.pump();
  }

  grow() {
    while (1 + this.helpers.length < this.target) {
      const h = new ModelWorker(this.urls, (w, why) => this.lost(w, why));
      this.helpers.push(h);
      const { weights, head, headVersion } = this.model;
      const [wc, hc] = [weights.slice(), head.slice()];
      h.ready = h.call("init", { ...this.urls, probe: false })
        .then(() => h.call("load", { weights: wc.buffer, head: hc.buffer, useGpu: false }, [wc.buffer, hc.buffer]))
        .then(() => {
          Object.assign(h, { loaded: true, headVersion });
          this.syncHeads();
          this.pump();
        }, (e) => h.retired || console.warn(`an encoder worker failed to start: ${e.message}`));
    }
  }

  // A worker that trapped or died: its encoding goes back to the queue once, the rest of its
  // calls fail, and a fresh worker takes its place (the primary loads the model on next use).
  lost(w, why) {
    const job = w.encoding;
    w.encoding = null;
    if (job && job.tries++ < 1) {
      job.requeued = true;
      this.queue.unshift(job);
    }
    w.stop(why ? `the model's worker failed: ${why}` : "the model's worker was restarted");
    if (w === this.primary) {
      this.start().catch(() => {});
      this.onPrimaryLost();
    } else {
      this.helpers = this.helpers.filter((h) => h !== w);
      this.grow();
    }
    this.pump();
  }
}
