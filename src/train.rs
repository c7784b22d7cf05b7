//! Training a head on cached embeddings: cross-entropy plus soft Dice over the foreground
//! classes, Adam, mini-batches. One step at a time (`Trainer::step` returns the loss as a
//! tensor), so the page can read results back asynchronously between steps.

use std::ops::ControlFlow;

use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::heads::Segmenter;
use crate::loss::loss;
use crate::model::HostTensor;

/// One training example: a model input (an encoder embedding, or the image for the UNet) and
/// its labels on the encoder's input grid.
#[derive(Debug, Clone)]
pub struct Sample {
    /// [C, H, W] values: 256 x 64 x 64 for a LiteMedSAM embedding, 1 x 256 x 256 for an image.
    pub input: Vec<f32>,
    pub shape: [usize; 3],
    /// [S, S] class codes, letterboxed like the encoder input.
    pub labels: Vec<u8>,
}

/// How the learning rate moves over a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(
    all(feature = "cli", not(target_arch = "wasm32")),
    derive(clap::ValueEnum)
)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Half a cosine from the base rate down to zero at the last step: long runs settle instead of
    /// hopping between minima at the rate that got them there.
    Cosine,
}

impl Schedule {
    /// The rate for step `step` (from 0) of `total`.
    pub fn lr(self, base: f64, step: usize, total: usize) -> f64 {
        match self {
            Self::Constant => base,
            Self::Cosine => {
                let t = step as f64 / total.max(1) as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// The paper's defaults: Adam at 5e-4.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub schedule: Schedule,
    pub seed: u64,
    /// Exactly this many mini-batches instead of `epochs` passes (a fixed budget per run).
    pub steps: Option<usize>,
    /// Augmented views per training slice. The training samples are then `views + 1` blocks of
    /// the same slices in the same order (block 0 the slices, block v their v-th view), and
    /// epoch e shows slice i from block (e - 1 + i) mod (views + 1): a fresh view of each slice
    /// in every pass, as the paper's online augmentation, from views encoded once.
    pub views: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            // The paper's budget.
            epochs: 120,
            batch_size: 4,
            lr: 5e-4,
            schedule: Schedule::Constant,
            seed: 0,
            steps: None,
            views: 0,
        }
    }
}

/// What the page draws after each epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub epoch: usize,
    pub loss: f64,
    /// Mean foreground Dice on the validation samples, when there are any.
    pub val_dice: Option<f64>,
    /// Whether this epoch's model is the best so far by validation Dice (the one `fit` returns).
    pub best: bool,
}

