//! `autosam quant-report`: what f16 and int8 weights cost against f32, over every slice of the
//! first N labelled volumes: embedding cosine similarity and the Dice between box masks.

use std::path::Path;
use std::time::Instant;

use autosam::metrics::{dice, mean};
use autosam::model::format::{self, Precision};
use autosam::model::{Sam, SamConfig, Weights};
use autosam::pipeline::{PreparedVolume, label_slice};
use autosam::segment::{boxes_from_labels, segment_boxes};

use super::eval_box::{CLASSES, labelled_pairs, read_volume};

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

struct Stats {
    cosine: Vec<f64>,
    dice: Vec<Option<f64>>,
}

pub fn run(
    config: SamConfig,
    weights: &Weights,
    dir: &Path,
    volumes: usize,
    out: Option<&Path>,
) -> Result<(), String> {
    let device = autosam::backend::cpu();
    let started = Instant::now();
    let mut models: Vec<(Precision, usize, Sam)> = Vec::new();
    for precision in Precision::ALL {
        let bytes = format::write(weights, &config, precision).map_err(|e| e.to_string())?;
        let sam = format::load_sam(&bytes, &device).map_err(|e| e.to_string())?;
        models.push((precision, bytes.len(), sam));
    }
    let mut stats: Vec<Stats> = (1..models.len())
        .map(|_| Stats {
            cosine: Vec::new(),
            dice: Vec::new(),
        })
        .collect();
    let pairs: Vec<_> = labelled_pairs(dir)?.into_iter().take(volumes).collect();
    let classes: Vec<u8> = CLASSES.iter().map(|c| c.0).collect();
    let mut slices = 0;
    for (name, image, gt) in &pairs {
        let image = read_volume(image)?;
        let truth = read_volume(gt)?.labels();
        let prepared = PreparedVolume::new(&image, models[0].2.input_size());
        let lb = prepared.letterbox;
        for (z, input) in prepared.inputs.iter().enumerate() {
            let gt = label_slice(&truth, prepared.dims, prepared.axis, z);
            let boxes = boxes_from_labels(&gt, lb.height, lb.width, &classes, 1);
            let runs: Vec<(Vec<f32>, Vec<u8>)> = models
                .iter()
                .map(|(_, _, sam)| {
                    let emb = sam.encode(input);
                    let data = emb.clone().into_data().try_to_vec::<f32>().expect("f32");
                    (data, segment_boxes(sam, emb, &lb, &boxes))
                })
                .collect();
            for (s, run) in stats.iter_mut().zip(&runs[1..]) {
                s.cosine.push(cosine(&run.0, &runs[0].0));
                for c in &classes {
                    s.dice.push(dice(&run.1, &runs[0].1, *c));
                }
            }
            slices += 1;
        }
        eprintln!("{name}: {} slices", prepared.slice_count());
    }
    let mut table = format!(
        "LiteMedSAM weights at each precision against f32, over all {slices} slices of the first {} \
         labelled volumes in `{}` (`autosam quant-report --volumes {volumes}`). Box masks use the \
         SAM(box) protocol (ground-truth boxes per class, widened by 1 px); Dice is per slice and \
         class between the box masks of that precision and of f32, over the pairs where either \
         has the class.\n\n\
         | precision | file MB | embedding cosine (mean) | (min) | box-mask Dice vs f32 (mean) | (min) |\n\
         |---|---:|---:|---:|---:|---:|\n",
        pairs.len(),
        dir.display()
    );
    table.push_str(&format!(
        "| f32 | {:.2} | 1 | 1 | 1 | 1 |\n",
        models[0].1 as f64 / 1e6
    ));
    for ((precision, size, _), s) in models[1..].iter().zip(&stats) {
        let min_cos = s.cosine.iter().copied().fold(f64::INFINITY, f64::min);
        let min_dice = s
            .dice
            .iter()
            .flatten()
            .copied()
            .fold(f64::INFINITY, f64::min);
        table.push_str(&format!(
            "| {precision} | {:.2} | {:.6} | {:.6} | {:.4} | {:.4} |\n",
            *size as f64 / 1e6,
            mean(s.cosine.iter().map(|&c| Some(c))).unwrap_or(f64::NAN),
            min_cos,
            mean(s.dice.iter().copied()).unwrap_or(f64::NAN),
            min_dice
        ));
    }
    table.push_str(&format!(
        "\n{slices} slices x 3 precisions in {:.0} s.\n",
        started.elapsed().as_secs_f64()
    ));
    print!("{table}");
    if let Some(out) = out {
        std::fs::write(out, &table).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    Ok(())
}
