//! Running an experiment: every method of the plan at each K and draw, on the same cached
//! embeddings, each run scored on the held-out patients and merged into the outputs as it ends.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::Tensor;

use super::plan::{Method, Plan};
use super::report::{Outputs, Run, Summary, range_name, report};
use crate::augment::Family;
use crate::baselines::UNet;
use crate::baselines::simclr;
use crate::error::{Error, Result};
use crate::heads::store::cardiac_classes;
use crate::heads::{Head, HeadKind, Segmenter};
use crate::model::{HostTensor, Sam, Weights};
use crate::pipeline::PreparedVolume;
use crate::study::data::{
    Case, Pair, at, cases_of, labelled_pairs, load_cases, pairs_of, read_volume,
};
use crate::study::score::{box_segment_volume, class_means};
use crate::train::{Sample, TrainConfig, fit};

/// Where an experiment reads and writes, and what it runs.
pub struct ExperimentArgs {
    pub data: PathBuf,
    pub out: PathBuf,
    pub plan: Plan,
    pub name: String,
    pub cache: PathBuf,
    /// Keep the runs already in the output CSV (same step budget), skip them, and merge new
    /// runs into it as each finishes: a big run is made in parts, even by two processes at once.
    pub resume: bool,
}

/// Runs the plan; returns how many runs this call made and how many the outputs now hold.
pub fn run(sam: &Sam, sam_weights: &Weights, args: &ExperimentArgs) -> Result<(usize, usize)> {
    let started = Instant::now();
    let plan = &args.plan;
    let pairs = labelled_pairs(&args.data)?;
    let wanted = |list: &[String]| pairs_of(&pairs, list);
    let mut labelled: Vec<String> = plan.pool.clone();
    labelled.extend(plan.test.iter().cloned());
    let chosen = wanted(&labelled);
    if chosen.is_empty() {
        return Err(at(&args.data, "no ACDC patients of the plan"));
    }
    let cases = load_cases(sam, &chosen, &args.cache)?;
    let test = cases_of(&cases, &plan.test);
    let ready_s = started.elapsed().as_secs_f64();
    log::info!(
        "{} volumes ready ({} test) in {ready_s:.0} s",
        cases.len(),
        test.len()
    );

    let cpu = crate::backend::cpu();
    let dense_pe = sam.prompt_encoder.dense_pe();
    let pe = dense_pe.to_device::<4>(&cpu);
    let classes = cardiac_classes().len();
    let mut runs: Vec<Run> = Vec::new();
    let outputs = Outputs::new(&args.out, &args.name, plan.budget, args.resume)?;
    // Runs another process (or an earlier part) has already written.
    // A row of other patients (drawn before draws were kept distinct) is run again.
    let done = |method: Method, k: usize, draw: usize, chosen: &[String]| -> Result<bool> {
        Ok(args.resume
            && outputs
                .read()?
                .iter()
                .any(|r| r.is(method, k, draw) && r.patients == chosen))
    };
    let summary = |runs: &[Run], simclr_s: Option<f64>| Summary {
        wall_s: started.elapsed().as_secs_f64(),
        ready_s,
        simclr_s,
        runs_here: runs.len(),
    };

    // SAM with ground-truth boxes needs no training: one score, drawn as a line.
    let t = Instant::now();
    let mut per_volume = Vec::new();
    let sam_box = plan.runs(Method::SamBox) && !done(Method::SamBox, 0, 0, &[])?;
    for case in test.iter().filter(|_| sam_box) {
        let pred = box_segment_volume(sam, &case.prepared, &case.truth, |z| {
            case.embeddings.slice(z, &cpu)
        });
        per_volume.push(case.dice(&pred, classes));
    }
    if sam_box {
        runs.push(Run {
            method: Method::SamBox,
            k: 0,
            draw: 0,
            patients: vec![],
            dice: class_means(&per_volume),
            train_s: 0.0,
            eval_s: t.elapsed().as_secs_f64(),
            steps: plan.budget.steps(0, TrainConfig::default().batch_size),
            epochs: plan.budget.epochs(),
            loss: None,
        });
        log::info!("{}", report(runs.last().unwrap()));
        outputs.write(&runs, plan, &summary(&runs, None))?;
    }

    // SimCLR once, on unlabelled images of the non-test patients, when a run still needs it.
    let ad = cpu.autodiff();
    let simclr_needed = plan.runs(Method::UNetSimclr)
        && plan.ks.iter().any(|&(k, draws)| {
            let mut sets = plan.draws(k, draws).into_iter().enumerate();
            sets.any(|(d, set)| !done(Method::UNetSimclr, k, d, &set).unwrap_or(false))
        });
    let pretrained = if simclr_needed {
        let t = Instant::now();
        let images = unlabelled_slices(sam, &wanted(&plan.unlabelled))?;
        if images.is_empty() {
            return Err(at(
                &args.data,
                format!("SimCLR: no images of {}", range_name(&plan.unlabelled)),
            ));
        }
        let encoder = simclr::pretrain(
            &images,
            sam.input_size(),
            &plan.simclr,
            &ad,
            |step, loss| {
                if step % 10 == 0 || step == plan.simclr.steps {
                    log::info!("SimCLR step {step}: NT-Xent {loss:.4}");
                }
            },
        );
        let s = t.elapsed().as_secs_f64();
        log::info!("SimCLR on {} slices: {s:.0} s", images.len());
        Some((encoder, s))
    } else {
        None
    };
    let simclr_s = pretrained.as_ref().map(|p| p.1);

    for &(k, draws) in &plan.ks {
        for (draw, chosen) in plan.draws(k, draws).into_iter().enumerate() {
            let train_cases = cases_of(&cases, &chosen);
            let emb: Vec<Sample> = train_cases
                .iter()
                .flat_map(|c| c.embedding_samples())
                .collect();
            let img: Vec<Sample> = train_cases.iter().flat_map(|c| c.image_samples()).collect();
            let batch = TrainConfig::default().batch_size;
            let steps = plan.budget.steps(emb.len(), batch);
            let cfg = TrainConfig {
                steps: Some(steps),
                seed: draw as u64,
                ..TrainConfig::default()
            };
            let mut go = |method: Method, scored: Scored| {
                let (dice, loss, train_s, eval_s) = scored?;
                runs.push(Run {
                    method,
                    k,
                    draw,
                    patients: chosen.clone(),
                    dice,
                    train_s,
                    eval_s,
                    steps,
                    epochs: plan.budget.epochs(),
                    loss,
                });
                log::info!("{}", report(runs.last().unwrap()));
                outputs.write(&runs, plan, &summary(&runs, simclr_s))
            };
            let todo = |method: Method| -> Result<bool> {
                Ok(plan.runs(method) && !done(method, k, draw, &chosen)?)
            };
            let fit_score = |model: Head, samples: &[Sample]| {
                train_and_score(model, samples, false, &cfg, &dense_pe, &test, &pe)
            };
            for kind in HeadKind::ALL {
                if !todo(Method::Head(kind))? {
                    continue;
                }
                ad.seed(draw as u64);
                let head = Head::new(kind, classes, sam_weights, &ad)?;
                go(Method::Head(kind), fit_score(head, &emb))?;
            }
            if plan.aug_ks.contains(&k) && todo(Method::AutoSamAug)? {
                let mut with_views = emb.clone();
                for c in &train_cases {
                    let views =
                        c.views(sam, Family::Mild, plan.aug_views, draw as u64, &args.cache)?;
                    with_views.extend(views.into_iter().flatten());
                }
                ad.seed(draw as u64);
                let head = Head::new(HeadKind::AutoSam, classes, sam_weights, &ad)?;
                go(Method::AutoSamAug, fit_score(head, &with_views))?;
            }
            if todo(Method::UNet)? {
                ad.seed(draw as u64);
                let unet = UNet::new(1, classes, &ad);
                go(
                    Method::UNet,
                    train_and_score(unet, &img, true, &cfg, &dense_pe, &test, &pe),
                )?;
            }
            if let Some((encoder, _)) = &pretrained
                && todo(Method::UNetSimclr)?
            {
                ad.seed(draw as u64);
                let unet = UNet::with_encoder(encoder.clone(), classes, &ad);
                go(
                    Method::UNetSimclr,
                    train_and_score(unet, &img, true, &cfg, &dense_pe, &test, &pe),
                )?;
            }
        }
    }
    // A resumed part with nothing left to do leaves the file's closing line as it was.
    let all = if runs.is_empty() && args.resume {
        outputs.read()?.len()
    } else {
        outputs.write(&runs, plan, &summary(&runs, simclr_s))?
    };
    Ok((runs.len(), all))
}

