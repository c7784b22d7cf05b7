//! A module's parameters by module path (`decoder.output_upscaling.0.weight`): read out, put
//! back in, and their ids. Walked generically, so heads, the UNet and any new model need no
//! code here.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, TensorData};

use crate::error::{Error, Result};
use crate::model::{HostTensor, Weights};

/// The parameters as flat tensors with their module path and shape, still on the device: the
/// page reads them back asynchronously (a blocking read panics on WebGPU).
pub fn tensors<M: Module>(module: &M) -> Vec<(String, Vec<usize>, Tensor<1>)> {
    let mut c = Collect::default();
    module.visit(&mut c);
    c.out
}

/// The parameters by module path (blocking reads: CPU backend, or native wgpu).
pub fn to_weights<M: Module>(module: &M) -> Result<Weights> {
    let mut w = Weights::default();
    for (name, shape, t) in tensors(module) {
        let data = t
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| Error::Weights(format!("{name}: {e:?}")))?;
        w.insert(name, HostTensor::new(shape, data));
    }
    Ok(w)
}

/// Puts stored parameters into a module of the same shape; the first parameter that is missing
/// or of another shape is the error.
pub fn assign<M: Module>(module: M, w: &Weights) -> std::result::Result<M, String> {
    let mut a = Assign {
        path: Vec::new(),
        from: w,
        errors: Vec::new(),
    };
    let module = module.map(&mut a);
    match a.errors.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(module),
    }
}

/// Each parameter's id by module path: the optimizer keys its state by these ids, so a training
/// checkpoint keeps them to give a reloaded module its old ids back ([`with_ids`]).
pub fn ids<M: Module>(module: &M) -> BTreeMap<String, u64> {
    let mut v = Ids::default();
    module.visit(&mut v);
    v.ids
}

/// The module with the parameter ids of [`ids`] (by module path; others keep theirs).
pub fn with_ids<M: Module>(module: M, ids: &BTreeMap<String, u64>) -> M {
    module.map(&mut SetIds {
        path: Vec::new(),
        ids,
    })
}

#[derive(Default)]
struct Collect {
    path: Vec<String>,
    out: Vec<(String, Vec<usize>, Tensor<1>)>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let n: usize = shape.iter().product();
        self.out.push((self.path.join("."), shape, t.reshape([n])));
    }
}

struct Assign<'a> {
    path: Vec<String>,
    from: &'a Weights,
    errors: Vec<String>,
}

impl ModuleMapper for Assign<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.join(".");
        let current = param.val();
        let dims = current.dims();
        match self.from.get_shaped(&name, &dims) {
            Ok(t) => {
                let device = current.device();
                param.map(|_| {
                    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), &device)
                })
            }
            Err(e) => {
                self.errors.push(e.to_string());
                param
            }
        }
    }
}

#[derive(Default)]
struct Ids {
    path: Vec<String>,
    ids: BTreeMap<String, u64>,
}

impl ModuleVisitor for Ids {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.ids.insert(self.path.join("."), param.id.val());
    }
}

struct SetIds<'a> {
    path: Vec<String>,
    ids: &'a BTreeMap<String, u64>,
}

impl ModuleMapper for SetIds<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if let Some(&id) = self.ids.get(&self.path.join(".")) {
            param.id = ParamId::from(id);
        }
        param
    }
}
