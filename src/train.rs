//! Training a head on cached embeddings: cross-entropy plus soft Dice over the foreground
//! classes, Adam, mini-batches. One step at a time (`Trainer::step` returns the loss as a
//! tensor), so the page can read results back asynchronously between steps.

use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::heads::Head;
use crate::model::HostTensor;

/// One training example: an encoder embedding and its labels on the encoder's input grid.
#[derive(Debug, Clone)]
pub struct Sample {
    /// [C, H, W] of the embedding (256 x 64 x 64 for LiteMedSAM).
    pub embedding: Vec<f32>,
    /// [S, S] class codes, letterboxed like the encoder input.
    pub labels: Vec<u8>,
}

/// The paper's defaults: Adam at 5e-4.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch_size: 4,
            lr: 5e-4,
            seed: 0,
        }
    }
}

/// What the page draws after each epoch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Progress {
    pub epoch: usize,
    pub loss: f64,
    /// Mean foreground Dice on the validation samples, when there are any.
    pub val_dice: Option<f64>,
}

/// Cross-entropy over all classes plus (1 - soft Dice) averaged over the foreground classes.
pub fn loss(logits: Tensor<4>, labels: Tensor<3, Int>) -> Tensor<1> {
    let [b, k, h, w] = logits.dims();
    let one_hot = labels.one_hot::<4>(k).permute([0, 3, 1, 2]).float();
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

/// A small seeded shuffle (xorshift), the same natively and in wasm.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..items.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        items.swap(i, (s % (i as u64 + 1)) as usize);
    }
}

pub struct Trainer {
    head: Option<Head>,
    optim: ModuleOptimizer,
    lr: f64,
    dense_pe: Tensor<4>,
    device: Device,
}

impl Trainer {
    /// `device` must be an autodiff device and `head` live on it.
    pub fn new(head: Head, dense_pe: &HostTensor, lr: f64, device: &Device) -> Self {
        Self {
            head: Some(head),
            optim: AdamConfig::new().init(),
            lr,
            dense_pe: dense_pe.to_device(device),
            device: device.clone(),
        }
    }

    pub fn head(&self) -> &Head {
        self.head.as_ref().expect("head present between steps")
    }

    pub fn into_head(mut self) -> Head {
        self.head.take().expect("head present between steps")
    }

    fn batch(&self, batch: &[&Sample]) -> (Tensor<4>, Tensor<3, Int>) {
        let n = batch[0].embedding.len();
        let (c, g) = (self.dense_pe.dims()[1], self.dense_pe.dims()[2]);
        let s = (batch[0].labels.len() as f64).sqrt() as usize;
        let mut emb = Vec::with_capacity(batch.len() * n);
        let mut lab = Vec::with_capacity(batch.len() * s * s);
        for x in batch {
            emb.extend_from_slice(&x.embedding);
            lab.extend(x.labels.iter().map(|&l| i64::from(l)));
        }
        let b = batch.len();
        (
            Tensor::from_data(TensorData::new(emb, [b, c, g, g]), &self.device),
            Tensor::from_data(TensorData::new(lab, [b, s, s]), &self.device),
        )
    }

    /// One optimiser step on a mini-batch; returns the loss before the step.
    pub fn step(&mut self, batch: &[&Sample]) -> Tensor<1> {
        let (emb, labels) = self.batch(batch);
        let head = self.head.take().expect("head present between steps");
        let logits = head.forward(emb, self.dense_pe.clone());
        let loss = loss(logits, labels);
        let grads = GradientsParams::from_grads(loss.backward(), &head);
        self.head = Some(self.optim.step(self.lr, head, grads));
        loss.detach()
    }
}

/// Label maps predicted by a head for a batch of embeddings: argmax over classes, [B, S, S].
pub fn predict(head: &Head, embedding: Tensor<4>, dense_pe: Tensor<4>) -> Tensor<3, Int> {
    head.forward(embedding, dense_pe).argmax(1).squeeze_dim(1)
}
