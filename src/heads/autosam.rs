//! The AutoSAM head: SAM's mask decoder without prompt tokens. Each class has its own tokens
//! [iou_token[c], mask_tokens[2c], mask_tokens[2c+1]] and its own copy of the image embedding
//! (all classes in one batch; the copies part in the transformer's first block, which reads the
//! shared image once); the class's logit map is hypernetwork MLP 0 on the output of its
//! first mask token, dotted with the upscaled image.

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};

use crate::error::{Error, Result};
use crate::model::common::Mlp;
use crate::model::mask_decoder::OutputUpscaling;
use crate::model::transformer::TwoWayTransformer;
use crate::model::weights::Weights;

#[derive(Module, Debug)]
pub struct AutoSamHead {
    pub transformer: TwoWayTransformer,
    /// [classes, C]
    pub iou_token: Param<Tensor<2>>,
    /// [2 * classes, C]
    pub mask_tokens: Param<Tensor<2>>,
    pub output_upscaling: OutputUpscaling,
    pub output_hypernetworks_mlp: Mlp,
}

impl AutoSamHead {
    /// Transformer, upscaling and MLP 0 from a pretrained mask decoder (`mask_decoder.*` keys);
    /// tokens drawn at random (N(0, 1), as `nn.Embedding` initialises them).
    pub fn from_decoder(w: &Weights, classes: usize, device: &Device) -> Result<Self> {
        if classes == 0 {
            return Err(Error::Invalid("a head needs at least one class".into()));
        }
        let p = "mask_decoder";
        let mask_tokens: Tensor<2> = w.tensor(&format!("{p}.mask_tokens.weight"), device)?;
        let [_, c] = mask_tokens.dims();
        Ok(Self {
            transformer: TwoWayTransformer::load(w, &format!("{p}.transformer"), 8, device)?,
            iou_token: Param::from_tensor(Tensor::random(
                [classes, c],
                Distribution::Normal(0.0, 1.0),
                device,
            )),
            mask_tokens: Param::from_tensor(Tensor::random(
                [2 * classes, c],
                Distribution::Normal(0.0, 1.0),
                device,
            )),
            output_upscaling: OutputUpscaling::load(w, &format!("{p}.output_upscaling"), device)?,
            output_hypernetworks_mlp: Mlp::load(
                w,
                &format!("{p}.output_hypernetworks_mlps.0"),
                device,
            )?,
        })
    }

    pub fn classes(&self) -> usize {
        self.iou_token.dims()[0]
    }

    /// Sets the class tokens, e.g. to the reference's for the parity check.
    pub fn with_tokens(mut self, iou_token: Tensor<2>, mask_tokens: Tensor<2>) -> Self {
        self.iou_token = Param::from_tensor(iou_token);
        self.mask_tokens = Param::from_tensor(mask_tokens);
        self
    }

    /// embedding: [B, C, H, W]; dense_pe: [1, C, H, W]. Logits [B, classes, 4H, 4W].
    pub fn forward(&self, embedding: Tensor<4>, dense_pe: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = embedding.dims();
        let k = self.classes();
        // [k, 3, C]: per class its IoU token and its two mask tokens.
        let tokens = Tensor::cat(
            vec![
                self.iou_token.val().reshape([k, 1, c]),
                self.mask_tokens.val().reshape([k, 2, c]),
            ],
            1,
        );
        let tokens = tokens
            .unsqueeze::<4>()
            .repeat_dim(0, b)
            .reshape([b * k, 3, c]);
        // Each image serves its k classes' token sets; the transformer repeats it per class
        // where the classes' paths part.
        let pos = dense_pe.repeat_dim(0, b);
        let (hs, src) = self.transformer.forward(embedding, pos, tokens);
        let hyper = self.output_hypernetworks_mlp.forward(hs.narrow(1, 1, 1)); // [b*k, 1, C/8]
        let upscaled = self
            .output_upscaling
            .forward(src.swap_dims(1, 2).reshape([b * k, c, h, w]));
        let [_, cu, hu, wu] = upscaled.dims();
        hyper
            .matmul(upscaled.reshape([b * k, cu, hu * wu]))
            .reshape([b, k, hu, wu])
    }
}
