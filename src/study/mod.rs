//! The study on labelled volumes, as a library the CLI and the tests call: the data and its
//! cached embeddings ([`data`]), scoring ([`score`]), training a head ([`heads`]), the
//! label-efficiency experiment ([`experiment`]) and what quantized weights cost
//! ([`quantization`]). Progress goes to the `log` crate; results are
//! returned.

pub mod curves;
pub mod data;
pub mod embedding_map;
pub mod experiment;
pub mod heads;
pub mod plot;
pub mod quantization;
pub mod resume;
pub mod robustness;
pub mod score;

use std::path::Path;

use crate::error::Result;
use crate::model::{Sam, Weights, checkpoint};

/// The model (on the CPU backend) and its state dict, from an upstream checkpoint or a converted
/// file: new heads start from the state dict's mask decoder.
pub fn load_model(weights: &Path) -> Result<(Sam, Weights)> {
    let (config, state, _) = checkpoint::load_path(weights).map_err(|e| data::at(weights, e))?;
    let sam =
        Sam::load(&state, config, &crate::backend::cpu()).map_err(|e| data::at(weights, e))?;
    Ok((sam, state))
}
