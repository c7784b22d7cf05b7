//! Running an experiment: every method of the plan at each K and draw, on the same cached
//! embeddings, each run scored on the held-out patients and merged into the outputs as it ends.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{Device, Tensor};

use super::plan::{Job, Method, Plan};
use super::report::{Outputs, Run, Summary, range_name, report};
use crate::augment::Family;
use crate::baselines::UNet;
use crate::baselines::simclr;
use crate::baselines::unet::UNetEncoder;
use crate::container::{self, Precision};
use crate::error::{Error, Result};
use crate::heads::store::cardiac_classes;
use crate::heads::{Head, HeadKind, Segmenter};
use crate::model::{HostTensor, Sam, Weights};
use crate::params;
use crate::pipeline::PreparedVolume;
use crate::study::data::{
    Case, Pair, at, cases_of, labelled_pairs, load_cases, pairs_of, read_volume,
};
use crate::study::resume;
use crate::study::score::{box_segment_volume, class_means};
use crate::train::{Resume, Sample, TrainConfig, fit_from};

/// Where an experiment reads and writes, and what it runs.
pub struct ExperimentArgs {
    pub data: PathBuf,
    pub out: PathBuf,
    pub plan: Plan,
    pub name: String,
    pub cache: PathBuf,
    /// Keep the runs already in the output CSV (same step budget), skip them, and merge new
    /// runs into it as each finishes: a big run is made in parts, even by two processes at once.
    /// A run stopped part way goes on from its checkpoint.
    pub resume: bool,
    /// Where each run in progress keeps its checkpoint (a folder per run, removed once its row
    /// is written), so that a run of hours survives the end of its process; a new machine
    /// finds it only where the folder travels with the repository (the committed `runs/`).
    pub checkpoints: PathBuf,
    /// When to stop: the run in progress writes its checkpoint at its next epoch's end and the
    /// call returns (a part that must end before a session does).
    pub stop_at: Option<Instant>,
}

/// How often a run in progress writes its checkpoint: a stopped run loses at most this much.
const CHECKPOINT_EVERY_S: f64 = 300.0;

/// A run's checkpoint folder, what identifies the run in it, and when to stop it.
struct Saved {
    dir: PathBuf,
    run: serde_json::Value,
    stop_at: Option<Instant>,
}

/// Model parameters in a run's checkpoint.
const RUN_FORMAT: &str = "autosam-run/1";

