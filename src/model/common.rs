//! Layers shared by the SAM components: upstream's `common.py` (LayerNorm2d, MLPBlock) and the
//! mask decoder's `MLP`.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::kernels::{self, gelu};
use super::weights::{Weights, conv2d, linear};
use crate::error::Result;

pub fn layer_norm(w: &Weights, name: &str, eps: f64, device: &Device) -> Result<LayerNorm> {
    let gamma = w.get(&format!("{name}.weight"))?;
    let mut norm = LayerNormConfig::new(gamma.data.len())
        .with_epsilon(eps)
        .init(device);
    norm.gamma = Param::from_tensor(gamma.to_device(device));
    norm.beta = Some(Param::from_tensor(
        w.get_shaped(&format!("{name}.bias"), &gamma.shape)?
            .to_device(device),
    ));
    Ok(norm)
}

/// LayerNorm over the channels of an NCHW tensor.
#[derive(Module, Debug)]
pub struct LayerNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub eps: f64,
}

impl LayerNorm2d {
    pub fn load(w: &Weights, name: &str, device: &Device) -> Result<Self> {
        let weight = w.get(&format!("{name}.weight"))?;
        let bias = w.get_shaped(&format!("{name}.bias"), &weight.shape)?;
        Ok(Self {
            weight: Param::from_tensor(weight.to_device(device)),
            bias: Param::from_tensor(bias.to_device(device)),
            eps: 1e-6,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [c] = self.weight.dims();
        let u = x.clone().mean_dim(1);
        let x = x - u;
        let s = x.clone().square().mean_dim(1);
        let x = x / s.add_scalar(self.eps).sqrt();
        let weight = self.weight.val().reshape([1, c, 1, 1]);
        let bias = self.bias.val().reshape([1, c, 1, 1]);
        x * weight + bias
    }
}

/// Two linear layers with an activation between: GELU in the encoders' MLPs, ReLU in the
/// two-way transformer's.
#[derive(Module, Debug)]
pub struct MlpBlock {
    pub lin1: Linear,
    pub lin2: Linear,
    pub relu: bool,
}

impl MlpBlock {
    pub fn load(
        w: &Weights,
        name: &str,
        names: [&str; 2],
        relu: bool,
        device: &Device,
    ) -> Result<Self> {
        Ok(Self {
            lin1: linear(w, &format!("{name}.{}", names[0]), device)?,
            lin2: linear(w, &format!("{name}.{}", names[1]), device)?,
            relu,
        })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let x = kernels::linear(&self.lin1, x);
        let x = if self.relu { relu(x) } else { gelu(x) };
        kernels::linear(&self.lin2, x)
    }
}

/// The mask decoder's `MLP`: ReLU between layers, none after the last.
#[derive(Module, Debug)]
pub struct Mlp {
    pub layers: Vec<Linear>,
}

impl Mlp {
    pub fn load(w: &Weights, name: &str, device: &Device) -> Result<Self> {
        let mut layers = Vec::new();
        while w.contains(&format!("{name}.layers.{}.weight", layers.len())) {
            layers.push(linear(
                w,
                &format!("{name}.layers.{}", layers.len()),
                device,
            )?);
        }
        if layers.is_empty() {
            return Err(crate::Error::Weights(format!("`{name}` has no layers")));
        }
        Ok(Self { layers })
    }

    pub fn forward<const D: usize>(&self, mut x: Tensor<D>) -> Tensor<D> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}

/// A convolution; 1x1 stride-1 ones as one matrix product over the pixels, which the CPU
/// backends run several times faster than their general convolution. In training the product
/// matters more: burn takes a convolution's weight gradient as a convolution of the
/// batch-transposed input with the output gradient as a 64x64 or 256x256 kernel, where a
/// product's gradients are products (a 256-to-512 layer's step: 389 ms as a convolution, 147 ms
/// as a product).
pub fn conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if conv.kernel_size != [1, 1] || conv.stride != [1, 1] || conv.groups != 1 {
        return conv.forward(x);
    }
    if kernels::on_flex(&x) {
        return kernels::pointwise(conv, x);
    }
    let [b, c, h, w] = x.dims();
    let [out, ..] = conv.weight.dims();
    let weight = conv.weight.val().reshape([1, out, c]);
    let y = super::tracked::matmul_shared(weight, x.reshape([b, c, h * w]));
    let y = match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, out, 1]),
        None => y,
    };
    y.reshape([b, out, h, w])
}

/// A transposed convolution; kernel 2, stride 2 ones (SAM's and the heads' x2 upsamplings) as
/// one matrix product to the four sub-pixels of each output pixel, then a pixel shuffle. The
/// values are the convolution's; the gradients are products, where burn's transposed
/// convolution takes its weight gradient as a convolution with the output gradient as a kernel.
pub fn conv_transpose(conv: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    let [cin, cout, kh, kw] = conv.weight.dims();
    let plain = conv.stride == [2, 2]
        && (kh, kw) == (2, 2)
        && conv.groups == 1
        && conv.padding == [0, 0]
        && conv.padding_out == [0, 0]
        && conv.dilation == [1, 1];
    if !plain {
        return conv.forward(x);
    }
    let [b, _, h, w] = x.dims();
    // [Cin, Cout, 2, 2] -> [1, Cout * 4, Cin]: row (o, dy, dx) maps a pixel's channels to one
    // of its four outputs.
    let weight = conv.weight.val().reshape([cin, cout * 4]).transpose();
    let y = super::tracked::matmul_shared(weight.unsqueeze(), x.reshape([b, cin, h * w]))
        .reshape([b, cout, 4 * h * w]);
    let y = match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, cout, 1]),
        None => y,
    };
    super::shuffle::pixel_shuffle(y.reshape([b, cout * 4, h, w]))
}

/// Both encoders' neck: 1x1 convolution, LayerNorm2d, 3x3 convolution, LayerNorm2d.
#[derive(Module, Debug)]
pub struct Neck {
    pub conv1: Conv2d,
    pub norm1: LayerNorm2d,
    pub conv2: Conv2d,
    pub norm2: LayerNorm2d,
}

impl Neck {
    /// From `neck.0` .. `neck.3`.
    pub fn load(w: &Weights, device: &Device) -> Result<Self> {
        Ok(Self {
            conv1: conv2d(w, "neck.0", 1, 0, 1, device)?,
            norm1: LayerNorm2d::load(w, "neck.1", device)?,
            conv2: conv2d(w, "neck.2", 1, 1, 1, device)?,
            norm2: LayerNorm2d::load(w, "neck.3", device)?,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.norm1.forward(conv(&self.conv1, x));
        self.norm2.forward(super::conv3x3::conv3x3(&self.conv2, x))
    }
}
