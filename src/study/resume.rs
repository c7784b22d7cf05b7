//! A training run's checkpoint folder: the model's parameters, Adam's state and where the run
//! stands, written after an epoch so that a stopped run goes on as if it had not stopped
//! ([`crate::train::fit_from`] replays the batch order). The state goes last, through a rename,
//! so a run killed while writing leaves the previous checkpoint whole.

use std::collections::BTreeMap;
use std::path::Path;

use burn::optim::OptimizerRecord;
use serde::{Deserialize, Serialize};

use super::data::at;
use crate::error::{Error, Result};
use crate::train::Progress;

/// The model's parameters (a head file for heads, a parameter file for other models).
pub const MODEL: &str = "head.safetensors";
const OPTIMIZER: &str = "optimizer.bpk";
const STATE: &str = "state.json";

/// Where a run stands.
#[derive(Serialize, Deserialize)]
pub struct State {
    /// What the run is (data, model, budget, seed): a checkpoint only continues the same run.
    pub run: serde_json::Value,
    /// Mini-batches done.
    pub step: usize,
    pub history: Vec<Progress>,
    pub best_val: Option<f64>,
    /// The model's parameter ids by module path, which the optimizer state is keyed by
    /// ([`crate::params::ids`]).
    pub param_ids: BTreeMap<String, u64>,
    /// Training seconds so far, where the run keeps count (an experiment's rows report them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// The state of the checkpoint in `dir`.
pub fn state(dir: &Path) -> Result<State> {
    let path = dir.join(STATE);
    let text = std::fs::read_to_string(&path).map_err(|e| at(&path, e))?;
    serde_json::from_str(&text).map_err(|e| at(&path, e))
}

/// Whether `dir` holds a checkpoint.
pub fn exists(dir: &Path) -> bool {
    dir.join(STATE).exists()
}

/// Removes the checkpoint folder `dir`, if there is one.
pub fn remove(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| at(dir, e))?;
    }
    Ok(())
}

/// Writes a checkpoint folder.
pub fn write(dir: &Path, model: &[u8], optimizer: OptimizerRecord, state: &State) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| at(dir, e))?;
    let path = dir.join(MODEL);
    std::fs::write(&path, model).map_err(|e| at(&path, e))?;
    let path = dir.join(OPTIMIZER);
    optimizer.save(&path).map_err(|e| record_error(&path, e))?;
    let path = dir.join(STATE);
    let tmp = path.with_extension("json.tmp");
    let json = serde_json::to_string(state).map_err(|e| at(&tmp, e))?;
    std::fs::write(&tmp, json).map_err(|e| at(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| at(&path, e))
}

/// The state, model bytes and optimizer state of the checkpoint in `dir`, refused when it is of
/// another run than `run`.
pub fn read(dir: &Path, run: &serde_json::Value) -> Result<(State, Vec<u8>, OptimizerRecord)> {
    let state = state(dir)?;
    if &state.run != run {
        return Err(at(
            dir,
            format!(
                "the checkpoint is of another run ({}, this one is {run}): remove it or give \
                 another checkpoint folder",
                state.run
            ),
        ));
    }
    let path = dir.join(MODEL);
    let model = std::fs::read(&path).map_err(|e| at(&path, e))?;
    let path = dir.join(OPTIMIZER);
    let optimizer = OptimizerRecord::load(&path).map_err(|e| record_error(&path, e))?;
    Ok((state, model, optimizer))
}

fn record_error(path: &Path, e: impl std::fmt::Debug) -> Error {
    at(path, format!("{e:?}"))
}
