//! Volume -> encoder input, and encoder-sized masks -> back to the slice. Follows LiteMedSAM's
//! pipeline: per volume, clip to the 0.5-99.5 percentiles of non-zero voxels and scale to [0, 1];
//! per slice, resize the longest side to the encoder's size, min-max again, zero-pad bottom/right
//! and repeat to 3 channels.

use fast_image_resize::{
    FilterType, ResizeAlg, ResizeOptions, Resizer, images::TypedImage, pixels::F32,
};

use crate::volume::{Slice, min_max};

pub const LITEMEDSAM_SIZE: usize = 256;

/// Numpy's default (linear) percentiles of the non-zero voxels, `None` when all are zero.
pub fn percentiles_nonzero(data: &[f32], lo_pct: f64, hi_pct: f64) -> Option<(f32, f32)> {
    // Small volumes: a copy and two selections. Large ones (a CT of 78 M voxels would copy
    // 300 MB, and wasm memory never shrinks): counting passes, the same values without a copy.
    if data.len() > COPY_LIMIT {
        let n = data.iter().filter(|&&x| x != 0.0).count();
        return (n > 0).then(|| {
            let p = |pct| percentile_by(n, pct, |rank| nth_nonzero(data, rank));
            (p(lo_pct), p(hi_pct))
        });
    }
    let mut v: Vec<f32> = data.iter().copied().filter(|&x| x != 0.0).collect();
    if v.is_empty() {
        return None;
    }
    let lo = percentile_by(v.len(), lo_pct, |rank| nth(&mut v, rank));
    let hi = percentile_by(v.len(), hi_pct, |rank| nth(&mut v, rank));
    Some((lo, hi))
}

/// Voxels above which percentiles are counted rather than selected from a copy.
const COPY_LIMIT: usize = 1 << 24;

/// NumPy's linear percentile of `n` values, given their `rank`-th smallest (from 0).
fn percentile_by(n: usize, pct: f64, mut nth: impl FnMut(usize) -> f32) -> f32 {
    let pos = pct.clamp(0.0, 100.0) / 100.0 * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = (pos - lo as f64) as f32;
    let a = nth(lo);
    if frac == 0.0 || lo + 1 >= n {
        return a;
    }
    let b = nth(lo + 1);
    if b.is_finite() { a + (b - a) * frac } else { a }
}

fn nth(v: &mut [f32], rank: usize) -> f32 {
    *v.select_nth_unstable_by(rank, f32::total_cmp).1
}

/// An order-preserving key of an f32 (`f32::total_cmp`'s order) and back.
fn key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 { !b } else { b | 0x8000_0000 }
}

fn from_key(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7fff_ffff } else { !k })
}

/// The `rank`-th smallest non-zero value (from 0): a histogram of the keys' high 16 bits finds
/// its bin, a second of the low 16 bits within that bin finds the value.
fn nth_nonzero(data: &[f32], rank: usize) -> f32 {
    let find = |hist: &[usize], mut rank: usize| {
        for (bin, &count) in hist.iter().enumerate() {
            if rank < count {
                return (bin as u32, rank);
            }
            rank -= count;
        }
        (hist.len() as u32 - 1, 0)
    };
    let mut hist = vec![0usize; 1 << 16];
    for &x in data.iter().filter(|&&x| x != 0.0) {
        hist[(key(x) >> 16) as usize] += 1;
    }
    let (high, rank) = find(&hist, rank);
    hist.fill(0);
    for k in data.iter().filter(|&&x| x != 0.0).map(|&x| key(x)) {
        if k >> 16 == high {
            hist[(k & 0xffff) as usize] += 1;
        }
    }
    let (low, _) = find(&hist, rank);
    from_key(high << 16 | low)
}

/// Clips to the window and scales to [0, 1] in place; a flat window leaves zeros.
pub fn window_to_unit(data: &mut [f32], lo: f32, hi: f32) {
    let range = hi - lo;
    for v in data {
        *v = if range > 0.0 {
            (v.clamp(lo, hi) - lo) / range
        } else {
            0.0
        };
    }
}

