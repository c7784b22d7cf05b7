//! A decoded scalar volume and its 2-D slices. Voxels are f32 in NIfTI's order (i fastest), with the
//! source header kept whole so an exported segmentation carries the same geometry.

use nifti::NiftiHeader;
use serde::Serialize;

use crate::nii::geometry::{self, Affine, AffineSource};

/// What the file was, beyond its geometry: shown to the user, kept for export.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub datatype: String,
    pub frames: usize,
    pub frame: usize,
    /// NaN/Inf voxels, read as 0.
    pub nonfinite_voxels: usize,
    pub gzipped: bool,
}

#[derive(Debug, Clone)]
pub struct Volume {
    pub dims: [usize; 3],
    pub data: Vec<f32>,
    pub header: NiftiHeader,
    pub source: Source,
}

/// One 2-D slice, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

/// The header facts `autosam info` prints and the page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub dims: [usize; 3],
    pub spacing_mm: [f64; 3],
    pub datatype: String,
    pub orientation: String,
    pub affine_from: String,
    pub intensity_min: f32,
    pub intensity_max: f32,
    pub frames: usize,
    pub frame: usize,
    pub slice_axis: usize,
    pub nonfinite_voxels: usize,
    pub looks_like_labels: bool,
}

impl Volume {
    pub fn new(dims: [usize; 3], data: Vec<f32>, header: NiftiHeader, source: Source) -> Self {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        Self {
            dims,
            data,
            header,
            source,
        }
    }

    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }

    pub fn spacing(&self) -> [f64; 3] {
        geometry::spacing(&self.header)
    }

    pub fn affine(&self) -> (Affine, AffineSource) {
        geometry::affine(&self.header)
    }

    pub fn intensity_range(&self) -> (f32, f32) {
        min_max(&self.data)
    }

    /// The axis the slices were acquired along: the header's slice_dim when set, else the axis of
    /// coarsest spacing (MRI slices are thicker than their in-plane pixels), else the shortest
    /// axis, else k.
    pub fn slice_axis(&self) -> usize {
        let slice_dim = ((self.header.dim_info >> 4) & 3) as usize;
        if (1..=3).contains(&slice_dim) {
            return slice_dim - 1;
        }
        let s = self.spacing();
        let coarsest = (0..3).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap_or(2);
        if (0..3)
            .filter(|&a| a != coarsest)
            .all(|a| s[coarsest] > s[a] * 1.01)
        {
            return coarsest;
        }
        let shortest = (0..3).min_by_key(|&a| (self.dims[a], 2 - a)).unwrap_or(2);
        if (0..3)
            .filter(|&a| a != shortest)
            .all(|a| self.dims[shortest] < self.dims[a])
        {
            return shortest;
        }
        2
    }

    /// The two in-plane axes of a slice along `axis`: rows, then columns (NIfTI i before j, so
    /// an axial slice has rows along i, as the reference fixtures lay it out).
    pub fn plane_axes(axis: usize) -> (usize, usize) {
        match axis {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        }
    }

    pub fn slice_count(&self, axis: usize) -> usize {
        self.dims[axis.min(2)]
    }

    pub fn slice(&self, axis: usize, index: usize) -> Slice {
        let (r, c) = Self::plane_axes(axis);
        Slice {
            height: self.dims[r],
            width: self.dims[c],
            data: plane_indices(self.dims, axis, index)
                .map(|v| self.data[v])
                .collect(),
        }
    }

    /// The voxels as label codes (a label map's values are whole numbers in 0..=255).
    pub fn labels(&self) -> Vec<u8> {
        self.data.iter().map(|&v| v as u8).collect()
    }

    /// Integer values only, and few of them: a segmentation rather than an image.
    pub fn looks_like_labels(&self) -> bool {
        let mut seen = [false; 256];
        let mut distinct = 0;
        for &v in &self.data {
            if v.fract() != 0.0 || !(0.0..256.0).contains(&v) {
                return false;
            }
            let v = v as usize;
            if !seen[v] {
                seen[v] = true;
                distinct += 1;
            }
        }
        distinct <= 32
    }

    pub fn summary(&self) -> Summary {
        let (affine, from) = self.affine();
        let (lo, hi) = self.intensity_range();
        Summary {
            dims: self.dims,
            spacing_mm: self.spacing(),
            datatype: self.source.datatype.clone(),
            orientation: geometry::orientation(&affine),
            affine_from: format!("{from:?}").to_lowercase(),
            intensity_min: lo,
            intensity_max: hi,
            frames: self.source.frames,
            frame: self.source.frame,
            slice_axis: self.slice_axis(),
            nonfinite_voxels: self.source.nonfinite_voxels,
            looks_like_labels: self.looks_like_labels(),
        }
    }
}

/// The voxel indices of slice `index` along `axis`, in the slice's row-major order (rows along
/// the first in-plane axis): the one place that maps a slice to the volume's memory.
pub fn plane_indices(dims: [usize; 3], axis: usize, index: usize) -> impl Iterator<Item = usize> {
    let (r, c) = Volume::plane_axes(axis);
    (0..dims[r]).flat_map(move |y| {
        (0..dims[c]).map(move |x| {
            let mut ijk = [0usize; 3];
            ijk[axis] = index;
            ijk[r] = y;
            ijk[c] = x;
            ijk[0] + dims[0] * (ijk[1] + dims[1] * ijk[2])
        })
    })
}

/// Smallest and largest value; (inf, -inf) for an empty slice.
pub fn min_max(data: &[f32]) -> (f32, f32) {
    data.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [x, y, z] = self.dims;
        let [sx, sy, sz] = self.spacing_mm;
        writeln!(f, "dims         {x} x {y} x {z}")?;
        writeln!(f, "spacing      {sx:.4} x {sy:.4} x {sz:.4} mm")?;
        writeln!(f, "datatype     {}", self.datatype)?;
        writeln!(
            f,
            "orientation  {} (from {})",
            self.orientation, self.affine_from
        )?;
        writeln!(
            f,
            "intensity    {} .. {}",
            self.intensity_min, self.intensity_max
        )?;
        writeln!(f, "frames       {} (showing {})", self.frames, self.frame)?;
        writeln!(f, "slice axis   {}", ["i", "j", "k"][self.slice_axis])?;
        if self.nonfinite_voxels > 0 {
            writeln!(f, "non-finite   {} voxels read as 0", self.nonfinite_voxels)?;
        }
        write!(
            f,
            "content      {}",
            if self.looks_like_labels {
                "label map"
            } else {
                "image"
            }
        )
    }
}
