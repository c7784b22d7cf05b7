//! GELU as the encoders run it. burn's CPU backend (flex) computes it through scalar libm `erff`,
//! a fifth of a LiteMedSAM pass; on a flex tensor this runs one SIMD pass over the tensor's own
//! buffer instead (macerator: the widest instructions at run time natively, SIMD128 in wasm).
//! Other devices, and tensors that carry gradients, keep burn's op.

use burn::tensor::activation;
use burn::tensor::{Device, Tensor};
use macerator::{Scalar, Simd, Vector, vload_unaligned, vstore_unaligned};

/// `0.5 x (1 + erf(x / sqrt 2))`, within 1e-6 max(1, |x|) of the exact value.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if device != Device::flex() {
        return activation::gelu(x);
    }
    let mut data = x.into_data();
    if let Ok(values) = data.as_mut_slice::<f32>() {
        gelu_in_place(values);
        return Tensor::from_data(data, &device);
    }
    activation::gelu(Tensor::from_data(data, &device))
}

/// erf(x) = x P(x²) / Q(x²) on [-4, 4], coefficients from the highest power down; outside, |erf|
/// is within 2e-8 of 1. The absolute error stays under 5e-7 over the whole range.
const ERF_P: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_4e-5,
    -7.349_906_3e-4,
    -2.954_6e-3,
    -1.609_603_3e-2,
];
const ERF_Q: [f32; 5] = [
    -1.456_607_2e-5,
    -2.133_740_6e-4,
    -1.682_827e-3,
    -7.373_329e-3,
    -1.426_474e-2,
];

/// The same operations in the same order as the vector kernel, for the tail.
fn gelu_scalar(x: f32) -> f32 {
    let z = (x * std::f32::consts::FRAC_1_SQRT_2).clamp(-4.0, 4.0);
    let z2 = z * z;
    let p = ERF_P[1..].iter().fold(ERF_P[0], |acc, &c| acc * z2 + c);
    let q = ERF_Q[1..].iter().fold(ERF_Q[0], |acc, &c| acc * z2 + c);
    0.5 * x * (1.0 + z * p / q)
}

#[inline(always)]
fn gelu_vector<S: Simd>(x: Vector<S, f32>) -> Vector<S, f32> {
    let z = (x * std::f32::consts::FRAC_1_SQRT_2.splat::<S>())
        .max((-4.0f32).splat::<S>())
        .min(4.0f32.splat::<S>());
    let z2 = z * z;
    let mut p = ERF_P[0].splat::<S>();
    for &c in &ERF_P[1..] {
        p = p * z2 + c.splat::<S>();
    }
    let mut q = ERF_Q[0].splat::<S>();
    for &c in &ERF_Q[1..] {
        q = q * z2 + c.splat::<S>();
    }
    0.5f32.splat::<S>() * x * (1.0f32.splat::<S>() + z * p / q)
}

#[macerator::with_simd]
fn gelu_in_place<S: Simd>(values: &mut [f32]) {
    let lanes = <f32 as Scalar>::lanes::<S>();
    let mut chunks = values.chunks_exact_mut(lanes);
    for chunk in &mut chunks {
        // SAFETY: each chunk holds exactly `lanes` values.
        unsafe {
            let v = vload_unaligned::<S, f32>(chunk.as_ptr());
            vstore_unaligned::<S, f32>(chunk.as_mut_ptr(), gelu_vector::<S>(v));
        }
    }
    for x in chunks.into_remainder() {
        *x = gelu_scalar(*x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn matches_burns_gelu() {
        // Every 1/1000 over [-10, 10], plus the extremes, through the vector body and the tail.
        let mut xs: Vec<f32> = (-10_000..=10_000).map(|i| i as f32 / 1000.0).collect();
        xs.extend([f32::MAX, f32::MIN, 0.0, -0.0, 1e-30, -1e-30]);
        let device = Device::flex();
        let t = Tensor::<1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &device);
        let ours = gelu(t.clone()).into_data().try_to_vec::<f32>().unwrap();
        let burns = activation::gelu(t).into_data().try_to_vec::<f32>().unwrap();
        for ((x, a), b) in xs.iter().zip(&ours).zip(&burns) {
            assert!(
                (a - b).abs() <= 1e-6 * x.abs().max(1.0),
                "gelu({x}): {a} against burn's {b}"
            );
            assert_eq!(*a, gelu_scalar(*x), "the tail differs from the body at {x}");
        }
    }
}
