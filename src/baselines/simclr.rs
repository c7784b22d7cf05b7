//! SimCLR pre-training of the UNet's encoder path on unlabelled slices: two random views of each
//! slice (crop, flip, rotation, intensity, gamma) should map to nearby projections and away from
//! every other slice's (the NT-Xent loss).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::{gelu, log_softmax};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor, TensorData};

use super::unet::{UNetEncoder, WIDTHS};
use crate::augment::{Augment, Rng};

#[derive(Module, Debug)]
pub struct SimClr {
    pub encoder: UNetEncoder,
    pub proj1: Linear,
    pub proj2: Linear,
}

impl SimClr {
    pub fn new(device: &Device) -> Self {
        let c = WIDTHS[WIDTHS.len() - 1];
        Self {
            encoder: UNetEncoder::new(1, device),
            proj1: LinearConfig::new(2 * c, c).init(device),
            proj2: LinearConfig::new(c, 64).init(device),
        }
    }

    /// Unit-length projections [N, 64] of a batch of views [N, 1, S, S].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let features = self.encoder.forward(x).pop().expect("bottleneck");
        let [n, c, h, w] = features.dims();
        // Mean and max over the map: after GroupNorm the mean alone barely differs between views.
        let pooled = Tensor::cat(
            vec![
                adaptive_avg_pool2d(features.clone(), [1, 1]).reshape([n, c]),
                features.reshape([n, c, h * w]).max_dim(2).reshape([n, c]),
            ],
            1,
        );
        // Batch-standardised, as SimCLR's BatchNorm in the projector: ReLU features of a fresh
        // network share a large common part (cosine ~0.97 between unrelated slices) that
        // otherwise swamps the contrast. The projector is dropped after pre-training.
        let centred = pooled.clone() - pooled.mean_dim(0);
        let std = centred
            .clone()
            .powf_scalar(2.0)
            .mean_dim(0)
            .add_scalar(1e-5)
            .sqrt();
        let z = self.proj2.forward(gelu(self.proj1.forward(centred / std)));
        let norm = z
            .clone()
            .powf_scalar(2.0)
            .sum_dim(1)
            .sqrt()
            .add_scalar(1e-8);
        z / norm
    }
}

/// NT-Xent over 2N projections where rows i and i + N are the two views of one slice.
pub fn nt_xent(z: Tensor<2>, temperature: f64) -> Tensor<1> {
    let [n2, _] = z.dims();
    let device = z.device();
    let n = n2 / 2;
    let mut self_mask = vec![0f32; n2 * n2];
    let mut positive = vec![0f32; n2 * n2];
    for i in 0..n2 {
        self_mask[i * n2 + i] = -1e9;
        positive[i * n2 + (i + n) % n2] = 1.0;
    }
    let sim = z.clone().matmul(z.transpose()).div_scalar(temperature)
        + Tensor::from_data(TensorData::new(self_mask, [n2, n2]), &device);
    let positive = Tensor::<2>::from_data(TensorData::new(positive, [n2, n2]), &device);
    (log_softmax(sim, 1) * positive)
        .sum()
        .div_scalar(-(n2 as f64))
}

#[derive(Debug, Clone)]
pub struct PretrainConfig {
    pub steps: usize,
    /// Slices per step (2x views).
    pub batch_size: usize,
    pub lr: f64,
    /// Side of each view: views are smaller than the slice to keep pre-training cheap.
    pub view_size: usize,
    pub temperature: f64,
    pub seed: u64,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            batch_size: 16,
            lr: 1e-3,
            view_size: 128,
            temperature: 0.5,
            seed: 0,
        }
    }
}

/// Two views of each image, [2N, 1, V, V]: all first views, then all second views.
pub fn views(
    images: &[&[f32]],
    size: usize,
    view: usize,
    rng: &mut Rng,
    device: &Device,
) -> Tensor<4> {
    let mut values = Vec::with_capacity(2 * images.len() * view * view);
    for _ in 0..2 {
        for img in images {
            values.extend(Augment::crop(rng).image(img, size, view));
        }
    }
    Tensor::from_data(
        TensorData::new(values, [2 * images.len(), 1, view, view]),
        device,
    )
}

/// Pre-trains an encoder path on `images` ([size, size] each, values in [0, 1]) on an autodiff
/// `device`; `progress` gets (step, loss) after each step.
pub fn pretrain(
    images: &[Vec<f32>],
    size: usize,
    cfg: &PretrainConfig,
    device: &Device,
    mut progress: impl FnMut(usize, f32),
) -> UNetEncoder {
    device.seed(cfg.seed);
    let mut rng = Rng::new(cfg.seed);
    let mut model = SimClr::new(device);
    let mut optim = AdamConfig::new().init();
    for step in 0..cfg.steps {
        let batch: Vec<&[f32]> = (0..cfg.batch_size.min(images.len()))
            .map(|_| images[rng.below(images.len())].as_slice())
            .collect();
        let x = views(&batch, size, cfg.view_size, &mut rng, device);
        let loss = nt_xent(model.forward(x), cfg.temperature);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(cfg.lr, model, grads);
        progress(step + 1, loss.into_scalar());
    }
    model.encoder
}
