//! Heads to and from files: safetensors through the same verified container as the weights
//! (`format.rs`), with the head's kind, class names and colours, encoder and training summary in
//! the metadata. Parameters are named by their module path, walked generically, so a new head
//! type needs no code here.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::{Head, HeadKind};
use crate::container::{self, Precision};
use crate::error::{Error, Result};
use crate::model::Weights;
use crate::params;

pub const HEAD_FORMAT: &str = "autosam-head/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassInfo {
    pub name: String,
    /// `#rrggbb`
    pub color: String,
}

/// What travels with a head's tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadInfo {
    pub kind: HeadKind,
    /// Background first.
    pub classes: Vec<ClassInfo>,
    /// The encoder whose embeddings it was trained on (`litemedsam+attention-biases`).
    pub encoder: String,
    /// Free-form: data, epochs, seed, validation Dice.
    pub training: serde_json::Value,
    /// How much of the encoder's grid its training volumes' structures spanned (the median
    /// [`crate::zoom::span`]): Segment's second look zooms structures found much smaller up to it.
    /// None (files before it, or a head that should not zoom): no second look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extent: Option<f32>,
}

/// Colours of label codes 0, 1, 2, ... (background black): classes without their own colour take
/// the one of their code, in the page and in head files alike.
pub const PALETTE: [&str; 16] = [
    "#000000", "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
    "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
];

/// The colour of label code `code`.
pub fn palette_color(code: usize) -> &'static str {
    PALETTE[code % PALETTE.len()]
}

/// The cardiac classes of ACDC, in label order, coloured from the palette.
pub fn cardiac_classes() -> Vec<ClassInfo> {
    ["background", "RV", "MYO", "LV"]
        .into_iter()
        .enumerate()
        .map(|(code, name)| ClassInfo {
            name: name.into(),
            color: palette_color(code).into(),
        })
        .collect()
}

/// Puts stored parameters into a head of the same kind and shape.
pub fn assign(head: Head, w: &Weights) -> Result<Head> {
    let kind = head.kind();
    params::assign(head, w).map_err(|first| {
        Error::Weights(format!(
            "the head file does not fit a {kind} head with these classes: {first}"
        ))
    })
}

pub fn save(head: &Head, info: &HeadInfo, precision: Precision) -> Result<Vec<u8>> {
    if info.classes.len() != head.classes() {
        return Err(Error::Invalid(format!(
            "{} class names for a head with {} classes",
            info.classes.len(),
            head.classes()
        )));
    }
    write(&params::to_weights(head)?, info, precision)
}

/// A head file from parameters already on the host ([`params`] read back).
pub fn write(weights: &Weights, info: &HeadInfo, precision: Precision) -> Result<Vec<u8>> {
    let json = serde_json::to_string(info).expect("head info serialises");
    container::write(weights, HEAD_FORMAT, &[("head", json)], precision)
}

/// A head file as a head on `device` with its info. `sam_weights` are the encoder's file, whose
/// mask decoder AutoSAM and linear heads are built on before the stored tensors go in; `encoder`
/// is the id of the encoder whose embeddings the head will read ([`SamConfig::encoder_id`]).
///
/// [`SamConfig::encoder_id`]: crate::model::SamConfig::encoder_id
pub fn load(
    bytes: &[u8],
    sam_weights: &Weights,
    encoder: &str,
    device: &Device,
) -> Result<(Head, HeadInfo)> {
    let (info, tensors) = read(bytes)?;
    // Every SAM decoder has the same shapes, so a head for other embeddings would load: check.
    if info.encoder != encoder {
        return Err(Error::Weights(format!(
            "the head was trained on `{}` embeddings, but this encoder gives `{encoder}`; \
             train it again on this encoder",
            info.encoder
        )));
    }
    let head = assign(
        Head::new(info.kind, info.classes.len(), sam_weights, device)?,
        &tensors,
    )?;
    Ok((head, info))
}

/// The info and tensors of a head file; [`load`] builds the head.
pub fn read(bytes: &[u8]) -> Result<(HeadInfo, Weights)> {
    let (info, file) = verified(bytes)?;
    Ok((info, file.weights))
}

/// The head file `bytes` with `extent` as its info's, its tensors stored as they were.
pub fn with_extent(bytes: &[u8], extent: Option<f32>) -> Result<Vec<u8>> {
    let (mut info, file) = verified(bytes)?;
    info.extent = extent;
    let out = write(&file.weights, &info, file.precision)?;
    // int8 tensors are widened on reading and quantized again on writing: the same blocks'
    // scales give back the same values, which the tensors' hash confirms.
    let (_, again) = verified(&out)?;
    if again.sha256 != file.sha256 {
        return Err(Error::Invalid(
            "storing the head again changed its tensors".into(),
        ));
    }
    Ok(out)
}

fn verified(bytes: &[u8]) -> Result<(HeadInfo, container::Verified)> {
    let file = container::read(
        bytes,
        HEAD_FORMAT,
        "an autosam head file",
        "heads are saved by `autosam train` or the page's Teach mode",
    )?;
    let info = file
        .metadata
        .get("head")
        .ok_or_else(|| Error::Weights("the head file has no `head` field".into()))?;
    let info: HeadInfo = serde_json::from_str(info)
        .map_err(|e| Error::Weights(format!("the head file's info: {e}")))?;
    if info.classes.is_empty() {
        return Err(Error::Weights("the head file names no classes".into()));
    }
    Ok((info, file))
}
