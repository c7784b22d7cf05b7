//! Connected components of a label volume: each class cut down to its largest 3-D piece, the
//! post-processing nnU-Net applies to structures that are one organ (a ventricle, the
//! myocardium). A head's stray islands (a patch of "RV" in the liver, a speck of "LV" in a slice
//! outside the heart) are the errors it makes most on scans it has not seen.
//!
//! The volume itself holds the marks: a flood fill turns a piece into [`MARK`] and counts it, so
//! no array of component ids the size of the volume is needed (a 512 x 512 x 300 CT would need
//! 300 MB of them). The fill is breadth-first: its queue holds a front, not a whole piece.

use std::collections::VecDeque;

/// What a head's label volume keeps of each class's voxels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    all(feature = "cli", not(target_arch = "wasm32")),
    derive(clap::ValueEnum)
)]
pub enum Pieces {
    /// Every voxel the head labels: for structures that come in many pieces (lesions).
    All,
    /// Each class's largest piece and those at least half its size: one organ per class.
    #[default]
    Largest,
}

impl Pieces {
    /// Applies the rule to a label volume of classes `1..classes`; returns the voxels cleared.
    pub fn apply(self, labels: &mut [u8], dims: [usize; 3], classes: usize) -> usize {
        match self {
            Self::All => 0,
            Self::Largest => {
                let classes: Vec<u8> = (1..classes.min(MARK as usize) as u8).collect();
                keep_largest(labels, dims, &classes)
            }
        }
    }
}

/// A value no class takes while a piece is being measured.
const MARK: u8 = u8::MAX;

/// Voxels of one piece at least this large are kept beside the largest: a second piece this big
/// is anatomy the head saw (a ventricle cut in two by a thick slice gap), not an island.
const KEEP_FRACTION: f64 = 0.5;

/// In `labels` ([x, y, z] = `dims`, x fastest), every class in `classes` keeps its largest
/// 26-connected piece and any piece at least half as large; the other pieces become background.
/// Returns the voxels it cleared.
pub fn keep_largest(labels: &mut [u8], dims: [usize; 3], classes: &[u8]) -> usize {
    assert_eq!(labels.len(), dims.iter().product::<usize>(), "label volume");
    let mut cleared = 0;
    let mut queue = VecDeque::new();
    for &class in classes {
        assert_ne!(class, MARK, "class {MARK} is the fill's mark");
        // Each piece as (a voxel of it, its size), found by filling it with MARK.
        let mut pieces = Vec::new();
        for v in 0..labels.len() {
            if labels[v] == class {
                let size = fill(labels, dims, v, class, MARK, &mut queue);
                pieces.push((v, size));
            }
        }
        let Some(largest) = pieces.iter().map(|p| p.1).max() else {
            continue;
        };
        for (seed, size) in pieces {
            if size as f64 >= KEEP_FRACTION * largest as f64 {
                fill(labels, dims, seed, MARK, class, &mut queue);
            } else {
                cleared += size;
            }
        }
        labels
            .iter_mut()
            .filter(|l| **l == MARK)
            .for_each(|l| *l = 0);
    }
    cleared
}

/// Turns the 26-connected piece of `from` voxels holding `seed` into `to`; returns its size.
fn fill(
    labels: &mut [u8],
    [nx, ny, nz]: [usize; 3],
    seed: usize,
    from: u8,
    to: u8,
    queue: &mut VecDeque<usize>,
) -> usize {
    labels[seed] = to;
    queue.push_back(seed);
    let mut size = 0;
    while let Some(v) = queue.pop_front() {
        size += 1;
        let (x, y, z) = (v % nx, (v / nx) % ny, v / (nx * ny));
        for k in z.saturating_sub(1)..(z + 2).min(nz) {
            for j in y.saturating_sub(1)..(y + 2).min(ny) {
                for i in x.saturating_sub(1)..(x + 2).min(nx) {
                    let n = i + nx * (j + ny * k);
                    if labels[n] == from {
                        labels[n] = to;
                        queue.push_back(n);
                    }
                }
            }
        }
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 6 x 5 x 3 volume of background.
    fn volume() -> (Vec<u8>, [usize; 3]) {
        (vec![0; 6 * 5 * 3], [6, 5, 3])
    }

    fn at(dims: [usize; 3], x: usize, y: usize, z: usize) -> usize {
        x + dims[0] * (y + dims[1] * z)
    }

    #[test]
    fn islands_go_and_the_largest_piece_stays_whole() {
        let (mut labels, d) = volume();
        // Class 1: a 2 x 2 x 3 column (12 voxels), diagonal across slices counts as touching.
        for z in 0..3 {
            for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                labels[at(d, x + z / 2, y, z)] = 1;
            }
        }
        // Class 1: a far island of 2; class 2: one piece of 3, which is its largest.
        labels[at(d, 5, 4, 0)] = 1;
        labels[at(d, 5, 4, 1)] = 1;
        for x in 3..6 {
            labels[at(d, x, 2, 2)] = 2;
        }
        let before = labels.clone();
        let cleared = keep_largest(&mut labels, d, &[1, 2]);
        assert_eq!(cleared, 2);
        assert_eq!(labels[at(d, 5, 4, 0)], 0);
        assert_eq!(labels[at(d, 5, 4, 1)], 0);
        let changed = labels.iter().zip(&before).filter(|(a, b)| a != b).count();
        assert_eq!(changed, 2, "only the island changes");
        assert!(!labels.contains(&MARK));
    }

    #[test]
    fn a_second_piece_half_as_large_stays() {
        let (mut labels, d) = volume();
        for x in 0..4 {
            labels[at(d, x, 0, 0)] = 3;
        }
        for x in 0..2 {
            labels[at(d, x, 4, 2)] = 3;
        }
        let before = labels.clone();
        assert_eq!(keep_largest(&mut labels, d, &[3]), 0);
        assert_eq!(labels, before);
    }

    #[test]
    fn all_keeps_every_piece_and_largest_reaches_each_class() {
        let (mut labels, d) = volume();
        for z in 0..3 {
            labels[at(d, 0, 0, z)] = 1;
        }
        labels[at(d, 5, 4, 2)] = 1;
        labels[at(d, 3, 0, 0)] = 2;
        for x in 2..5 {
            labels[at(d, x, 4, 2)] = 2;
        }
        let before = labels.clone();
        assert_eq!(Pieces::All.apply(&mut labels, d, 3), 0);
        assert_eq!(labels, before);
        assert_eq!(Pieces::Largest.apply(&mut labels, d, 3), 2);
        assert_eq!(labels[at(d, 5, 4, 2)], 0);
        assert_eq!(labels[at(d, 3, 0, 0)], 0);
    }
}
