//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use safetensors::SafeTensors;

/// A tensor of tests/fixtures/litemedsam_preprocess.safetensors as f32 (u8 tensors widened).
pub fn fixture_tensor(name: &str) -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/litemedsam_preprocess.safetensors");
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    autosam::container::to_f32(t.dtype(), t.data()).unwrap()
}

/// Says that a test's input (data, weights, an adapter) is absent, so the test skips. Skipping
/// is for a developer's partial checkout only: `scripts/test`, and so CI, sets
/// `AUTOSAM_REQUIRE_INPUTS=1`, and there an absent input fails the test.
pub fn skip_without(what: &str) {
    if std::env::var("AUTOSAM_REQUIRE_INPUTS").as_deref() == Ok("1") {
        panic!("{what} is absent, and AUTOSAM_REQUIRE_INPUTS=1 requires it");
    }
    eprintln!("skipped: {what} is absent");
}
