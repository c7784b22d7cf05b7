//! Prompt-free prediction heads on the frozen encoder's embedding: each maps [B, 256, 64, 64] to
//! logits [B, classes, 256, 256] for every class at once.

pub mod autosam;
pub mod cnn;
pub mod linear;

use burn::module::Module;
use burn::tensor::Tensor;

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