/// Runs the plan; returns how many runs this call made and how many the outputs now hold.
pub fn run(sam: &Sam, sam_weights: &Weights, args: &ExperimentArgs) -> Result<(usize, usize)> {
    let started = Instant::now();
    let plan = &args.plan;
    let pairs = labelled_pairs(&args.data)?;
    let wanted = |list: &[String]| pairs_of(&pairs, list);
    let chosen = wanted(&plan.labelled());
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

    let ad = cpu.autodiff();
    // SimCLR once, when the first UNet + SimCLR run starts from the beginning; a run resumed from
    // its checkpoint holds its own encoder already.
    let mut pretrained: Option<UNetEncoder> = None;
    let mut simclr_s = None;

    let run_dir = |job: &Job| args.checkpoints.join(job.key());
    // Without --resume every run starts over; with it, a run stopped part way goes on first.
    let jobs = plan.jobs(|job| args.resume && resume::exists(&run_dir(job)));
    for job in jobs {
        let Job {
            method,
            k,
            draw,
            ref patients,
        } = job;
        if done(method, k, draw, patients)? {
            continue;
        }
        let train_cases = cases_of(&cases, patients);
        let slices = train_cases.iter().map(|c| c.embeddings.slices.len()).sum();
        let batch = TrainConfig::default().batch_size;
        let steps = plan.budget.steps(slices, batch);
        let cfg = TrainConfig {
            steps: Some(steps),
            seed: draw as u64,
            ..TrainConfig::default()
        };
        let dir = run_dir(&job);
        if !args.resume {
            resume::remove(&dir)?;
        }
        let saved = Saved {
            run: serde_json::json!({
                "method": method.key(),
                "k": k,
                "draw": draw,
                "patients": patients,
                "steps": steps,
                "batch_size": cfg.batch_size,
                "lr": cfg.lr,
                "seed": cfg.seed,
            }),
            dir,
            stop_at: args.stop_at,
        };
        let embeddings = || -> Vec<Sample> {
            train_cases
                .iter()
                .flat_map(|c| c.embedding_samples())
                .collect()
        };
        let images =
            || -> Vec<Sample> { train_cases.iter().flat_map(|c| c.image_samples()).collect() };
        let head = |kind: HeadKind| {
            ad.seed(draw as u64);
            Head::new(kind, classes, sam_weights, &ad)
        };
        let scored = match method {
            // Trains nothing: scored above.
            Method::SamBox => continue,
            Method::Head(kind) => train_and_score(
                head(kind)?,
                &embeddings(),
                false,
                &cfg,
                &dense_pe,
                &test,
                &saved,
            ),
            Method::AutoSamAug => {
                let mut with_views = embeddings();
                for c in &train_cases {
                    let views =
                        c.views(sam, Family::Mild, plan.aug_views, draw as u64, &args.cache)?;
                    with_views.extend(views.into_iter().flatten());
                }
                let head = head(HeadKind::AutoSam)?;
                train_and_score(head, &with_views, false, &cfg, &dense_pe, &test, &saved)
            }
            Method::UNet => {
                ad.seed(draw as u64);
                let unet = UNet::new(1, classes, &ad);
                train_and_score(unet, &images(), true, &cfg, &dense_pe, &test, &saved)
            }
            Method::UNetSimclr => {
                let encoder = match &pretrained {
                    Some(encoder) => encoder.clone(),
                    None if resume::exists(&saved.dir) => UNetEncoder::new(1, &ad),
                    None => {
                        let (encoder, s) =
                            pretrain(sam, &args.data, &wanted(&plan.unlabelled), plan, &ad)?;
                        simclr_s = Some(s);
                        pretrained.insert(encoder).clone()
                    }
                };
                ad.seed(draw as u64);
                let unet = UNet::with_encoder(encoder, classes, &ad);
                train_and_score(unet, &images(), true, &cfg, &dense_pe, &test, &saved)
            }
        };
        // None: the run stopped part way (`stop_at`), and so does the plan.
        let Some((dice, loss, train_s, eval_s)) = scored? else {
            break;
        };
        runs.push(Run {
            method,
            k,
            draw,
            patients: patients.clone(),
            dice,
            train_s,
            eval_s,
            steps,
            epochs: plan.budget.epochs(),
            loss,
        });
        log::info!("{}", report(runs.last().unwrap()));
        outputs.write(&runs, plan, &summary(&runs, simclr_s))?;
        // The row holds the result now: the run's checkpoint has served.
        resume::remove(&saved.dir)?;
    }
    // A resumed part with nothing left to do leaves the file's closing line as it was.
    let all = if runs.is_empty() && args.resume {
        outputs.read()?.len()
    } else {
        outputs.write(&runs, plan, &summary(&runs, simclr_s))?
    };
    Ok((runs.len(), all))
}

