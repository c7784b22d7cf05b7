//! The volume-level steps around the model: a volume to per-slice encoder inputs, and per-slice
//! label maps back to a label volume in the source's voxel grid.

use crate::preprocess::{Letterbox, percentiles_nonzero, window_to_unit};
use crate::volume::{Volume, plane_indices};

/// How a volume's slices become encoder inputs, one slice at a time: LiteMedSAM's clip window
/// (the volume's 0.5-99.5 percentiles of non-zero voxels, to [0, 1]) found once, then each slice
/// windowed and letterboxed when it is asked for. The page makes its inputs this way, so a
/// 300-slice CT never holds all of them at once.
#[derive(Debug, Clone, Copy)]
pub struct SliceInputs {
    pub dims: [usize; 3],
    pub axis: usize,
    pub letterbox: Letterbox,
    /// None for a volume without non-zero voxels: its inputs are all zero.
    window: Option<(f32, f32)>,
}

impl SliceInputs {
    pub fn new(volume: &Volume, size: usize) -> Self {
        let axis = volume.slice_axis();
        let (r, c) = Volume::plane_axes(axis);
        Self {
            dims: volume.dims,
            axis,
            letterbox: Letterbox::new(volume.dims[r], volume.dims[c], size),
            window: percentiles_nonzero(&volume.data, 0.5, 99.5),
        }
    }

    pub fn slice_count(&self) -> usize {
        self.dims[self.axis]
    }

    /// Slice `z`'s [3, S, S] encoder input (`volume` is the one this was made from).
    pub fn input(&self, volume: &Volume, z: usize) -> Vec<f32> {
        let mut slice = volume.slice(self.axis, z);
        match self.window {
            Some((lo, hi)) => window_to_unit(&mut slice.data, lo, hi),
            None => slice.data.fill(0.0),
        }
        self.letterbox.image(&slice)
    }
}

/// A volume cut into encoder inputs along its slice axis, all at once (the study's volumes).
#[derive(Debug, Clone)]
pub struct PreparedVolume {
    pub dims: [usize; 3],
    pub axis: usize,
    pub letterbox: Letterbox,
    /// Per slice, the [3, S, S] encoder input.
    pub inputs: Vec<Vec<f32>>,
}

impl PreparedVolume {
    /// Every slice's input of [`SliceInputs`].
    pub fn new(volume: &Volume, size: usize) -> Self {
        let s = SliceInputs::new(volume, size);
        Self {
            dims: s.dims,
            axis: s.axis,
            letterbox: s.letterbox,
            inputs: (0..s.slice_count()).map(|z| s.input(volume, z)).collect(),
        }
    }

    pub fn slice_count(&self) -> usize {
        self.inputs.len()
    }
}

/// The label slice `index` along `axis` of a label volume, row-major like [`Volume::slice`].
pub fn label_slice(labels: &[u8], dims: [usize; 3], axis: usize, index: usize) -> Vec<u8> {
    plane_indices(dims, axis, index)
        .map(|v| labels[v])
        .collect()
}

/// Writes a slice's labels into a label volume: the inverse of [`label_slice`].
pub fn put_label_slice(
    labels: &mut [u8],
    dims: [usize; 3],
    axis: usize,
    index: usize,
    plane: &[u8],
) {
    for (v, &l) in plane_indices(dims, axis, index).zip(plane) {
        labels[v] = l;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phantom::cardiac_phantom;

    #[test]
    fn raw_scanner_intensities_give_the_same_inputs() {
        // Another scanner stores the same image as 12-bit counts: the volume's own percentile
        // window absorbs the scale, so the encoder sees what it sees for the [0, 1] volume.
        let (unit, _) = cardiac_phantom([48, 40, 3], 0);
        let mut raw = unit.clone();
        raw.data.iter_mut().for_each(|v| *v *= 4095.0);
        let (a, b) = (
            PreparedVolume::new(&unit, 64),
            PreparedVolume::new(&raw, 64),
        );
        let worst = a
            .inputs
            .iter()
            .flatten()
            .zip(b.inputs.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "inputs differ by {worst}");
        assert!(a.inputs.iter().flatten().any(|&v| v > 0.5));
    }
}
