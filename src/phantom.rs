//! A small deterministic short-axis cardiac phantom (image plus RV/MYO/LV labels, ACDC's codes), so
//! tests and demos run where no real data is at hand.

use nifti::NiftiHeader;

use crate::volume::{Source, Volume};

pub const BACKGROUND: u8 = 0;
pub const RV: u8 = 1;
pub const MYO: u8 = 2;
pub const LV: u8 = 3;
pub const CLASS_NAMES: [&str; 4] = ["background", "RV", "MYO", "LV"];

/// Image and label volumes of `dims` (i, j, k = short axis), same geometry. `seed` varies the
/// noise only, so every seed has the same labels.
pub fn cardiac_phantom(dims: [usize; 3], seed: u64) -> (Volume, Volume) {
    let [nx, ny, nz] = dims;
    let header = header(dims, [1.5, 1.5, 8.0]);
    let mut image = vec![0.0f32; nx * ny * nz];
    let mut labels = vec![0.0f32; nx * ny * nz];
    let mut rng = SplitMix(seed ^ 0x5eed_ca4d);
    let s = nx.min(ny) as f32;
    for k in 0..nz {
        // Base to apex: the ventricles narrow and the RV fades out.
        let t = if nz > 1 {
            k as f32 / (nz - 1) as f32
        } else {
            0.0
        };
        let (cx, cy) = (nx as f32 * 0.52, ny as f32 * 0.5);
        let lv_r = s * (0.14 - 0.06 * t);
        let myo_r = lv_r + s * 0.06;
        let rv = (cx - s * 0.02, cy - s * (0.22 - 0.04 * t));
        let rv_r = (s * (0.11 - 0.08 * t), s * (0.17 - 0.07 * t));
        for j in 0..ny {
            for i in 0..nx {
                let (x, y) = (i as f32 + 0.5, j as f32 + 0.5);
                let d = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
                let in_rv = ((x - rv.0) / rv_r.0).powi(2) + ((y - rv.1) / rv_r.1).powi(2) <= 1.0;
                let body = ((x - cx) / (nx as f32 * 0.45)).powi(2)
                    + ((y - cy) / (ny as f32 * 0.47)).powi(2)
                    <= 1.0;
                let (label, level) = if d <= lv_r {
                    (LV, 0.85)
                } else if d <= myo_r {
                    (MYO, 0.3)
                } else if in_rv && rv_r.0 > 1.0 {
                    (RV, 0.75)
                } else if body {
                    (BACKGROUND, 0.2 + 0.1 * ((x * 0.3).sin() * (y * 0.2).cos()))
                } else {
                    (BACKGROUND, 0.0)
                };
                let idx = i + nx * (j + ny * k);
                labels[idx] = label as f32;
                let noise = if level > 0.0 {
                    0.04 * rng.normal()
                } else {
                    0.0
                };
                image[idx] = (level + noise).max(0.0) * 1000.0;
            }
        }
    }
    let source = |datatype: &str| Source {
        datatype: datatype.into(),
        frames: 1,
        frame: 0,
        nonfinite_voxels: 0,
        gzipped: false,
    };
    (
        Volume::new(dims, image, header.clone(), source("float32")),
        Volume::new(dims, labels, header, source("uint8")),
    )
}

/// A NIfTI-1 header with the given spacing, qform and sform both scaled identity, millimetres.
pub fn header(dims: [usize; 3], spacing: [f32; 3]) -> NiftiHeader {
    let mut h = NiftiHeader {
        dim: [
            3,
            dims[0] as u16,
            dims[1] as u16,
            dims[2] as u16,
            1,
            1,
            1,
            1,
        ],
        pixdim: [1.0, spacing[0], spacing[1], spacing[2], 0.0, 0.0, 0.0, 0.0],
        qform_code: 1,
        sform_code: 1,
        srow_x: [spacing[0], 0.0, 0.0, 0.0],
        srow_y: [0.0, spacing[1], 0.0, 0.0],
        srow_z: [0.0, 0.0, spacing[2], 0.0],
        xyzt_units: 2, // millimetres
        magic: *b"n+1\0",
        vox_offset: 352.0,
        ..Default::default()
    };
    h.dim_info = 3 << 4; // slices along k
    h
}

/// SplitMix64 with a Box-Muller normal: tiny, deterministic across platforms.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_is_present_and_nested() {
        let (image, labels) = cardiac_phantom([64, 72, 6], 1);
        for class in [RV, MYO, LV] {
            assert!(labels.data.contains(&(class as f32)), "class {class}");
        }
        // The LV blood pool is bright, the myocardium dark.
        let mean = |c: u8| {
            let v: Vec<f32> = image
                .data
                .iter()
                .zip(&labels.data)
                .filter(|(_, l)| **l == c as f32)
                .map(|(v, _)| *v)
                .collect();
            v.iter().sum::<f32>() / v.len() as f32
        };
        assert!(mean(LV) > 2.0 * mean(MYO));
        assert_eq!(cardiac_phantom([64, 72, 6], 1).0.data, image.data);
        assert_ne!(cardiac_phantom([64, 72, 6], 2).0.data, image.data);
    }
}
