//! GELU and, in wasm, the heads' 1x1 and x2 transposed convolutions' products on tracked
//! (autodiff) CPU tensors, each with its own backward, joined to burn's graph through its
//! documented extension points (`Tensor::try_into_primitive`, `Backward`). Other devices keep
//! burn's ops.
//! - GELU: burn's autodiff runs the CPU backend's forward through scalar libm `erff` and its
//!   backward as about ten separate tensor passes; in a linear head's training step the two were
//!   a third of the time. Here both are one SIMD pass ([`super::kernels`]), within the kernels'
//!   1e-6 of burn's values.
//! - A weight shared over the batch times each image's pixels: in the page, 64% of a linear
//!   head's training step was gemm's SIMD128 kernel under burn's products, which spills
//!   ([`super::simd128`]); here the forward and both gradients run on [`kernels::gemm_add`].

use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::activation;
use burn::tensor::{DType, Tensor, TensorData};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind, binary, unary};
use burn_flex::FlexTensor;

use super::kernels;

/// GELU; on a tracked f32 tensor on the CPU backend with the backward below, elsewhere burn's.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let Some(tracked) = on_tracked_flex(&x) else {
        return activation::gelu(x);
    };
    let input = kernels::flat(tracked.primitive().clone());
    let values = input.as_slice::<f32>().expect("a contiguous f32 tensor");
    let output = flex(kernels::gelu_values(values), input.layout().shape().clone());
    let out = match GeluBackward
        .prepare::<NoCheckpointing>([tracked.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(input, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Tensor::from_primitive::<Autodiff<Flex>>(out)
}

/// `weight [1, M, K]` times each of `x [B, K, N]`: [B, M, N]. In wasm, on tracked or plain f32
/// CPU tensors, the products run on [`kernels::gemm_add`] (the wasm build's own SIMD128
/// product), with the backward below; elsewhere, burn's matmul.
pub fn matmul_shared(weight: Tensor<3>, x: Tensor<3>) -> Tensor<3> {
    if !cfg!(target_arch = "wasm32") {
        return weight.matmul(x);
    }
    shared_product(weight, x)
}

fn shared_product(weight: Tensor<3>, x: Tensor<3>) -> Tensor<3> {
    let ([one, m, k], [b, k2, n]) = (weight.dims(), x.dims());
    assert_eq!((one, k), (1, k2), "a [1, M, K] weight and [B, K, N] inputs");
    if kernels::on_flex(&weight) && kernels::on_flex(&x) {
        let (w, x) = (kernels::values(&weight), kernels::values(&x));
        let out = forward(kernels::f32s(&w), kernels::f32s(&x), [b, m, k, n]);
        return Tensor::from_primitive::<Flex>(flex(out, [b, m, n].into()));
    }
    let (Some(w), Some(xs)) = (on_tracked_flex(&weight), on_tracked_flex(&x)) else {
        return weight.matmul(x);
    };
    let (wv, xv) = (
        kernels::flat(w.primitive().clone()),
        kernels::flat(xs.primitive().clone()),
    );
    let out = forward(kernels::f32s(&wv), kernels::f32s(&xv), [b, m, k, n]);
    let output = flex(out, [b, m, n].into());
    let out = match SharedProductBackward
        .prepare::<NoCheckpointing>([w.node(), xs.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((wv, xv, [b, m, k, n]), output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Tensor::from_primitive::<Autodiff<Flex>>(out)
}

/// `out[b] = weight x[b]` for every b.
fn forward(weight: &[f32], x: &[f32], [b, m, k, n]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0f32; b * m * n];
    for (dst, x) in out.chunks_exact_mut(m * n).zip(x.chunks_exact(k * n)) {
        // SAFETY: dst holds m n values, weight m k and x k n, at the strides given.
        unsafe { product([m, n, k], dst, (weight.as_ptr(), k, 1), (x.as_ptr(), n, 1)) };
    }
    out
}

/// `dst += lhs rhs` ([m, n] = [m, k] [k, n]), each operand as (pointer, row stride, column
/// stride), on one thread.
///
/// # Safety
/// The operands' pointers must address their values at the strides given.
unsafe fn product(
    [m, n, k]: [usize; 3],
    dst: &mut [f32],
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
) {
    assert_eq!(dst.len(), m * n, "product's output");
    let s = |(p, r, c): (*const f32, usize, usize)| (p, r as isize, c as isize);
    // SAFETY: the caller's.
    unsafe {
        kernels::gemm_add(
            [m, n, k],
            (dst.as_mut_ptr(), n as isize, 1),
            s(lhs),
            s(rhs),
            gemm::Parallelism::None,
        )
    }
}

/// The backward step; its state is the weight, the inputs and [b, m, k, n].
#[derive(Debug)]
struct SharedProductBackward;

impl Backward<Flex, 2> for SharedProductBackward {
    type State = (FlexTensor, FlexTensor, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (weight, x, [b, m, k, n]) = ops.state;
        let values = |g: FlexTensor| {
            kernels::flat(g)
                .into_data()
                .try_into_vec::<f32>()
                .expect("f32 grads")
        };
        binary::<Flex, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| {
                // d weight = sum over b of grad[b] x[b]^T: [m, n] [n, k].
                let (grad, x) = (values(grad), kernels::f32s(&x));
                let mut dw = vec![0f32; m * k];
                for (g, x) in grad.chunks_exact(m * n).zip(x.chunks_exact(k * n)) {
                    // SAFETY: g is [m, n], x is [k, n] read as its transpose [n, k].
                    unsafe { product([m, k, n], &mut dw, (g.as_ptr(), n, 1), (x.as_ptr(), 1, n)) };
                }
                flex(dw, [1, m, k].into())
            },
            |grad| {
                // d x[b] = weight^T grad[b]: [k, m] [m, n].
                let (grad, w) = (values(grad), kernels::f32s(&weight));
                let mut dx = vec![0f32; b * k * n];
                for (dst, g) in dx.chunks_exact_mut(k * n).zip(grad.chunks_exact(m * n)) {
                    // SAFETY: weight is [m, k] read as its transpose [k, m]; g is [m, n].
                    unsafe { product([k, n, m], dst, (w.as_ptr(), 1, k), (g.as_ptr(), n, 1)) };
                }
                flex(dx, [b, k, n].into())
            },
        );
    }
}

/// `x`'s autodiff CPU primitive when `x` is an f32 tensor on the CPU backend with autodiff.
fn on_tracked_flex<const D: usize>(x: &Tensor<D>) -> Option<FloatTensor<Autodiff<Flex>>> {
    if x.dtype() != DType::F32 || !x.device().is_autodiff() {
        return None;
    }
    x.clone().try_into_primitive::<Autodiff<Flex>>().ok()
}

/// The backward step; its state is GELU's input.
#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let shape = grad.layout().shape().clone();
            let mut values = kernels::flat(grad)
                .into_data()
                .try_into_vec::<f32>()
                .expect("f32 grads");
            kernels::gelu_grad(
                x.as_slice::<f32>().expect("a contiguous input"),
                &mut values,
            );
            flex(values, shape)
        })
    }
}

