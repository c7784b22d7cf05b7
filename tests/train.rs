//! The training step on a toy problem: the loss is what it should be at known logits, and a few
//! Adam steps lower it.

use autosam::container::Precision;
use autosam::heads::store::{self, ClassInfo, HeadInfo};
use autosam::heads::{CnnHead, Head, HeadKind};
use autosam::loss::loss;
use autosam::model::{HostTensor, Weights};
use autosam::params;
use autosam::train::{
    Progress, Resume, Sample, Schedule, TrainConfig, Trainer, fit, fit_from, mean_dice, one_hot,
    shuffle,
};
use std::ops::ControlFlow;

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};

#[test]
fn loss_is_cross_entropy_plus_soft_dice() {
    let device = autosam::backend::cpu();
    // Two classes, one pixel each of class 0 and 1, logits that favour the truth by ln(3).
    let l = 3f32.ln();
    let logits =
        Tensor::<4>::from_data(TensorData::new(vec![l, 0.0, 0.0, l], [1, 2, 1, 2]), &device);
    // The truth as one-hot [B, K, H, W] (one_hot() builds square maps only).
    let truth = Tensor::<4>::from_data(
        TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [1, 2, 1, 2]),
        &device,
    );
    let got: f32 = loss(logits, truth).into_scalar();
    // p(truth) = 0.75 at both pixels: CE = -ln 0.75; foreground soft Dice = (2*0.75+1)/(1+1+1).
    let want = -(0.75f32.ln()) + (1.0 - (2.0 * 0.75 + 1.0) / 3.0);
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn one_hot_marks_each_label_and_ignores_unknown_ones() {
    let device = autosam::backend::cpu();
    let t = one_hot(&[0, 1, 2, 7], 1, 3, 2, &device);
    let v = t.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(v, [1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0.]);
}

/// Embeddings whose labels follow the sign of two channels, so a head can learn them.
fn toy_samples(c: usize, g: usize, seeds: std::ops::Range<u32>) -> Vec<Sample> {
    let mut samples = Vec::new();
    for seed in seeds {
        let embedding = autosam::backend::pattern(c * g * g, seed);
        let labels: Vec<u8> = (0..4 * g * 4 * g)
            .map(|i| {
                let (y, x) = (i / (4 * g) / 4, i % (4 * g) / 4);
                let v = embedding[y * g + x];
                let w = embedding[g * g + y * g + x];
                u8::from(v > 0.0) + u8::from(w > 0.0)
            })
            .collect();
        samples.push(Sample {
            input: embedding,
            shape: [c, g, g],
            labels,
        });
    }
    samples
}

