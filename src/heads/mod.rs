//! Prompt-free prediction heads on the frozen encoder's embedding: each maps [B, 256, 64, 64] to
//! logits [B, classes, 256, 256] for every class at once.

pub mod autosam;
pub mod cnn;
pub mod linear;
pub mod soup;
pub mod store;

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::error::{Error, Result};
use crate::model::Weights;

pub use autosam::AutoSamHead;
pub use cnn::CnnHead;
pub use linear::LinearHead;

/// The kinds of head, by the names files, the CLI and the page use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(
    all(feature = "cli", not(target_arch = "wasm32")),
    derive(clap::ValueEnum)
)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// SAM's mask decoder without prompt tokens, one token set per class.
    #[cfg_attr(
        all(feature = "cli", not(target_arch = "wasm32")),
        value(name = "autosam")
    )]
    AutoSam,
    /// Convolutions and transposed convolutions from scratch.
    Cnn,
    /// SAM's pretrained upscaling and a 1x1 convolution.
    Linear,
}

impl HeadKind {
    pub const ALL: [HeadKind; 3] = [Self::AutoSam, Self::Cnn, Self::Linear];
    /// The kind the page's Teach starts with (see `teach_epochs`).
    pub const TEACH_DEFAULT: HeadKind = Self::Linear;

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AutoSam => "autosam",
            Self::Cnn => "cnn",
            Self::Linear => "linear",
        }
    }

    /// The name people read (tables, the page's menu).
    pub fn label(self) -> &'static str {
        match self {
            Self::AutoSam => "AutoSAM",
            Self::Cnn => "CNN",
            Self::Linear => "linear",
        }
    }

    /// Epochs the page's Teach offers for this kind: the linear head ranked first from 1-8
    /// patients at 300 steps (docs/heads.md) and an epoch of it costs a ninth of AutoSAM's in the
    /// page (docs/page.md), so it gets five times the epochs.
    pub fn teach_epochs(self) -> usize {
        match self {
            Self::Linear => 100,
            Self::AutoSam | Self::Cnn => 20,
        }
    }
}

impl std::fmt::Display for HeadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for HeadKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::Invalid(format!("unknown head `{s}`: use autosam, cnn or linear"))
            })
    }
}

#[derive(Module, Debug)]
pub enum Head {
    AutoSam(AutoSamHead),
    Cnn(CnnHead),
    Linear(LinearHead),
}

impl Head {
    /// A new head of `kind` for `classes` classes (background included). AutoSAM and linear
    /// start from the pretrained mask decoder in `sam_weights` (`mask_decoder.*`).
    pub fn new(
        kind: HeadKind,
        classes: usize,
        sam_weights: &Weights,
        device: &Device,
    ) -> Result<Self> {
        Ok(match kind {
            HeadKind::AutoSam => {
                Self::AutoSam(AutoSamHead::from_decoder(sam_weights, classes, device)?)
            }
            HeadKind::Cnn => Self::Cnn(CnnHead::new(256, classes, device)),
            HeadKind::Linear => {
                Self::Linear(LinearHead::from_decoder(sam_weights, classes, device)?)
            }
        })
    }

    pub fn kind(&self) -> HeadKind {
        match self {
            Self::AutoSam(_) => HeadKind::AutoSam,
            Self::Cnn(_) => HeadKind::Cnn,
            Self::Linear(_) => HeadKind::Linear,
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
