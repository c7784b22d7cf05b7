//! The one weights container: safetensors with metadata naming what the file is (`format`), its
//! storage precision and a SHA-256 of the tensors, which the reader recomputes so that a damaged
//! or foreign file is refused before anything is built from it. Converted SAM weights
//! (`model::format`), head files (`heads::store`) and, for their element coding, checkpoints and
//! the embedding cache all go through here.
//!
//! int8 follows burn's 8-bit symmetric per-block scheme: each run of [`INT8_BLOCK`] values shares
//! one scale, `q = round(x / scale)` with `scale = max|x| / 127`. The scales are stored as f16
//! (burn keeps f32), which keeps LiteMedSAM under 11 MB; quantisation uses the rounded scale.
//! Tensors are widened back to f32 on read (4-bit is known to break on wgpu; 8-bit compute gains
//! nothing on these backends), so int8 shrinks the download, not the memory.

use std::collections::HashMap;
use std::fmt;

use half::{bf16, f16};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::{HostTensor, Weights};

pub const INT8_BLOCK: usize = 32;
/// Smaller tensors (norms, biases, tokens) stay f32 in int8 files: they are a rounding error
/// of the size and the most sensitive to it.
const INT8_MIN_ELEMENTS: usize = 4096;
const SCALES: &str = ".int8_scales";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    all(feature = "cli", not(target_arch = "wasm32")),
    derive(clap::ValueEnum)
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F16,
    Int8,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Int8];

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "int8" => Ok(Self::Int8),
            _ => Err(Error::Invalid(format!(
                "unknown precision `{s}`: use f32, f16 or int8"
            ))),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Int8 => "int8",
        })
    }
}

struct Stored {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// f32 values as little-endian f32 bytes.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// f32 values as little-endian f16 bytes.
pub fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| f16::from_f32(*x).to_le_bytes())
        .collect()
}

