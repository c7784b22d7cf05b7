//! The training loss: cross-entropy over all classes plus (1 - soft Dice) averaged over the
//! foreground classes. burn builds it from about fifteen tensor ops (log-softmax, softmax,
//! products, narrows, sums over three axes), each a pass over the [B, K, 256, 256] logits forward
//! and again backward; in a linear head's training step they and their buffers were a fifth of
//! the time. On tracked CPU tensors it runs here as one pass per image forward (softmax, the
//! cross-entropy and the Dice sums together) and one backward that writes the logits' gradient
//! over the saved probabilities, joined to burn's graph as in `model::tracked`. Other devices
//! (the page's WebGPU) keep burn's ops.

use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{DType, Tensor, TensorData};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::FlexTensor;

use crate::model::kernels::{exp_in_place, f32s, flat, per_block, sum_pairs};

/// The loss of `logits` ([B, K, H, W]) against `one_hot`, the truth as from
/// [`crate::train::one_hot`]: the kernels here on tracked f32 CPU tensors, else burn's ops.
pub fn loss(logits: Tensor<4>, one_hot: Tensor<4>) -> Tensor<1> {
    if logits.dtype() != DType::F32 || !logits.device().is_autodiff() {
        return composed(logits, one_hot);
    }
    let (Ok(z), Ok(y)) = (
        logits.clone().try_into_primitive::<Autodiff<Flex>>(),
        one_hot.clone().try_into_primitive::<Autodiff<Flex>>(),
    ) else {
        return composed(logits, one_hot);
    };
    let [batch, classes, h, w] = logits.dims();
    let d = Dims {
        batch,
        classes,
        plane: h * w,
    };
    let (zs, ys) = (flat(z.primitive().clone()), flat(y.primitive().clone()));
    let (value, state) = forward(f32s(&zs), ys, d);
    let out = FlexTensor::from_data(TensorData::new(vec![value], [1]));
    let out = match LossBackward
        .prepare::<NoCheckpointing>([z.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive::<Autodiff<Flex>>(out)
}

/// The same loss as burn tensor ops, for every device.
fn composed(logits: Tensor<4>, one_hot: Tensor<4>) -> Tensor<1> {
    let [b, k, h, w] = logits.dims();
    let ce = (log_softmax(logits.clone(), 1) * one_hot.clone())
        .sum()
        .div_scalar(-((b * h * w) as f64));
    if k < 2 {
        return ce;
    }
    let probs = softmax(logits, 1).narrow(1, 1, k - 1);
    let truth = one_hot.narrow(1, 1, k - 1);
    let inter = (probs.clone() * truth.clone())
        .sum_dim(3)
        .sum_dim(2)
        .sum_dim(0);
    let total = (probs + truth).sum_dim(3).sum_dim(2).sum_dim(0);
    let dice = inter.mul_scalar(2.0).add_scalar(1.0) / total.add_scalar(1.0);
    let soft_dice_loss = dice.mean().neg().add_scalar(1.0);
    ce + soft_dice_loss
}

#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    classes: usize,
    plane: usize,
}

impl Dims {
    fn image(&self) -> usize {
        self.classes * self.plane
    }

    /// Pixels over the batch: the cross-entropy's mean runs over them.
    fn pixels(&self) -> f64 {
        (self.batch * self.plane) as f64
    }
}

/// What the backward step reads.
#[derive(Debug, Clone)]
struct State {
    /// The softmax, [B, K, H, W]; the backward overwrites it with the gradient.
    probs: Vec<f32>,
    one_hot: FlexTensor,
    /// Per pixel, [B, H, W], the truth's sum over classes: 1 where labelled, 0 for an unknown
    /// label.
    weight: Vec<f32>,
    /// Per foreground class (index 0 unused): its soft Dice and its sum of probabilities and
    /// truth.
    dice: Vec<f32>,
    totals: Vec<f32>,
    dims: Dims,
}

/// One image's sums: the truth's log-probabilities, and per class the sums of p y and p + y;
/// with its pixels' truth weights.
struct Sums {
    weight: Vec<f32>,
    log_likelihood: f64,
    inter: Vec<f64>,
    total: Vec<f64>,
}

fn forward(z: &[f32], one_hot: FlexTensor, d: Dims) -> (f32, State) {
    let y = f32s(&one_hot);
    let mut probs = z.to_vec();
    let sums = per_block(&mut probs, d.image(), |i, p| {
        let z = &z[i * d.image()..][..d.image()];
        let y = &y[i * d.image()..][..d.image()];
        image_forward(z, y, p, d.plane)
    });
    let log_likelihood: f64 = sums.iter().map(|s| s.log_likelihood).sum();
    let weight = sums.iter().flat_map(|s| s.weight.iter().copied()).collect();
    let mut value = -log_likelihood / d.pixels();
    let (mut dice, mut totals) = (vec![0.0f32; d.classes], vec![0.0f32; d.classes]);
    if d.classes >= 2 {
        let mut mean = 0.0;
        for c in 1..d.classes {
            let inter: f64 = sums.iter().map(|s| s.inter[c]).sum();
            let total: f64 = sums.iter().map(|s| s.total[c]).sum();
            let coefficient = (2.0 * inter + 1.0) / (total + 1.0);
            (dice[c], totals[c]) = (coefficient as f32, total as f32);
            mean += coefficient / (d.classes - 1) as f64;
        }
        value += 1.0 - mean;
    }
    let state = State {
        probs,
        one_hot,
        weight,
        dice,
        totals,
        dims: d,
    };
    (value as f32, state)
}

/// One image ([K, P] logits `z` and truth `y`): its softmax into `p` (which holds `z`) and its
/// sums.
fn image_forward(z: &[f32], y: &[f32], p: &mut [f32], plane: usize) -> Sums {
    let mut max = z[..plane].to_vec();
    for zc in z.chunks_exact(plane).skip(1) {
        max.iter_mut().zip(zc).for_each(|(m, &v)| *m = m.max(v));
    }
    let mut norm = vec![0.0f32; plane];
    for pc in p.chunks_exact_mut(plane) {
        pc.iter_mut().zip(&max).for_each(|(v, &m)| *v -= m);
        exp_in_place(pc);
        norm.iter_mut().zip(pc.iter()).for_each(|(s, &e)| *s += e);
    }
    // log p_c = z_c - max - ln(norm); the truth's weights sum to one per labelled pixel.
    let mut log_likelihood = 0.0;
    let mut weight = vec![0.0f32; plane];
    for (zc, yc) in z.chunks_exact(plane).zip(y.chunks_exact(plane)) {
        log_likelihood += sum_pairs(zc, yc, |z, y| (z * y, 0.0)).0;
        weight.iter_mut().zip(yc).for_each(|(w, &v)| *w += v);
    }
    log_likelihood -= sum_pairs(&max, &weight, |m, w| (m * w, 0.0)).0;
    let log_norm: Vec<f32> = norm.iter().map(|s| s.ln()).collect();
    log_likelihood -= sum_pairs(&log_norm, &weight, |l, w| (l * w, 0.0)).0;
    norm.iter_mut().for_each(|s| *s = 1.0 / *s);
    let (mut inter, mut total) = (Vec::new(), Vec::new());
    for (pc, yc) in p.chunks_exact_mut(plane).zip(y.chunks_exact(plane)) {
        pc.iter_mut().zip(&norm).for_each(|(v, &r)| *v *= r);
        let (i, t) = sum_pairs(pc, yc, |p, y| (p * y, p + y));
        inter.push(i);
        total.push(t);
    }
    Sums {
        weight,
        log_likelihood,
        inter,
        total,
    }
}

/// The backward step; its one parent is the logits.
#[derive(Debug)]
struct LossBackward;

impl Backward<Flex, 1> for LossBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let State {
            mut probs,
            one_hot,
            weight,
            dice,
            totals,
            dims: d,
        } = ops.state;
        let upstream = f32s(&flat(grads.consume::<Flex>(&ops.node)))[0];
        let [Some(node)] = ops.parents else {
            return;
        };
        let y = f32s(&one_hot);
        // dL/dz_c = (p_c W - y_c) / N + p_c (g_c - sum_j p_j g_j), where W = sum_j y_j (1 for
        // a labelled pixel, 0 for one with an unknown label) and g_c = dL/dp_c of the Dice
        // term: -(2 y_c - D_c) / ((K - 1)(T_c + 1)) for a foreground class, 0 for class 0.
        let ce = (1.0 / d.pixels()) as f32;
        let scale: Vec<f32> = (0..d.classes)
            .map(|c| match c {
                0 => 0.0,
                _ => 1.0 / ((d.classes - 1) as f32 * (totals[c] + 1.0)),
            })
            .collect();
        per_block(&mut probs, d.image(), |i, p| {
            let y = &y[i * d.image()..][..d.image()];
            let weight = &weight[i * d.plane..][..d.plane];
            let mut mixed = vec![0.0f32; d.plane];
            for (c, (pc, yc)) in p
                .chunks_exact(d.plane)
                .zip(y.chunks_exact(d.plane))
                .enumerate()
                .skip(1)
            {
                let (a, dc) = (scale[c], dice[c]);
                for ((m, &p), &y) in mixed.iter_mut().zip(pc).zip(yc) {
                    *m -= p * (2.0 * y - dc) * a;
                }
            }
            for (c, (pc, yc)) in p
                .chunks_exact_mut(d.plane)
                .zip(y.chunks_exact(d.plane))
                .enumerate()
            {
                let (a, dc) = (scale[c], dice[c]);
                for (((p, &y), &m), &w) in pc.iter_mut().zip(yc).zip(&mixed).zip(weight) {
                    let g = if c == 0 { 0.0 } else { -(2.0 * y - dc) * a };
                    *p = upstream * ((*p * w - y) * ce + *p * (g - m));
                }
            }
        });
        let grad = TensorData::new(probs, one_hot.layout().shape().clone());
        grads.register::<Flex>(node.id, FlexTensor::from_data(grad));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values and gradients against burn's composition, with labels of every class, pixels
    /// labelled with none (an unknown label), and logits far apart.
    #[test]
    fn values_and_gradients_are_burns() {
        let device = crate::backend::cpu().autodiff();
        let (b, k, s) = (2, 4, 6);
        let labels: Vec<u8> = (0..b * s * s).map(|i| ((i * 7) % 5) as u8).collect();
        let truth = crate::train::one_hot(&labels, b, k, s, &device);
        let values: Vec<f32> = crate::backend::pattern(b * k * s * s, 3)
            .iter()
            .map(|v| v * 40.0)
            .collect();
        let logits =
            Tensor::<4>::from_data(TensorData::new(values, [b, k, s, s]), &device).require_grad();
        let run = |l: Tensor<1>| {
            let grads = l.clone().mul_scalar(3.0).backward();
            (l.into_data(), logits.grad(&grads).unwrap().into_data())
        };
        let (ours, ours_grad) = run(loss(logits.clone(), truth.clone()));
        let (burns, burns_grad) = run(composed(logits.clone(), truth));
        ours.assert_approx_eq::<f32>(&burns, burn::tensor::Tolerance::absolute(1e-5));
        ours_grad.assert_approx_eq::<f32>(&burns_grad, burn::tensor::Tolerance::absolute(1e-6));
    }
}
