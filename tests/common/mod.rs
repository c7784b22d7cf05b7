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
    match t.dtype() {
        safetensors::Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        safetensors::Dtype::U8 => t.data().iter().map(|&b| b as f32).collect(),
        other => panic!("unexpected dtype {other:?}"),
    }
}