/// SimCLR's encoder, pre-trained on unlabelled images of the plan's non-test patients, and its
/// seconds.
fn pretrain(
    sam: &Sam,
    data: &Path,
    unlabelled: &[Pair],
    plan: &Plan,
    device: &Device,
) -> Result<(UNetEncoder, f64)> {
    let t = Instant::now();
    let images = unlabelled_slices(sam, unlabelled)?;
    if images.is_empty() {
        return Err(at(
            data,
            format!("SimCLR: no images of {}", range_name(&plan.unlabelled)),
        ));
    }
    let encoder = simclr::pretrain(
        &images,
        sam.input_size(),
        &plan.simclr,
        device,
        |step, loss| {
            if step % 10 == 0 || step == plan.simclr.steps {
                log::info!("SimCLR step {step}: NT-Xent {loss:.4}");
            }
        },
    );
    let s = t.elapsed().as_secs_f64();
    log::info!("SimCLR on {} slices: {s:.0} s", images.len());
    Ok((encoder, s))
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
/// seconds; None when the run stopped part way.
type Scored = Result<Option<(Vec<Option<f64>>, Option<(f64, f64)>, f64, f64)>>;

/// Trains on `samples` (on the autodiff device `model` lives on), going on from the run's
/// checkpoint when there is one and writing it every few minutes, then scores the test volumes
/// with the model moved off autodiff.
fn train_and_score<M: Segmenter>(
    model: M,
    samples: &[Sample],
    images: bool,
    cfg: &TrainConfig,
    dense_pe: &HostTensor,
    test: &[&Case],
    saved: &Saved,
) -> Scored {
    let t = Instant::now();
    let device = model
        .devices()
        .first()
        .cloned()
        .ok_or_else(|| Error::Invalid("a model without parameters".into()))?;
    let (model, from, before_s) = if resume::exists(&saved.dir) {
        let (state, bytes, optimizer) = resume::read(&saved.dir, &saved.run)?;
        let file = container::read(
            &bytes,
            RUN_FORMAT,
            "a run's checkpoint",
            "remove the folder to start the run over",
        )?;
        let model = params::assign(model, &file.weights).map_err(|e| {
            at(
                &saved.dir,
                format!("the checkpoint does not fit the run: {e}"),
            )
        })?;
        let model = params::with_ids(model.set_require_grad(true), &state.param_ids);
        log::info!(
            "continuing from {} after {} of {} steps",
            saved.dir.display(),
            state.step,
            cfg.steps.unwrap_or(0)
        );
        let from = Resume {
            step: state.step,
            history: state.history,
            best: None,
            optimizer,
        };
        (model, Some(from), state.seconds.unwrap_or(0.0))
    } else {
        (model, None, 0.0)
    };
    let mut written = Instant::now();
    let mut save_error = None;
    let mut stopped_at = None;
    // A row at the paper's budget trains for minutes to hours; a line every ten epochs shows
    // that it moves and how fast.
    let (model, history) = fit_from(model, samples, &[], cfg, dense_pe, &device, from, |snap| {
        let seconds = before_s + t.elapsed().as_secs_f64();
        if let Some(p) = snap.history.last().filter(|p| p.epoch % 10 == 0) {
            log::info!(
                "epoch {} of {}: loss {:.4}, {seconds:.0} s",
                p.epoch,
                cfg.epochs,
                p.loss
            );
        }
        let last = cfg.steps.is_some_and(|n| snap.step >= n);
        let stop = saved.stop_at.is_some_and(|at| Instant::now() >= at);
        if last || (!stop && written.elapsed().as_secs_f64() < CHECKPOINT_EVERY_S) {
            return ControlFlow::Continue(());
        }
        let state = resume::State {
            run: saved.run.clone(),
            step: snap.step,
            history: snap.history.to_vec(),
            best_val: None,
            param_ids: params::ids(snap.model),
            seconds: Some(seconds),
        };
        let written_now = params::to_weights(snap.model)
            .and_then(|w| container::write(&w, RUN_FORMAT, &[], Precision::F32))
            .and_then(|bytes| resume::write(&saved.dir, &bytes, snap.optimizer(), &state));
        match written_now {
            Ok(()) => written = Instant::now(),
            // The run goes on: its result matters more than a place to resume from.
            Err(e) => {
                save_error.get_or_insert(e);
            }
        }
        if stop {
            stopped_at = Some(snap.step);
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    if let Some(e) = save_error {
        log::warn!(
            "a checkpoint of {} was not written: {e}",
            saved.dir.display()
        );
    }
    if let Some(step) = stopped_at {
        log::info!(
            "stopped as asked after {step} of {} steps; --resume goes on from {}",
            cfg.steps.unwrap_or(0),
            saved.dir.display()
        );
        return Ok(None);
    }
    let loss = history
        .first()
        .zip(history.last())
        .map(|(a, b)| (a.loss, b.loss));
    let model = model.valid();
    let train_s = before_s + t.elapsed().as_secs_f64();
    let t = Instant::now();
    let pe = dense_pe.to_device::<4>(&crate::backend::cpu());
    let dice = score(&model, test, images, &pe)?;
    Ok(Some((dice, loss, train_s, t.elapsed().as_secs_f64())))
}
