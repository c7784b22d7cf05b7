//! The conv + matmul probe on the CPU backend against a plain-Rust reference, and wgpu against
//! the CPU backend where the machine has an adapter (Mesa lavapipe in CI).

#![cfg(not(target_arch = "wasm32"))]

mod common;

use autosam::backend::{self, reference_probe, relative_error};
use burn::tensor::Device;

fn run(device: &Device) -> Vec<f32> {
    backend::probe(device)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn cpu_backend_matches_the_reference() {
    let err = relative_error(&run(&backend::cpu()), &reference_probe());
    assert!(err < 1e-5, "flex vs reference: {err}");
}

#[test]
fn wgpu_matches_the_cpu_backend_when_an_adapter_exists() {
    let device = match Device::wgpu_options().init() {
        Ok(d) => d,
        Err(e) => {
            common::skip_without(&format!("a native wgpu adapter ({e})"));
            return;
        }
    };
    let err = relative_error(&run(&device), &run(&backend::cpu()));
    eprintln!("wgpu vs flex: relative error {err:.2e}");
    assert!(err < 1e-4, "wgpu vs flex: {err}");
}
