//! Encoder input against LiteMedSAM's own preprocessing (tests/fixtures, from ../shared/fixtures),
//! and the inverse for masks.

mod common;

use autosam::phantom::cardiac_phantom;
use autosam::preprocess::{LITEMEDSAM_SIZE, Letterbox, normalize_volume};
use autosam::volume::Slice;

#[test]
fn matches_litemedsam_input_for_the_reference_slice() {
    let slice = Slice {
        height: 216,
        width: 256,
        data: common::fixture_tensor("slice_hw"),
    };
    let b = Letterbox::new(216, 256, LITEMEDSAM_SIZE);
    let input = b.image(&slice);
    assert_eq!(input.len(), 3 * 256 * 256);
    let want = common::fixture_tensor("input_channel0");
    for c in 0..3 {
        let plane = &input[c * 65536..(c + 1) * 65536];
        let err = plane
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-6, "channel {c}: max error {err}");
    }
}

#[test]
fn mask_inverse_restores_labels_of_every_acdc_shape() {
    // In-plane sizes at the ends of ACDC's range, down- and up-scaled.
    for (h, w) in [(154, 154), (428, 512), (216, 256), (171, 300)] {
        let b = Letterbox::new(h, w, LITEMEDSAM_SIZE);
        let (_, labels) = cardiac_phantom([h, w, 1], 0);
        let labels: Vec<u8> = labels.slice(2, 0).data.iter().map(|&v| v as u8).collect();
        let grid = b.labels(&labels);
        assert_eq!(grid.len(), 256 * 256);
        // nothing leaks into the padding
        for y in 0..256 {
            for x in 0..256 {
                if y >= b.inner_height || x >= b.inner_width {
                    assert_eq!(grid[y * 256 + x], 0);
                }
            }
        }
        let back = b.labels_to_slice(&grid);
        let agree = back.iter().zip(&labels).filter(|(a, b)| a == b).count();
        assert!(
            agree as f64 / labels.len() as f64 > 0.99,
            "{h}x{w}: {agree} of {}",
            labels.len()
        );
        if (h, w) == (216, 256) {
            assert_eq!(back, labels, "no resampling at the encoder's own width");
        }
        // Scores go back by bilinear interpolation: a one-hot score map thresholds back to it.
        let onehot: Vec<f32> = grid.iter().map(|&l| f32::from(l == 3)).collect();
        let lv: Vec<bool> = b
            .scores_to_slice(&onehot)
            .iter()
            .map(|&s| s > 0.5)
            .collect();
        let inter = lv
            .iter()
            .zip(&labels)
            .filter(|(p, l)| **p && **l == 3)
            .count();
        let dice = 2.0 * inter as f64
            / (lv.iter().filter(|p| **p).count() + labels.iter().filter(|l| **l == 3).count())
                as f64;
        assert!(dice > 0.97, "{h}x{w}: LV dice {dice}");
    }
}

#[test]
fn volume_normalisation_clips_outliers() {
    let mut data: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    data[999] = 1e9; // one hot pixel must not squash the rest
    let n = normalize_volume(&data);
    assert!(n.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_eq!(n[999], 1.0);
    assert!(n[500] > 0.45 && n[500] < 0.55, "{}", n[500]);
}

/// Inputs made one slice at a time (the page) are the ones made from the whole normalised volume.
#[test]
fn slice_inputs_one_at_a_time_match_the_whole_volume_normalised() {
    use autosam::pipeline::SliceInputs;
    use autosam::volume::Volume;
    let (image, _) = autosam::phantom::cardiac_phantom([40, 56, 5], 3);
    let inputs = SliceInputs::new(&image, LITEMEDSAM_SIZE);
    let normalized = Volume {
        data: normalize_volume(&image.data),
        ..image.clone()
    };
    let axis = image.slice_axis();
    for z in 0..inputs.slice_count() {
        let want = inputs.letterbox.image(&normalized.slice(axis, z));
        assert_eq!(inputs.input(&image, z), want, "slice {z}");
    }
}

/// Above the copy limit percentiles are counted, not selected: the same values.
#[test]
fn counted_percentiles_of_a_large_volume_are_the_selected_ones() {
    use autosam::preprocess::percentiles_nonzero;
    let n = (1 << 24) + 1000;
    let mut seed = 7u32;
    let data: Vec<f32> = (0..n)
        .map(|i| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            match i % 7 {
                0 => 0.0,
                1 => -1000.0,
                _ => ((seed >> 8) as f32 / 65536.0 - 100.0) * 3.7,
            }
        })
        .collect();
    let mut v: Vec<f32> = data.iter().copied().filter(|&x| x != 0.0).collect();
    v.sort_by(f32::total_cmp);
    let want = |pct: f64| {
        let pos = pct / 100.0 * (v.len() - 1) as f64;
        let (lo, frac) = (pos.floor() as usize, (pos - pos.floor()) as f32);
        v[lo] + (v[lo + 1] - v[lo]) * frac
    };
    let (lo, hi) = percentiles_nonzero(&data, 0.5, 99.5).unwrap();
    assert_eq!((lo, hi), (want(0.5), want(99.5)));
    assert_eq!(percentiles_nonzero(&vec![0.0; n], 0.5, 99.5), None);
}
