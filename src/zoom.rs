//! A second look at small structures: when a first pass finds them filling much less of the
//! encoder's grid than the head's training volumes did (a wider field of view, coarser pixels),
//! the slices are zoomed onto them and segmented again, and the labels mapped back. Heads learn
//! the structures at the scale training showed them; at 65% of it the default head loses half
//! its Dice. Each head file records that scale ([`HeadInfo::extent`]); a head without one (a
//! task whose structures vary in size) gets no second look.
//!
//! [`HeadInfo::extent`]: crate::heads::store::HeadInfo::extent

use crate::augment::Augment;

/// A first pass whose structures span less than this fraction of the head's training extent
/// (0.2 of the grid for the cardiac head's 0.3, below nearly every training volume) gets a
/// second look. Chosen on patients 031-036, which no head trains or is scored on: at 0.75
/// (0.225) volumes as acquired, darker and rotated triggered it and lost 0.007-0.023; zooming out
/// onto large structures lost 0.19 on rotated slices, so the second look only zooms in.
pub const TRIGGER: f32 = 2.0 / 3.0;

/// The most a second look zooms in: beyond it the first pass found too little to go by.
pub const MAX_SCALE: f32 = 3.0;

/// The zoom onto a volume's structures: factor and centre shift on the `size`-square grid, as
/// an [`Augment`] applies them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Zoom {
    pub scale: f32,
    /// The output shift that brings the structures' centre to the grid's centre.
    pub shift: [f32; 2],
    pub size: usize,
}

/// The box (rows, columns; inclusive) around every non-zero label of `slices` (each
/// `size` x `size`), or None without any.
pub fn extent(slices: &[Vec<u8>], size: usize) -> Option<[[usize; 2]; 2]> {
    let mut b: Option<[[usize; 2]; 2]> = None;
    for s in slices {
        for (i, _) in s.iter().enumerate().filter(|(_, l)| **l != 0) {
            let (y, x) = (i / size, i % size);
            let e = b.get_or_insert([[y, y], [x, x]]);
            e[0] = [e[0][0].min(y), e[0][1].max(y)];
            e[1] = [e[1][0].min(x), e[1][1].max(x)];
        }
    }
    b
}

/// The larger side of the box around every labelled pixel of a volume's `slices` (each `size`
/// x `size`), over `size`; None without any.
pub fn span(slices: &[Vec<u8>], size: usize) -> Option<f32> {
    Some(side(extent(slices, size)?, size))
}

/// The larger side of box `b` over `size`.
fn side([[y0, y1], [x0, x1]]: [[usize; 2]; 2], size: usize) -> f32 {
    (y1 - y0 + 1).max(x1 - x0 + 1) as f32 / size as f32
}

/// A head's training extent: the median [`span`] of its training volumes, None without any
/// labelled one.
pub fn training_extent(spans: impl IntoIterator<Item = Option<f32>>) -> Option<f32> {
    let mut spans: Vec<f32> = spans.into_iter().flatten().collect();
    if spans.is_empty() {
        return None;
    }
    spans.sort_by(f32::total_cmp);
    let n = spans.len();
    Some(match n % 2 {
        1 => spans[n / 2],
        _ => (spans[n / 2 - 1] + spans[n / 2]) / 2.0,
    })
}

impl Zoom {
    /// The zoom a first pass's label maps call for with a head trained on structures spanning
    /// `target` of the grid, or None when they are absent or large enough already.
    pub fn plan(slices: &[Vec<u8>], size: usize, target: f32) -> Option<Self> {
        let b = extent(slices, size)?;
        let found = side(b, size);
        let [[y0, y1], [x0, x1]] = b;
        if !(target > 0.0 && target <= 1.0) || found >= TRIGGER * target {
            log::debug!("no second look: the structures span {found:.3} of the grid");
            return None;
        }
        log::info!("second look: the structures span {found:.3} of the grid");
        let scale = (target / found).min(MAX_SCALE);
        let centre = (size as f32 - 1.0) / 2.0;
        let mid = |a: usize, b: usize| (a + b) as f32 / 2.0;
        Some(Self {
            scale,
            shift: [
                -(mid(y0, y1) - centre) * scale,
                -(mid(x0, x1) - centre) * scale,
            ],
            size,
        })
    }