/// Mean over test volumes of each class's Dice.
fn score<M: Segmenter>(
    model: &M,
    test: &[&Case],
    images: bool,
    pe: &Tensor<4>,
) -> Result<Vec<Option<f64>>> {
    let mut per_volume = Vec::new();
    for case in test {
        let pred = case.segment(model, images, pe)?;
        per_volume.push(case.dice(&pred, model.classes()));
    }
    Ok(class_means(&per_volume))
}

/// Every slice of the volumes' images as one plane (the encoder input's first channel).
fn unlabelled_slices(sam: &Sam, volumes: &[Pair]) -> Result<Vec<Vec<f32>>> {
    let mut slices = Vec::new();
    for (_, image, _) in volumes {
        let p = PreparedVolume::new(&read_volume(image)?, sam.input_size());
        let s = p.letterbox.size;
        slices.extend(p.inputs.into_iter().map(|i| i[..s * s].to_vec()));
    }
    Ok(slices)
}

/// Per-class Dice on the test volumes, first and last epoch's loss, training seconds, scoring
/// seconds.
type Scored = Result<(Vec<Option<f64>>, Option<(f64, f64)>, f64, f64)>;

/// Trains on `samples` (on the autodiff device `model` lives on), then scores the test volumes
/// with the model moved off autodiff.
fn train_and_score<M: Segmenter>(
    model: M,
    samples: &[Sample],
    images: bool,
    cfg: &TrainConfig,
    dense_pe: &HostTensor,
    test: &[&Case],
    pe: &Tensor<4>,
) -> Scored {
    let t = Instant::now();
    let device = model
        .devices()
        .first()
        .cloned()
        .ok_or_else(|| Error::Invalid("a model without parameters".into()))?;
    // A row at the paper's budget trains for minutes to hours; a line every ten epochs shows
    // that it moves and how fast.
    let (model, history) = fit(model, samples, &[], cfg, dense_pe, &device, |history, _| {
        if let Some(p) = history.last().filter(|p| p.epoch % 10 == 0) {
            let s = t.elapsed().as_secs_f64();
            log::info!(
                "epoch {} of {}: loss {:.4}, {s:.0} s",
                p.epoch,
                cfg.epochs,
                p.loss
            );
        }
    });
    let loss = history
        .first()
        .zip(history.last())
        .map(|(a, b)| (a.loss, b.loss));
    let model = model.valid();
    let train_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let dice = score(&model, test, images, pe)?;
    Ok((dice, loss, train_s, t.elapsed().as_secs_f64()))
}
