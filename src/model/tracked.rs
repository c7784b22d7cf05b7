//! GELU on tracked (autodiff) CPU tensors, with its own backward. burn's autodiff runs the CPU
//! backend's GELU forward through scalar libm `erff` and its backward as about ten separate
//! tensor passes; in a linear head's training step the two were a third of the time. Here both
//! are one SIMD pass ([`super::kernels`]), joined to burn's graph through its documented
//! extension points (`Tensor::try_into_primitive`, `Backward`). Values within the kernels'
//! 1e-6 of burn's; other devices keep burn's op.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::activation;
use burn::tensor::{DType, Tensor, TensorData};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind, unary};
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

    #[test]
    fn takes_tracked_cpu_tensors_only() {
        let tracked = Tensor::<2>::ones([2, 3], &Device::flex().autodiff()).require_grad();
        assert!(super::on_tracked_flex(&tracked).is_some());
        let plain = Tensor::<2>::ones([2, 3], &Device::flex());
        assert!(super::on_tracked_flex(&plain).is_none());
    }
}
