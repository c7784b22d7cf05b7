//! The baseline the paper compares against: a 2-D UNet on the image itself (no encoder), trained
//! from scratch or from a SimCLR-pretrained encoder path. Double 3x3 conv blocks with GroupNorm
//! (batch statistics would differ between a batch of 4 slices and one slice at inference).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::group_norm::group_norm_relu;
use crate::heads::Segmenter;
use crate::model::common::conv_transpose;
use crate::model::conv3x3::conv3x3;

/// Channels per level, from the full-resolution level down to the bottleneck.
pub const WIDTHS: [usize; 4] = [16, 32, 64, 128];

#[derive(Module, Debug)]
pub struct DoubleConv {
    pub conv1: Conv2d,
    pub norm1: GroupNorm,
    pub conv2: Conv2d,
    pub norm2: GroupNorm,
}

impl DoubleConv {
    pub fn new(cin: usize, cout: usize, device: &Device) -> Self {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let norm = || GroupNormConfig::new(8, cout).init(device);
        Self {
            conv1: conv(cin, cout),
            norm1: norm(),
            conv2: conv(cout, cout),
            norm2: norm(),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = group_norm_relu(&self.norm1, conv3x3(&self.conv1, x));
        group_norm_relu(&self.norm2, conv3x3(&self.conv2, x))
    }
}

/// The contracting path: what SimCLR pretrains.
#[derive(Module, Debug)]
pub struct UNetEncoder {
    pub blocks: Vec<DoubleConv>,
    pub pool: MaxPool2d,
}

impl UNetEncoder {
    pub fn new(in_channels: usize, device: &Device) -> Self {
        let mut cin = in_channels;
        let blocks = WIDTHS
            .iter()
            .map(|&w| {
                let b = DoubleConv::new(cin, w, device);
                cin = w;
                b
            })
            .collect();
        Self {
            blocks,
            pool: MaxPool2dConfig::new([2, 2]).init(),
        }
    }

    /// Feature maps per level, full resolution first; the last is the bottleneck.
    pub fn forward(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let mut out: Vec<Tensor<4>> = Vec::with_capacity(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate() {
            let x = match out.last() {
                Some(prev) if i > 0 => self.pool.forward(prev.clone()),
                _ => x.clone(),
            };
            out.push(block.forward(x));
        }
        out
    }
}

#[derive(Module, Debug)]
pub struct UNet {
    pub encoder: UNetEncoder,
    pub ups: Vec<ConvTranspose2d>,
    pub decoders: Vec<DoubleConv>,
    pub classifier: Conv2d,
}

impl UNet {
    pub fn new(in_channels: usize, classes: usize, device: &Device) -> Self {
        Self::with_encoder(UNetEncoder::new(in_channels, device), classes, device)
    }

    /// A new expanding path and classifier on a given (e.g. pretrained) encoder.
    pub fn with_encoder(encoder: UNetEncoder, classes: usize, device: &Device) -> Self {
        let levels = WIDTHS.len();
        let ups = (1..levels)
            .rev()
            .map(|l| {
                ConvTranspose2dConfig::new([WIDTHS[l], WIDTHS[l - 1]], [2, 2])
                    .with_stride([2, 2])
                    .init(device)
            })
            .collect();
        let decoders = (1..levels)
            .rev()
            .map(|l| DoubleConv::new(2 * WIDTHS[l - 1], WIDTHS[l - 1], device))
            .collect();
        Self {
            encoder,
            ups,
            decoders,
            classifier: Conv2dConfig::new([WIDTHS[0], classes], [1, 1]).init(device),
        }
    }

    /// [B, C, S, S] image -> logits [B, classes, S, S]; S a multiple of 8.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut skips = self.encoder.forward(x);
        let mut x = skips.pop().expect("at least one level");
        for (up, dec) in self.ups.iter().zip(&self.decoders) {
            let skip = skips.pop().expect("one skip per up");
            x = dec.forward(Tensor::cat(vec![conv_transpose(up, x), skip], 1));
        }
        crate::model::common::conv(&self.classifier, x)
    }
}

impl Segmenter for UNet {
    fn classes(&self) -> usize {
        self.classifier.weight.dims()[0]
    }

    fn logits(&self, input: Tensor<4>, _dense_pe: Tensor<4>) -> Tensor<4> {
        self.forward(input)
    }
}