fn flex(values: Vec<f32>, shape: burn::tensor::Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    /// The shared-weight product's values and both gradients against burn's matmul, at sizes
    /// with partial tiles.
    #[test]
    fn shared_product_matches_burns_matmul() {
        use burn::tensor::Distribution;
        let device = Device::flex().autodiff();
        let w0 = Tensor::<3>::random([1, 7, 5], Distribution::Normal(0.0, 1.0), &device);
        let x0 = Tensor::<3>::random([3, 5, 11], Distribution::Normal(0.0, 1.0), &device);
        let target = Tensor::<3>::random([3, 7, 11], Distribution::Normal(0.0, 1.0), &device);
        let run = |ours: bool| {
            let (w, x) = (w0.clone().require_grad(), x0.clone().require_grad());
            let y = if ours {
                super::shared_product(w.clone(), x.clone())
            } else {
                w.clone().matmul(x.clone())
            };
            let grads = (y.clone() * target.clone()).sum().backward();
            let values = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap();
            (
                values(y.inner()),
                values(w.grad(&grads).unwrap()),
                values(x.grad(&grads).unwrap()),
            )
        };
        let (ours, burns) = (run(true), run(false));
        for (name, a, b) in [
            ("product", &ours.0, &burns.0),
            ("weight gradient", &ours.1, &burns.1),
            ("input gradient", &ours.2, &burns.2),
        ] {
            let err = a
                .iter()
                .zip(b)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-4, "{name}: {err}");
        }
        let plain = |t: &Tensor<3>| Tensor::<3>::from_data(t.to_data(), &Device::flex());
        let y = super::shared_product(plain(&w0), plain(&x0));
        let want = plain(&w0).matmul(plain(&x0));
        let err: f32 = (y - want).abs().max().into_scalar();
        assert!(err < 1e-4, "plain product: {err}");
    }

    #[test]
    fn takes_tracked_cpu_tensors_only() {
        let tracked = Tensor::<2>::ones([2, 3], &Device::flex().autodiff()).require_grad();
        assert!(super::on_tracked_flex(&tracked).is_some());
        let plain = Tensor::<2>::ones([2, 3], &Device::flex());
        assert!(super::on_tracked_flex(&plain).is_none());
    }
}