/// Label maps (`batch` maps of `size` x `size`, row-major) as one-hot [B, classes, S, S], built on
/// the host: burn's `one_hot` validates its indices with a blocking read, which WebGPU in the page
/// cannot do. A label outside the classes marks no class.
pub fn one_hot(
    labels: &[u8],
    batch: usize,
    classes: usize,
    size: usize,
    device: &Device,
) -> Tensor<4> {
    let plane = size * size;
    let mut v = vec![0f32; batch * classes * plane];
    for (i, &l) in labels.iter().enumerate().take(batch * plane) {
        let (b, p) = (i / plane, i % plane);
        if (l as usize) < classes {
            v[(b * classes + l as usize) * plane + p] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(v, [batch, classes, size, size]), device)
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

/// The order of mini-batches over epochs: each epoch a fresh shuffle seeded by `seed` and the
/// epoch, then consecutive batches. Native training and the page's use the same one.
#[derive(Debug, Clone)]
pub struct Batches {
    order: Vec<usize>,
    batch: usize,
    seed: u64,
    epoch: usize,
    at: usize,
}

impl Batches {
    pub fn new(samples: usize, batch: usize, seed: u64) -> Self {
        Self {
            order: (0..samples).collect(),
            batch: batch.max(1),
            seed,
            epoch: 0,
            at: 0,
        }
    }

    pub fn per_epoch(&self) -> usize {
        self.order.len().div_ceil(self.batch).max(1)
    }

    /// The next batch's sample indices, with its epoch and its step in that epoch (both from 1).
    pub fn next_batch(&mut self) -> (Vec<usize>, usize, usize) {
        if self.at == 0 {
            shuffle(
                &mut self.order,
                self.seed.wrapping_add(self.epoch as u64 + 1),
            );
        }
        let (b, n) = (self.batch, self.order.len());
        let batch = self.order[(self.at * b).min(n)..((self.at + 1) * b).min(n)].to_vec();
        let (epoch, step) = (self.epoch + 1, self.at + 1);
        self.at += 1;
        if self.at == self.per_epoch() {
            self.at = 0;
            self.epoch += 1;
        }
        (batch, epoch, step)
    }
}

/// Trains any [`Segmenter`]: a head on embeddings or the UNet baseline on images.
pub struct Trainer<M: Segmenter> {
    model: Option<M>,
    optim: ModuleOptimizer,
    lr: f64,
    dense_pe: Tensor<4>,
    device: Device,
}

impl<M: Segmenter> Trainer<M> {
    /// `device` must be an autodiff device and `model` live on it.
    pub fn new(model: M, dense_pe: &HostTensor, lr: f64, device: &Device) -> Self {
        Self {
            model: Some(model),
            optim: AdamConfig::new().init(),
            lr,
            dense_pe: dense_pe.to_device(device),
            device: device.clone(),
        }
    }

    pub fn model(&self) -> &M {
        self.model.as_ref().expect("model present between steps")
    }

    pub fn into_model(mut self) -> M {
        self.model.take().expect("model present between steps")
    }

    pub fn dense_pe(&self) -> &Tensor<4> {
        &self.dense_pe
    }

    /// The rate of the steps from now on.
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Adam's moments, keyed by parameter id.
    pub fn optimizer_record(&self) -> OptimizerRecord {
        self.optim.to_record()
    }

    /// Continues with the moments a checkpoint kept (the model must carry the same parameter
    /// ids: [`crate::params::with_ids`]).
    pub fn load_optimizer(&mut self, record: OptimizerRecord) {
        let optim = std::mem::replace(&mut self.optim, AdamConfig::new().init());
        self.optim = optim.load_record(record);
    }

    /// One optimiser step on a mini-batch; returns the loss before the step.
    pub fn step(&mut self, batch: &[&Sample]) -> Tensor<1> {
        let input = inputs(batch, &self.device);
        let s = (batch[0].labels.len() as f64).sqrt() as usize;
        let labels: Vec<u8> = batch
            .iter()
            .flat_map(|x| x.labels.iter().copied())
            .collect();
        let model = self.model.take().expect("model present between steps");
        let truth = one_hot(&labels, batch.len(), model.classes(), s, &self.device);
        let loss = loss(model.logits(input, self.dense_pe.clone()), truth);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.model = Some(self.optim.step(self.lr, model, grads));
        loss.detach()
    }
}

/// The samples' inputs stacked into one [B, C, H, W] tensor.
pub fn inputs(batch: &[&Sample], device: &Device) -> Tensor<4> {
    let [c, h, w] = batch[0].shape;
    let values: Vec<f32> = batch.iter().flat_map(|x| x.input.iter().copied()).collect();
    Tensor::from_data(TensorData::new(values, [batch.len(), c, h, w]), device)
}

/// Label maps predicted for a batch of inputs: argmax over classes, [B, S, S].
pub fn predict<M: Segmenter>(model: &M, input: Tensor<4>, dense_pe: Tensor<4>) -> Tensor<3, Int> {
    model.logits(input, dense_pe).argmax(1).squeeze_dim(1)
}

/// The model's label maps for `samples`, one after another, [`VAL_BATCH`] at a time (blocking
/// reads: native or the page's CPU backend).
pub fn predict_all<M: Segmenter>(
    model: &M,
    samples: &[Sample],
    dense_pe: &Tensor<4>,
) -> Option<Vec<u8>> {
    let device = dense_pe.device();
    let mut out = Vec::new();
    for chunk in samples.chunks(VAL_BATCH) {
        let batch: Vec<&Sample> = chunk.iter().collect();
        let pred = predict(model, inputs(&batch, &device), dense_pe.clone())
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .ok()?;
        out.extend(pred.iter().map(|&v| v as u8));
    }
    Some(out)
}

/// Mean foreground Dice of the model's label maps on `samples`, each slice scored alone.
pub fn mean_dice<M: Segmenter>(model: &M, samples: &[Sample], dense_pe: &Tensor<4>) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let pred = predict_all(model, samples, dense_pe)?;
    let mut scores = Vec::new();
    score_batch(samples, &pred, model.classes(), &mut scores);
    crate::metrics::mean(scores)
}

/// Samples per validation forward: memory, not speed, sets it.
pub const VAL_BATCH: usize = 4;

/// Appends each foreground class's Dice, per sample of `batch`, given the batch's predicted
/// label maps (`pred`, one after another). Shared with the page, which reads `pred` back
/// asynchronously.
pub fn score_batch(batch: &[Sample], pred: &[u8], classes: usize, scores: &mut Vec<Option<f64>>) {
    let s = batch[0].labels.len();
    for (x, p) in batch.iter().zip(pred.chunks_exact(s)) {
        for k in 1..classes as u8 {
            scores.push(crate::metrics::dice(p, &x.labels, k));
        }
    }
}

/// Where a run stands after an epoch, as `fit_from` reports it.
pub struct Snapshot<'a, M: Segmenter> {
    /// Every epoch's figures so far; the last is this one's.
    pub history: &'a [Progress],
    /// The model as it stands (not the best so far).
    pub model: &'a M,
    /// Mini-batches done.
    pub step: usize,
    /// The best validation Dice so far (the model `fit` would return).
    pub best_val: Option<f64>,
    trainer: &'a Trainer<M>,
}

