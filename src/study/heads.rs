//! Training a head on cached embeddings of labelled volumes, and head files in and out.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;

use super::data::{Case, at, select};
use super::resume;
use crate::augment::Family;
use crate::container::Precision;
use crate::error::Result;
use crate::heads::store::{self, HeadInfo, cardiac_classes};
use crate::heads::{Head, HeadKind};
use crate::model::{Sam, Weights};
use crate::params;
use crate::train::{Progress, Resume, Sample, TrainConfig, fit_from, shuffle};

/// What `train` trains and where it writes.
pub struct TrainArgs {
    pub data: PathBuf,
    pub volumes: Option<String>,
    pub head: HeadKind,
    pub out: PathBuf,
    pub config: TrainConfig,
    /// The family `config.views` are drawn from.
    pub family: Family,
    pub val_fraction: f64,
    pub cache: PathBuf,
    pub precision: Precision,
    /// Continue from this head file (its kind and classes) instead of a new head.
    pub init: Option<PathBuf>,
    /// A folder for the run's checkpoint, written after every epoch (the head, Adam's state and
    /// the history); a run whose checkpoint is there goes on from it.
    pub checkpoint: Option<PathBuf>,
}

/// The epochs a checkpoint folder (`TrainArgs::checkpoint`) has recorded, oldest first.
pub fn checkpoint_history(dir: &Path) -> Result<Vec<Progress>> {
    Ok(resume::state(dir)?.history)
}

/// Trains a head on the volumes chosen, writing the best so far (by validation Dice) to `out`
/// whenever it improves and the returned head at the end. `on_epoch` sees each epoch's progress.
pub fn train(
    sam: &Sam,
    sam_weights: &Weights,
    args: &TrainArgs,
    mut on_epoch: impl FnMut(&Progress),
) -> Result<(HeadKind, Vec<Progress>)> {
    let started = Instant::now();
    let pairs = select(&args.data, args.volumes.as_deref())?;
    let cfg = &args.config;
    // Each slice with its views; validation takes whole slices, never their views. One case at
    // a time: its embeddings are dropped once they are samples (4 MB a slice in f32).
    let mut all: Vec<(Sample, Vec<Sample>)> = Vec::new();
    let mut spans = Vec::new();
    for pair in &pairs {
        let case = Case::load(sam, pair, &args.cache)?;
        spans.push(case.span());
        let views = case.views(sam, args.family, cfg.views, cfg.seed, &args.cache)?;
        all.extend(case.embedding_samples().into_iter().zip(views));
    }
    let extent = crate::zoom::training_extent(spans);
    shuffle(&mut all, cfg.seed);
    let n_val = ((all.len() as f64) * args.val_fraction).round() as usize;
    let val: Vec<Sample> = all
        .split_off(all.len() - n_val.min(all.len().saturating_sub(1)))
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    // Block 0 the slices, block v their v-th views (`TrainConfig::views`), moved, not copied.
    let train_slices = all.len();
    let (mut blocks, views): (Vec<Sample>, Vec<Vec<Sample>>) = all.into_iter().unzip();
    let mut per_view: Vec<Vec<Sample>> = vec![Vec::with_capacity(train_slices); cfg.views];
    for slice_views in views {
        for (v, sample) in slice_views.into_iter().enumerate() {
            per_view[v].push(sample);
        }
    }
    blocks.extend(per_view.into_iter().flatten());
    let all = blocks;
    let device = crate::backend::cpu().autodiff();
    // The seed fixes the head's initialisation too, not only the data order.
    device.seed(cfg.seed);
    let (head, classes, before) = match &args.init {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| at(path, e))?;
            let (head, info) = store::load(&bytes, sam_weights, &sam.config.encoder_id(), &device)
                .map_err(|e| at(path, e))?;
            // Loaded parameters are constants until asked to track gradients.
            (
                head.set_require_grad(true),
                info.classes,
                Some(info.training),
            )
        }
        None => {
            let classes = cardiac_classes();
            let head = Head::new(args.head, classes.len(), sam_weights, &device)?;
            (head, classes, None)
        }
    };
    let mut run = serde_json::json!({
        "volumes": pairs.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
        "kind": head.kind(),
        "classes": classes.len(),
        "epochs": cfg.epochs,
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "schedule": cfg.schedule,
        "seed": cfg.seed,
        "val_slices": val.len(),
    });
    // Named only when used, so that checkpoints of runs without views keep matching.
    if cfg.views > 0 {
        run["views"] = cfg.views.into();
        // Likewise the family, when it is not the paper's (the only one before it was named).
        if args.family != Family::Paper {
            run["family"] = format!("{:?}", args.family).into();
        }
    }
    let (head, continued) = match &args.checkpoint {
        Some(dir) if resume::exists(dir) => {
            let (head, from) = from_checkpoint(dir, &run, sam, sam_weights, &args.out, &device)?;
            log::info!(
                "continuing from {} after {} steps",
                dir.display(),
                from.step
            );
            (head, Some(from))
        }
        _ => (head, None),
    };
    let kind = head.kind();
    let dense_pe = sam.prompt_encoder.dense_pe();
    let info = |history: &[Progress]| HeadInfo {
        kind,
        classes: classes.clone(),
        encoder: sam.config.encoder_id(),
        // What the run is, and how it went.
        training: {
            let mut t = run.clone();
            t["train_slices"] = train_slices.into();
            t["views"] = cfg.views.into();
            t["history"] = serde_json::json!(history);
            t["seconds"] = started.elapsed().as_secs_f64().into();
            t["continues"] = serde_json::json!(before);
            t
        },
        extent,
    };
    let save = |head: &Head, history: &[Progress]| -> Result<()> {
        let bytes = store::save(head, &info(history), args.precision)?;
        std::fs::write(&args.out, bytes).map_err(|e| at(&args.out, e))
    };
    let mut checkpoint_error = None;
    let (head, history) = fit_from(
        head,
        &all,
        &val,
        cfg,
        &dense_pe,
        &device,
        continued,
        |snap| {
            let p = snap.history.last().expect("fit reports after an epoch");
            on_epoch(p);
            // The best head so far is on disk at once, so a run stopped early keeps it.
            let saved = if p.best {
                save(snap.model, snap.history)
            } else {
                Ok(())
            };
            let saved = saved.and_then(|()| match &args.checkpoint {
                Some(dir) => {
                    let state = resume::State {
                        run: run.clone(),
                        step: snap.step,
                        history: snap.history.to_vec(),
                        best_val: snap.best_val,
                        param_ids: params::ids(snap.model),
                        seconds: None,
                    };
                    let head = store::save(snap.model, &info(snap.history), Precision::F32)?;
                    resume::write(dir, &head, snap.optimizer(), &state)
                }
                None => Ok(()),
            });
            if let Err(e) = saved {
                checkpoint_error.get_or_insert(e);
            }
            ControlFlow::Continue(())
        },
    );
    if let Some(e) = checkpoint_error {
        return Err(e);
    }
    save(&head, &history)?;
    Ok((kind, history))
}

