//! `autosam eval-box --data DIR`: the paper's SAM(box) protocol on labelled volumes. Per slice,
//! per class present in the ground truth, its tight box widened by 1 px; per-class 3-D Dice.

use std::path::{Path, PathBuf};
use std::time::Instant;

use autosam::metrics::mean;
use autosam::model::Sam;
use autosam::nii::{self, ReadOptions};
use autosam::pipeline::{PreparedVolume, label_slice, put_label_slice};
use autosam::segment::{boxes_from_labels, segment_boxes};
use burn::tensor::Tensor;

pub const CLASSES: [(u8, &str); 3] = [(1, "RV"), (2, "MYO"), (3, "LV")];

/// `NAME.nii.gz` + `NAME_gt.nii.gz` pairs in a folder, sorted by name.
pub fn labelled_pairs(dir: &Path) -> Result<Vec<(String, PathBuf, PathBuf)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut pairs: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let stem = name.strip_suffix("_gt.nii.gz")?.to_string();
            let image = dir.join(format!("{stem}.nii.gz"));
            image.exists().then(|| (stem, image, e.path()))
        })
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        return Err(format!(
            "{}: no NAME.nii.gz + NAME_gt.nii.gz pairs",
            dir.display()
        ));
    }
    Ok(pairs)
}

pub fn read_volume(path: &Path) -> Result<autosam::Volume, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    volume_from_bytes(path, &bytes)
}

/// A volume from a file's bytes already read; `path` names it in errors.
pub fn volume_from_bytes(path: &Path, bytes: &[u8]) -> Result<autosam::Volume, String> {
    nii::read_nifti(bytes, &ReadOptions::default()).map_err(|e| format!("{}: {e}", path.display()))
}

/// SAM(box) on one labelled volume: the predicted label volume. `embedding` gives slice z's
/// embedding (encoded now, or from the cache).
pub fn box_segment_volume(
    sam: &Sam,
    prepared: &PreparedVolume,
    truth: &[u8],
    mut embedding: impl FnMut(usize) -> Tensor<4>,
) -> Vec<u8> {
    let lb = prepared.letterbox;
    let mut pred = vec![0u8; truth.len()];
    let classes: Vec<u8> = CLASSES.iter().map(|c| c.0).collect();
    for z in 0..prepared.slice_count() {
        let gt = label_slice(truth, prepared.dims, prepared.axis, z);
        let boxes = boxes_from_labels(&gt, lb.height, lb.width, &classes, 1);
        if boxes.is_empty() {
            continue;
        }
        let labels = segment_boxes(sam, embedding(z), &lb, &boxes);
        put_label_slice(&mut pred, prepared.dims, prepared.axis, z, &labels);
    }
    pred
}

/// Per-volume Dice rows and the mean over volumes, as a markdown table; `extra` columns (such as
/// the slice count) come between the volume name and the classes.
pub struct DiceTable {
    names: Vec<String>,
    extra: Vec<String>,
    per_class: Vec<Vec<Option<f64>>>,
}

impl DiceTable {
    pub fn new(names: &[&str], extra: &[&str]) -> Self {
        Self {
            names: names.iter().map(|s| s.to_string()).collect(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            per_class: vec![Vec::new(); names.len()],
        }
    }

    pub fn header(&self) -> String {
        let lead: String = self.extra.iter().map(|e| format!(" {e} |")).collect();
        format!(
            "| volume |{lead} {} | mean |\n|---|{}{}---:|\n",
            self.names.join(" | "),
            "---:|".repeat(self.extra.len()),
            "---:|".repeat(self.names.len())
        )
    }

    fn line(name: &str, extra: &[String], scores: &[Option<f64>]) -> String {
        let lead: String = extra.iter().map(|e| format!(" {e} |")).collect();
        let cells: Vec<String> = scores.iter().map(|s| fmt(*s)).collect();
        format!(
            "| {name} |{lead} {} | {} |",
            cells.join(" | "),
            fmt(mean(scores.iter().copied()))
        )
    }

    /// One volume's row (per-class Dice, then their mean), remembered for the mean row.
    pub fn row(&mut self, name: &str, extra: &[String], scores: &[Option<f64>]) -> String {
        for (all, s) in self.per_class.iter_mut().zip(scores) {
            all.push(*s);
        }
        Self::line(name, extra, scores)
    }

    /// The mean over volumes, per class and overall.
    pub fn mean_row(&self, extra: &[String]) -> String {
        let volumes = self.per_class.first().map_or(0, Vec::len);
        let means: Vec<Option<f64>> = self
            .per_class
            .iter()
            .map(|v| mean(v.iter().copied()))
            .collect();
        Self::line(&format!("**mean of {volumes} volumes**"), extra, &means)
    }
}

/// SAM(box) on labelled pairs, reading slice embeddings through the cache in `cache_dir` (the
/// one `train` and `eval` fill).
pub fn run(
    sam: &Sam,
    pairs: &[(String, PathBuf, PathBuf)],
    cache_dir: &Path,
    out: Option<&Path>,
) -> Result<(), String> {
    let started = Instant::now();
    let names: Vec<&str> = CLASSES.iter().map(|c| c.1).collect();
    let mut dice_table = DiceTable::new(&names, &["slices"]);
    let mut table = dice_table.header();
    let mut slices = 0;
    for pair in pairs {
        let t = Instant::now();
        let case = super::train::Case::load(sam, pair, cache_dir)?;
        let pred = box_segment_volume(sam, &case.prepared, &case.truth, |z| {
            case.embeddings.slice(z, &sam.device)
        });
        let scores = case.dice(&pred, CLASSES.len() + 1);
        let count = case.prepared.slice_count();
        slices += count;
        let row = dice_table.row(&case.name, &[count.to_string()], &scores);
        eprintln!("{row} {:.1} s", t.elapsed().as_secs_f64());
        table.push_str(&row);
        table.push('\n');
    }
    table.push_str(&dice_table.mean_row(&[slices.to_string()]));
    table.push('\n');
    let elapsed = started.elapsed().as_secs_f64();
    let summary = format!(
        "\n{} volumes, {slices} slices in {elapsed:.0} s ({:.2} s per slice, encoder and decoder).\n",
        pairs.len(),
        elapsed / slices.max(1) as f64
    );
    print!("{table}{summary}");
    if let Some(out) = out {
        std::fs::write(out, format!("{table}{summary}"))
            .map_err(|e| format!("{}: {e}", out.display()))?;
    }
    Ok(())
}

pub fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}
