//! Any bytes a user can drop: the reader must return a volume or an error, never panic, and stay
//! within small caps (so the fuzzer also finds allocations that ignore them).
#![no_main]

use autosam::nii::{ReadLimits, ReadOptions, read_header_only, read_nifti};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ReadLimits {
        max_inflated_bytes: 4 << 20,
        max_decoded_bytes: 4 << 20,
    };
    let _ = read_header_only(data, &limits);
    for frame in [0, 1] {
        if let Ok(v) = read_nifti(data, &ReadOptions { frame, limits }) {
            assert_eq!(v.data.len(), v.dims.iter().product::<usize>());
            let axis = v.slice_axis();
            let _ = v.slice(axis, v.slice_count(axis) - 1);
            let _ = v.summary();
        }
    }
});
