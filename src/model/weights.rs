//! Named host tensors between a checkpoint and the burn modules, and the builders that turn them
//! into burn's layers. Keys follow the upstream PyTorch names, so a checkpoint maps one to one.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use burn::module::Param;
use burn::nn::{Linear, PaddingConfig2d, conv::Conv2d, conv::ConvTranspose2d};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Error, Result};

/// A tensor on the host, always f32 once loaded (f16 and int8 files are widened on load).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    pub fn to_device<const D: usize>(&self, device: &Device) -> Tensor<D> {
        Tensor::from_data(
            TensorData::new(self.data.clone(), self.shape.clone()),
            device,
        )
    }
}

/// The state dict, or a view of the keys under a prefix (`scoped`), so a component's loader uses
/// the same relative names as its upstream module. Reads are recorded per view, so a loader can
/// tell which keys it never used.
#[derive(Debug, Default, Clone)]
pub struct Weights {
    tensors: Arc<BTreeMap<String, HostTensor>>,
    prefix: String,
    read: RefCell<BTreeSet<String>>,
}

impl Weights {
    pub fn scoped(&self, prefix: &str) -> Weights {
        Weights {
            tensors: Arc::clone(&self.tensors),
            prefix: format!("{}{prefix}", self.prefix),
            read: RefCell::default(),
        }
    }

    fn map_mut(&mut self) -> &mut BTreeMap<String, HostTensor> {
        assert!(
            self.prefix.is_empty(),
            "only the whole state dict is edited"
        );
        Arc::make_mut(&mut self.tensors)
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: HostTensor) {
        self.map_mut().insert(name.into(), tensor);
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }

    /// Entries under this view's prefix, with the prefix stripped.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &HostTensor)> {
        self.tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(self.prefix.as_str()).map(|k| (k, v)))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(&format!("{}{name}", self.prefix))
    }

    pub fn parameter_count(&self) -> usize {
        self.iter().map(|(_, t)| t.data.len()).sum()
    }

    pub fn get(&self, name: &str) -> Result<&HostTensor> {
        let full = format!("{}{name}", self.prefix);
        let tensor = self
            .tensors
            .get(&full)
            .ok_or_else(|| Error::Weights(format!("tensor `{full}` is missing")))?;
        self.read.borrow_mut().insert(name.to_string());
        Ok(tensor)
    }

    /// The tensor with its shape checked, so a wrong checkpoint fails here and not in a matmul.
    pub fn get_shaped(&self, name: &str, shape: &[usize]) -> Result<&HostTensor> {
        let t = self.get(name)?;
        if t.shape != shape {
            return Err(Error::Weights(format!(
                "tensor `{name}` has shape {:?}, the model expects {shape:?}",
                t.shape
            )));
        }
        Ok(t)
    }

    pub fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Result<Tensor<D>> {
        let t = self.get(name)?;
        if t.shape.len() != D {
            return Err(Error::Weights(format!(
                "tensor `{name}` has {} dimensions, expected {D}",
                t.shape.len()
            )));
        }
        Ok(t.to_device(device))
    }

    /// Keys under `prefix` that no loader read.
    pub fn unread(&self, prefix: &str) -> Vec<String> {
        let read = self.read.borrow();
        self.names()
            .filter(|k| k.starts_with(prefix) && !read.contains(*k))
            .map(str::to_string)
            .collect()
    }

    /// Drops keys no model reads (BatchNorm counters, the mask-prompt branch), so converted
    /// files carry only what the loaders use.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.map_mut().retain(|k, _| keep(k));
    }

    /// Folds every `P.bn.*` into the preceding `P.c.weight`, leaving `P.weight` and `P.bias`:
    /// TinyViT's Conv2d_BN in inference form, as its own `fuse()` does.
    pub fn fold_batchnorm(&mut self, eps: f32) -> Result<usize> {
        let prefixes: Vec<String> = self
            .names()
            .filter_map(|k| k.strip_suffix(".bn.running_var").map(str::to_string))
            .collect();
        for p in &prefixes {
            let take = |w: &mut Self, s: &str| {
                w.map_mut()
                    .remove(&format!("{p}.{s}"))
                    .ok_or_else(|| Error::Weights(format!("tensor `{p}.{s}` is missing")))
            };
            let conv = take(self, "c.weight")?;
            let gamma = take(self, "bn.weight")?;
            let beta = take(self, "bn.bias")?;
            let mean = take(self, "bn.running_mean")?;
            let var = take(self, "bn.running_var")?;
            self.map_mut()
                .remove(&format!("{p}.bn.num_batches_tracked"));
            let out = conv.shape[0];
            if [&gamma, &beta, &mean, &var]
                .iter()
                .any(|t| t.data.len() != out)
            {
                return Err(Error::Weights(format!(
                    "BatchNorm of `{p}` does not match its convolution's {out} channels"
                )));
            }
            let per_out = conv.data.len() / out;
            let mut weight = conv.data;
            let mut bias = vec![0.0; out];
            for o in 0..out {
                let scale = gamma.data[o] / (var.data[o] + eps).sqrt();
                weight[o * per_out..(o + 1) * per_out]
                    .iter_mut()
                    .for_each(|w| *w *= scale);
                bias[o] = beta.data[o] - mean.data[o] * scale;
            }
            self.insert(format!("{p}.weight"), HostTensor::new(conv.shape, weight));
            self.insert(format!("{p}.bias"), HostTensor::new(vec![out], bias));
        }
        Ok(prefixes.len())
    }
}