    /// `base` (the change already applied to the slice, identity for none) followed by this
    /// zoom, as one warp of the original slice. Exact for changes without a shift of their own.
    pub fn after(&self, base: Augment) -> Augment {
        Augment {
            scale: base.scale * self.scale,
            shift: self.shift,
            ..base
        }
    }

    /// Labels of the zoomed grid back on the unzoomed one (nearest neighbour; background
    /// outside the zoomed view).
    pub fn unzoom(&self, zoomed: &[u8]) -> Vec<u8> {
        let s = self.size;
        let c = (s as f32 - 1.0) / 2.0;
        let mut out = vec![0u8; s * s];
        for y in 0..s {
            for x in 0..s {
                // Augment maps zoomed output (v) to unzoomed source (u) as
                // u = c + (v - c - shift) / scale, so v = c + shift + scale (u - c).
                let v = |u: usize, k: usize| c + self.shift[k] + self.scale * (u as f32 - c);
                let (r, q) = (v(y, 0).round(), v(x, 1).round());
                if r >= 0.0 && q >= 0.0 && r < s as f32 && q < s as f32 {
                    out[y * s + x] = zoomed[r as usize * s + q as usize];
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-square grid with a filled square of class 1 at rows and columns `lo..hi`.
    fn square(lo: usize, hi: usize) -> Vec<u8> {
        let mut s = vec![0u8; 64 * 64];
        for y in lo..hi {
            for x in lo..hi {
                s[y * 64 + x] = 1;
            }
        }
        s
    }

    /// The cardiac head's training extent.
    const TARGET: f32 = 0.3;

    #[test]
    fn structures_near_the_target_or_larger_get_no_zoom() {
        assert_eq!(Zoom::plan(&[square(4, 60)], 64, TARGET), None);
        assert_eq!(Zoom::plan(&[square(20, 40)], 64, TARGET), None);
        assert_eq!(Zoom::plan(&[vec![0; 64 * 64]], 64, TARGET), None);
        // A head trained on smaller structures leaves these alone.
        assert_eq!(Zoom::plan(&[square(40, 48)], 64, 0.15), None);
    }

    #[test]
    fn the_training_extent_is_the_median_span_of_labelled_volumes() {
        let spans = [Some(0.5), None, Some(0.2), Some(0.3)];
        assert_eq!(training_extent(spans), Some(0.3));
        assert_eq!(training_extent([Some(0.2), Some(0.4)]), Some(0.3));
        assert_eq!(training_extent([None]), None);
        assert_eq!(span(&[square(40, 48)], 64), Some(8.0 / 64.0));
    }

    #[test]
    fn a_small_structure_is_zoomed_to_the_target_and_maps_back() {
        // 8 of 64 columns, off centre.
        let small = square(40, 48);
        let zoom = Zoom::plan(std::slice::from_ref(&small), 64, TARGET).unwrap();
        assert!((zoom.scale - TARGET * 8.0).abs() < 1e-4);
        let zoomed = zoom.after(Augment::IDENTITY).labels(&small, 64, 64);
        let [[y0, y1], [x0, x1]] = extent(std::slice::from_ref(&zoomed), 64).unwrap();
        let side = (y1 - y0 + 1) as f32 / 64.0;
        assert!((side - TARGET).abs() < 0.05, "zoomed extent {side}");
        assert!(
            y0.abs_diff(64 - 1 - y1) <= 1 && x0.abs_diff(64 - 1 - x1) <= 1,
            "centred"
        );
        let back = zoom.unzoom(&zoomed);
        let differ = back.iter().zip(&small).filter(|(a, b)| a != b).count();
        assert!(differ <= 4, "{differ} pixels differ after the round trip");
    }
}
