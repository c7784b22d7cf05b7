//! SAM's two-way transformer: tokens attend to the image and the image back to the tokens.

use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use super::common::{MlpBlock, layer_norm};
use super::weights::{Weights, linear};
use crate::error::Result;

/// Multi-head attention whose projections may narrow the width (`downsample_rate`).
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub num_heads: usize,
}

impl Attention {
    fn load(w: &Weights, p: &str, num_heads: usize, device: &Device) -> Result<Self> {
        let proj = |n: &str| linear(w, &format!("{p}.{n}"), device);
        Ok(Self {
            q_proj: proj("q_proj")?,
            k_proj: proj("k_proj")?,
            v_proj: proj("v_proj")?,
            out_proj: proj("out_proj")?,
            num_heads,
        })
    }

    fn separate_heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, n, c] = x.dims();
        x.reshape([b, n, self.num_heads, c / self.num_heads])
            .swap_dims(1, 2)
    }

    pub fn forward(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let q = self.separate_heads(self.q_proj.forward(q));
        let k = self.separate_heads(self.k_proj.forward(k));
        let v = self.separate_heads(self.v_proj.forward(v));
        let [b, h, n, d] = q.dims();
        let attn = q.matmul(k.swap_dims(2, 3)).div_scalar((d as f64).sqrt());
        let out = softmax(attn, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, n, h * d]);
        self.out_proj.forward(out)
    }
}

#[derive(Module, Debug)]
pub struct TwoWayAttentionBlock {
    pub self_attn: Attention,
    pub norm1: LayerNorm,
    pub cross_attn_token_to_image: Attention,
    pub norm2: LayerNorm,
    pub mlp: MlpBlock,
    pub norm3: LayerNorm,
    pub norm4: LayerNorm,
    pub cross_attn_image_to_token: Attention,
    pub skip_first_layer_pe: bool,
}

impl TwoWayAttentionBlock {
    fn forward(
        &self,
        queries: Tensor<3>,
        keys: Tensor<3>,
        query_pe: Tensor<3>,
        key_pe: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let queries = if self.skip_first_layer_pe {
            self.self_attn
                .forward(queries.clone(), queries.clone(), queries)
        } else {
            let q = queries.clone() + query_pe.clone();
            queries.clone() + self.self_attn.forward(q.clone(), q, queries)
        };
        let queries = self.norm1.forward(queries);

        let q = queries.clone() + query_pe.clone();
        let k = keys.clone() + key_pe.clone();
        let queries = queries + self.cross_attn_token_to_image.forward(q, k, keys.clone());
        let queries = self.norm2.forward(queries);

        let queries = queries.clone() + self.mlp.forward(queries);
        let queries = self.norm3.forward(queries);

        let q = queries.clone() + query_pe;
        let k = keys.clone() + key_pe;
        let keys = keys
            + self
                .cross_attn_image_to_token
                .forward(k, q, queries.clone());
        (queries, self.norm4.forward(keys))
    }
}

#[derive(Module, Debug)]
pub struct TwoWayTransformer {
    pub layers: Vec<TwoWayAttentionBlock>,
    pub final_attn_token_to_image: Attention,
    pub norm_final_attn: LayerNorm,
}

impl TwoWayTransformer {
    pub fn load(w: &Weights, p: &str, num_heads: usize, device: &Device) -> Result<Self> {
        let mut layers = Vec::new();
        while w.contains(&format!("{p}.layers.{}.norm1.weight", layers.len())) {
            let l = format!("{p}.layers.{}", layers.len());
            let attn = |n: &str| Attention::load(w, &format!("{l}.{n}"), num_heads, device);
            let norm = |n: &str| layer_norm(w, &format!("{l}.{n}"), 1e-5, device);
            layers.push(TwoWayAttentionBlock {
                self_attn: attn("self_attn")?,
                norm1: norm("norm1")?,
                cross_attn_token_to_image: attn("cross_attn_token_to_image")?,
                norm2: norm("norm2")?,
                mlp: MlpBlock::load(w, &format!("{l}.mlp"), ["lin1", "lin2"], true, device)?,
                norm3: norm("norm3")?,
                norm4: norm("norm4")?,
                cross_attn_image_to_token: attn("cross_attn_image_to_token")?,
                skip_first_layer_pe: layers.is_empty(),
            });
        }
        Ok(Self {
            layers,
            final_attn_token_to_image: Attention::load(
                w,
                &format!("{p}.final_attn_token_to_image"),
                num_heads,
                device,
            )?,
            norm_final_attn: layer_norm(w, &format!("{p}.norm_final_attn"), 1e-5, device)?,
        })
    }

    /// image_embedding and image_pe: [B, C, H, W]; point_embedding: [B, N, C].
    /// Returns the processed tokens [B, N, C] and image [B, H*W, C].
    pub fn forward(
        &self,
        image_embedding: Tensor<4>,
        image_pe: Tensor<4>,
        point_embedding: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        // Token-major and contiguous: a reshape after the permute copies once here, where a
        // transposed view made every later add with the positions a strided pass (18% of an
        // AutoSAM-head training step).
        let flatten = |x: Tensor<4>| {
            let [b, c, h, w] = x.dims();
            x.permute([0, 2, 3, 1]).reshape([b, h * w, c])
        };
        let image_embedding = flatten(image_embedding);
        let image_pe = flatten(image_pe);
        let mut queries = point_embedding.clone();
        let mut keys = image_embedding;
        for layer in &self.layers {
            (queries, keys) =
                layer.forward(queries, keys, point_embedding.clone(), image_pe.clone());
        }
        let q = queries.clone() + point_embedding;
        let k = keys.clone() + image_pe;
        let queries = queries + self.final_attn_token_to_image.forward(q, k, keys.clone());
        (self.norm_final_attn.forward(queries), keys)
    }
}
