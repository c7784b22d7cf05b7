#!/usr/bin/env python3
"""Copies the parts of ../shared/fixtures the tests need into tests/fixtures, trimmed so the repo
stays small. Rerun with `python3 scripts/trim_fixtures.py` (needs safetensors, numpy)."""
import os
from safetensors.numpy import load_file, save_file

here = os.path.dirname(os.path.abspath(__file__))
shared = os.path.join(here, "..", "..", "shared", "fixtures")
out = os.path.join(here, "..", "tests", "fixtures")

s = load_file(os.path.join(shared, "litemedsam_slice.safetensors"))
# The three input channels are copies; one is enough to check preprocessing.
save_file({"slice_hw": s["slice_hw"], "label_hw": s["label_hw"],
           "input_channel0": s["input"][0, 0].copy()},
          os.path.join(out, "litemedsam_preprocess.safetensors"))
print("wrote", os.path.join(out, "litemedsam_preprocess.safetensors"))

# Parity fixtures for `autosam parity tests/fixtures/parity`: the same file and tensor names as
# ../shared/fixtures. Left out, because the checks recompute or imply them: `input` (recomputed
# from slice_hw and checked by the preprocess test), `dense_pe` (4 MB; the box logits use it).
parity = os.path.join(out, "parity")
os.makedirs(parity, exist_ok=True)
keep = {k: v for k, v in s.items() if k not in ("input", "dense_pe")}
save_file(keep, os.path.join(parity, "litemedsam_slice.safetensors"))
import shutil
for name in ("sam_vit_small_random.pth", "sam_vit_small_random.safetensors"):
    shutil.copy(os.path.join(shared, name), os.path.join(parity, name))
print("wrote", parity)

# The AutoSAM head check: its embedding is the slice fixture's (identical), so it is left out and
# `autosam parity` takes it from litemedsam_slice.safetensors.
h = load_file(os.path.join(shared, "autosam_head.safetensors"))
assert (h["embedding"] == s["embedding"]).all()
save_file({k: v for k, v in h.items() if k != "embedding"},
          os.path.join(parity, "autosam_head.safetensors"))
print("wrote", os.path.join(parity, "autosam_head.safetensors"))
