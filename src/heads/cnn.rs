//! The paper's CNN head: 1x1 convolutions widening then narrowing the embedding, blocks of 3x3
//! convolutions, two x2 transposed-convolution upsamplings to the input size, and a 1x1
//! convolution to the classes. Trained from scratch.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::model::common;
use crate::model::conv3x3::conv3x3;

#[derive(Module, Debug)]
pub struct CnnHead {
    pub widen: Conv2d,
    pub narrow: Conv2d,
    pub blocks: Vec<Conv2d>,
    pub up1: ConvTranspose2d,
    pub refine1: Conv2d,
    pub up2: ConvTranspose2d,
    pub refine2: Conv2d,
    pub classifier: Conv2d,
}

fn conv(cin: usize, cout: usize, k: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .init(device)
}

fn up(cin: usize, cout: usize, device: &Device) -> ConvTranspose2d {
    ConvTranspose2dConfig::new([cin, cout], [2, 2])
        .with_stride([2, 2])
        .init(device)
}

impl CnnHead {
    /// `embed_dim` channels in (256), `width` channels in the 3x3 blocks.
    pub fn new(embed_dim: usize, classes: usize, device: &Device) -> Self {
        let width = 128;
        Self {
            widen: conv(embed_dim, 2 * embed_dim, 1, device),
            narrow: conv(2 * embed_dim, width, 1, device),
            blocks: (0..2).map(|_| conv(width, width, 3, device)).collect(),
            up1: up(width, width / 2, device),
            refine1: conv(width / 2, width / 2, 3, device),
            up2: up(width / 2, width / 4, device),
            refine2: conv(width / 4, width / 4, 3, device),
            classifier: conv(width / 4, classes, 1, device),
        }
    }

    pub fn classes(&self) -> usize {
        self.classifier.weight.dims()[0]
    }

    /// [B, C, H, W] -> logits [B, classes, 4H, 4W].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(common::conv(&self.widen, x));
        let mut x = relu(common::conv(&self.narrow, x));
        for block in &self.blocks {
            x = relu(conv3x3(block, x.clone())) + x;
        }
        let x = relu(common::conv_transpose(&self.up1, x));
        let x = relu(conv3x3(&self.refine1, x));
        let x = relu(common::conv_transpose(&self.up2, x));
        let x = relu(conv3x3(&self.refine2, x));
        common::conv(&self.classifier, x)
    }
}
