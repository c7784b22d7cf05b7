//! The assembled model: an image encoder (LiteMedSAM's TinyViT or SAM's ViT), the prompt encoder
//! and the mask decoder, built from one state dict in the upstream key layout.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::image_encoder::{ImageEncoderViT, ViTConfig};
use super::mask_decoder::{MaskDecoder, MaskPrediction};
use super::prompt_encoder::PromptEncoder;
use super::tiny_vit::{TinyViT, TinyViTConfig};
use super::weights::Weights;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EncoderConfig {
    TinyVit(TinyViTConfig),
    Vit(ViTConfig),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamConfig {
    /// `litemedsam`, `sam_vit_b`, ... or `sam_vit` for a configuration read off the tensors.
    pub model_id: String,
    pub encoder: EncoderConfig,
}

/// SAM's ImageNet normalisation on 0-255 pixels; LiteMedSAM feeds [0, 1] unnormalised.
const PIXEL_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
const PIXEL_STD: [f32; 3] = [58.395, 57.12, 57.375];

impl SamConfig {
    pub fn lite_medsam() -> Self {
        Self {
            model_id: "litemedsam".into(),
            encoder: EncoderConfig::TinyVit(TinyViTConfig::lite_medsam()),
        }
    }

    /// Which model a state dict holds, from its keys and shapes.
    pub fn detect(w: &Weights) -> Result<Self> {
        // Called after BatchNorm folding, so Conv2d_BN weights carry no `.c.` any more.
        if w.contains("image_encoder.layers.0.blocks.0.conv1.weight") {
            return Ok(Self::lite_medsam());
        }
        if w.contains("image_encoder.patch_embed.proj.weight") {
            let vit = ViTConfig::infer(&w.scoped("image_encoder."))?;
            let model_id = [
                ("sam_vit_b", ViTConfig::vit_b()),
                ("sam_vit_l", ViTConfig::vit_l()),
                ("sam_vit_h", ViTConfig::vit_h()),
            ]
            .into_iter()
            .find(|(_, c)| *c == vit)
            .map_or("sam_vit", |(id, _)| id);
            return Ok(Self {
                model_id: model_id.into(),
                encoder: EncoderConfig::Vit(vit),
            });
        }
        Err(Error::Weights(
            "neither a LiteMedSAM nor a SAM ViT checkpoint (no `image_encoder.*` tensors)".into(),
        ))
    }

    /// What a head is trained on and a cached embedding comes from. LiteMedSAM's id names its
    /// learned attention biases: its embeddings changed when the encoder began to add them, as
    /// upstream does, so heads and caches made without them are refused, never reused.
    pub fn encoder_id(&self) -> String {
        match &self.encoder {
            EncoderConfig::TinyVit(_) => format!("{}+attention-biases", self.model_id),
            EncoderConfig::Vit(_) => self.model_id.clone(),
        }
    }

    pub fn input_size(&self) -> usize {
        match &self.encoder {
            EncoderConfig::TinyVit(c) => c.img_size,
            EncoderConfig::Vit(c) => c.img_size,
        }
    }

    pub fn embedding_size(&self) -> usize {
        match &self.encoder {
            EncoderConfig::TinyVit(c) => c.embedding_size(),
            EncoderConfig::Vit(c) => c.grid(),
        }
    }

    /// Turns the [0, 1] three-channel letterboxed slice into what this encoder was trained on.
    pub fn normalize_input(&self, chw: &mut [f32]) {
        if let EncoderConfig::Vit(_) = self.encoder {
            let plane = chw.len() / 3;
            for (c, channel) in chw.chunks_exact_mut(plane).enumerate() {
                for v in channel {
                    *v = (*v * 255.0 - PIXEL_MEAN[c]) / PIXEL_STD[c];
                }
            }
        }
    }
}

#[derive(Debug)]
pub enum ImageEncoder {
    TinyVit(Box<TinyViT>),
    Vit(Box<ImageEncoderViT>),
}

impl ImageEncoder {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::TinyVit(m) => m.forward(x),
            Self::Vit(m) => m.forward(x),
        }
    }
}

#[derive(Debug)]
pub struct Sam {
    pub config: SamConfig,
    pub image_encoder: ImageEncoder,
    pub prompt_encoder: PromptEncoder,
    pub mask_decoder: MaskDecoder,
    pub dense_pe: Tensor<4>,
    pub device: Device,
}

/// Keys of the mask-prompt branch, which nothing here uses.
pub fn unused_key(name: &str) -> bool {
    name.starts_with("prompt_encoder.mask_downscaling")
        || name.ends_with("num_batches_tracked")
        || name.ends_with("attention_bias_idxs")
}

impl Sam {
    /// From a full state dict (BatchNorms folded) and its configuration.
    pub fn load(w: &Weights, config: SamConfig, device: &Device) -> Result<Self> {
        let encoder_weights = w.scoped("image_encoder.");
        let image_encoder = match &config.encoder {
            EncoderConfig::TinyVit(c) => {
                ImageEncoder::TinyVit(Box::new(TinyViT::load(&encoder_weights, c, device)?))
            }
            EncoderConfig::Vit(c) => ImageEncoder::Vit(Box::new(ImageEncoderViT::load(
                &encoder_weights,
                c,
                device,
            )?)),
        };
        let unread: Vec<String> = encoder_weights
            .unread("")
            .into_iter()
            .filter(|k| !unused_key(k))
            .collect();
        if !unread.is_empty() {
            return Err(Error::Weights(format!(
                "{} encoder tensors do not fit the {} layout, e.g. `{}`",
                unread.len(),
                config.model_id,
                unread[0]
            )));
        }
        let prompt_encoder = PromptEncoder::load(
            w,
            "prompt_encoder",
            config.input_size(),
            config.embedding_size(),
        )?;
        let mask_decoder = MaskDecoder::load(w, "mask_decoder", device)?;
        let dense_pe = prompt_encoder.dense_pe().to_device(device);
        Ok(Self {
            config,
            image_encoder,
            prompt_encoder,
            mask_decoder,
            dense_pe,
            device: device.clone(),
        })
    }

    pub fn input_size(&self) -> usize {
        self.config.input_size()
    }

    /// One letterboxed [0, 1] slice, 3 x S x S, to its embedding [1, C, S/4 or S/16, ...].
    pub fn encode(&self, chw: &[f32]) -> Tensor<4> {
        let s = self.input_size();
        let mut input = chw.to_vec();
        self.config.normalize_input(&mut input);
        let x = Tensor::from_data(TensorData::new(input, [1, 3, s, s]), &self.device);
        self.image_encoder.forward(x)
    }

    /// Box prompts ([x0, y0, x1, y1] in input pixels) on one embedding, single-mask output as
    /// `multimask_output=False`: logits [B, 1, S, S] for LiteMedSAM, IoU [B, 1].
    pub fn decode_boxes(&self, embedding: Tensor<4>, boxes: &[[f32; 4]]) -> MaskPrediction {
        let sparse = self
            .prompt_encoder
            .embed_boxes(boxes)
            .to_device(&self.device);
        let dense = self.prompt_encoder.no_mask_dense().to_device(&self.device);
        let pred = self
            .mask_decoder
            .predict_masks(embedding, self.dense_pe.clone(), sparse, dense);
        MaskPrediction {
            masks: pred.masks.narrow(1, 0, 1),
            iou: pred.iou.narrow(1, 0, 1),
        }
    }
}
