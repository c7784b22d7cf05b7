//! A uniform model soup (Wortsman et al., 2022): the parameter-wise mean of heads fine-tuned
//! from one start. Runs that leave one head by different shuffles and views end in one basin, so
//! their mean is a head of its own, usually better than each, at one head's inference cost.
//! Heads trained from different starts do not average this way; the check below cannot see
//! where a head began, so the caller says which heads belong together.

use super::store::{self, HeadInfo};
use crate::error::{Error, Result};
use crate::model::{HostTensor, Weights};

/// The mean of the head files `files`: the same kind, classes, encoder and tensors, or an error
/// that names the first file that differs. The info is the first file's, its training the list
/// of every file's and its extent the mean of theirs.
pub fn average(files: &[Vec<u8>]) -> Result<(HeadInfo, Weights)> {
    if files.len() < 2 {
        return Err(Error::Invalid(format!(
            "a soup needs at least two heads, got {}",
            files.len()
        )));
    }
    let heads = files
        .iter()
        .map(|bytes| store::read(bytes))
        .collect::<Result<Vec<_>>>()?;
    let (first, first_weights) = &heads[0];
    for (i, (info, weights)) in heads.iter().enumerate().skip(1) {
        let differ = |what: &str| {
            Error::Invalid(format!(
                "head {} differs from head 1 in its {what}: only heads fine-tuned from one start average",
                i + 1
            ))
        };
        if info.kind != first.kind {
            return Err(differ("kind"));
        }
        if info.classes != first.classes {
            return Err(differ("classes"));
        }
        if info.encoder != first.encoder {
            return Err(differ("encoder"));
        }
        let shapes = |w: &Weights| {
            w.iter()
                .map(|(name, t)| (name.to_string(), t.shape.clone()))
                .collect::<Vec<_>>()
        };
        if shapes(weights) != shapes(first_weights) {
            return Err(differ("tensors"));
        }
    }
    let share = 1.0 / heads.len() as f32;
    let mut mean = Weights::default();
    for (name, tensor) in first_weights.iter() {
        let mut data = vec![0.0f32; tensor.data.len()];
        for (_, weights) in &heads {
            for (sum, v) in data.iter_mut().zip(&weights.get(name)?.data) {
                *sum += v * share;
            }
        }
        mean.insert(name, HostTensor::new(tensor.shape.clone(), data));
    }
    let extents: Vec<f32> = heads.iter().filter_map(|(info, _)| info.extent).collect();
    let info = HeadInfo {
        training: serde_json::json!({
            "soup": heads.iter().map(|(info, _)| info.training.clone()).collect::<Vec<_>>()
        }),
        extent: (extents.len() == heads.len())
            .then(|| extents.iter().sum::<f32>() / extents.len() as f32),
        ..first.clone()
    };
    Ok((info, mean))
}
