#!/usr/bin/env python3
"""Writes tests/fixtures/nifti/: tiny NIfTI-1 files made by nibabel (an independent writer) and
expected.json with what nibabel reads back, so the Rust reader is checked against another
implementation. Rerun with `python3 scripts/make_nifti_fixtures.py` (needs nibabel, numpy)."""
import gzip, json, os
import numpy as np
import nibabel as nib

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "nifti")
os.makedirs(out, exist_ok=True)
shape = (5, 4, 3)
n = int(np.prod(shape))
rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 degrees about z
expected = {}


def save(name, data, affine=None, slope=None, inter=None, big_endian=False, spacing=(1.5, 2.0, 3.0),
         qfac=1, sform=True, gz=False):
    if affine is None:
        affine = np.diag(list(spacing) + [1.0])
        affine[:3, 3] = [-10.0, 20.0, 5.0]
    img = nib.Nifti1Image(data, affine, dtype=data.dtype)
    h = img.header
    if big_endian:
        h = h.as_byteswapped(">")
        img = nib.Nifti1Image(data, affine, header=h, dtype=data.dtype)
        h = img.header
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2 if sform else 0)
    if slope is not None:
        h["scl_slope"], h["scl_inter"] = slope, inter
    fname = name + (".nii.gz" if gz else ".nii")
    path = os.path.join(out, fname)
    if gz:
        # fixed mtime keeps the bytes reproducible
        raw = img.to_bytes()
        with open(path, "wb") as f:
            f.write(gzip.compress(raw, mtime=0))
    else:
        nib.save(img, path)
    back = nib.load(path)
    f = np.asarray(back.dataobj, dtype=np.float64)
    expected[fname] = {
        "dims": list(back.shape),
        "datatype": str(back.get_data_dtype().newbyteorder("=")),
        "values": f.reshape(-1, order="F").tolist(),
        "affine": back.affine.tolist(),
        "orientation": "".join(nib.aff2axcodes(back.affine)),
    }


vals = np.arange(n).reshape(shape, order="F")
for dt in ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"]:
    signed = np.dtype(dt).kind in "if"
    data = (vals - (n // 2 if signed else 0)).astype(dt)
    save("dt_" + dt, data)
save("int16_bigendian_scaled", (vals * 3 - 50).astype(np.int16), slope=0.5, inter=-7.0, big_endian=True)
save("float32_rotated_qform_only", vals.astype(np.float32) / 7, affine=np.block(
    [[rot @ np.diag([0.9, 0.8, 5.0]), np.array([[1.0], [2.0], [3.0]])], [np.zeros((1, 3)), np.ones((1, 1))]]),
    sform=False)
save("uint8_gz", (vals % 4).astype(np.uint8), gz=True)
frames = np.stack([vals.astype(np.int16) + 100 * t for t in range(3)], axis=-1)
save("int16_4d_3frames", frames)
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f, indent=0, sort_keys=True)
print("wrote", len(expected), "files to", os.path.normpath(out))
