//! The arguments every command on labelled volumes takes: where they are, which of them, the
//! encoder and its embedding cache.

use std::path::PathBuf;

use autosam::error::Result;
use autosam::model::{Sam, Weights};
use autosam::study::data::{Pair, select};
use autosam::study::load_model;

#[derive(clap::Args)]
pub struct Labelled {
    /// A folder of labelled volumes: NAME.nii.gz beside NAME_gt.nii.gz.
    #[arg(long)]
    pub data: PathBuf,
    /// Comma-separated name prefixes (`patient001,patient002`); all pairs when absent.
    #[arg(long)]
    pub volumes: Option<String>,
    /// The encoder: an upstream checkpoint or a converted file.
    #[arg(long, default_value = "weights/lite_medsam.pth")]
    pub weights: PathBuf,
    /// Where slice embeddings are cached (by file hash and encoder), shared by every command.
    #[arg(long, default_value = "weights/embeddings")]
    pub cache: PathBuf,
}

impl Labelled {
    pub fn model(&self) -> Result<(Sam, Weights)> {
        load_model(&self.weights)
    }

    /// The chosen pairs, sorted by name.
    pub fn pairs(&self) -> Result<Vec<Pair>> {
        select(&self.data, self.volumes.as_deref())
    }
}