impl<M: Segmenter> Snapshot<'_, M> {
    /// Adam's state, to continue the run later ([`Resume`]).
    pub fn optimizer(&self) -> OptimizerRecord {
        self.trainer.optimizer_record()
    }
}

/// A run stopped after an epoch, to go on from: `model` (given to `fit_from`) is its model then,
/// with the parameter ids its optimizer state is keyed by.
pub struct Resume<M> {
    pub step: usize,
    pub history: Vec<Progress>,
    /// The best validation Dice so far and its model.
    pub best: Option<(f64, M)>,
    pub optimizer: OptimizerRecord,
}

/// Trains `model` (on an autodiff device) for `cfg.epochs` passes over `train`, or for exactly
/// `cfg.steps` mini-batches when set, reporting after each epoch (and after the last step) with
/// the figures so far (that epoch's last) and the model as it stands. Returns the model of the
/// epoch with the best validation Dice (the last one without validation samples) and every
/// epoch's figures.
pub fn fit<M: Segmenter>(
    model: M,
    train: &[Sample],
    val: &[Sample],
    cfg: &TrainConfig,
    dense_pe: &HostTensor,
    device: &Device,
    mut progress: impl FnMut(&[Progress], &M),
) -> (M, Vec<Progress>) {
    fit_from(model, train, val, cfg, dense_pe, device, None, |s| {
        progress(s.history, s.model);
        ControlFlow::Continue(())
    })
}

/// The block (0: the slice as it is, v: its v-th view) that epoch `epoch` (from 1) shows
/// training slice `i` from, of `blocks` ([`TrainConfig::views`]).
pub fn block(epoch: usize, i: usize, blocks: usize) -> usize {
    (epoch - 1 + i) % blocks
}

