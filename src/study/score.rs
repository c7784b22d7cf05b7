//! Scoring: per-class 3-D Dice tables over volumes, SAM(box) per volume (the paper's protocol:
//! per slice and class present in the ground truth, its tight box widened by 1 px), and a head
//! over labelled volumes.

use std::path::Path;
use std::time::Instant;

use burn::tensor::Tensor;

use super::data::{Case, Pair};
use crate::augment::Augment;
use crate::components::Pieces;
use crate::error::{Error, Result};
use crate::heads::Segmenter;
use crate::heads::store::{ClassInfo, cardiac_classes};
use crate::metrics::mean;
use crate::model::Sam;
use crate::pipeline::{PreparedVolume, label_slice, put_label_slice};
use crate::segment::{boxes_from_labels, segment_boxes};
use crate::train::{Sample, predict_all};
use crate::zoom::Zoom;

/// A Dice value at four decimals, `-` when undefined.
pub fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

/// Per class, the mean of its Dice over volumes.
pub fn class_means(per_volume: &[Vec<Option<f64>>]) -> Vec<Option<f64>> {
    let classes = per_volume.first().map_or(0, Vec::len);
    (0..classes)
        .map(|k| mean(per_volume.iter().map(|d| d[k])))
        .collect()
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

    /// For the foreground classes of `classes` (background first).
    pub fn for_classes(classes: &[ClassInfo], extra: &[&str]) -> Self {
        let names: Vec<&str> = classes.iter().skip(1).map(|c| c.name.as_str()).collect();
        Self::new(&names, extra)
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
        self.means_as(&format!("**mean of {volumes} volumes**"), extra)
    }

    /// The means over volumes in a row named `name`, for a table whose rows are tables.
    pub fn means_as(&self, name: &str, extra: &[String]) -> String {
        let means: Vec<Option<f64>> = self
            .per_class
            .iter()
            .map(|v| mean(v.iter().copied()))
            .collect();
        Self::line(name, extra, &means)
    }
}

/// SAM(box) on one labelled volume (the cardiac classes): the predicted label volume.
/// `embedding` gives slice z's embedding (encoded now, or from the cache).
pub fn box_segment_volume(
    sam: &Sam,
    prepared: &PreparedVolume,
    truth: &[u8],
    mut embedding: impl FnMut(usize) -> Tensor<4>,
) -> Vec<u8> {
    let lb = prepared.letterbox;
    let mut pred = vec![0u8; truth.len()];
    let classes: Vec<u8> = (1..cardiac_classes().len() as u8).collect();
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

/// SAM(box) on labelled pairs, reading slice embeddings through the cache in `cache_dir`:
/// the markdown table (a row per volume, then the mean) and a line of timing. `on_row` sees
/// each row as it is made.
pub fn sam_box(
    sam: &Sam,
    pairs: &[Pair],
    cache_dir: &Path,
    mut on_row: impl FnMut(&str),
) -> Result<String> {
    let started = Instant::now();
    let classes = cardiac_classes();
    let mut dice_table = DiceTable::for_classes(&classes, &["slices"]);
    let mut table = dice_table.header();
    let mut slices = 0;
    for pair in pairs {
        let t = Instant::now();
        let case = Case::load(sam, pair, cache_dir)?;
        let pred = box_segment_volume(sam, &case.prepared, &case.truth, |z| {
            case.embeddings.slice(z, &sam.device)
        });
        let scores = case.dice(&pred, classes.len());
        let count = case.prepared.slice_count();
        slices += count;
        let row = dice_table.row(&case.name, &[count.to_string()], &scores);
        on_row(&format!("{row} {:.1} s", t.elapsed().as_secs_f64()));
        table.push_str(&row);
        table.push('\n');
    }
    table.push_str(&dice_table.mean_row(&[slices.to_string()]));
    table.push('\n');
    let elapsed = started.elapsed().as_secs_f64();
    Ok(format!(
        "{table}\n{} volumes, {slices} slices in {elapsed:.0} s ({:.2} s per slice, encoder and decoder).\n",
        pairs.len(),
        elapsed / slices.max(1) as f64
    ))
}

/// The prompt encoder's positional grid on the CPU backend, as the heads take it.
pub fn cpu_dense_pe(sam: &Sam) -> Tensor<4> {
    sam.prompt_encoder
        .dense_pe()
        .to_device::<4>(&crate::backend::cpu())
}

/// The error of a head whose label maps cannot be read back from its device.
pub fn unreadable() -> Error {
    Error::Invalid("the head's label maps could not be read".into())
}

/// A head as it is scored: the network, its classes (background first) and what its label
/// volumes keep.
pub struct Scored<'a, M> {
    pub head: &'a M,
    pub classes: &'a [ClassInfo],
    pub pieces: Pieces,
    /// A second look, zoomed, at volumes whose structures come out small ([`Zoom`]), up to the
    /// head's training extent given here.
    pub zoom: Option<f32>,
}

