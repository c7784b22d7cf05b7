//! The sub-pixel rearrangement that ends a kernel-2, stride-2 transposed convolution taken as one
//! product ([`super::common::conv_transpose`]): [B, C 4, H, W], channel c 4 + dy 2 + dx holding
//! output pixel (2 i + dy, 2 j + dx) of channel c, to [B, C, 2H, 2W]. burn's CPU backend runs
//! that as a 6-D permute through its generic strided iterator, forward and again backward; in
//! the linear head's training step the copies were about a sixth of the time (perf). Here it is
//! one pass each way on CPU tensors, tracked or not; other devices keep the permute.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor, TensorData};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, unary};
use burn_flex::FlexTensor;

use super::kernels::{self, f32s, per_block};

/// [B, C 4, H, W] -> [B, C, 2H, 2W].
pub fn pixel_shuffle(y: Tensor<4>) -> Tensor<4> {
    let [b, c4, h, w] = y.dims();
    let c = c4 / 4;
    if y.dtype() == DType::F32 {
        if kernels::on_flex(&y) {
            let device = y.device();
            let src = kernels::flat(y.try_into_primitive::<Flex>().expect("on_flex"));
            let out = shuffle(f32s(&src), h, w);
            return Tensor::from_data(TensorData::new(out, [b, c, 2 * h, 2 * w]), &device);
        }
        if y.device().is_autodiff()
            && let Ok(tracked) = y.clone().try_into_primitive::<Autodiff<Flex>>()
        {
            let src = kernels::flat(tracked.primitive().clone());
            let out = TensorData::new(shuffle(f32s(&src), h, w), [b, c, 2 * h, 2 * w]);
            let out = ShuffleBackward
                .prepare::<NoCheckpointing>([tracked.node()])
                .compute_bound()
                .stateless(FlexTensor::from_data(out));
            return Tensor::from_primitive::<Autodiff<Flex>>(out);
        }
    }
    y.reshape([b, c, 2, 2, h, w])
        .permute([0, 1, 4, 2, 5, 3])
        .reshape([b, c, 2 * h, 2 * w])
}

/// The backward step: the output gradient gathered back to the input's layout.
#[derive(Debug)]
struct ShuffleBackward;

impl Backward<Flex, 1> for ShuffleBackward {
    type State = ();

    fn backward(self, ops: Ops<(), 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let [b, c, h2, w2] = grad.layout().shape().dims();
            let grad = kernels::flat(grad);
            let values = unshuffle(f32s(&grad), h2 / 2, w2 / 2);
            FlexTensor::from_data(TensorData::new(values, [b, c * 4, h2 / 2, w2 / 2]))
        })
    }
}

fn shuffle(src: &[f32], h: usize, w: usize) -> Vec<f32> {
    let plane = h * w;
    let mut out = vec![0.0f32; src.len()];
    per_block(&mut out, 4 * plane, |ch, dst| {
        let sub = &src[ch * 4 * plane..][..4 * plane];
        for (r, row) in dst.chunks_exact_mut(2 * w).enumerate() {
            let (i, dy) = (r / 2, r % 2);
            let left = &sub[(dy * 2) * plane + i * w..][..w];
            let right = &sub[(dy * 2 + 1) * plane + i * w..][..w];
            for ((pair, &a), &b) in row.chunks_exact_mut(2).zip(left).zip(right) {
                pair[0] = a;
                pair[1] = b;
            }
        }
    });
    out
}

fn unshuffle(src: &[f32], h: usize, w: usize) -> Vec<f32> {
    let plane = h * w;
    let mut out = vec![0.0f32; src.len()];
    per_block(&mut out, 4 * plane, |ch, dst| {
        let full = &src[ch * 4 * plane..][..4 * plane];
        for (r, row) in full.chunks_exact(2 * w).enumerate() {
            let (i, dy) = (r / 2, r % 2);
            for (j, pair) in row.chunks_exact(2).enumerate() {
                dst[(dy * 2) * plane + i * w + j] = pair[0];
                dst[(dy * 2 + 1) * plane + i * w + j] = pair[1];
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tolerance;

    fn permuted(y: Tensor<4>) -> Tensor<4> {
        let [b, c4, h, w] = y.dims();
        y.reshape([b, c4 / 4, 2, 2, h, w])
            .permute([0, 1, 4, 2, 5, 3])
            .reshape([b, c4 / 4, 2 * h, 2 * w])
    }

    #[test]
    fn values_and_gradient_are_the_permutes() {
        let device = crate::backend::cpu().autodiff();
        let shape = [2, 12, 3, 5];
        let data = TensorData::new(crate::backend::pattern(2 * 12 * 15, 1), shape);
        let y = Tensor::<4>::from_data(data, &device).require_grad();
        let target = Tensor::<4>::from_data(
            TensorData::new(crate::backend::pattern(2 * 12 * 15, 2), [2, 3, 6, 10]),
            &device,
        );
        let run = |out: Tensor<4>| {
            let grads = (out.clone() * target.clone()).sum().backward();
            (out.into_data(), y.grad(&grads).unwrap().into_data())
        };
        let (ours, ours_grad) = run(pixel_shuffle(y.clone()));
        let (want, want_grad) = run(permuted(y.clone()));
        ours.assert_eq(&want, true);
        ours_grad.assert_approx_eq::<f32>(&want_grad, Tolerance::absolute(1e-6));
        let plain = Tensor::<4>::from_data(y.clone().into_data(), &crate::backend::cpu());
        pixel_shuffle(plain.clone())
            .into_data()
            .assert_eq(&permuted(plain).into_data(), true);
    }
}
