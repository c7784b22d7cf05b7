//! The volume-level steps around the model: a volume to per-slice encoder inputs, and per-slice
//! label maps back to a label volume in the source's voxel grid.

use crate::preprocess::{Letterbox, normalize_volume};
use crate::volume::{Volume, plane_indices};

/// A volume cut into encoder inputs along its slice axis.
#[derive(Debug, Clone)]
pub struct PreparedVolume {
    pub dims: [usize; 3],
    pub axis: usize,
    pub letterbox: Letterbox,
    /// Per slice, the [3, S, S] encoder input.
    pub inputs: Vec<Vec<f32>>,
}

impl PreparedVolume {
    /// LiteMedSAM's preprocessing: the volume clipped to its 0.5-99.5 percentiles and scaled to
    /// [0, 1], then each slice letterboxed to `size`.
    pub fn new(volume: &Volume, size: usize) -> Self {
        let axis = volume.slice_axis();
        let normalized = Volume {
            data: normalize_volume(&volume.data),
            ..volume.clone()
        };
        let (r, c) = Volume::plane_axes(axis);
        let letterbox = Letterbox::new(volume.dims[r], volume.dims[c], size);
        let inputs = (0..volume.slice_count(axis))
            .map(|z| letterbox.image(&normalized.slice(axis, z)))
            .collect();
        Self {
            dims: volume.dims,
            axis,
            letterbox,
            inputs,
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