/// What encodes slices the head has not seen and caches them: the model, the prompt encoder's
/// positional grid as the heads take it, and the embedding cache.
pub struct Encoding<'a> {
    pub sam: &'a Sam,
    pub dense_pe: &'a Tensor<4>,
    pub cache_dir: &'a Path,
}

/// The second look at `case`'s slices that its first pass's grid label maps (`grid`, slices of
/// S x S, cleaned) call for, each slice as `base(z)` changed it: the second pass's label maps on
/// the unzoomed grid, or None when the structures are large enough already for a head trained
/// on structures spanning `target` of the grid. The zoomed slices' embeddings are cached under
/// `tag` and the zoom.
pub fn second_look<M: Segmenter>(
    encoding: &Encoding,
    head: &M,
    case: &Case,
    grid: &[u8],
    target: f32,
    base: impl Fn(usize) -> Augment,
    tag: &str,
) -> Result<Option<Vec<u8>>> {
    let Encoding {
        sam,
        dense_pe,
        cache_dir,
    } = *encoding;
    let s = case.prepared.letterbox.size;
    let slices: Vec<Vec<u8>> = grid.chunks_exact(s * s).map(<[u8]>::to_vec).collect();
    let Some(zoom) = Zoom::plan(&slices, s, target) else {
        return Ok(None);
    };
    let draws: Vec<(usize, Augment)> = (0..slices.len())
        .map(|z| (z, zoom.after(base(z))))
        .collect();
    let tag = format!(
        "{tag}-zoom{:.3}:{:.1}:{:.1}",
        zoom.scale, zoom.shift[0], zoom.shift[1]
    );
    let samples: Vec<Sample> = case
        .warped(sam, &draws, &tag, cache_dir)?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    let zoomed = predict_all(head, &samples, dense_pe).ok_or_else(unreadable)?;
    Ok(Some(
        zoomed
            .chunks_exact(s * s)
            .flat_map(|z| zoom.unzoom(z))
            .collect(),
    ))
}

/// A head's per-class 3-D Dice on labelled volumes: the markdown table, each row also handed to
/// `on_row` as it is made.
pub fn head_table<M: Segmenter>(
    sam: &Sam,
    scored: &Scored<M>,
    pairs: &[Pair],
    cache_dir: &Path,
    mut on_row: impl FnMut(&str),
) -> Result<String> {
    let Scored {
        head,
        classes,
        pieces,
        zoom,
    } = *scored;
    let pe = cpu_dense_pe(sam);
    let mut table = DiceTable::for_classes(classes, &[]);
    let mut out = table.header();
    on_row(out.trim_end());
    for pair in pairs {
        let case = Case::load(sam, pair, cache_dir)?;
        let mut pred = case.segment(head, false, &pe)?;
        if let Some(target) = zoom {
            let p = &case.prepared;
            let s = p.letterbox.size;
            let mut grid =
                predict_all(head, &case.embedding_samples(), &pe).ok_or_else(unreadable)?;
            pieces.apply(&mut grid, [s, s, p.slice_count()], head.classes());
            let base = |_| Augment::IDENTITY;
            let encoding = Encoding {
                sam,
                dense_pe: &pe,
                cache_dir,
            };
            if let Some(g) =
                second_look(&encoding, head, &case, &grid, target, base, "as-acquired")?
            {
                for (z, plane) in g.chunks_exact(s * s).enumerate() {
                    put_label_slice(
                        &mut pred,
                        p.dims,
                        p.axis,
                        z,
                        &p.letterbox.labels_to_slice(plane),
                    );
                }
            }
        }
        pieces.apply(&mut pred, case.prepared.dims, head.classes());
        let row = table.row(&case.name, &[], &case.dice(&pred, head.classes()));
        on_row(&row);
        out.push_str(&row);
        out.push('\n');
    }
    let mean = table.mean_row(&[]);
    on_row(&mean);
    out.push_str(&mean);
    out.push('\n');
    Ok(out)
}