/// The volume-level step: 0.5-99.5 percentile clip of non-zero voxels, then [0, 1].
pub fn normalize_volume(data: &[f32]) -> Vec<f32> {
    let mut out = data.to_vec();
    match percentiles_nonzero(data, 0.5, 99.5) {
        Some((lo, hi)) => window_to_unit(&mut out, lo, hi),
        None => out.fill(0.0),
    }
    out
}

/// The resize-and-pad geometry between a slice and the square encoder input; its methods are
/// each other's inverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Letterbox {
    pub size: usize,
    pub height: usize,
    pub width: usize,
    /// The slice's extent inside the encoder input; the rest is padding.
    pub inner_height: usize,
    pub inner_width: usize,
}

impl Letterbox {
    pub fn new(height: usize, width: usize, size: usize) -> Self {
        let scale = Self::scale_for(height, width, size);
        // LiteMedSAM's rounding: int(x * scale + 0.5).
        let fit = |x: usize| ((x as f64 * scale + 0.5) as usize).clamp(1, size);
        Self {
            size,
            height,
            width,
            inner_height: fit(height),
            inner_width: fit(width),
        }
    }

    fn scale_for(height: usize, width: usize, size: usize) -> f64 {
        size as f64 / height.max(width).max(1) as f64
    }

    /// Encoder-input pixels per slice pixel (the longest side maps to `size`).
    pub fn scale(&self) -> f64 {
        Self::scale_for(self.height, self.width, self.size)
    }

    /// A [0, 1] slice -> `[3, size, size]` encoder input, channel-major.
    pub fn image(&self, slice: &Slice) -> Vec<f32> {
        let upscale = self.inner_height > self.height || self.inner_width > self.width;
        // Area averaging when shrinking (OpenCV's INTER_AREA, as LiteMedSAM), bilinear when growing.
        let alg = if upscale {
            ResizeAlg::Interpolation(FilterType::Bilinear)
        } else {
            ResizeAlg::Convolution(FilterType::Box)
        };
        let mut inner = resize(
            &slice.data,
            (self.height, self.width),
            (self.inner_height, self.inner_width),
            alg,
        );
        let (lo, hi) = min_max(&inner);
        let range = (hi - lo).max(1e-8);
        inner.iter_mut().for_each(|v| *v = (*v - lo) / range);
        let plane = self.pad(&inner, 0.0);
        let mut out = Vec::with_capacity(3 * plane.len());
        for _ in 0..3 {
            out.extend_from_slice(&plane);
        }
        out
    }

    /// A label slice -> the encoder grid (nearest neighbour), padding labelled 0: training targets.
    pub fn labels(&self, labels: &[u8]) -> Vec<u8> {
        let f: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
        let inner = resize(
            &f,
            (self.height, self.width),
            (self.inner_height, self.inner_width),
            ResizeAlg::Nearest,
        );
        self.pad(&inner, 0.0).iter().map(|&v| v as u8).collect()
    }

    /// Class logits on the encoder grid, [K, S, S], to a label map at the slice's own size: each
    /// class's scores back through the letterbox, then the argmax.
    pub fn labels_from_class_logits(&self, logits: &[f32], classes: usize) -> Vec<u8> {
        let grid = self.size * self.size;
        let back: Vec<f32> = logits
            .chunks_exact(grid)
            .take(classes)
            .flat_map(|scores| self.scores_to_slice(scores))
            .collect();
        argmax(&back, classes, self.height * self.width)
    }

    /// An encoder-grid score map (logits or probabilities) -> the slice's own size: crop the
    /// padding, bilinear back (PyTorch's `interpolate(..., align_corners=False)`).
    pub fn scores_to_slice(&self, scores: &[f32]) -> Vec<f32> {
        let inner = self.crop(scores);
        resize(
            &inner,
            (self.inner_height, self.inner_width),
            (self.height, self.width),
            ResizeAlg::Interpolation(FilterType::Bilinear),
        )
    }

