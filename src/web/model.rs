//! Automatic segmentation in the page: the converted encoder weights and a head, both fetched by
//! the page from its own origin, run one slice per call so the page can show progress, stay
//! responsive and cancel between slices.

use std::rc::Rc;

use burn::tensor::{Device, Tensor};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{read, webgpu_device};
use crate::heads::Head;
use crate::heads::store::{self, HeadInfo};
use crate::model::{Sam, format};

struct Inner {
    sam: Sam,
    head: Head,
    info: HeadInfo,
    pe: Tensor<4>,
}

/// The encoder and a head on one device.
#[wasm_bindgen]
pub struct WebModel {
    inner: Rc<Inner>,
    backend: String,
}

/// Loads `weights` (an `autosam convert` file) and `head` (an `autosam train` file) on WebGPU when
/// `use_gpu` and the browser gives an adapter, else on the CPU backend.
#[wasm_bindgen(js_name = loadModel)]
pub async fn load_model(
    weights: Vec<u8>,
    head: Vec<u8>,
    use_gpu: bool,
) -> Result<WebModel, JsError> {
    let gpu = if use_gpu { webgpu_device().await } else { None };
    let backend = if gpu.is_some() { "WebGPU" } else { "CPU" };
    let device: Device = gpu.unwrap_or_else(crate::backend::cpu);
    let file = format::read(&weights)?;
    let sam = Sam::load(&file.weights, file.config, &device)?;
    let (info, tensors) = store::read(&head)?;
    if info.encoder != sam.config.model_id {
        return Err(JsError::new(&format!(
            "the head was trained on {} embeddings, but the model is {}",
            info.encoder, sam.config.model_id
        )));
    }
    let head = Head::new(&info.kind, info.classes.len(), &file.weights, &device)
        .and_then(|h| store::assign(h, &tensors))?;
    let pe = sam.dense_pe.clone();
    Ok(WebModel {
        inner: Rc::new(Inner {
            sam,
            head,
            info,
            pe,
        }),
        backend: backend.into(),
    })
}

#[wasm_bindgen]
impl WebModel {
    /// `CPU` or `WebGPU`.
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// The encoder's square input side (256 for LiteMedSAM).
    #[wasm_bindgen(js_name = inputSize)]
    pub fn input_size(&self) -> usize {
        self.inner.sam.input_size()
    }

    /// `[{name, color}]`, background first.
    pub fn classes(&self) -> Result<JsValue, JsError> {
        Ok(serde_wasm_bindgen::to_value(&self.inner.info.classes)?)
    }

    /// The head's kind and training summary, as JSON.
    #[wasm_bindgen(js_name = headSummary)]
    pub fn head_summary(&self) -> String {
        serde_json::json!({"kind": self.inner.info.kind, "training": self.inner.info.training})
            .to_string()
    }

    /// A promise of the class logits `[classes, S, S]` (Float32Array) for one encoder input
    /// (`WebVolume.encoderInput`).
    #[wasm_bindgen(js_name = segmentInput)]
    pub fn segment_input(&self, input: Vec<f32>) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let s = inner.sam.input_size();
            if input.len() != 3 * s * s {
                return Err(JsError::new("encoder input of the wrong size").into());
            }
            let embedding = inner.sam.encode(&input);
            let logits = read(inner.head.forward(embedding, inner.pe.clone())).await?;
            Ok(js_sys::Float32Array::from(logits.as_slice()).into())
        })
    }
}
