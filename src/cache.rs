//! The embedding cache: each slice is encoded once, stored at f16 (half the bytes; the head sees
//! the same values to 1e-3), and keyed by the SHA-256 of the volume file's bytes and the encoder,
//! so a second run (or session) does not re-encode.

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use crate::container::{f16_bytes, hex, to_f32};
use crate::error::{Error, Result};
use crate::model::Sam;
use crate::pipeline::PreparedVolume;

/// A volume's slice embeddings, [C, H, W] each.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeEmbeddings {
    pub shape: [usize; 3],
    pub slices: Vec<Vec<f32>>,
}

/// The cache key: what was encoded and by which encoder.
pub fn key(file_bytes: &[u8], encoder: &str) -> String {
    let mut h = Sha256::new();
    h.update(encoder.as_bytes());
    h.update([0]);
    h.update(file_bytes);
    hex(&h.finalize())
}

/// Encodes every slice (blocking reads: native, or the CPU backend in the page).
pub fn encode_volume(sam: &Sam, prepared: &PreparedVolume) -> VolumeEmbeddings {
    let mut shape = [0; 3];
    let slices = prepared
        .inputs
        .iter()
        .map(|input| {
            let e = sam.encode(input);
            let [_, c, h, w] = e.dims();
            shape = [c, h, w];
            e.into_data().try_to_vec::<f32>().expect("f32 embedding")
        })
        .collect();
    VolumeEmbeddings { shape, slices }
}

impl VolumeEmbeddings {
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let n = self.slices.len();
        let bytes = f16_bytes(&self.slices.concat());
        let [c, h, w] = self.shape;
        let view = TensorView::new(Dtype::F16, vec![n, c, h, w], &bytes)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        safetensors::serialize([("embeddings", view)], None)
            .map_err(|e| Error::Invalid(e.to_string()))
    }

    /// Slice `z`'s embedding as a [1, C, H, W] tensor on `device`.
    pub fn slice(&self, z: usize, device: &burn::tensor::Device) -> burn::tensor::Tensor<4> {
        let [c, h, w] = self.shape;
        burn::tensor::Tensor::from_data(
            burn::tensor::TensorData::new(self.slices[z].clone(), [1, c, h, w]),
            device,
        )
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |e: String| Error::Invalid(format!("embedding cache entry unreadable: {e}"));
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let t = st.tensor("embeddings").map_err(|e| bad(e.to_string()))?;
        let &[n, c, h, w] = t.shape() else {
            return Err(bad("not [slices, C, H, W]".into()));
        };
        if t.dtype() != Dtype::F16 {
            return Err(bad("not f16".into()));
        }
        let values = to_f32(Dtype::F16, t.data())?;
        Ok(Self {
            shape: [c, h, w],
            slices: values
                .chunks_exact(c * h * w)
                .map(<[f32]>::to_vec)
                .collect(),
        })
        .and_then(|v: Self| {
            if v.slices.len() == n {
                Ok(v)
            } else {
                Err(bad("slice count".into()))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_at_f16_and_keys_separate_files_and_encoders() {
        let v = VolumeEmbeddings {
            shape: [2, 2, 2],
            slices: vec![vec![0.5, -1.25, 3.0, 0.0, 1e-3, 7.5, -0.1, 2.0]; 3],
        };
        let back = VolumeEmbeddings::from_bytes(&v.to_bytes().unwrap()).unwrap();
        assert_eq!(back.shape, v.shape);
        for (a, b) in back.slices.iter().flatten().zip(v.slices.iter().flatten()) {
            assert!((a - b).abs() <= b.abs() * 1e-3 + 1e-7, "{a} vs {b}");
        }
        assert!(VolumeEmbeddings::from_bytes(b"not safetensors").is_err());
        assert_ne!(key(b"volume", "litemedsam"), key(b"volume", "sam_vit_b"));
        assert_ne!(key(b"volume", "litemedsam"), key(b"volume2", "litemedsam"));
        assert_eq!(key(b"volume", "litemedsam").len(), 64);
    }
}
