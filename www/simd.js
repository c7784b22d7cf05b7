// The model is built for WebAssembly SIMD (128-bit). A browser without it cannot compile the
// bundle at all, so this plain script checks first and says so, instead of a silent dead page.
(() => {
  // A function returning i8x16.popcnt(i8x16.splat(0)): valid only where SIMD is.
  const probe = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0,
    10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);
  const ok = typeof WebAssembly === "object" && WebAssembly.validate(probe);
  if (ok) return;
  const say = () => {
    const status = document.getElementById("status");
    status.dataset.state = "error";
    status.textContent = "This browser cannot run the model: it lacks WebAssembly SIMD. "
      + "Use a current Chrome, Edge, Firefox or Safari (2021 or later).";
  };
  document.readyState === "loading" ? addEventListener("DOMContentLoaded", say, { once: true }) : say();
})();
