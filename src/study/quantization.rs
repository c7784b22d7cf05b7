//! The quantization report (`autosam quant-report`): what f16 and int8 weights cost against f32, over every slice of the
//! first N labelled volumes: embedding cosine similarity and the Dice between box masks.

use std::path::Path;
use std::time::Instant;

use crate::container::Precision;
use crate::metrics::{dice, mean};
use crate::model::format;
use crate::model::{Sam, SamConfig, Weights};
use crate::pipeline::{PreparedVolume, label_slice, put_label_slice};
use crate::segment::{boxes_from_labels, segment_boxes};

use crate::error::Result;
use crate::heads::store::cardiac_classes;
use crate::study::data::{at, labelled_pairs, read_volume};

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
}

pub fn run(
    config: SamConfig,
    weights: &Weights,
    dir: &Path,
    volumes: usize,
    out: Option<&Path>,
) -> Result<()> {
    let device = crate::backend::cpu();
    let started = Instant::now();
    let mut models: Vec<(Precision, usize, Sam)> = Vec::new();
    for precision in Precision::ALL {
        let bytes = format::write(weights, &config, precision)?;
        let sam = format::load_sam(&bytes, &device)?;
        models.push((precision, bytes.len(), sam));
    }
    let m = models.len();
    let cardiac = cardiac_classes();
    let names: Vec<&str> = cardiac.iter().skip(1).map(|c| c.name.as_str()).collect();
    // Per precision: embedding cosines against f32, and per class the 3-D Dice of its box-mask
    // volume against f32's and against the ground truth, one value per volume.
    let mut cosines: Vec<Vec<f64>> = vec![Vec::new(); m];
    let mut vs_f32: Vec<Vec<Vec<Option<f64>>>> = vec![vec![Vec::new(); names.len()]; m];
    let mut vs_truth: Vec<Vec<Vec<Option<f64>>>> = vec![vec![Vec::new(); names.len()]; m];
    let pairs: Vec<_> = labelled_pairs(dir)?.into_iter().take(volumes).collect();
    let classes: Vec<u8> = (1..=names.len() as u8).collect();
    let mut slices = 0;
    for (name, image, gt) in &pairs {
        let image = read_volume(image)?;
        let truth = read_volume(gt)?.labels();
        let prepared = PreparedVolume::new(&image, models[0].2.input_size());
        let lb = prepared.letterbox;
        let mut preds = vec![vec![0u8; truth.len()]; m];
        for (z, input) in prepared.inputs.iter().enumerate() {
            let gt = label_slice(&truth, prepared.dims, prepared.axis, z);
            let boxes = boxes_from_labels(&gt, lb.height, lb.width, &classes, 1);
            let mut reference = Vec::new();
            for (i, (_, _, sam)) in models.iter().enumerate() {
                let emb = sam.encode(input);
                let data = emb.clone().into_data().try_to_vec::<f32>().expect("f32");
                if i == 0 {
                    reference = data.clone();
                }
                cosines[i].push(cosine(&data, &reference));
                let labels = segment_boxes(sam, emb, &lb, &boxes);
                put_label_slice(&mut preds[i], prepared.dims, prepared.axis, z, &labels);
            }
            slices += 1;
        }
        for i in 0..m {
            for (k, c) in classes.iter().enumerate() {
                vs_f32[i][k].push(dice(&preds[i], &preds[0], *c));
                vs_truth[i][k].push(dice(&preds[i], &truth, *c));
            }
        }
        eprintln!("{name}: {} slices", prepared.slice_count());
    }
    let mut table = format!(
        "LiteMedSAM weights at each precision against f32, over all {slices} slices of the first {} \
         labelled volumes in `{}` (`autosam quant-report --volumes {volumes}`). Box masks use the \
         SAM(box) protocol (ground-truth boxes per class, widened by 1 px, later classes drawn \
         over earlier ones); Dice is 3-D per volume and class, then the mean over volumes.\n\n\
         | precision | file MB | embedding cosine vs f32 (mean) | (min) | box-mask Dice vs f32: {} | Dice vs ground truth: {} |\n\
         |---|---:|---:|---:|---:|---:|\n",
        pairs.len(),
        dir.display(),
        names.join(" / "),
        names.join(" / ")
    );
    let fmt_classes = |v: &[Vec<Option<f64>>]| {
        v.iter()
            .map(|c| mean(c.iter().copied()).map_or("-".into(), |d| format!("{d:.4}")))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    for (i, (precision, size, _)) in models.iter().enumerate() {
        let min_cos = cosines[i].iter().copied().fold(f64::INFINITY, f64::min);
        table.push_str(&format!(
            "| {precision} | {:.2} | {:.6} | {:.6} | {} | {} |\n",
            *size as f64 / 1e6,
            mean(cosines[i].iter().map(|&c| Some(c))).unwrap_or(f64::NAN),
            min_cos,
            fmt_classes(&vs_f32[i]),
            fmt_classes(&vs_truth[i]),
        ));
    }
    table.push_str(&format!(
        "\n{slices} slices x 3 precisions in {:.0} s.\n",
        started.elapsed().as_secs_f64()
    ));
    print!("{table}");
    if let Some(out) = out {
        std::fs::write(out, &table).map_err(|e| at(out, e))?;
    }
    Ok(())
}
