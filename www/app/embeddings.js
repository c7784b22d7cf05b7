// Slice embeddings: from memory, else IndexedDB by the file's SHA-256 and the encoder, else
// encoded on the pool's workers.
import { app } from "./state.js";

const db = new Promise((ok) => {
  const open = indexedDB.open("autosam", 1);
  open.onupgradeneeded = () => open.result.createObjectStore("embeddings");
  open.onsuccess = () => ok(open.result);
  open.onerror = () => ok(null); // private windows may refuse: then encode every session
});

function idb(mode, fn) {
  return db.then((d) => d && new Promise((ok) => {
    const tx = d.transaction("embeddings", mode);
    const r = fn(tx.objectStore("embeddings"));
    tx.oncomplete = () => ok(r.result);
    tx.onerror = tx.onabort = () => ok(undefined);
  }));
}

// Embeddings are kept at half precision where the browser has Float16Array, as the native cache
// keeps them: 2 MiB a slice instead of 4.
function toStored(e) {
  return typeof Float16Array === "function" ? { f16: new Float16Array(e).buffer } : e;
}

function fromStored(v) {
  if (v instanceof Float32Array) return v;
  if (v && v.f16 instanceof ArrayBuffer && typeof Float16Array === "function") return new Float32Array(new Float16Array(v.f16));
  return null;
}

// Embeddings a volume keeps in memory (4 MiB each), the most recently used; the others stay in
// IndexedDB, so that a 300-slice CT does not hold 1.2 GB in the page.
const IN_MEMORY = 32;

function keep(s, z, e) {
  s.embeddings.delete(z);
  s.embeddings.set(z, e);
  if (s.embeddings.size > IN_MEMORY) s.embeddings.delete(s.embeddings.keys().next().value);
}

// Slice z's embedding, or that of its view under Segment's second look (`zoom`, a WebZoom), or
// of its `view`-th augmented view for Teach (the wasm draws them from seed 0).
export async function embedding(s, z, zoom, view) {
  return (await encoded({ s, z, zoom, view })).embedding;
}

// {embedding, logits} of one item ({s, z, zoom?, view?, head?}): with `head`, the current
// head's logits on the embedding where a worker encoded it and ran the head at once (null when
// the embedding was cached).
async function encoded({ s, z, zoom, view, head }) {
  const at = zoom ? `${z}/${zoom.tag()}` : view !== undefined ? `${z}/${app.description.teachViewTag}${view}` : z;
  if (s.embeddings.has(at)) {
    s.cacheHits = (s.cacheHits || 0) + 1;
    const e = s.embeddings.get(at);
    keep(s, at, e);
    return { embedding: e, logits: null };
  }
  const info = app.model.info;
  const key = `${s.hash}/${info.encoder}/${s.volume.segAxis()}/${at}`;
  let e = fromStored(await idb("readonly", (store) => store.get(key)));
  let logits = null;
  if (e) {
    s.cacheHits = (s.cacheHits || 0) + 1;
  } else {
    const input = zoom ? s.volume.zoomedInput(z, zoom)
      : view !== undefined ? s.volume.viewInput(z, info.inputSize, 0, view)
        : s.volume.encoderInput(z, info.inputSize);
    ({ embedding: e, logits } = await app.pool.encode(input, Boolean(head)));
    idb("readwrite", (store) => store.put(toStored(e), key));
  }
  keep(s, at, e);
  return { embedding: e, logits };
}

// The embeddings of `items` ({s, z, zoom?, view?}) in order, each asked for a few places ahead so that every
// worker of the pool has a slice to encode while the caller uses the earlier ones.
export async function* inOrder(items) {
  for await (const batch of inBatches(items, 1)) yield batch[0].embedding;
}

// The items' {embedding, logits} (see `encoded`) in order, as arrays of up to `most`: the next
// one, with those after it that are already there (cached ones, or ones the helpers finished
// while the head ran).
export async function* inBatches(items, most) {
  const asked = [], ready = [];
  const ask = (i) => {
    if (i < items.length && !asked[i]) {
      asked[i] = encoded(items[i]);
      // The rejection handler also keeps one the caller never reaches (cancelled) from surfacing
      // as an unhandled rejection.
      asked[i].then((e) => { ready[i] = e; }, () => {});
    }
  };
  for (let i = 0; i < items.length;) {
    for (let k = i; k < i + 2 * Math.max(app.pool.target, app.pool.size) + 1; k++) ask(k);
    const batch = [await asked[i]];
    // Let the settled promises' callbacks run, so `ready` is up to date.
    await Promise.resolve();
    while (batch.length < most && ready[i + batch.length]) batch.push(ready[i + batch.length]);
    for (let k = i; k < i + batch.length; k++) { asked[k] = null; ready[k] = null; }
    i += batch.length;
    yield batch;
  }
}