    /// An encoder-grid label map -> the slice's size (nearest neighbour).
    pub fn labels_to_slice(&self, labels: &[u8]) -> Vec<u8> {
        let f: Vec<f32> = self.crop(labels).iter().map(|&l| l as f32).collect();
        resize(
            &f,
            (self.inner_height, self.inner_width),
            (self.height, self.width),
            ResizeAlg::Nearest,
        )
        .iter()
        .map(|&v| v as u8)
        .collect()
    }

    fn pad(&self, inner: &[f32], fill: f32) -> Vec<f32> {
        let mut out = vec![fill; self.size * self.size];
        for (y, row) in inner.chunks_exact(self.inner_width).enumerate() {
            out[y * self.size..y * self.size + self.inner_width].copy_from_slice(row);
        }
        out
    }

    fn crop<T: Copy>(&self, grid: &[T]) -> Vec<T> {
        grid.chunks_exact(self.size)
            .take(self.inner_height)
            .flat_map(|row| row[..self.inner_width].iter().copied())
            .collect()
    }
}

/// Per pixel of a `plane`-pixel grid, the class of `classes` score maps ([classes, plane]) with
/// the highest score.
pub fn argmax(scores: &[f32], classes: usize, plane: usize) -> Vec<u8> {
    let mut best = vec![f32::NEG_INFINITY; plane];
    let mut labels = vec![0u8; plane];
    for (k, map) in scores.chunks_exact(plane).take(classes).enumerate() {
        for ((b, l), &s) in best.iter_mut().zip(labels.iter_mut()).zip(map) {
            if s > *b {
                *b = s;
                *l = k as u8;
            }
        }
    }
    labels
}

fn resize(src: &[f32], from: (usize, usize), to: (usize, usize), alg: ResizeAlg) -> Vec<f32> {
    if from == to {
        return src.to_vec();
    }
    let pixels = src.iter().map(|&v| F32::new(v)).collect();
    let src = TypedImage::<F32>::from_pixels(from.1 as u32, from.0 as u32, pixels)
        .expect("pixel count matches the slice size");
    let mut dst = TypedImage::<F32>::new(to.1 as u32, to.0 as u32);
    Resizer::new()
        .resize_typed(&src, &mut dst, &ResizeOptions::new().resize_alg(alg))
        .expect("f32 to f32 resize of non-empty images");
    dst.pixels().iter().map(|p| p.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear() {
        // numpy.percentile([1..=10], [0.5, 99.5]) = [1.045, 9.955]
        let data: Vec<f32> = (0..=10).map(|x| x as f32).collect();
        let (lo, hi) = percentiles_nonzero(&data, 0.5, 99.5).unwrap();
        assert!(
            (lo - 1.045).abs() < 1e-5 && (hi - 9.955).abs() < 1e-5,
            "{lo} {hi}"
        );
        assert_eq!(percentiles_nonzero(&[0.0, 0.0], 0.5, 99.5), None);
    }

    #[test]
    fn letterbox_rounds_like_litemedsam() {
        let b = Letterbox::new(216, 256, 256);
        assert_eq!((b.inner_height, b.inner_width), (216, 256));
        let b = Letterbox::new(428, 512, 256);
        assert_eq!((b.inner_height, b.inner_width), (214, 256));
        let b = Letterbox::new(154, 171, 256);
        assert_eq!((b.inner_height, b.inner_width), (231, 256));
    }

    #[test]
    fn labels_survive_the_round_trip_at_native_size() {
        let b = Letterbox::new(3, 4, 4);
        let labels = [0, 1, 2, 3, 3, 2, 1, 0, 1, 1, 2, 2];
        let grid = b.labels(&labels);
        assert_eq!(&grid[12..], &[0, 0, 0, 0]);
        assert_eq!(b.labels_to_slice(&grid), labels);
    }
}
