//! Voxel-to-world geometry from a validated NIfTI-1 header, computed here rather than with the
//! `nifti` crate's `qform_affine`, which panics on a negative pixdim.

use nifti::NiftiHeader;

/// Row-major 4x4 voxel (i, j, k) to world (x, y, z in RAS+ millimetres) matrix.
pub type Affine = [[f64; 4]; 4];

/// Which of the header's transforms the affine came from, in NIfTI's order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffineSource {
    Sform,
    Qform,
    Pixdim,
}

pub fn affine(h: &NiftiHeader) -> (Affine, AffineSource) {
    if h.sform_code > 0 {
        (sform_affine(h), AffineSource::Sform)
    } else if h.qform_code > 0 {
        (qform_affine(h), AffineSource::Qform)
    } else {
        let s = spacing(h);
        let mut a = identity();
        for (i, row) in a.iter_mut().enumerate().take(3) {
            row[i] = s[i];
        }
        (a, AffineSource::Pixdim)
    }
}

/// Voxel spacing as magnitudes; the sign of pixdim carries no meaning outside qfac.
pub fn spacing(h: &NiftiHeader) -> [f64; 3] {
    [1, 2, 3].map(|i| {
        let p = (h.pixdim[i] as f64).abs();
        if p.is_finite() && p > 0.0 { p } else { 1.0 }
    })
}

fn identity() -> Affine {
    let mut a = [[0.0; 4]; 4];
    for (i, row) in a.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    a
}

fn sform_affine(h: &NiftiHeader) -> Affine {
    let mut a = identity();
    for (row, src) in a.iter_mut().zip([h.srow_x, h.srow_y, h.srow_z]) {
        for (dst, s) in row.iter_mut().zip(src) {
            *dst = s as f64;
        }
    }
    a
}

/// The quaternion form of the NIfTI-1 standard (nifti1.h, "METHOD 2").
fn qform_affine(h: &NiftiHeader) -> Affine {
    let (b, c, d) = (h.quatern_b as f64, h.quatern_c as f64, h.quatern_d as f64);
    let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
    let r = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let s = spacing(h);
    let scale = [s[0], s[1], s[2] * qfac];
    let offset = [h.quatern_x, h.quatern_y, h.quatern_z];
    let mut m = identity();
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = r[i][j] * scale[j];
        }
        m[i][3] = offset[i] as f64;
    }
    m
}

/// Three letters naming the world direction each voxel axis points to (nibabel's `aff2axcodes`):
/// "RAS" for an identity affine.
pub fn orientation(a: &Affine) -> String {
    const LETTERS: [[char; 2]; 3] = [['L', 'R'], ['P', 'A'], ['I', 'S']];
    (0..3)
        .map(|col| {
            let row = (0..3)
                .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
                .unwrap_or(col);
            LETTERS[row][usize::from(a[row][col] > 0.0)]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_quaternion_with_spacing_is_diagonal() {
        let mut h = NiftiHeader {
            qform_code: 1,
            sform_code: 0,
            ..Default::default()
        };
        h.pixdim = [1.0, 2.0, 3.0, -4.0, 0.0, 0.0, 0.0, 0.0];
        let (a, src) = affine(&h);
        assert_eq!(src, AffineSource::Qform);
        assert_eq!([a[0][0], a[1][1], a[2][2]], [2.0, 3.0, 4.0]);
        assert_eq!(orientation(&a), "RAS");
    }

    #[test]
    fn qfac_flips_the_third_axis() {
        let mut h = NiftiHeader {
            qform_code: 1,
            sform_code: 0,
            ..Default::default()
        };
        h.pixdim[0] = -1.0;
        let (a, _) = affine(&h);
        assert_eq!(a[2][2], -1.0);
        assert_eq!(orientation(&a), "RAI");
    }

    #[test]
    fn sform_wins_over_qform() {
        let h = NiftiHeader {
            qform_code: 1,
            sform_code: 2,
            srow_x: [-1.0, 0.0, 0.0, 5.0],
            srow_y: [0.0, -1.0, 0.0, 6.0],
            srow_z: [0.0, 0.0, 1.0, 7.0],
            ..Default::default()
        };
        let (a, src) = affine(&h);
        assert_eq!(src, AffineSource::Sform);
        assert_eq!(a[0][3], 5.0);
        assert_eq!(orientation(&a), "LPS");
    }
}
