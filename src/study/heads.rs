//! Training a head on cached embeddings of labelled volumes, and head files in and out.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;

use super::data::{Case, at, load_cases, select};
use crate::container::Precision;
use crate::error::Result;
use crate::heads::store::{self, HeadInfo, cardiac_classes};
use crate::heads::{Head, HeadKind};
use crate::model::{Sam, Weights};
use crate::train::{Progress, Sample, TrainConfig, fit, shuffle};

/// What `train` trains and where it writes.
pub struct TrainArgs {
    pub data: PathBuf,
    pub volumes: Option<String>,
    pub head: HeadKind,
    pub out: PathBuf,
    pub config: TrainConfig,
    pub val_fraction: f64,
    pub cache: PathBuf,
    pub precision: Precision,
    /// Continue from this head file (its kind and classes) instead of a new head.
    pub init: Option<PathBuf>,
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
    let cases = load_cases(sam, &pairs, &args.cache)?;
    let mut all: Vec<Sample> = cases.iter().flat_map(Case::embedding_samples).collect();
    drop(cases);
    let cfg = &args.config;
    shuffle(&mut all, cfg.seed);
    let n_val = ((all.len() as f64) * args.val_fraction).round() as usize;
    let val = all.split_off(all.len() - n_val.min(all.len().saturating_sub(1)));
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
    let kind = head.kind();
    let dense_pe = sam.prompt_encoder.dense_pe();
    let info = |history: &[Progress]| HeadInfo {
        kind,
        classes: classes.clone(),
        encoder: sam.config.encoder_id(),
        training: serde_json::json!({
            "volumes": pairs.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
            "train_slices": all.len(),
            "val_slices": val.len(),
            "epochs": cfg.epochs,
            "steps": cfg.steps,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "schedule": cfg.schedule,
            "seed": cfg.seed,
            "history": history,
            "seconds": started.elapsed().as_secs_f64(),
            "continues": before,
        }),
    };
    let save = |head: &Head, history: &[Progress]| -> Result<()> {
        let bytes = store::save(head, &info(history), args.precision)?;
        std::fs::write(&args.out, bytes).map_err(|e| at(&args.out, e))
    };
    let mut checkpoint_error = None;
    let (head, history) = fit(
        head,
        &all,
        &val,
        cfg,
        &dense_pe,
        &device,
        |so_far, model| {
            let p = so_far.last().expect("fit reports after an epoch");
            on_epoch(p);
            // The best head so far is on disk at once, so a run stopped early keeps it.
            if p.best
                && let Err(e) = save(model, so_far)
            {
                checkpoint_error.get_or_insert(e);
            }
        },
    );
    if let Some(e) = checkpoint_error {
        return Err(e);
    }
    save(&head, &history)?;
    Ok((kind, history))
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
