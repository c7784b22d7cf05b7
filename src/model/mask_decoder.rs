//! SAM's mask decoder: output tokens plus prompt tokens through the two-way transformer, the image
//! upscaled x4, one hypernetwork MLP per mask token, and the IoU head.

use super::kernels::gelu;
use burn::module::{Module, Param};
use burn::nn::conv::ConvTranspose2d;
use burn::tensor::{Device, Tensor};

use super::common::{LayerNorm2d, Mlp, conv_transpose};
use super::transformer::TwoWayTransformer;
use super::weights::{Weights, conv_transpose2d, param};
use crate::error::Result;

#[derive(Module, Debug)]
pub struct MaskDecoder {
    pub transformer: TwoWayTransformer,
    /// [1, C]
    pub iou_token: Param<Tensor<2>>,
    /// [num_multimask_outputs + 1, C]
    pub mask_tokens: Param<Tensor<2>>,
    pub output_upscaling: OutputUpscaling,
    pub output_hypernetworks_mlps: Vec<Mlp>,
    pub iou_prediction_head: Mlp,
}

/// `output_upscaling`: ConvTranspose2d, LayerNorm2d, GELU, ConvTranspose2d, GELU.
#[derive(Module, Debug)]
pub struct OutputUpscaling {
    pub conv1: ConvTranspose2d,
    pub norm: LayerNorm2d,
    pub conv2: ConvTranspose2d,
}

impl OutputUpscaling {
    pub fn load(w: &Weights, p: &str, device: &Device) -> Result<Self> {
        Ok(Self {
            conv1: conv_transpose2d(w, &format!("{p}.0"), device)?,
            norm: LayerNorm2d::load(w, &format!("{p}.1"), device)?,
            conv2: conv_transpose2d(w, &format!("{p}.3"), device)?,
        })
    }

    /// [B, C, H, W] -> [B, C/8, 4H, 4W]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = gelu(self.norm.forward(conv_transpose(&self.conv1, x)));
        gelu(conv_transpose(&self.conv2, x))
    }
}

/// Decoder outputs: mask logits at 4x the embedding grid and the predicted IoU per mask.
pub struct MaskPrediction {
    /// [B, M, 4H, 4W]
    pub masks: Tensor<4>,
    /// [B, M]
    pub iou: Tensor<2>,
}

impl MaskDecoder {
    pub fn load(w: &Weights, p: &str, device: &Device) -> Result<Self> {
        let mask_tokens: Param<Tensor<2>> = param(w, &format!("{p}.mask_tokens.weight"), device)?;
        let [num_mask_tokens, _] = mask_tokens.dims();
        let output_hypernetworks_mlps = (0..num_mask_tokens)
            .map(|i| Mlp::load(w, &format!("{p}.output_hypernetworks_mlps.{i}"), device))
            .collect::<Result<_>>()?;
        Ok(Self {
            transformer: TwoWayTransformer::load(w, &format!("{p}.transformer"), 8, device)?,
            iou_token: param(w, &format!("{p}.iou_token.weight"), device)?,
            mask_tokens,
            output_upscaling: OutputUpscaling::load(w, &format!("{p}.output_upscaling"), device)?,
            output_hypernetworks_mlps,
            iou_prediction_head: Mlp::load(w, &format!("{p}.iou_prediction_head"), device)?,
        })
    }

    /// `predict_masks`. image_embeddings and image_pe: [1, C, H, W]; sparse: [B, N, C]; dense:
    /// [1 or B, C, 1 or H, 1 or W].
    pub fn predict_masks(
        &self,
        image_embeddings: Tensor<4>,
        image_pe: Tensor<4>,
        sparse: Tensor<3>,
        dense: Tensor<4>,
    ) -> MaskPrediction {
        let [b, _, _] = sparse.dims();
        let [_, c, h, w] = image_embeddings.dims();
        let output_tokens = Tensor::cat(vec![self.iou_token.val(), self.mask_tokens.val()], 0);
        let [n_out, _] = output_tokens.dims();
        let tokens = Tensor::cat(
            vec![output_tokens.unsqueeze::<3>().repeat_dim(0, b), sparse],
            1,
        );
        let src = image_embeddings.repeat_dim(0, b) + dense;
        let pos_src = image_pe.repeat_dim(0, b);
        let (hs, src) = self.transformer.forward(src, pos_src, tokens);
        let iou_token_out = hs.clone().narrow(1, 0, 1).reshape([b, c]);
        let num_masks = n_out - 1;
        let src = src.swap_dims(1, 2).reshape([b, c, h, w]);
        let upscaled = self.output_upscaling.forward(src);
        let hyper_in = Tensor::cat(
            self.output_hypernetworks_mlps
                .iter()
                .enumerate()
                .map(|(i, mlp)| mlp.forward(hs.clone().narrow(1, 1 + i, 1)))
                .collect(),
            1,
        );
        let [_, cu, hu, wu] = upscaled.dims();
        let masks = hyper_in
            .matmul(upscaled.reshape([b, cu, hu * wu]))
            .reshape([b, num_masks, hu, wu]);
        MaskPrediction {
            masks,
            iou: self.iou_prediction_head.forward(iou_token_out),
        }
    }
}
