//! GroupNorm followed by ReLU on tracked (autodiff) CPU tensors, one op with its own backward:
//! two passes for the statistics and one for the values forward, two backward (reading the
//! output gradient and the input, writing only the input gradient). burn composes
//! GroupNorm from about ten tensor ops (mean, subtract, square, mean, ...) and ReLU from two
//! more, each a pass over the UNet's 256x256 feature maps forward and again backward; with its
//! 3x3 convolutions on gemm, that was a quarter of the UNet's training step. The sums run in
//! f32 lanes that the compiler vectorizes, folded into f64 per run (`kernels::sum_pairs`).
//! Joined to burn's graph as in `model::tracked`; other devices keep burn's ops.

use burn::backend::{Autodiff, Flex};
use burn::nn::GroupNorm;
use burn::tensor::activation::relu;
use burn::tensor::{DType, Tensor, TensorData};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::FlexTensor;

use crate::model::kernels::{f32s, flat, per_block, sum, sum_pairs};

/// `relu(norm(x))`: the kernels here on a tracked f32 CPU tensor with an affine norm, else
/// burn's ops.
pub fn group_norm_relu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    let burns = |x| relu(norm.forward(x));
    let (Some(gamma), Some(beta)) = (&norm.gamma, &norm.beta) else {
        return burns(x);
    };
    if x.dtype() != DType::F32 || !x.device().is_autodiff() {
        return burns(x);
    }
    let tracked = |t: Tensor<1>| t.try_into_primitive::<Autodiff<Flex>>().ok();
    let (Ok(input), Some(gamma), Some(beta)) = (
        x.clone().try_into_primitive::<Autodiff<Flex>>(),
        tracked(gamma.val()),
        tracked(beta.val()),
    ) else {
        return burns(x);
    };
    let [batch, channels, h, w] = x.dims();
    let d = Dims {
        channels,
        groups: norm.num_groups,
        plane: h * w,
        eps: norm.epsilon as f32,
    };
    let xs = flat(input.primitive().clone());
    let gs = flat(gamma.primitive().clone());
    let bs = flat(beta.primitive().clone());
    let (y, stats) = forward(f32s(&xs), f32s(&gs), f32s(&bs), d);
    let y = FlexTensor::from_data(TensorData::new(y, [batch, channels, h, w]));
    let state = State {
        x: xs,
        gamma: gs,
        beta: bs,
        stats,
        dims: d,
    };
    let out = match GroupNormBackward
        .prepare::<NoCheckpointing>([input.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive::<Autodiff<Flex>>(out)
}

#[derive(Clone, Copy, Debug)]
struct Dims {
    channels: usize,
    groups: usize,
    plane: usize,
    eps: f32,
}

impl Dims {
    /// Values per (image, group): its channels' planes, one contiguous run.
    fn group_len(&self) -> usize {
        self.channels / self.groups * self.plane
    }
}

/// Each (image, group)'s mean and reciprocal standard deviation.
type Stats = Vec<(f32, f32)>;

#[derive(Debug, Clone)]
struct State {
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    stats: Stats,
    dims: Dims,
}

fn forward(x: &[f32], gamma: &[f32], beta: &[f32], d: Dims) -> (Vec<f32>, Stats) {
    let mut y = vec![0.0; x.len()];
    let per = d.channels / d.groups;
    let len = d.group_len();
    let stats = per_block(&mut y, len, |i, out| {
        let run = &x[i * len..][..len];
        let n = run.len() as f64;
        let mean = (sum(run, |v| v) / n) as f32;
        let var = sum(run, |v| (v - mean) * (v - mean)) / n;
        let rstd = 1.0 / (var as f32 + d.eps).sqrt();
        let first = (i % d.groups) * per;
        for (c, (out, plane)) in out
            .chunks_exact_mut(d.plane)
            .zip(run.chunks_exact(d.plane))
            .enumerate()
        {
            let (scale, shift) = (gamma[first + c] * rstd, beta[first + c]);
            for (o, &v) in out.iter_mut().zip(plane) {
                *o = ((v - mean) * scale + shift).max(0.0);
            }
        }
        (mean, rstd)
    });
    (y, stats)
}

/// The backward step; parents are the input, gamma and beta.
#[derive(Debug)]
struct GroupNormBackward;

impl Backward<Flex, 3> for GroupNormBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let State {
            x,
            gamma,
            beta,
            stats,
            dims: d,
        } = ops.state;
        let grad = flat(grads.consume::<Flex>(&ops.node));
        let dy_all = f32s(&grad);
        let mut dx = vec![0.0; dy_all.len()];
        let (x, gamma, beta) = (f32s(&x), f32s(&gamma), f32s(&beta));
        let per = d.channels / d.groups;
        let len = d.group_len();
        // Two passes per group, neither writing dy: the first sums over each channel's plane dy
        // x̂ and dy (gamma's and beta's gradients), the second writes the input gradient. dy is
        // taken through the ReLU in both: zero where the output was.
        let sums = per_block(&mut dx, len, |i, dx| {
            let (mean, rstd) = stats[i];
            let (x, dy) = (&x[i * len..][..len], &dy_all[i * len..][..len]);
            let first = (i % d.groups) * per;
            let planes = || dy.chunks_exact(d.plane).zip(x.chunks_exact(d.plane));
            let mut channel_sums = Vec::with_capacity(per);
            let (mut m1, mut m2) = (0.0f64, 0.0f64);
            for (c, (dy, x)) in planes().enumerate() {
                let (scale, shift) = (gamma[first + c] * rstd, beta[first + c]);
                let (dyx, dys) = sum_pairs(dy, x, |g, v| {
                    let g = if (v - mean) * scale + shift > 0.0 {
                        g
                    } else {
                        0.0
                    };
                    (g * ((v - mean) * rstd), g)
                });
                channel_sums.push((dyx as f32, dys as f32));
                m1 += dys * gamma[first + c] as f64;
                m2 += dyx * gamma[first + c] as f64;
            }
            let n = len as f64;
            let (m1, m2) = ((m1 / n) as f32, (m2 / n) as f32);
            for (c, (dx, (dy, x))) in dx.chunks_exact_mut(d.plane).zip(planes()).enumerate() {
                let g = gamma[first + c];
                let (scale, shift) = (g * rstd, beta[first + c]);
                for ((dx, &dy), &v) in dx.iter_mut().zip(dy).zip(x) {
                    let dy = if (v - mean) * scale + shift > 0.0 {
                        dy
                    } else {
                        0.0
                    };
                    let xhat = (v - mean) * rstd;
                    *dx = rstd * (dy * g - m1 - xhat * m2);
                }
            }
            channel_sums
        });
        let [node_x, node_gamma, node_beta] = ops.parents;
        if let Some(node) = node_x {
            let dx = TensorData::new(dx, grad.layout().shape().clone());
            grads.register::<Flex>(node.id, FlexTensor::from_data(dx));
        }
        let (mut dgamma, mut dbeta) = (vec![0.0f32; d.channels], vec![0.0f32; d.channels]);
        for (i, channel_sums) in sums.into_iter().enumerate() {
            let first = (i % d.groups) * per;
            for (c, (dyx, dys)) in channel_sums.into_iter().enumerate() {
                dgamma[first + c] += dyx;
                dbeta[first + c] += dys;
            }
        }
        for (node, values) in [(node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                let t = FlexTensor::from_data(TensorData::new(values, [d.channels]));
                grads.register::<Flex>(node.id, t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::GroupNormConfig;

    #[test]
    fn values_and_gradients_are_burns() {
        let device = crate::backend::cpu().autodiff();
        let mut norm = GroupNormConfig::new(2, 6).init(&device);
        // Gamma and beta away from their initial ones and zeros, so that both enter every term.
        let param = |seed| {
            Tensor::<1>::from_data(
                TensorData::new(crate::backend::pattern(6, seed), [6]),
                &device,
            )
            .add_scalar(1.0)
        };
        norm.gamma = Some(burn::module::Param::from_tensor(param(3)));
        norm.beta = Some(burn::module::Param::from_tensor(param(5)));
        let shape = [3, 6, 5, 7];
        let data = |seed| TensorData::new(crate::backend::pattern(3 * 6 * 5 * 7, seed), shape);
        let x = Tensor::<4>::from_data(data(1), &device).require_grad();
        let target = Tensor::<4>::from_data(data(2), &device);
        let run = |y: Tensor<4>| {
            let grads = (y.clone() * target.clone()).sum().backward();
            let grad = |p: &Option<burn::module::Param<Tensor<1>>>| {
                p.as_ref().unwrap().grad(&grads).unwrap().into_data()
            };
            [
                y.into_data(),
                x.grad(&grads).unwrap().into_data(),
                grad(&norm.gamma),
                grad(&norm.beta),
            ]
        };
        let ours = run(group_norm_relu(&norm, x.clone()));
        let burns = run(relu(norm.forward(x.clone())));
        for (a, b) in ours.iter().zip(&burns) {
            a.assert_approx_eq::<f32>(b, burn::tensor::Tolerance::absolute(1e-4));
        }
    }
}
