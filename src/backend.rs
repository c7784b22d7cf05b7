//! Which burn device runs the model, and a small conv + matmul probe used to check that a backend
//! computes what the CPU backend computes (WebGPU can fail silently: a shader that does not
//! compile yields garbage, not an error) and to time backends against each other.

use burn::tensor::{Device, Tensor, TensorData, module::conv2d, ops::ConvOptions};

/// The pure-Rust CPU backend: runs natively and in wasm, and is the reference for the GPU.
pub fn cpu() -> Device {
    Device::flex()
}

/// Deterministic values in [-1, 1), bit-identical on every platform: an integer hash, because a
/// float hash such as `fract(sin(x) * 43758.5)` amplifies libm's last-bit differences between
/// native and wasm into 1e-3 changes.
pub fn pattern(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| {
            let mut x = i.wrapping_mul(0x9E37_79B1) ^ seed.wrapping_mul(0x85EB_CA77);
            x ^= x >> 15;
            x = x.wrapping_mul(0x2C1B_3C6D);
            x ^= x >> 12;
            x = x.wrapping_mul(0x297A_2D39);
            x ^= x >> 15;
            (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

fn tensor<const D: usize>(shape: [usize; D], seed: u32, device: &Device) -> Tensor<D> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(pattern(n, seed), shape), device)
}

/// A 3x3 convolution of a `[1, channels, size, size]` image to `channels` outputs.
pub fn conv_workload(device: &Device, channels: usize, size: usize) -> Tensor<4> {
    let x = tensor([1, channels, size, size], 1, device);
    let w = tensor([channels, channels, 3, 3], 2, device).div_scalar((channels * 9) as f32);
    conv2d(x, w, None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1))
}

/// A square `n x n` matrix product.
pub fn matmul_workload(device: &Device, n: usize) -> Tensor<2> {
    let a = tensor([n, n], 3, device);
    let b = tensor([n, n], 4, device).div_scalar(n as f32);
    a.matmul(b)
}

/// Channels and side of the probe's image, shared with [`reference_probe`].
const PROBE_CHANNELS: usize = 8;
const PROBE_SIZE: usize = 32;

/// The probe the browser tests compare across backends: conv, ReLU, then a Gram matrix of the
/// feature maps (a matmul over every pixel), `[PROBE_CHANNELS, PROBE_CHANNELS]`.
pub fn probe(device: &Device) -> Tensor<2> {
    let (c, s) = (PROBE_CHANNELS, PROBE_SIZE);
    let y = burn::tensor::activation::relu(conv_workload(device, c, s));
    let f = y.reshape([c, s * s]);
    f.clone().matmul(f.transpose()).div_scalar((s * s) as f32)
}

/// Largest |a - b| over the larger |b|, for comparing backends.
pub fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(1e-12, f32::max);
    diff / scale
}

/// [`probe`] written out loop by loop in plain Rust: the reference every backend is checked
/// against, natively and in the browser.
pub fn reference_probe() -> Vec<f32> {
    let (c, s) = (PROBE_CHANNELS, PROBE_SIZE);
    let x = pattern(c * s * s, 1);
    let w: Vec<f32> = pattern(c * c * 9, 2)
        .iter()
        .map(|v| v / (c * 9) as f32)
        .collect();
    let mut y = vec![0.0f32; c * s * s];
    for o in 0..c {
        for py in 0..s {
            for px in 0..s {
                let mut acc = 0.0;
                for i in 0..c {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            // input pixel (py + ky - 1, px + kx - 1), zero outside
                            let (iy, ix) = (py + ky, px + kx);
                            if iy < 1 || ix < 1 || iy > s || ix > s {
                                continue;
                            }
                            acc += x[(i * s + iy - 1) * s + ix - 1]
                                * w[((o * c + i) * 3 + ky) * 3 + kx];
                        }
                    }
                }
                y[(o * s + py) * s + px] = acc.max(0.0);
            }
        }
    }
    let mut g = vec![0.0f32; c * c];
    for a in 0..c {
        for b in 0..c {
            let dot: f32 = (0..s * s)
                .map(|p| y[a * s * s + p] * y[b * s * s + p])
                .sum();
            g[a * c + b] = dot / (s * s) as f32;
        }
    }
    g
}
