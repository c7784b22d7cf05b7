//! Prompt-free prediction heads on the frozen encoder's embedding: each maps [B, 256, 64, 64] to
//! logits [B, classes, 256, 256] for every class at once.

pub mod autosam;
pub mod cnn;
pub mod linear;
pub mod store;

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::error::{Error, Result};
use crate::model::Weights;

pub use autosam::AutoSamHead;
pub use cnn::CnnHead;
pub use linear::LinearHead;

#[derive(Module, Debug)]
pub enum Head {
    AutoSam(AutoSamHead),
    Cnn(CnnHead),
    Linear(LinearHead),
}

impl Head {
    /// A new head of `kind` for `classes` classes (background included). AutoSAM and linear
    /// start from the pretrained mask decoder in `sam_weights` (`mask_decoder.*`).
    pub fn new(kind: &str, classes: usize, sam_weights: &Weights, device: &Device) -> Result<Self> {
        match kind {
            "autosam" => Ok(Self::AutoSam(AutoSamHead::from_decoder(
                sam_weights,
                classes,
                device,
            )?)),
            "cnn" => Ok(Self::Cnn(CnnHead::new(256, classes, device))),
            "linear" => Ok(Self::Linear(LinearHead::from_decoder(
                sam_weights,
                classes,
                device,
            )?)),
            other => Err(Error::Invalid(format!(
                "unknown head `{other}`: use autosam, cnn or linear"
            ))),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::AutoSam(_) => "autosam",
            Self::Cnn(_) => "cnn",
            Self::Linear(_) => "linear",
        }
    }

    pub fn classes(&self) -> usize {
        match self {
            Self::AutoSam(h) => h.classes(),
            Self::Cnn(h) => h.classes(),
            Self::Linear(h) => h.classes(),
        }
    }

    /// `dense_pe` is the prompt encoder's positional grid [1, C, H, W]; only AutoSAM uses it.
    pub fn forward(&self, embedding: Tensor<4>, dense_pe: Tensor<4>) -> Tensor<4> {
        match self {
            Self::AutoSam(h) => h.forward(embedding, dense_pe),
            Self::Cnn(h) => h.forward(embedding),
            Self::Linear(h) => h.forward(embedding),
        }
    }
}

/// What the trainer trains and the evaluation runs: a module from a batch of inputs to class
/// logits [B, classes, S, S] on the encoder's input grid.
pub trait Segmenter: Module {
    fn classes(&self) -> usize;
    /// `dense_pe` is the prompt encoder's positional grid; only the AutoSAM head reads it.
    fn logits(&self, input: Tensor<4>, dense_pe: Tensor<4>) -> Tensor<4>;
}

impl Segmenter for Head {
    fn classes(&self) -> usize {
        Head::classes(self)
    }

    fn logits(&self, input: Tensor<4>, dense_pe: Tensor<4>) -> Tensor<4> {
        self.forward(input, dense_pe)
    }
}

/// Class logits on the encoder grid, [K, S, S], to a label map at the slice's own size: each
/// class's scores back through the letterbox (crop the padding, bilinear), then the argmax.
pub fn labels_from_class_logits(
    logits: &[f32],
    classes: usize,
    letterbox: &crate::preprocess::Letterbox,
) -> Vec<u8> {
    let grid = letterbox.size * letterbox.size;
    let mut best = vec![f32::NEG_INFINITY; letterbox.height * letterbox.width];
    let mut labels = vec![0u8; best.len()];
    for (k, scores) in logits.chunks_exact(grid).take(classes).enumerate() {
        let back = letterbox.scores_to_slice(scores);
        for ((b, l), &s) in best.iter_mut().zip(labels.iter_mut()).zip(&back) {
            if s > *b {
                *b = s;
                *l = k as u8;
            }
        }
    }
    labels
}