/// The head, optimizer state and progress of the checkpoint in `dir`, refused when it is of
/// another run; the best head so far comes from `out`, where the run wrote it.
fn from_checkpoint(
    dir: &Path,
    run: &serde_json::Value,
    sam: &Sam,
    sam_weights: &Weights,
    out: &Path,
    device: &burn::tensor::Device,
) -> Result<(Head, Resume<Head>)> {
    let (state, head, optimizer) = resume::read(dir, run)?;
    let load = |bytes: &[u8], path: &Path| -> Result<Head> {
        let (head, _) = store::load(bytes, sam_weights, &sam.config.encoder_id(), device)
            .map_err(|e| at(path, e))?;
        Ok(head.set_require_grad(true))
    };
    let head = params::with_ids(load(&head, &dir.join(resume::MODEL))?, &state.param_ids);
    let best = match state.best_val {
        Some(d) => {
            let bytes = std::fs::read(out).map_err(|e| at(out, e))?;
            Some((d, load(&bytes, out)?))
        }
        None => None,
    };
    Ok((
        head,
        Resume {
            step: state.step,
            history: state.history,
            best,
            optimizer,
        },
    ))
}

/// A head from its file, on the CPU backend.
pub fn load_head(path: &Path, sam: &Sam, sam_weights: &Weights) -> Result<(Head, HeadInfo)> {
    let bytes = std::fs::read(path).map_err(|e| at(path, e))?;
    store::load(
        &bytes,
        sam_weights,
        &sam.config.encoder_id(),
        &crate::backend::cpu(),
    )
    .map_err(|e| at(path, e))
}

/// The default cardiac head (RV, MYO, LV on LiteMedSAM); docs/heads.md says how it was trained.
/// The page fetches the same file.
const DEFAULT_HEAD: &[u8] = include_bytes!("../../www/heads/cardiac.safetensors");

/// The shipped cardiac head (built into the binary, so `eval` works from any directory).
pub fn default_head(sam: &Sam, sam_weights: &Weights) -> Result<(Head, HeadInfo)> {
    store::load(
        DEFAULT_HEAD,
        sam_weights,
        &sam.config.encoder_id(),
        &crate::backend::cpu(),
    )
    .map_err(|e| at(Path::new("the built-in default head"), e))
}
