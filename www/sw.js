// The service worker: the page's own files from Cache Storage when the network is gone, so the
// app works offline after the first visit. It only ever fetches this origin's files.
const CACHE = "autosam-v1";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));

// The page sends the URLs it loaded (bundle names are hashed per build) plus the model files.
self.addEventListener("message", (e) => {
  const keep = (e.data && e.data.keep) || [];
  const own = keep.filter((u) => new URL(u).origin === self.location.origin);
  // Anything else cached (an older build's hashed bundle) is dropped, or it would pile up.
  const wanted = new Set(own.map((u) => new URL(u).pathname));
  e.waitUntil(caches.open(CACHE).then(async (c) => {
    await Promise.all(own.map((u) => c.match(u).then((hit) => hit || c.add(u).catch(() => {}))));
    const stale = (await c.keys()).filter((r) => !wanted.has(new URL(r.url).pathname));
    await Promise.all(stale.map((r) => c.delete(r)));
  }));
});

// Network first, so a new build is picked up; the cache when offline. Every fetched file of this
// origin refreshes the cache.
self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== "GET" || url.origin !== self.location.origin) return;
  e.respondWith(fetch(e.request).then((response) => {
    if (response.ok) {
      const copy = response.clone();
      caches.open(CACHE).then((c) => c.put(e.request, copy));
    }
    return response;
  }, () => caches.match(e.request, { ignoreSearch: true }).then((hit) => hit || Response.error())));
});
