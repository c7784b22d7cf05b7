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
        self.attend(self.q_proj.forward(q), k, v)
    }

    /// [`Self::forward`] for queries `q` [B, N, C] shared by `copies` consecutive key and value
    /// sets each ([B * copies, M, C]): the queries are projected once, then repeated.
    fn forward_shared_queries(
        &self,
        q: Tensor<3>,
        k: Tensor<3>,
        v: Tensor<3>,
        copies: usize,
    ) -> Tensor<3> {
        self.attend(repeat_each(self.q_proj.forward(q), copies), k, v)
    }

    /// The attention from projected queries.
    fn attend(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let q = self.separate_heads(q);
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
    /// `queries` and `query_pe` [B * copies, N, C]; `keys` and `key_pe` [B, HW, C], each image's
    /// tokens shared by its `copies` consecutive token sets (the AutoSAM head's classes). Work
    /// on the image that does not depend on the tokens runs once per image: the tokens'
    /// attention to it (queries are independent rows, so a class's tokens may sit beside
    /// another's in one sequence) and the projection of its queries to the tokens. Returns the
    /// queries and the keys [B * copies, HW, C].
    fn forward(
        &self,
        queries: Tensor<3>,
        keys: Tensor<3>,
        query_pe: Tensor<3>,
        key_pe: Tensor<3>,
        copies: usize,
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
        let [bc, n, c] = q.dims();
        let per_image = |x: Tensor<3>| x.reshape([bc / copies, copies * n, c]);
        let attended = self
            .cross_attn_token_to_image
            .forward(per_image(q), k, keys.clone());
        let queries = queries + attended.reshape([bc, n, c]);
        let queries = self.norm2.forward(queries);

        let queries = queries.clone() + self.mlp.forward(queries);
        let queries = self.norm3.forward(queries);

        let q = queries.clone() + query_pe;
        let k = keys.clone() + key_pe;
        let attended =
            self.cross_attn_image_to_token
                .forward_shared_queries(k, q, queries.clone(), copies);
        let keys = repeat_each(keys, copies) + attended;
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

    /// image_embedding and image_pe: [B, C, H, W]; point_embedding: [B * copies, N, C], each
    /// image serving `copies` consecutive token sets (the AutoSAM head's classes; 1 for SAM's
    /// prompts, whose images come repeated). Returns the processed tokens [B * copies, N, C]
    /// and image [B * copies, H*W, C].
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
        let copies = point_embedding.dims()[0] / image_embedding.dims()[0];
        let image_embedding = flatten(image_embedding);
        let mut image_pe = flatten(image_pe);
        let mut queries = point_embedding.clone();
        let mut keys = image_embedding;
        for (i, layer) in self.layers.iter().enumerate() {
            // The first block makes each token set's image its own.
            let shared = if i == 0 { copies } else { 1 };
            (queries, keys) = layer.forward(
                queries,
                keys,
                point_embedding.clone(),
                image_pe.clone(),
                shared,
            );
            if i == 0 {
                image_pe = repeat_each(image_pe, copies);
            }
        }
        let q = queries.clone() + point_embedding;
        let k = keys.clone() + image_pe;
        let queries = queries + self.final_attn_token_to_image.forward(q, k, keys.clone());
        (self.norm_final_attn.forward(queries), keys)
    }
}

/// Each of `x`'s [B, N, C] items `copies` times in a row: [B * copies, N, C].
fn repeat_each(x: Tensor<3>, copies: usize) -> Tensor<3> {
    if copies == 1 {
        return x;
    }
    let [b, n, c] = x.dims();
    x.unsqueeze_dim::<4>(1)
        .repeat_dim(1, copies)
        .reshape([b * copies, n, c])
}
