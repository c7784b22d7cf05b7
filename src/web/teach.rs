//! Teach mode: training a head in the page's worker on cached embeddings and the user's labels,
//! with the native trainer. One mini-batch per call, so the page can draw progress and cancel.

use std::cell::RefCell;
use std::rc::Rc;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::WebModel;
use super::model::LoadedHead;
use crate::heads::store::{ClassInfo, HeadInfo};
use crate::heads::{Head, HeadKind};
use crate::train::{Batches, Sample, Trainer, VAL_BATCH, block, inputs, predict, score_batch};

#[derive(serde::Serialize)]
struct StepReport {
    epoch: usize,
    step: usize,
    loss: f32,
}

struct State {
    trainer: Trainer<Head>,
    /// Made at the first step, once the samples are all in.
    batches: Option<Batches>,
}

/// A head being trained, its samples, and what it will be saved with.
#[wasm_bindgen]
pub struct WebTrainer {
    /// Taken out while a step runs: a second call meanwhile is refused, not interleaved.
    state: Rc<RefCell<Option<State>>>,
    train: Rc<Vec<Sample>>,
    /// Each training slice's augmented views (`addView`), as many for every slice.
    views: Rc<Vec<Vec<Sample>>>,
    val: Rc<Vec<Sample>>,
    classes: Vec<ClassInfo>,
    kind: HeadKind,
    encoder: String,
    batch: usize,
    lr: f64,
    seed: u64,
    plain: Device,
    pe: Tensor<4>,
}