/// [`fit`], continuing a stopped run when `resume` is given: the same mini-batches, learning
/// rates and optimizer state follow as if it had not stopped. Each epoch's [`Snapshot`] holds
/// what a checkpoint needs; `progress` breaks to stop the run there (it returns the model as it
/// stands, with the history so far).
#[allow(clippy::too_many_arguments)]
pub fn fit_from<M: Segmenter>(
    model: M,
    train: &[Sample],
    val: &[Sample],
    cfg: &TrainConfig,
    dense_pe: &HostTensor,
    device: &Device,
    resume: Option<Resume<M>>,
    mut progress: impl FnMut(&Snapshot<M>) -> ControlFlow<()>,
) -> (M, Vec<Progress>) {
    let mut trainer = Trainer::new(model, dense_pe, cfg.lr, device);
    let plain_pe = dense_pe.to_device::<4>(&device.clone().inner());
    let blocks = cfg.views + 1;
    assert!(
        train.len().is_multiple_of(blocks),
        "{} training samples are not {blocks} blocks of views",
        train.len()
    );
    let n = train.len() / blocks;
    let mut batches = Batches::new(n, cfg.batch_size, cfg.seed);
    let per_epoch = batches.per_epoch();
    let total = cfg.steps.unwrap_or(cfg.epochs * per_epoch);
    let (mut history, mut losses) = (Vec::new(), Vec::new());
    let mut best: Option<(f64, M)> = None;
    let mut first = 0;
    if let Some(r) = resume {
        trainer.load_optimizer(r.optimizer);
        // The batch order is a function of the seed and the epoch: replay it to where it was.
        for _ in 0..r.step {
            batches.next_batch();
        }
        (first, history, best) = (r.step, r.history, r.best);
    }
    for step in first..total {
        trainer.set_lr(cfg.schedule.lr(cfg.lr, step, total));
        let (indices, epoch, at) = batches.next_batch();
        let chunk: Vec<&Sample> = indices
            .iter()
            .map(|&i| &train[block(epoch, i, blocks) * n + i])
            .collect();
        losses.push(f64::from(trainer.step(&chunk).into_scalar::<f32>()));
        if at == per_epoch || step + 1 == total {
            // Off autodiff: forwards on an autodiff model keep their activations for a
            // backward pass that never comes (2 GB per AutoSAM batch of 4).
            let val_dice = (!val.is_empty())
                .then(|| mean_dice(&trainer.model().valid(), val, &plain_pe))
                .flatten();
            let improved = val_dice.is_some_and(|d| best.as_ref().is_none_or(|(b, _)| d > *b));
            if improved {
                best = val_dice.map(|d| (d, trainer.model().clone()));
            }
            history.push(Progress {
                epoch,
                loss: losses.iter().sum::<f64>() / losses.len() as f64,
                val_dice,
                best: improved,
            });
            let flow = progress(&Snapshot {
                history: &history,
                model: trainer.model(),
                step: step + 1,
                best_val: best.as_ref().map(|b| b.0),
                trainer: &trainer,
            });
            losses.clear();
            if flow.is_break() {
                return (trainer.into_model(), history);
            }
        }
    }
    let model = match best {
        Some((_, model)) => model,
        None => trainer.into_model(),
    };
    (model, history)
}

/// The reference run's sample: an embedding [256, 64, 64], labelled LV (class 3) where the box
/// logits [256, 256] are positive.
pub fn reference_sample(embedding: &[f32], box_logits: &[f32]) -> Sample {
    Sample {
        input: embedding.to_vec(),
        shape: [256, 64, 64],
        labels: box_logits
            .iter()
            .map(|&l| if l > 0.0 { 3 } else { 0 })
            .collect(),
    }
}

/// A fixed training run that native and browser builds (and backends) can compare: an AutoSAM
/// head from `sam_weights` with deterministic class tokens, `steps` Adam steps on one sample
/// (lr 1e-4: Adam's first steps move every weight by about lr, and at the paper's 5e-4 a single
/// sample overshoots by the third step).
/// The loss before each step, as tensors (read them back asynchronously on WebGPU). `device` is
/// a plain device; autodiff is added here.
pub fn reference_run(
    sam_weights: &crate::model::Weights,
    sample: &Sample,
    dense_pe: &HostTensor,
    classes: usize,
    steps: usize,
    device: &Device,
) -> crate::Result<Vec<Tensor<1>>> {
    use crate::heads::{AutoSamHead, Head};
    let device = device.clone().autodiff();
    let c = dense_pe.shape[1];
    let tokens = |n: usize, seed: u32| {
        Tensor::<2>::from_data(
            TensorData::new(crate::backend::pattern(n * c, seed), [n, c]),
            &device,
        )
    };
    let head = AutoSamHead::from_decoder(sam_weights, classes, &device)?
        .with_tokens(tokens(classes, 11), tokens(2 * classes, 12));
    let mut trainer = Trainer::new(Head::AutoSam(head), dense_pe, 1e-4, &device);
    Ok((0..steps).map(|_| trainer.step(&[sample])).collect())
}
