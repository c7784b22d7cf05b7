//! `autosam convert`, `autosam parity` and `autosam quant-report`: the model's weights converted,
//! checked against upstream, and what quantizing them costs.

use std::path::PathBuf;

use autosam::container::Precision;
use autosam::error::Result;
use autosam::model::{checkpoint, format};
use autosam::study::data::at;

/// Convert a LiteMedSAM or SAM checkpoint (.pth) to the page's weights file.
#[derive(clap::Args)]
pub struct Convert {
    checkpoint: PathBuf,
    /// Output .safetensors file.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = Precision::Int8)]
    precision: Precision,
}

impl Convert {
    pub fn run(self) -> Result<()> {
        let (config, weights, _) =
            checkpoint::load_path(&self.checkpoint).map_err(|e| at(&self.checkpoint, e))?;
        let bytes = format::write(&weights, &config, self.precision)?;
        // Read back what was written, so a bad file is never left behind looking finished.
        let check = format::read(&bytes)?;
        std::fs::write(&self.out, &bytes).map_err(|e| at(&self.out, e))?;
        println!(
            "wrote {} ({}, {}, {} tensors, {} parameters, {:.2} MB, sha256 {})",
            self.out.display(),
            config.model_id,
            self.precision,
            check.weights.len(),
            check.weights.parameter_count(),
            bytes.len() as f64 / 1e6,
            check.sha256
        );
        Ok(())
    }
}

/// Compare our modules with upstream PyTorch outputs (fixtures as in ../shared/fixtures).
#[derive(clap::Args)]
pub struct Parity {
    /// Folder with litemedsam_slice.safetensors and/or sam_vit_small_random.{pth,safetensors}.
    dir: PathBuf,
    /// LiteMedSAM weights: the upstream .pth or a converted .safetensors (its precision sets
    /// the tolerance).
    #[arg(long, default_value = "weights/lite_medsam.pth")]
    weights: PathBuf,
    /// Write our embedding and box logits for the slice fixture here (safetensors), for the
    /// browser test to compare against.
    #[arg(long)]
    save_outputs: Option<PathBuf>,
}

impl Parity {
    pub fn run(self) -> Result<()> {
        let device = autosam::backend::cpu();
        autosam::parity::run(
            &self.dir,
            &self.weights,
            &device,
            self.save_outputs.as_deref(),
        )
    }
}

/// f16 and int8 weights against f32 on labelled volumes: embedding cosine, box-mask Dice.
#[derive(clap::Args)]
pub struct QuantReport {
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value = "weights/lite_medsam.pth")]
    weights: PathBuf,
    #[arg(long, default_value_t = 10)]
    volumes: usize,
    #[arg(long)]
    out: Option<PathBuf>,
}

impl QuantReport {
    pub fn run(self) -> Result<()> {
        let (config, weights, _) =
            checkpoint::load_path(&self.weights).map_err(|e| at(&self.weights, e))?;
        autosam::study::quantization::run(
            config,
            &weights,
            &self.data,
            self.volumes,
            self.out.as_deref(),
        )
    }
}
