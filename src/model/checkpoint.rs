//! Upstream checkpoints in: PyTorch `.pth` (native only) and plain safetensors, to a state dict in
//! inference form (BatchNorms folded, unused branches dropped) with its detected configuration.

use safetensors::SafeTensors;

use super::sam::{SamConfig, unused_key};
use super::weights::{HostTensor, Weights};
use crate::container::to_f32;
use crate::error::{Error, Result};

/// BatchNorm2d's default epsilon, which TinyViT's Conv2d_BN keeps.
const BN_EPS: f32 = 1e-5;

/// Every tensor of a safetensors file as f32 (fixtures, and SAM checkpoints saved that way).
pub fn read_safetensors(bytes: &[u8]) -> Result<Weights> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::Weights(format!("not a readable safetensors file: {e}")))?;
    let mut w = Weights::default();
    for (name, view) in st.tensors() {
        let data = to_f32(view.dtype(), view.data())?;
        w.insert(name, HostTensor::new(view.shape().to_vec(), data));
    }
    Ok(w)
}

/// A PyTorch checkpoint (`torch.save` zip or legacy), as saved by upstream: a bare state dict or
/// one under `model` / `state_dict`.
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub fn read_pth(path: &std::path::Path) -> Result<Weights> {
    use pytorch_reader::{DType, PytorchReader};
    use safetensors::Dtype;
    let open = |key: Option<&str>| match key {
        Some(k) => PytorchReader::with_top_level_key(path, k),
        None => PytorchReader::new(path),
    };
    let reader = ["model", "state_dict"]
        .into_iter()
        .find_map(|k| open(Some(k)).ok().filter(|r| !r.is_empty()))
        .map_or_else(|| open(None), Ok)
        .map_err(|e| Error::Weights(e.to_string()))?;
    let mut w = Weights::default();
    for (name, tensor) in reader.into_tensors() {
        let dtype = match tensor.dtype() {
            DType::F32 => Dtype::F32,
            DType::F16 => Dtype::F16,
            DType::BF16 => Dtype::BF16,
            DType::F64 => Dtype::F64,
            DType::I64 => Dtype::I64,
            // Integer buffers (index tables, counters) are rebuilt from the config.
            _ => continue,
        };
        let bytes = tensor.read().map_err(|e| Error::Weights(e.to_string()))?;
        let shape = tensor.shape().to_vec();
        w.insert(name, HostTensor::new(shape, to_f32(dtype, &bytes)?));
    }
    Ok(w)
}

/// Puts an upstream state dict in the form the loaders read, and says which model it is.
pub fn prepare(mut w: Weights) -> Result<(SamConfig, Weights)> {
    // Some checkpoints were saved from a wrapper (`module.`, `model.`): strip a prefix all share.
    for prefix in ["module.", "model."] {
        if w.names().all(|k| k.starts_with(prefix)) && !w.is_empty() {
            let stripped: Vec<(String, HostTensor)> = w
                .iter()
                .map(|(k, t)| (k[prefix.len()..].to_string(), t.clone()))
                .collect();
            w = Weights::default();
            for (k, t) in stripped {
                w.insert(k, t);
            }
        }
    }
    w.fold_batchnorm(BN_EPS)?;
    w.retain(|k| !unused_key(k));
    let config = SamConfig::detect(&w)?;
    Ok((config, w))
}

/// Reads a checkpoint by its extension: `.pth`/`.pt` or `.safetensors` (upstream layout or one
/// of our converted files, whose precision is returned; upstream files are f32). Errors do not
/// repeat the path; callers name the file once.
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub fn load_path(
    path: &std::path::Path,
) -> Result<(SamConfig, Weights, crate::container::Precision)> {
    use crate::container::Precision;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    match ext {
        "pth" | "pt" => prepare(read_pth(path)?).map(|(c, w)| (c, w, Precision::F32)),
        "safetensors" => {
            let bytes = std::fs::read(path)?;
            if super::format::is_converted(&bytes) {
                let file = super::format::read(&bytes)?;
                Ok((file.config, file.weights, file.precision))
            } else {
                prepare(read_safetensors(&bytes)?).map(|(c, w)| (c, w, Precision::F32))
            }
        }
        _ => Err(Error::Weights(
            "expected a .pth, .pt or .safetensors file".into(),
        )),
    }
}
