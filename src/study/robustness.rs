//! How a head holds up on scans unlike its training data: every slice of held-out volumes
//! changed the way another centre's scanner or protocol changes it (orientation, mirroring,
//! field of view, contrast, noise), encoded once (cached) and scored with 3-D Dice on the
//! encoder's grid. Raw scanner intensities need no row: preprocessing clips and scales each
//! volume by its own percentiles, so any linear intensity scale gives the same encoder inputs
//! (`preprocess`'s tests hold that).

use std::path::Path;

use super::data::Case;
use super::score::{DiceTable, Encoding, Scored, cpu_dense_pe, second_look, unreadable};
use crate::augment::Augment;
use crate::error::Result;
use crate::heads::Segmenter;
use crate::metrics::dice;
use crate::model::Sam;
use crate::train::{Sample, predict_all};

/// One change a scan from elsewhere brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    /// The volume as it is: the baseline.
    AsAcquired,
    /// A quarter turn: another in-plane orientation.
    Rotated,
    /// Left and right swapped: another handedness of the voxel axes.
    Mirrored,
    /// The heart at 65% of its size: a wider field of view or coarser pixels.
    WideField,
    /// The heart at 150%: a narrower field of view or finer pixels.
    NarrowField,
    /// Gamma 1.6: darker mid-tones, as another sequence's contrast gives.
    Contrast,
    /// Gaussian noise of a twentieth of the intensity range.
    Noise,
}

impl Shift {
    pub const ALL: [Shift; 7] = [
        Self::AsAcquired,
        Self::Rotated,
        Self::Mirrored,
        Self::WideField,
        Self::NarrowField,
        Self::Contrast,
        Self::Noise,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::AsAcquired => "as acquired",
            Self::Rotated => "rotated 90 degrees",
            Self::Mirrored => "mirrored",
            Self::WideField => "wider field (heart at 65%)",
            Self::NarrowField => "narrower field (heart at 150%)",
            Self::Contrast => "darker contrast (gamma 1.6)",
            Self::Noise => "noise (sigma 0.05)",
        }
    }

    /// Its part of the cache key of the changed slices' embeddings.
    fn tag(self) -> &'static str {
        match self {
            Self::AsAcquired => "as-acquired",
            Self::Rotated => "shift-rot90",
            Self::Mirrored => "shift-mirror",
            Self::WideField => "shift-scale0.65",
            Self::NarrowField => "shift-scale1.5",
            Self::Contrast => "shift-gamma1.6",
            Self::Noise => "shift-noise0.05",
        }
    }

    /// The change to slice `z` (the noise differs per slice).
    fn augment(self, z: usize) -> Augment {
        let id = Augment::IDENTITY;
        match self {
            Self::AsAcquired => id,
            Self::Rotated => Augment {
                angle: 90f32.to_radians(),
                ..id
            },
            Self::Mirrored => Augment { flip: true, ..id },
            Self::WideField => Augment { scale: 0.65, ..id },
            Self::NarrowField => Augment { scale: 1.5, ..id },
            Self::Contrast => Augment { gamma: 1.6, ..id },
            Self::Noise => Augment {
                noise: 0.05,
                noise_seed: z as u64 + 1,
                ..id
            },
        }
    }

    /// Slices of `case` with this change, in order.
    fn samples(self, sam: &Sam, case: &Case, cache_dir: &Path) -> Result<Vec<Sample>> {
        if self == Self::AsAcquired {
            return Ok(case.embedding_samples());
        }
        let draws: Vec<(usize, Augment)> = (0..case.prepared.slice_count())
            .map(|z| (z, self.augment(z)))
            .collect();
        let warped = case.warped(sam, &draws, self.tag(), cache_dir)?;
        Ok(warped.into_iter().map(|(_, s)| s).collect())
    }
}

/// Per foreground class, the 3-D Dice of the scored head on `case` changed by `shift` (the
/// slices' `samples`), on the encoder's grid.
fn volume_dice<M: Segmenter>(
    encoding: &Encoding,
    scored: &Scored<M>,
    (case, shift): (&Case, Shift),
    samples: &[Sample],
) -> Result<Vec<Option<f64>>> {
    let (head, classes) = (scored.head, scored.head.classes());
    let mut pred = predict_all(head, samples, encoding.dense_pe).ok_or_else(unreadable)?;
    // The slices' square label maps stacked: [S, S, slices], x fastest.
    let side = (pred.len() / samples.len().max(1)).isqrt();
    let dims = [side, side, samples.len()];
    scored.pieces.apply(&mut pred, dims, classes);
    if let Some(target) = scored.zoom {
        let base = |z| shift.augment(z);
        if let Some(second) = second_look(encoding, head, case, &pred, target, base, shift.tag())? {
            pred = second;
            scored.pieces.apply(&mut pred, dims, classes);
        }
    }
    let truth: Vec<u8> = samples
        .iter()
        .flat_map(|s| s.labels.iter().copied())
        .collect();
    Ok((1..classes as u8).map(|k| dice(&pred, &truth, k)).collect())
}

/// The head's mean 3-D Dice per class under each shift over `cases`: the markdown table, each
/// volume's row also handed to `on_row` as it is made.
pub fn table<M: Segmenter>(
    sam: &Sam,
    scored: &Scored<M>,
    cases: &[Case],
    shifts: &[Shift],
    cache_dir: &Path,
    mut on_row: impl FnMut(&str),
) -> Result<String> {
    let classes = scored.classes;
    let pe = cpu_dense_pe(sam);
    let encoding = Encoding {
        sam,
        dense_pe: &pe,
        cache_dir,
    };
    let mut summary = DiceTable::for_classes(classes, &[]).header();
    summary = summary.replacen("| volume |", "| change |", 1);
    for &shift in shifts {
        let mut table = DiceTable::for_classes(classes, &[]);
        for case in cases {
            let samples = shift.samples(sam, case, cache_dir)?;
            let scores = volume_dice(&encoding, scored, (case, shift), &samples)?;
            on_row(&table.row(&format!("{} ({})", case.name, shift.label()), &[], &scores));
        }
        let row = table.means_as(shift.label(), &[]);
        on_row(&row);
        summary.push_str(&row);
        summary.push('\n');
    }
    Ok(summary)
}
