//! SAM's ViT image encoder (`ImageEncoderViT`) for any configuration: patch embedding, absolute
//! position embedding, windowed blocks with padding, global blocks, decomposed relative
//! positions, neck.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::common::{MlpBlock, Neck, layer_norm};
use super::weights::{HostTensor, Weights, conv2d, linear, param};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViTConfig {
    pub img_size: usize,
    pub patch_size: usize,
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub window_size: usize,
    pub out_chans: usize,
    pub global_attn_indexes: Vec<usize>,
}

impl ViTConfig {
    fn official(embed_dim: usize, depth: usize, num_heads: usize, global: [usize; 4]) -> Self {
        Self {
            img_size: 1024,
            patch_size: 16,
            embed_dim,
            depth,
            num_heads,
            window_size: 14,
            out_chans: 256,
            global_attn_indexes: global.to_vec(),
        }
    }

    pub fn vit_b() -> Self {
        Self::official(768, 12, 12, [2, 5, 8, 11])
    }

    pub fn vit_l() -> Self {
        Self::official(1024, 24, 16, [5, 11, 17, 23])
    }

    pub fn vit_h() -> Self {
        Self::official(1280, 32, 16, [7, 15, 23, 31])
    }

    /// Reads the configuration off the tensor shapes: rel-pos tables say the head size and which
    /// blocks are global (their table spans the whole grid).
    pub fn infer(w: &Weights) -> Result<Self> {
        let proj = w.get("patch_embed.proj.weight")?;
        let [embed_dim, _, patch_size, _] = proj.shape[..] else {
            return Err(Error::Weights("patch embedding is not 4-D".into()));
        };
        let pos = w.get("pos_embed")?;
        let grid = pos.shape.get(1).copied().unwrap_or(0);
        let depth = (0..)
            .take_while(|i| w.contains(&format!("blocks.{i}.norm1.weight")))
            .count();
        let out_chans = w.get("neck.0.weight")?.shape[0];
        let mut global_attn_indexes = Vec::new();
        let mut window_size = 0;
        let mut head_dim = 0;
        for i in 0..depth {
            let rel = w.get(&format!("blocks.{i}.attn.rel_pos_h"))?;
            head_dim = rel.shape[1];
            let size = rel.shape[0].div_ceil(2);
            if size == grid {
                global_attn_indexes.push(i);
            } else {
                window_size = size;
            }
        }
        if depth == 0 || head_dim == 0 || embed_dim % head_dim != 0 {
            return Err(Error::Weights(
                "cannot infer the ViT configuration from these tensors".into(),
            ));
        }
        Ok(Self {
            img_size: grid * patch_size,
            patch_size,
            embed_dim,
            depth,
            num_heads: embed_dim / head_dim,
            window_size,
            out_chans,
            global_attn_indexes,
        })
    }

    pub fn grid(&self) -> usize {
        self.img_size / self.patch_size
    }
}

/// `get_rel_pos` for equal query and key sizes: table row (q - k + size - 1) per pair.
fn gather_rel_pos(table: &HostTensor, size: usize) -> Result<HostTensor> {
    let c = table.shape[1];
    if table.shape[0] != 2 * size - 1 {
        return Err(Error::Weights(format!(
            "relative-position table has {} rows, expected {} for size {size}",
            table.shape[0],
            2 * size - 1
        )));
    }
    let mut data = Vec::with_capacity(size * size * c);
    for q in 0..size {
        for k in 0..size {
            let row = q + size - 1 - k;
            data.extend_from_slice(&table.data[row * c..(row + 1) * c]);
        }
    }
    Ok(HostTensor::new(vec![size, size, c], data))
}

#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    /// The rel-pos tables gathered to [size, size, head_dim] at load.
    pub rel_h: Param<Tensor<3>>,
    pub rel_w: Param<Tensor<3>>,
    pub num_heads: usize,
}

impl Attention {
    fn load(w: &Weights, p: &str, heads: usize, size: usize, device: &Device) -> Result<Self> {
        let rel = |axis: &str| -> Result<Param<Tensor<3>>> {
            let table = w.get(&format!("{p}.rel_pos_{axis}"))?;
            Ok(Param::from_tensor(
                gather_rel_pos(table, size)?.to_device(device),
            ))
        };
        Ok(Self {
            qkv: linear(w, &format!("{p}.qkv"), device)?,
            proj: linear(w, &format!("{p}.proj"), device)?,
            rel_h: rel("h")?,
            rel_w: rel("w")?,
            num_heads: heads,
        })
    }