#[test]
fn a_few_steps_lower_the_loss() {
    let device = autosam::backend::cpu().autodiff();
    // A fixed initialisation: the outcome of a few steps should not depend on the draw.
    device.seed(7);
    let (c, g) = (256, 8);
    let head = Head::Cnn(CnnHead::new(c, 3, &device));
    let samples = toy_samples(c, g, 0..4);
    let pe = HostTensor::new(vec![1, c, g, g], vec![0.0; c * g * g]);
    let mut trainer = Trainer::new(head, &pe, 1e-3, &device);
    let mut order: Vec<usize> = (0..samples.len()).collect();
    let mut losses = Vec::new();
    for epoch in 0..60 {
        shuffle(&mut order, epoch);
        let batch: Vec<&Sample> = order.iter().map(|&i| &samples[i]).collect();
        losses.push(trainer.step(&batch).into_scalar::<f32>());
    }
    eprintln!("losses {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0));
    assert!(losses[59] < losses[0] * 0.8, "{losses:?}");
}

#[test]
fn fit_returns_the_epoch_with_the_best_validation_dice() {
    let device = autosam::backend::cpu().autodiff();
    device.seed(3);
    let (c, g) = (256, 8);
    let head = Head::Cnn(CnnHead::new(c, 3, &device));
    let (train, val) = (toy_samples(c, g, 0..4), toy_samples(c, g, 4..6));
    let pe = HostTensor::new(vec![1, c, g, g], vec![0.0; c * g * g]);
    // A rate high enough that validation Dice moves both ways between epochs.
    let cfg = TrainConfig {
        epochs: 8,
        batch_size: 2,
        lr: 2e-2,
        ..TrainConfig::default()
    };
    let mut reported = Vec::new();
    let (model, history) = fit(head, &train, &val, &cfg, &pe, &device, |so_far, m| {
        let p = so_far.last().unwrap();
        let plain = pe.to_device(&device.clone().inner());
        reported.push((p.best, mean_dice(&m.valid(), &val, &plain)));
    });
    let dice: Vec<f64> = history.iter().map(|p| p.val_dice.unwrap()).collect();
    let best = dice.iter().copied().fold(f64::MIN, f64::max);
    let plain = pe.to_device(&device.clone().inner());
    let got = mean_dice(&model.valid(), &val, &plain).unwrap();
    eprintln!("validation Dice per epoch {dice:?}; returned {got}");
    assert!(
        (got - best).abs() < 1e-9,
        "returned {got}, best epoch {best}"
    );
    // `best` marks each new maximum, and the callback saw the model each epoch's Dice measured.
    let mut top = f64::MIN;
    for ((flag, seen), d) in reported.iter().zip(&dice) {
        assert_eq!(*flag, *d > top);
        top = top.max(*d);
        assert!((seen.unwrap() - d).abs() < 1e-9);
    }
}

#[test]
fn the_cosine_schedule_falls_from_the_base_rate_to_zero() {
    let (base, total) = (5e-4, 100);
    assert_eq!(Schedule::Constant.lr(base, 70, total), base);
    assert_eq!(Schedule::Cosine.lr(base, 0, total), base);
    assert!((Schedule::Cosine.lr(base, 50, total) - base / 2.0).abs() < 1e-12);
    let rates: Vec<f64> = (0..total)
        .map(|s| Schedule::Cosine.lr(base, s, total))
        .collect();
    assert!(rates.windows(2).all(|w| w[1] < w[0]));
    assert!(rates[total - 1] < base * 1e-3);
}

/// A run stopped after its second epoch and continued from its checkpoint (the head through its
/// file, its parameter ids, Adam's state, the history) goes on exactly as the run that never
/// stopped; without the parameter ids Adam's state does not reach the head and it does not.
#[test]
fn a_run_resumed_from_its_checkpoint_continues_as_if_it_had_not_stopped() {
    let device = autosam::backend::cpu().autodiff();
    device.seed(5);
    let (c, g) = (256, 8);
    let head = Head::Cnn(CnnHead::new(c, 3, &device));
    let (train, val) = (toy_samples(c, g, 0..4), toy_samples(c, g, 4..6));
    let pe = HostTensor::new(vec![1, c, g, g], vec![0.0; c * g * g]);
    let cfg = TrainConfig {
        epochs: 4,
        batch_size: 2,
        lr: 1e-2,
        schedule: Schedule::Cosine,
        ..TrainConfig::default()
    };
    let info = HeadInfo {
        kind: HeadKind::Cnn,
        classes: (0..3)
            .map(|i| ClassInfo {
                name: format!("c{i}"),
                color: "#ffffff".into(),
            })
            .collect(),
        encoder: "toy".into(),
        training: serde_json::Value::Null,
        extent: None,
    };
    // What a checkpoint after epoch 2 keeps: the head's file and ids, Adam's state, progress.
    let mut kept = None;
    let (_, full) = fit_from(head, &train, &val, &cfg, &pe, &device, None, |s| {
        if s.history.len() == 2 {
            let bytes = store::save(s.model, &info, Precision::F32).unwrap();
            kept = Some((
                bytes,
                params::ids(s.model),
                [s.optimizer(), s.optimizer(), s.optimizer()],
                s.step,
                s.history.to_vec(),
                s.best_val,
            ));
        }
        ControlFlow::Continue(())
    });
    let (bytes, ids, [optimizer, again, third], step, history, best_val) = kept.unwrap();
    let load = || {
        let (head, _) = store::load(&bytes, &Weights::default(), "toy", &device).unwrap();
        head.set_require_grad(true)
    };
    let resume = |optimizer| Resume {
        step,
        history: history.clone(),
        // The checkpoint's head stands in for the best one: only its Dice is compared here.
        best: best_val.map(|d| (d, load())),
        optimizer,
    };
    let figures = |h: &[Progress]| -> Vec<(f64, Option<f64>)> {
        h.iter().map(|p| (p.loss, p.val_dice)).collect()
    };
    let head = params::with_ids(load(), &ids);
    let (_, resumed) = fit_from(
        head,
        &train,
        &val,
        &cfg,
        &pe,
        &device,
        Some(resume(optimizer)),
        |_| ControlFlow::Continue(()),
    );
    eprintln!(
        "uninterrupted {:?}\nresumed       {:?}",
        figures(&full),
        figures(&resumed)
    );
    assert_eq!(figures(&resumed), figures(&full));
    // The same without the old ids: Adam starts from nothing, and the run drifts.
    let (_, lost) = fit_from(
        load(),
        &train,
        &val,
        &cfg,
        &pe,
        &device,
        Some(resume(again)),
        |_| ControlFlow::Continue(()),
    );
    assert_ne!(figures(&lost)[2..], figures(&full)[2..]);
    // A run asked to stop after its second epoch ends there, where the checkpoint was taken.
    let (_, stopped) = fit_from(
        params::with_ids(load(), &ids),
        &train,
        &val,
        &cfg,
        &pe,
        &device,
        Some(resume(third)),
        |s| {
            if s.history.len() == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    assert_eq!(figures(&stopped), figures(&full)[..3]);
}

/// With views, each epoch shows every slice from one block: identical views train as no views
/// at all, and different ones change the run.
#[test]
fn views_are_drawn_one_block_per_slice_and_epoch() {
    let (c, g) = (256, 8);
    let train = toy_samples(c, g, 0..4);
    let pe = HostTensor::new(vec![1, c, g, g], vec![0.0; c * g * g]);
    let run = |samples: &[Sample], views: usize| {
        let device = autosam::backend::cpu().autodiff();
        device.seed(9);
        let head = Head::Cnn(CnnHead::new(c, 3, &device));
        let cfg = TrainConfig {
            epochs: 3,
            batch_size: 2,
            lr: 1e-2,
            views,
            ..TrainConfig::default()
        };
        let (_, h) = fit(head, samples, &[], &cfg, &pe, &device, |_, _| {});
        h.iter().map(|p| p.loss).collect::<Vec<f64>>()
    };
    let plain = run(&train, 0);
    let same: Vec<Sample> = train.iter().chain(&train).cloned().collect();
    assert_eq!(run(&same, 1), plain);
    let other = toy_samples(c, g, 10..14);
    let mixed: Vec<Sample> = train.iter().chain(&other).cloned().collect();
    let with_views = run(&mixed, 1);
    assert_ne!(with_views, plain);
}