/// `nn.Linear` from PyTorch's [out, in] weight; burn keeps [in, out].
pub fn linear(w: &Weights, name: &str, device: &Device) -> Result<Linear> {
    let weight = w.get(&format!("{name}.weight"))?;
    let [out, inp] = weight.shape[..] else {
        return Err(Error::Weights(format!("`{name}.weight` is not a matrix")));
    };
    let mut transposed = vec![0.0; weight.data.len()];
    for o in 0..out {
        for i in 0..inp {
            transposed[i * out + o] = weight.data[o * inp + i];
        }
    }
    let weight = Tensor::from_data(TensorData::new(transposed, [inp, out]), device);
    let bias = optional_bias(w, name, out, device)?;
    Ok(Linear {
        weight: Param::from_tensor(weight),
        bias,
    })
}

fn optional_bias(
    w: &Weights,
    name: &str,
    out: usize,
    device: &Device,
) -> Result<Option<Param<Tensor<1>>>> {
    let key = format!("{name}.bias");
    if !w.contains(&key) {
        return Ok(None);
    }
    Ok(Some(Param::from_tensor(
        w.get_shaped(&key, &[out])?.to_device(device),
    )))
}

/// `nn.Conv2d` (or a folded Conv2d_BN) with square stride and padding.
pub fn conv2d(
    w: &Weights,
    name: &str,
    stride: usize,
    padding: usize,
    groups: usize,
    device: &Device,
) -> Result<Conv2d> {
    let weight = w.get(&format!("{name}.weight"))?;
    let [out, _, kh, kw] = weight.shape[..] else {
        return Err(Error::Weights(format!(
            "`{name}.weight` is not a 4-D convolution kernel"
        )));
    };
    Ok(Conv2d {
        weight: Param::from_tensor(weight.to_device(device)),
        bias: optional_bias(w, name, out, device)?,
        stride: [stride, stride],
        kernel_size: [kh, kw],
        dilation: [1, 1],
        groups,
        padding: PaddingConfig2d::Explicit(padding, padding, padding, padding),
    })
}

/// `nn.ConvTranspose2d` with kernel = stride (SAM's x2 upsampling).
pub fn conv_transpose2d(w: &Weights, name: &str, device: &Device) -> Result<ConvTranspose2d> {
    let weight = w.get(&format!("{name}.weight"))?;
    let [inp, out, kh, kw] = weight.shape[..] else {
        return Err(Error::Weights(format!(
            "`{name}.weight` is not a 4-D transposed-convolution kernel"
        )));
    };
    Ok(ConvTranspose2d {
        weight: Param::from_tensor(weight.to_device(device)),
        bias: optional_bias(w, name, out, device)?,
        stride: [kh, kw],
        kernel_size: [kh, kw],
        dilation: [1, 1],
        groups: 1,
        padding: [0, 0],
        padding_out: [0, 0],
        channels: [inp, out],
    })
}

pub fn param<const D: usize>(w: &Weights, name: &str, device: &Device) -> Result<Param<Tensor<D>>> {
    Ok(Param::from_tensor(w.tensor(name, device)?))
}
