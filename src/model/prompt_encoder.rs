//! SAM's prompt encoder for boxes and points. Its outputs are a few hundred numbers per prompt and
//! a constant positional grid, so it runs on the host; only the (unused here) mask-prompt branch
//! would need a device.

use std::f32::consts::PI;

use super::weights::{HostTensor, Weights};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct PromptEncoder {
    /// `pe_layer.positional_encoding_gaussian_matrix`: [2, embed_dim / 2].
    gaussian: HostTensor,
    /// Negative point, positive point, box top-left, box bottom-right.
    point_embeddings: [Vec<f32>; 4],
    not_a_point_embed: Vec<f32>,
    no_mask_embed: Vec<f32>,
    pub embed_dim: usize,
    /// Side of the image embedding grid (64).
    pub embedding_size: usize,
    /// Side of the square encoder input (256 for LiteMedSAM, 1024 for SAM).
    pub input_size: usize,
}

impl PromptEncoder {
    pub fn load(w: &Weights, p: &str, input_size: usize, embedding_size: usize) -> Result<Self> {
        let gaussian = w
            .get(&format!("{p}.pe_layer.positional_encoding_gaussian_matrix"))?
            .clone();
        if gaussian.shape.len() != 2 || gaussian.shape[0] != 2 {
            return Err(Error::Weights(format!(
                "positional encoding matrix has shape {:?}, expected [2, C/2]",
                gaussian.shape
            )));
        }
        let embed_dim = gaussian.shape[1] * 2;
        let row = |name: String| -> Result<Vec<f32>> {
            Ok(w.get_shaped(&name, &[1, embed_dim])?.data.clone())
        };
        Ok(Self {
            gaussian,
            point_embeddings: [
                row(format!("{p}.point_embeddings.0.weight"))?,
                row(format!("{p}.point_embeddings.1.weight"))?,
                row(format!("{p}.point_embeddings.2.weight"))?,
                row(format!("{p}.point_embeddings.3.weight"))?,
            ],
            not_a_point_embed: row(format!("{p}.not_a_point_embed.weight"))?,
            no_mask_embed: row(format!("{p}.no_mask_embed.weight"))?,
            embed_dim,
            embedding_size,
            input_size,
        })
    }

    /// `_pe_encoding` of one point in [0, 1]^2, appended to `out`.
    fn pe_encoding(&self, x: f32, y: f32, out: &mut Vec<f32>) {
        let half = self.embed_dim / 2;
        let (x, y) = (2.0 * x - 1.0, 2.0 * y - 1.0);
        let g = &self.gaussian.data;
        let angles: Vec<f32> = (0..half)
            .map(|j| 2.0 * PI * (x * g[j] + y * g[half + j]))
            .collect();
        out.extend(angles.iter().map(|a| a.sin()));
        out.extend(angles.iter().map(|a| a.cos()));
    }

    /// `get_dense_pe()`: [1, C, H, W].
    pub fn dense_pe(&self) -> HostTensor {
        let (s, c) = (self.embedding_size, self.embed_dim);
        let mut hwc = Vec::with_capacity(s * s * c);
        for i in 0..s {
            for j in 0..s {
                let x = (j as f32 + 0.5) / s as f32;
                let y = (i as f32 + 0.5) / s as f32;
                self.pe_encoding(x, y, &mut hwc);
            }
        }
        let mut chw = vec![0.0; hwc.len()];
        for (p, v) in hwc.chunks_exact(c).enumerate() {
            for (k, &x) in v.iter().enumerate() {
                chw[k * s * s + p] = x;
            }
        }
        HostTensor::new(vec![1, c, s, s], chw)
    }

    fn encode_coord(&self, x: f32, y: f32, out: &mut Vec<f32>) {
        let size = self.input_size as f32;
        self.pe_encoding((x + 0.5) / size, (y + 0.5) / size, out);
    }

    /// Sparse embeddings of boxes given as [x0, y0, x1, y1] in input pixels: [B, 2, C].
    pub fn embed_boxes(&self, boxes: &[[f32; 4]]) -> HostTensor {
        let c = self.embed_dim;
        let mut data = Vec::with_capacity(boxes.len() * 2 * c);
        for b in boxes {
            for (corner, (x, y)) in [(b[0], b[1]), (b[2], b[3])].into_iter().enumerate() {
                let start = data.len();
                self.encode_coord(x, y, &mut data);
                let extra = &self.point_embeddings[2 + corner];
                data[start..]
                    .iter_mut()
                    .zip(extra)
                    .for_each(|(d, e)| *d += e);
            }
        }
        HostTensor::new(vec![boxes.len(), 2, c], data)
    }

    /// Sparse embeddings of one set of labelled points (1 foreground, 0 background), padded
    /// with a not-a-point as upstream does when no box comes with them: [1, N+1, C].
    pub fn embed_points(&self, points: &[([f32; 2], bool)]) -> HostTensor {
        let c = self.embed_dim;
        let mut data = Vec::with_capacity((points.len() + 1) * c);
        for &([x, y], positive) in points {
            let start = data.len();
            self.encode_coord(x, y, &mut data);
            let extra = &self.point_embeddings[usize::from(positive)];
            data[start..]
                .iter_mut()
                .zip(extra)
                .for_each(|(d, e)| *d += e);
        }
        data.extend_from_slice(&self.not_a_point_embed);
        HostTensor::new(vec![1, points.len() + 1, c], data)
    }

    /// The dense embedding when no mask is given: the no-mask vector at every position.
    pub fn no_mask_dense(&self) -> HostTensor {
        HostTensor::new(vec![1, self.embed_dim, 1, 1], self.no_mask_embed.clone())
    }
}