#[wasm_bindgen]
impl WebTrainer {
    /// A new `kind` head (`autosam`, `cnn`, `linear`) for `classes` (`[{name, color}]`,
    /// background first) on the model's device, trained with Adam at `lr`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        model: &WebModel,
        kind: &str,
        classes: JsValue,
        lr: f64,
        batch: usize,
        seed: u32,
    ) -> Result<WebTrainer, JsError> {
        let classes: Vec<ClassInfo> = serde_wasm_bindgen::from_value(classes)?;
        if classes.len() < 2 {
            return Err(JsError::new("name at least one class besides background"));
        }
        let device = model.device.clone().autodiff();
        let kind: HeadKind = kind.parse()?;
        let head = Head::new(kind, classes.len(), &model.weights, &device)?;
        let pe = model.sam.prompt_encoder.dense_pe();
        Ok(Self {
            state: Rc::new(RefCell::new(Some(State {
                trainer: Trainer::new(head, &pe, lr, &device),
                batches: None,
            }))),
            train: Rc::new(Vec::new()),
            views: Rc::new(Vec::new()),
            val: Rc::new(Vec::new()),
            classes,
            kind,
            encoder: model.sam.config.encoder_id(),
            batch: batch.max(1),
            lr,
            seed: seed.into(),
            plain: model.device.clone(),
            pe: model.sam.dense_pe.clone(),
        })
    }

    /// Adds one slice: its embedding and its labels on the encoder grid
    /// (`WebVolume.trainingLabels`), to the training or the validation set.
    #[wasm_bindgen(js_name = addSample)]
    pub fn add_sample(
        &mut self,
        embedding: Vec<f32>,
        labels: Vec<u8>,
        validation: bool,
    ) -> Result<(), JsError> {
        let sample = self.sample(embedding, labels)?;
        if validation {
            open(&mut self.val)?.push(sample);
        } else {
            open(&mut self.train)?.push(sample);
            open(&mut self.views)?.push(Vec::new());
        }
        Ok(())
    }

    /// Adds an augmented view of the last training slice added (`WebVolume.viewInput`
    /// encoded, and `viewLabels`). Epoch e shows training slice i from view
    /// `(e - 1 + i) mod (views + 1)`, 0 being the slice as it is, as native training does.
    #[wasm_bindgen(js_name = addView)]
    pub fn add_view(&mut self, embedding: Vec<f32>, labels: Vec<u8>) -> Result<(), JsError> {
        let sample = self.sample(embedding, labels)?;
        open(&mut self.views)?
            .last_mut()
            .ok_or_else(|| JsError::new("a view needs its training slice first"))?
            .push(sample);
        Ok(())
    }

    /// A sample checked against the model and the classes, before training starts.
    fn sample(&self, embedding: Vec<f32>, labels: Vec<u8>) -> Result<Sample, JsError> {
        let batches_made = self
            .state
            .borrow()
            .as_ref()
            .is_none_or(|st| st.batches.is_some());
        if batches_made {
            return Err(JsError::new("training has started: make a new trainer"));
        }
        let [_, c, h, w] = self.pe.dims();
        let s = (labels.len() as f64).sqrt() as usize;
        if embedding.len() != c * h * w || s * s != labels.len() || s == 0 {
            return Err(JsError::new("a sample of the wrong size"));
        }
        if let Some(&l) = labels.iter().find(|&&l| l as usize >= self.classes.len()) {
            return Err(JsError::new(&format!(
                "the labels use class {l}, but only {} classes are named",
                self.classes.len() - 1
            )));
        }
        Ok(Sample {
            input: embedding,
            shape: [c, h, w],
            labels,
        })
    }

    #[wasm_bindgen(js_name = stepsPerEpoch)]
    pub fn steps_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.batch)
    }

    /// A promise of `{epoch, step, loss}`: one Adam step on the next mini-batch of the epoch
    /// (`step` counts from 1; the epoch ends when it equals `stepsPerEpoch`).
    pub fn step(&self) -> js_sys::Promise {
        let (cell, train, views, batch, seed) = (
            self.state.clone(),
            self.train.clone(),
            self.views.clone(),
            self.batch,
            self.seed,
        );
        future_to_promise(async move {
            if train.is_empty() {
                return Err(JsError::new("no labelled slices to train on").into());
            }
            let blocks = views.first().map_or(0, Vec::len) + 1;
            if views.iter().any(|v| v.len() + 1 != blocks) {
                return Err(JsError::new("every training slice needs as many views").into());
            }
            let mut st = cell
                .borrow_mut()
                .take()
                .ok_or_else(|| JsError::new("a step is already running"))?;
            let (indices, epoch, step) = st
                .batches
                .get_or_insert_with(|| Batches::new(train.len(), batch, seed))
                .next_batch();
            let chunk: Vec<&Sample> = indices
                .iter()
                .map(|&i| match block(epoch, i, blocks) {
                    0 => &train[i],
                    v => &views[i][v - 1],
                })
                .collect();
            let loss = st.trainer.step(&chunk);
            // Back before the read: an error there must not lose the trainer.
            *cell.borrow_mut() = Some(st);
            let loss = super::read(loss).await?[0];
            Ok(serde_wasm_bindgen::to_value(&StepReport {
                epoch,
                step,
                loss,
            })?)
        })
    }

    /// A promise of the mean foreground Dice on the validation slices (`undefined` without any).
    pub fn validate(&self) -> js_sys::Promise {
        let (cell, val, pe, plain) = (
            self.state.clone(),
            self.val.clone(),
            self.pe.clone(),
            self.plain.clone(),
        );
        future_to_promise(async move {
            if val.is_empty() {
                return Ok(JsValue::UNDEFINED);
            }
            // Off autodiff: the validation forwards must not keep activations for a backward.
            let head = cell
                .borrow()
                .as_ref()
                .map(|st| st.trainer.model().valid())
                .ok_or_else(|| JsError::new("a step is running"))?;
            let mut scores = Vec::new();
            for chunk in val.chunks(VAL_BATCH) {
                let batch: Vec<&Sample> = chunk.iter().collect();
                let pred = predict(&head, inputs(&batch, &plain), pe.clone());
                let pred = read_labels(pred).await?;
                score_batch(chunk, &pred, head.classes(), &mut scores);
            }
            Ok(crate::metrics::mean(scores).map_or(JsValue::UNDEFINED, JsValue::from))
        })
    }

    /// Makes the head trained so far the model's head, with `summary` (JSON: epochs, Dice...)
    /// as its training record and `extent` (the median `WebVolume.labelSpan` of the taught
    /// volumes) as the scale of its structures; training can go on after.
    pub fn apply(
        &self,
        model: &WebModel,
        summary: &str,
        extent: Option<f32>,
    ) -> Result<(), JsError> {
        let head = self
            .state
            .borrow()
            .as_ref()
            .map(|st| st.trainer.model().valid())
            .ok_or_else(|| JsError::new("a step is running"))?;
        let mut training: serde_json::Value =
            serde_json::from_str(summary).unwrap_or(serde_json::Value::Null);
        if let Some(t) = training.as_object_mut() {
            t.insert("trained_in".into(), "the page".into());
            t.insert("lr".into(), self.lr.into());
            t.insert("train_slices".into(), self.train.len().into());
            t.insert(
                "views".into(),
                self.views.first().map_or(0, Vec::len).into(),
            );
            t.insert("val_slices".into(), self.val.len().into());
        }
        *model.head.borrow_mut() = Rc::new(LoadedHead {
            head,
            info: HeadInfo {
                kind: self.kind,
                classes: self.classes.clone(),
                encoder: self.encoder.clone(),
                training,
                extent,
            },
        });
        Ok(())
    }
}

/// Class codes read back asynchronously (the only way on WebGPU).
async fn read_labels(t: Tensor<3, burn::tensor::Int>) -> Result<Vec<u8>, JsError> {
    let data = t
        .into_data_async()
        .await
        .map_err(|e| JsError::new(&format!("{e:?}")))?;
    let v = data
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(|e| JsError::new(&format!("{e:?}")))?;
    Ok(v.into_iter().map(|l| l as u8).collect())
}

/// A sample set no step holds.
fn open<T>(set: &mut Rc<Vec<T>>) -> Result<&mut Vec<T>, JsError> {
    Rc::get_mut(set).ok_or_else(|| JsError::new("training has started: make a new trainer"))
}