/// Per-block symmetric int8: the quantised values and one scale per block.
pub fn quantize_int8(v: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(v.len());
    let mut scales = Vec::with_capacity(v.len().div_ceil(INT8_BLOCK));
    for block in v.chunks(INT8_BLOCK) {
        let max = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let scale = f16::from_f32(max / 127.0).to_f32();
        let scale = if scale > 0.0 { scale } else { 1.0 };
        scales.push(scale);
        q.extend(
            block
                .iter()
                .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

pub fn dequantize_int8(q: &[i8], scales: &[f32]) -> Vec<f32> {
    q.chunks(INT8_BLOCK)
        .zip(scales)
        .flat_map(|(block, s)| block.iter().map(move |&x| f32::from(x) * s))
        .collect()
}

fn store(w: &Weights, precision: Precision) -> Vec<Stored> {
    let mut out = Vec::new();
    for (name, t) in w.iter() {
        let stored = |dtype, bytes| Stored {
            name: name.to_string(),
            dtype,
            shape: t.shape.clone(),
            bytes,
        };
        match precision {
            Precision::F32 => out.push(stored(Dtype::F32, f32_bytes(&t.data))),
            Precision::F16 => out.push(stored(Dtype::F16, f16_bytes(&t.data))),
            Precision::Int8 if t.data.len() >= INT8_MIN_ELEMENTS => {
                let (q, scales) = quantize_int8(&t.data);
                out.push(stored(Dtype::I8, q.iter().map(|&x| x as u8).collect()));
                out.push(Stored {
                    name: format!("{name}{SCALES}"),
                    dtype: Dtype::F16,
                    shape: vec![scales.len()],
                    bytes: f16_bytes(&scales),
                });
            }
            Precision::Int8 => out.push(stored(Dtype::F32, f32_bytes(&t.data))),
        }
    }
    out
}

/// SHA-256 over the tensors in name order (name, dtype, shape, bytes), independent of how
/// safetensors lays them out.
fn digest<'a>(tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>) -> String {
    let mut sorted: Vec<_> = tensors.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Sha256::new();
    for (name, dtype, shape, bytes) in sorted {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(format!("{dtype:?}").as_bytes());
        h.update([0]);
        for d in shape {
            h.update((*d as u64).to_le_bytes());
        }
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A state dict as a verified file: `format` names what it is (weights, a head), `extra` adds
/// its own metadata.
pub fn write(
    w: &Weights,
    format: &str,
    extra: &[(&str, String)],
    precision: Precision,
) -> Result<Vec<u8>> {
    let stored = store(w, precision);
    let sha = digest(stored.iter().map(|s| {
        (
            s.name.as_str(),
            s.dtype,
            s.shape.as_slice(),
            s.bytes.as_slice(),
        )
    }));
    let mut metadata = HashMap::from([
        ("format".to_string(), format.to_string()),
        ("precision".to_string(), precision.to_string()),
        ("int8_block".to_string(), INT8_BLOCK.to_string()),
        ("sha256".to_string(), sha),
    ]);
    metadata.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let views = stored
        .iter()
        .map(|s| {
            TensorView::new(s.dtype, s.shape.clone(), &s.bytes)
                .map(|v| (s.name.clone(), v))
                .map_err(|e| Error::Weights(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Weights(e.to_string()))
}

/// Widens little-endian element bytes to f32.
pub fn to_f32(dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    let v = match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        Dtype::U8 | Dtype::BOOL => bytes.iter().map(|&b| f32::from(b)).collect(),
        Dtype::I8 => bytes.iter().map(|&b| f32::from(b as i8)).collect(),
        Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        other => {
            return Err(Error::Weights(format!(
                "tensors of type {other:?} are not supported"
            )));
        }
    };
    Ok(v)
}

pub fn metadata(bytes: &[u8]) -> Option<HashMap<String, String>> {
    SafeTensors::read_metadata(bytes).ok()?.1.metadata().clone()
}

/// A verified file's metadata and widened tensors.
pub struct Verified {
    pub metadata: HashMap<String, String>,
    pub precision: Precision,
    pub weights: Weights,
    pub sha256: String,
}

/// Parses, verifies and widens a file written by [`write`] with this `format`. Every way it
/// can be wrong is a clear error; `what` and `hint` word it for the reader.
pub fn read(bytes: &[u8], format: &str, what: &str, hint: &str) -> Result<Verified> {
    let refuse = |why: &str| Error::Weights(format!("not {what} ({why}); {hint}"));
    let st = SafeTensors::deserialize(bytes).map_err(|e| refuse(&e.to_string()))?;
    let meta = metadata(bytes).ok_or_else(|| refuse("no metadata"))?;
    let field = |k: &str| {
        meta.get(k)
            .ok_or_else(|| refuse(&format!("no `{k}` field")))
    };
    if field("format")? != format {
        return Err(refuse(&format!("format is `{}`", field("format")?)));
    }
    let precision = Precision::parse(field("precision")?)?;
    if field("int8_block")?.parse::<usize>().ok() != Some(INT8_BLOCK) {
        return Err(refuse("unsupported int8 block size"));
    }
    let tensors = st.tensors();
    let sha = digest(
        tensors
            .iter()
            .map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())),
    );
    if &sha != field("sha256")? {
        return Err(Error::Weights(format!(
            "the file is damaged: its tensors hash to {sha}, its header says {}; download it again",
            field("sha256")?
        )));
    }
    let by_name: HashMap<&str, &TensorView> =
        tensors.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let mut weights = Weights::default();
    for (name, view) in &tensors {
        if name.ends_with(SCALES) {
            continue;
        }
        let data = if view.dtype() == Dtype::I8 {
            let scales = by_name
                .get(format!("{name}{SCALES}").as_str())
                .ok_or_else(|| refuse(&format!("`{name}` has no scales")))?;
            let scales = to_f32(scales.dtype(), scales.data())?;
            let q: Vec<i8> = view.data().iter().map(|&b| b as i8).collect();
            if scales.len() != q.len().div_ceil(INT8_BLOCK) {
                return Err(refuse(&format!("`{name}` has the wrong number of scales")));
            }
            dequantize_int8(&q, &scales)
        } else {
            to_f32(view.dtype(), view.data())?
        };
        weights.insert(name.clone(), HostTensor::new(view.shape().to_vec(), data));
    }
    Ok(Verified {
        metadata: meta,
        precision,
        weights,
        sha256: sha,
    })
}