    /// x: [B, H, W, C].
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let heads = self.num_heads;
        let hd = c / heads;
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, h * w, 3, heads, hd])
            .permute([2, 0, 3, 1, 4])
            .reshape([3, b * heads, h * w, hd]);
        let q = qkv.clone().narrow(0, 0, 1).squeeze_dim::<3>(0);
        let k = qkv.clone().narrow(0, 1, 1).squeeze_dim::<3>(0);
        let v = qkv.narrow(0, 2, 1).squeeze_dim::<3>(0);
        let scale = (hd as f64).powf(-0.5);
        let attn = q.clone().mul_scalar(scale).matmul(k.swap_dims(1, 2));
        let attn = self.add_decomposed_rel_pos(attn, q, b * heads, h, w, hd);
        let x = softmax(attn, 2)
            .matmul(v)
            .reshape([b, heads, h, w, hd])
            .permute([0, 2, 3, 1, 4])
            .reshape([b, h, w, c]);
        self.proj.forward(x)
    }

    fn add_decomposed_rel_pos(
        &self,
        attn: Tensor<3>,
        q: Tensor<3>,
        bh: usize,
        h: usize,
        w: usize,
        hd: usize,
    ) -> Tensor<3> {
        let r_q = q.reshape([bh, h, w, hd]);
        // einsum("bhwc,hkc->bhwk"): batch the matmul over the query row.
        let rel_h = r_q
            .clone()
            .permute([1, 0, 2, 3])
            .reshape([h, bh * w, hd])
            .matmul(self.rel_h.val().swap_dims(1, 2))
            .reshape([h, bh, w, h])
            .permute([1, 0, 2, 3]);
        // einsum("bhwc,wkc->bhwk"): batch over the query column.
        let rel_w = r_q
            .permute([2, 0, 1, 3])
            .reshape([w, bh * h, hd])
            .matmul(self.rel_w.val().swap_dims(1, 2))
            .reshape([w, bh, h, w])
            .permute([1, 2, 0, 3]);
        let attn = attn.reshape([bh, h, w, h, w])
            + rel_h.unsqueeze_dim::<5>(4)
            + rel_w.unsqueeze_dim::<5>(3);
        attn.reshape([bh, h * w, h * w])
    }
}

#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub norm2: LayerNorm,
    pub mlp: MlpBlock,
    /// 0 for a global block.
    pub window_size: usize,
}

impl Block {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = x.clone();
        let x = self.norm1.forward(x);
        let x = if self.window_size > 0 {
            self.windowed(x)
        } else {
            self.attn.forward(x)
        };
        let x = shortcut + x;
        x.clone() + self.mlp.forward(self.norm2.forward(x))
    }

    /// `window_partition`, attention, `window_unpartition`.
    fn windowed(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let ws = self.window_size;
        let (pad_h, pad_w) = ((ws - h % ws) % ws, (ws - w % ws) % ws);
        let x = if pad_h + pad_w > 0 {
            x.pad(
                [(0, 0), (0, pad_h), (0, pad_w), (0, 0)],
                PadMode::Constant(0.0),
            )
        } else {
            x
        };
        let (hp, wp) = (h + pad_h, w + pad_w);
        let (nh, nw) = (hp / ws, wp / ws);
        let windows =
            x.reshape([b, nh, ws, nw, ws, c])
                .swap_dims(2, 3)
                .reshape([b * nh * nw, ws, ws, c]);
        let out = self
            .attn
            .forward(windows)
            .reshape([b, nh, nw, ws, ws, c])
            .swap_dims(2, 3)
            .reshape([b, hp, wp, c]);
        if pad_h + pad_w > 0 {
            out.slice([0..b, 0..h, 0..w, 0..c])
        } else {
            out
        }
    }
}

#[derive(Module, Debug)]
pub struct ImageEncoderViT {
    pub patch_embed: Conv2d,
    pub pos_embed: Param<Tensor<4>>,
    pub blocks: Vec<Block>,
    pub neck: Neck,
}

impl ImageEncoderViT {
    /// From an `image_encoder.`-stripped state dict.
    pub fn load(w: &Weights, config: &ViTConfig, device: &Device) -> Result<Self> {
        let grid = config.grid();
        w.get_shaped("pos_embed", &[1, grid, grid, config.embed_dim])?;
        let mut blocks = Vec::with_capacity(config.depth);
        for i in 0..config.depth {
            let p = format!("blocks.{i}");
            let global = config.global_attn_indexes.contains(&i);
            let size = if global { grid } else { config.window_size };
            blocks.push(Block {
                norm1: layer_norm(w, &format!("{p}.norm1"), 1e-6, device)?,
                attn: Attention::load(w, &format!("{p}.attn"), config.num_heads, size, device)?,
                norm2: layer_norm(w, &format!("{p}.norm2"), 1e-6, device)?,
                mlp: MlpBlock::load(w, &format!("{p}.mlp"), ["lin1", "lin2"], false, device)?,
                window_size: if global { 0 } else { config.window_size },
            });
        }
        Ok(Self {
            patch_embed: conv2d(w, "patch_embed.proj", config.patch_size, 0, 1, device)?,
            pos_embed: param(w, "pos_embed", device)?,
            blocks,
            neck: Neck::load(w, device)?,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.patch_embed.forward(x).permute([0, 2, 3, 1]) + self.pos_embed.val();
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = x.permute([0, 3, 1, 2]);
        self.neck.forward(x)
    }
}
