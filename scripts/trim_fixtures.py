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
