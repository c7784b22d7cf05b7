//! The model in the page's worker: the converted encoder weights and a head, both fetched from
//! the page's own origin. One slice per call (encode, then head or box), so the page can show
//! progress, cache embeddings and cancel between slices.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::{Device, Tensor, TensorData};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{read, webgpu_device};
use crate::container::Precision;
use crate::heads::Head;
use crate::heads::store::{self, HeadInfo};
use crate::model::{HostTensor, Sam, Weights, format};
use crate::params;

/// The most embeddings one `headLogits` call takes: Segment batches the slices already encoded,
/// and the head's activations grow with the batch (a CNN head's are about 10 MiB a slice).
pub const HEAD_BATCH: usize = 4;

/// A head with what travels with it.
pub(super) struct LoadedHead {
    pub head: Head,
    pub info: HeadInfo,
}

/// The encoder and the current head on one device.
#[wasm_bindgen]
pub struct WebModel {
    pub(super) sam: Rc<Sam>,
    /// The whole weights file: new heads start from its pretrained mask decoder.
    pub(super) weights: Rc<Weights>,
    pub(super) head: RefCell<Rc<LoadedHead>>,
    pub(super) device: Device,
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
    let head = build_head(&sam, &file.weights, &head, &device)?;
    Ok(WebModel {
        sam: Rc::new(sam),
        weights: Rc::new(file.weights),
        head: RefCell::new(Rc::new(head)),
        device,
        backend: backend.into(),
    })
}

/// A head file's head on `device`, checked against the encoder it will read.
fn build_head(
    sam: &Sam,
    weights: &Weights,
    bytes: &[u8],
    device: &Device,
) -> Result<LoadedHead, JsError> {
    let (head, info) = store::load(bytes, weights, &sam.config.encoder_id(), device)?;
    Ok(LoadedHead { head, info })
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
        self.sam.input_size()
    }

    /// Which encoder's embeddings this is: part of an embedding's cache key.
    #[wasm_bindgen(js_name = encoderId)]
    pub fn encoder_id(&self) -> String {
        self.sam.config.encoder_id()
    }

    /// Replaces the head with a head file's (import); throws if it does not fit this encoder.
    #[wasm_bindgen(js_name = setHead)]
    pub fn set_head(&self, bytes: &[u8]) -> Result<(), JsError> {
        let head = build_head(&self.sam, &self.weights, bytes, &self.device)?;
        *self.head.borrow_mut() = Rc::new(head);
        Ok(())
    }

    /// The current head's classes, `[{name, color}]`, background first.
    pub fn classes(&self) -> Result<JsValue, JsError> {
        Ok(serde_wasm_bindgen::to_value(
            &self.head.borrow().info.classes,
        )?)
    }

    /// The current head's kind, training summary and extent (null without one), as JSON.
    #[wasm_bindgen(js_name = headSummary)]
    pub fn head_summary(&self) -> String {
        let h = self.head.borrow();
        serde_json::json!({"kind": h.info.kind, "training": h.info.training, "extent": h.info.extent})
            .to_string()
    }

    /// A promise of the current head as a `.safetensors` file (f32), its classes in the metadata.
    #[wasm_bindgen(js_name = exportHead)]
    pub fn export_head(&self) -> js_sys::Promise {
        let loaded = self.head.borrow().clone();
        future_to_promise(async move {
            let mut weights = Weights::default();
            for (name, shape, t) in params::tensors(&loaded.head) {
                weights.insert(name, HostTensor::new(shape, read(t).await?));
            }
            let bytes =
                store::write(&weights, &loaded.info, Precision::F32).map_err(JsError::from)?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// A promise of one encoder input's (`WebVolume.encoderInput`) embedding as a Float32Array
    /// `[C, H, W]`.
    pub fn encode(&self, input: Vec<f32>) -> js_sys::Promise {
        let sam = self.sam.clone();
        future_to_promise(async move {
            let s = sam.input_size();
            if input.len() != 3 * s * s {
                return Err(JsError::new("encoder input of the wrong size").into());
            }
            let embedding = read(sam.encode(&input)).await?;
            Ok(js_sys::Float32Array::from(embedding.as_slice()).into())
        })
    }

    /// A promise of the current head's class logits `[B, classes, S, S]` for B embeddings laid
    /// end to end (one forward pass over the batch; at most `HEAD_BATCH`).
    #[wasm_bindgen(js_name = headLogits)]
    pub fn head_logits(&self, embeddings: Vec<f32>) -> Result<js_sys::Promise, JsError> {
        let x = self.embeddings(embeddings, HEAD_BATCH)?;
        let (loaded, pe) = (self.head.borrow().clone(), self.sam.dense_pe.clone());
        Ok(future_to_promise(async move {
            let logits = read(loaded.head.forward(x, pe)).await?;
            Ok(js_sys::Float32Array::from(logits.as_slice()).into())
        }))
    }

    /// A promise of SAM's mask logits `[S, S]` for one box (`WebVolume.encoderBox`) on one
    /// embedding.
    #[wasm_bindgen(js_name = boxLogits)]
    pub fn box_logits(
        &self,
        embedding: Vec<f32>,
        xyxy: Vec<f32>,
    ) -> Result<js_sys::Promise, JsError> {
        let x = self.embeddings(embedding, 1)?;
        let xyxy: [f32; 4] = xyxy
            .try_into()
            .map_err(|_| JsError::new("a box is [x0, y0, x1, y1]"))?;
        let sam = self.sam.clone();
        Ok(future_to_promise(async move {
            let logits = read(sam.decode_boxes(x, &[xyxy]).masks).await?;
            Ok(js_sys::Float32Array::from(logits.as_slice()).into())
        }))
    }
}

impl WebModel {
    /// An embedding from the page as a `[1, C, H, W]` tensor, its size checked.
    /// Up to `most` embeddings laid end to end, as one batch.
    pub(super) fn embeddings(&self, values: Vec<f32>, most: usize) -> Result<Tensor<4>, JsError> {
        let [_, c, h, w] = self.sam.dense_pe.dims();
        let batch = values.len() / (c * h * w);
        if !values.len().is_multiple_of(c * h * w) || batch == 0 || batch > most {
            return Err(JsError::new(&format!(
                "expected 1 to {most} embeddings of {c} x {h} x {w} values, got {} values",
                values.len()
            )));
        }
        Ok(Tensor::from_data(
            TensorData::new(values, [batch, c, h, w]),
            &self.device,
        ))
    }
}
