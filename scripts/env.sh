# Sourced by the scripts: where builds and tools live. The target directory sits outside the
# clone so a fresh clone (as in CI) reuses an earlier build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/autosam/target}"
export PATH="$HOME/.cargo/bin:$PATH"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
WEIGHTS_DIR="$ROOT/weights"
LITEMEDSAM_SHA256=79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' "$ROOT/Cargo.lock")"
TRUNK_VERSION=0.21.14
