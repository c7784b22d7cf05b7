//! The weights file the page downloads: converted SAM weights (the inference-form state dict at
//! f32, f16 or int8) in the verified container ([`crate::container`]), with the model's id and
//! configuration in the metadata.

use super::sam::{Sam, SamConfig};
use super::weights::Weights;
use crate::container::{self, Precision};
use crate::error::{Error, Result};

pub const FORMAT: &str = "autosam-weights/1";

pub struct WeightsFile {
    pub config: SamConfig,
    pub precision: Precision,
    pub weights: Weights,
    pub sha256: String,
}

pub fn write(w: &Weights, config: &SamConfig, precision: Precision) -> Result<Vec<u8>> {
    let config_json = serde_json::to_string(config).expect("config serialises");
    container::write(
        w,
        FORMAT,
        &[
            ("model_id", config.model_id.clone()),
            ("config", config_json),
        ],
        precision,
    )
}

pub fn is_converted(bytes: &[u8]) -> bool {
    container::metadata(bytes).is_some_and(|m| m.get("format").map(String::as_str) == Some(FORMAT))
}

/// Parses, verifies and widens a converted weights file.
pub fn read(bytes: &[u8]) -> Result<WeightsFile> {
    let file = container::read(
        bytes,
        FORMAT,
        "an autosam weights file",
        "make one with `autosam convert`",
    )?;
    let config = file
        .metadata
        .get("config")
        .ok_or_else(|| Error::Weights("the weights file has no `config` field".into()))?;
    let config: SamConfig = serde_json::from_str(config)
        .map_err(|e| Error::Weights(format!("the weights file's config: {e}")))?;
    Ok(WeightsFile {
        config,
        precision: file.precision,
        weights: file.weights,
        sha256: file.sha256,
    })
}

/// A converted file straight to a model on `device`: what the page does with the bytes it fetched.
pub fn load_sam(bytes: &[u8], device: &burn::tensor::Device) -> Result<Sam> {
    let file = read(bytes)?;
    Sam::load(&file.weights, file.config, device)
}
