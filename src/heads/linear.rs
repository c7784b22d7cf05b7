//! The paper's linear head: SAM's pretrained output upscaling (two x2 transposed convolutions)
//! then a 1x1 convolution to the classes, with no activation on the logits.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};

use crate::error::Result;
use crate::model::mask_decoder::OutputUpscaling;
use crate::model::weights::Weights;

#[derive(Module, Debug)]
pub struct LinearHead {
    pub output_upscaling: OutputUpscaling,
    pub classifier: Conv2d,
}

impl LinearHead {
    /// The upscaling from a pretrained mask decoder (`mask_decoder.*` keys); the classifier new.
    pub fn from_decoder(w: &Weights, classes: usize, device: &Device) -> Result<Self> {
        let output_upscaling = OutputUpscaling::load(w, "mask_decoder.output_upscaling", device)?;
        let channels = output_upscaling.conv2.channels[1];
        Ok(Self {
            output_upscaling,
            classifier: Conv2dConfig::new([channels, classes], [1, 1]).init(device),
        })
    }

    pub fn classes(&self) -> usize {
        self.classifier.weight.dims()[0]
    }

    /// [B, C, H, W] -> logits [B, classes, 4H, 4W].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        crate::model::common::conv(&self.classifier, self.output_upscaling.forward(x))
    }
}
