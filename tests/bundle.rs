//! The page's bundle as built by trunk: its kernels use WebAssembly SIMD. Needs `dist/` (the page
//! build), so `scripts/test` runs it after `trunk build` with `--ignored`.

#![cfg(not(target_arch = "wasm32"))]

use wasmparser::{Parser, Payload, Validator, WasmFeatures};

fn bundle() -> Vec<u8> {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    let wasm = std::fs::read_dir(&dist)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build the page first (trunk build)",
                dist.display()
            )
        })
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("_bg.wasm"))
        .unwrap_or_else(|| panic!("no *_bg.wasm in {}", dist.display()));
    std::fs::read(wasm).unwrap()
}

/// Operators that work on 128-bit vectors, by their wasmparser names.
fn is_simd(op: &wasmparser::Operator) -> bool {
    let name = format!("{op:?}");
    ["V128", "I8x16", "I16x8", "I32x4", "I64x2", "F32x4", "F64x2"]
        .iter()
        .any(|p| name.starts_with(p))
}

#[test]
#[ignore = "needs the page build; scripts/test runs it after trunk build"]
fn the_page_bundle_uses_simd() {
    let bytes = bundle();
    let (mut functions, mut simd_functions, mut simd_ops) = (0usize, 0usize, 0usize);
    for payload in Parser::new(0).parse_all(&bytes) {
        if let Payload::CodeSectionEntry(body) = payload.unwrap() {
            functions += 1;
            let mut reader = body.get_operators_reader().unwrap();
            let mut here = 0;
            while !reader.eof() {
                if is_simd(&reader.read().unwrap()) {
                    here += 1;
                }
            }
            simd_ops += here;
            simd_functions += usize::from(here > 0);
        }
    }
    println!("{simd_ops} SIMD operators in {simd_functions} of {functions} functions");
    assert!(
        simd_functions > 100 && simd_ops > 10_000,
        "the bundle's kernels are scalar: {simd_ops} SIMD operators in {simd_functions} functions"
    );
    // And a browser without SIMD could not compile it (the page's simd.js says so first).
    let no_simd = WasmFeatures::default() - WasmFeatures::SIMD - WasmFeatures::RELAXED_SIMD;
    assert!(
        Validator::new_with_features(no_simd)
            .validate_all(&bytes)
            .is_err()
    );
    // Nothing beyond SIMD128 that the page's browsers may lack.
    let simd = WasmFeatures::default() - WasmFeatures::RELAXED_SIMD;
    Validator::new_with_features(simd)
        .validate_all(&bytes)
        .expect("the bundle validates with SIMD128 and without relaxed SIMD");
}
