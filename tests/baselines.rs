//! The UNet baseline and SimCLR: shapes, the contrastive loss's ordering, and that a few steps of
//! each lower its loss on toy data.

use autosam::baselines::UNet;
use autosam::baselines::simclr::{PretrainConfig, nt_xent, pretrain};
use autosam::heads::Segmenter;
use autosam::model::HostTensor;
use autosam::train::{Sample, Trainer};
use burn::tensor::{Tensor, TensorData};

/// burn's seed may be global to the backend: tests that initialise weights at random take turns,
/// so that each run starts from its seeded weights whatever the test threads do.
static RANDOM_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A bright disc (class 1) and a dim square (class 2) on black, at a position set by `seed`.
fn toy(seed: usize, s: usize) -> Sample {
    let (cy, cx) = (8 + seed * 3 % 12, 10 + seed * 5 % 10);
    let mut input = vec![0f32; s * s];
    let mut labels = vec![0u8; s * s];
    for y in 0..s {
        for x in 0..s {
            let i = y * s + x;
            let (dy, dx) = (y as f32 - cy as f32, x as f32 - cx as f32);
            if dy * dy + dx * dx < 25.0 {
                (input[i], labels[i]) = (1.0, 1);
            } else if y.abs_diff(s - cy) < 4 && x.abs_diff(s - cx) < 4 {
                (input[i], labels[i]) = (0.4, 2);
            }
        }
    }
    Sample {
        input,
        shape: [1, s, s],
        labels,
    }
}

#[test]
fn unet_maps_images_to_class_logits_and_learns_a_toy_task() {
    let _turn = RANDOM_INIT.lock().unwrap_or_else(|e| e.into_inner());
    let device = autosam::backend::cpu().autodiff();
    device.seed(1);
    let s = 32;
    let unet = UNet::new(1, 3, &device);
    let x = Tensor::<4>::zeros([2, 1, s, s], &device);
    let pe = Tensor::<4>::zeros([1, 1, 1, 1], &device);
    assert_eq!(unet.logits(x, pe).dims(), [2, 3, s, s]);
    let samples: Vec<Sample> = (0..4).map(|i| toy(i, s)).collect();
    let batch: Vec<&Sample> = samples.iter().collect();
    let mut trainer = Trainer::new(
        unet,
        &HostTensor::new(vec![1, 1, 1, 1], vec![0.0]),
        5e-3,
        &device,
    );
    let losses: Vec<f32> = (0..15)
        .map(|_| trainer.step(&batch).into_scalar())
        .collect();
    eprintln!("{losses:?}");
    assert!(losses[14] < 0.6 * losses[0], "{losses:?}");
}

#[test]
fn nt_xent_prefers_matching_views() {
    let device = autosam::backend::cpu();
    let t = 0.5;
    // Four unit vectors: views i and i + 2 identical, the two pairs orthogonal.
    let matched = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0], [4, 2]),
        &device,
    );
    // The same vectors with the pairs swapped: each view's partner is the orthogonal one.
    let swapped = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0], [4, 2]),
        &device,
    );
    let good: f32 = nt_xent(matched, t).into_scalar();
    let bad: f32 = nt_xent(swapped, t).into_scalar();
    // Matched: -log(e^2 / (e^2 + 2 e^0)) per row.
    let want = -((2f32).exp() / ((2f32).exp() + 2.0)).ln();
    assert!((good - want).abs() < 1e-5, "{good} vs {want}");
    assert!(bad > good + 1.0, "{bad} vs {good}");
}

#[test]
fn simclr_pretraining_lowers_its_loss_and_hands_over_an_encoder() {
    let _turn = RANDOM_INIT.lock().unwrap_or_else(|e| e.into_inner());
    let device = autosam::backend::cpu().autodiff();
    let s = 32;
    let images: Vec<Vec<f32>> = (0..8).map(|i| toy(i, s).input).collect();
    let cfg = PretrainConfig {
        steps: 12,
        batch_size: 8,
        view_size: 32,
        ..PretrainConfig::default()
    };
    let mut losses = Vec::new();
    let encoder = pretrain(&images, s, &cfg, &device, |_, l| losses.push(l));
    eprintln!("{losses:?}");
    assert_eq!(losses.len(), 12);
    let first: f32 = losses[..3].iter().sum();
    let last: f32 = losses[9..].iter().sum();
    assert!(last < first, "{losses:?}");
    let unet = UNet::with_encoder(encoder, 4, &device);
    assert_eq!(
        unet.forward(Tensor::zeros([1, 1, s, s], &device)).dims(),
        [1, 4, s, s]
    );
}
