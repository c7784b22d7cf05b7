//! `autosam train` and `autosam eval`: a head on cached embeddings of labelled volumes, and its
//! per-class 3-D Dice.

use std::path::{Path, PathBuf};
use std::time::Instant;

use autosam::cache::{self, VolumeEmbeddings};
use autosam::heads::store::{self, HeadInfo, cardiac_classes};
use autosam::heads::{Head, labels_from_class_logits};
use autosam::metrics::{dice, mean};
use autosam::model::format::Precision;
use autosam::model::{Sam, Weights};
use autosam::pipeline::{PreparedVolume, label_slice, put_label_slice};
use autosam::train::{Progress, Sample, TrainConfig, Trainer, shuffle};
use burn::tensor::{Tensor, TensorData};

use super::eval_box::{DiceTable, labelled_pairs, read_volume};

/// Pairs whose name starts with one of the comma-separated prefixes (all when `None`).
pub fn select(
    dir: &Path,
    volumes: Option<&str>,
) -> Result<Vec<(String, PathBuf, PathBuf)>, String> {
    let pairs = labelled_pairs(dir)?;
    let Some(list) = volumes else {
        return Ok(pairs);
    };
    let prefixes: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let chosen: Vec<_> = pairs
        .into_iter()
        .filter(|(name, _, _)| prefixes.iter().any(|p| name.starts_with(p)))
        .collect();
    if chosen.is_empty() {
        return Err(format!("no volumes in {} match `{list}`", dir.display()));
    }
    Ok(chosen)
}

/// A volume's embeddings from the cache, or encoded now and stored there.
pub fn embeddings(
    sam: &Sam,
    image_path: &Path,
    prepared: &PreparedVolume,
    cache_dir: &Path,
) -> Result<VolumeEmbeddings, String> {
    let bytes = std::fs::read(image_path).map_err(|e| format!("{}: {e}", image_path.display()))?;
    let entry = cache_dir.join(format!(
        "{}.safetensors",
        cache::key(&bytes, &sam.config.model_id)
    ));
    // A missing, unreadable or stale entry is simply recomputed.
    let cached = std::fs::read(&entry)
        .ok()
        .and_then(|stored| VolumeEmbeddings::from_bytes(&stored).ok())
        .filter(|v| v.slices.len() == prepared.slice_count());
    if let Some(v) = cached {
        return Ok(v);
    }
    let out = cache::encode_volume(sam, prepared)
        .to_bytes()
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(cache_dir).map_err(|e| format!("{}: {e}", cache_dir.display()))?;
    std::fs::write(&entry, &out).map_err(|e| format!("{}: {e}", entry.display()))?;
    // Hand back what was stored (f16), so a first run and a cached rerun see the same values.
    VolumeEmbeddings::from_bytes(&out).map_err(|e| e.to_string())
}

/// Slices of the chosen volumes as training samples: cached embedding + letterboxed labels.
fn samples(
    sam: &Sam,
    pairs: &[(String, PathBuf, PathBuf)],
    cache_dir: &Path,
) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (name, image, gt) in pairs {
        let t = Instant::now();
        let volume = read_volume(image)?;
        let truth = read_volume(gt)?.labels();
        let prepared = PreparedVolume::new(&volume, sam.input_size());
        let emb = embeddings(sam, image, &prepared, cache_dir)?;
        for (z, e) in emb.slices.into_iter().enumerate() {
            let labels =
                prepared
                    .letterbox
                    .labels(&label_slice(&truth, prepared.dims, prepared.axis, z));
            out.push(Sample {
                embedding: e,
                labels,
            });
        }
        eprintln!(
            "{name}: {} slices ready in {:.1} s",
            prepared.slice_count(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(out)
}

pub struct TrainArgs {
    pub data: PathBuf,
    pub volumes: Option<String>,
    pub head: String,
    pub out: PathBuf,
    pub config: TrainConfig,
    pub val_fraction: f64,
    pub cache: PathBuf,
}

fn val_dice(
    trainer: &Trainer,
    val: &[Sample],
    pe: &Tensor<4>,
    device: &burn::tensor::Device,
) -> Option<f64> {
    let classes = trainer.head().classes();
    let mut scores = Vec::new();
    for s in val {
        let [c, g] = [pe.dims()[1], pe.dims()[2]];
        let x = Tensor::<4>::from_data(TensorData::new(s.embedding.clone(), [1, c, g, g]), device);
        let pred: Vec<u8> = autosam::train::predict(trainer.head(), x, pe.clone())
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .ok()?
            .into_iter()
            .map(|v| v as u8)
            .collect();
        for k in 1..classes as u8 {
            scores.push(dice(&pred, &s.labels, k));
        }
    }
    mean(scores)
}

pub fn train(sam: &Sam, sam_weights: &Weights, args: TrainArgs) -> Result<(), String> {
    let started = Instant::now();
    let pairs = select(&args.data, args.volumes.as_deref())?;
    let mut all = samples(sam, &pairs, &args.cache)?;
    let cfg = &args.config;
    shuffle(&mut all, cfg.seed);
    let n_val = ((all.len() as f64) * args.val_fraction).round() as usize;
    let val = all.split_off(all.len() - n_val.min(all.len().saturating_sub(1)));
    let device = autosam::backend::cpu().autodiff();
    // The seed fixes the head's initialisation too, not only the data order.
    device.seed(cfg.seed);
    let classes = cardiac_classes();
    let head =
        Head::new(&args.head, classes.len(), sam_weights, &device).map_err(|e| e.to_string())?;
    let dense_pe = sam.prompt_encoder.dense_pe();
    let pe = dense_pe.to_device::<4>(&device);
    let mut trainer = Trainer::new(head, &dense_pe, cfg.lr, &device);
    let mut order: Vec<usize> = (0..all.len()).collect();
    let mut history = Vec::new();
    for epoch in 0..cfg.epochs {
        shuffle(&mut order, cfg.seed.wrapping_add(epoch as u64 + 1));
        let mut losses = Vec::new();
        for chunk in order.chunks(cfg.batch_size.max(1)) {
            let batch: Vec<&Sample> = chunk.iter().map(|&i| &all[i]).collect();
            losses.push(f64::from(trainer.step(&batch).into_scalar::<f32>()));
        }
        let p = Progress {
            epoch: epoch + 1,
            loss: mean(losses.iter().map(|&l| Some(l))).unwrap_or(f64::NAN),
            val_dice: val_dice(&trainer, &val, &pe, &device),
        };
        eprintln!(
            "epoch {:>3}  loss {:.4}  val Dice {}  ({:.0} s)",
            p.epoch,
            p.loss,
            p.val_dice.map_or("-".into(), |d| format!("{d:.4}")),
            started.elapsed().as_secs_f64()
        );
        history.push(p);
    }
    let info = HeadInfo {
        kind: args.head.clone(),
        classes,
        encoder: sam.config.model_id.clone(),
        training: serde_json::json!({
            "volumes": pairs.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
            "train_slices": all.len(),
            "val_slices": val.len(),
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "seed": cfg.seed,
            "history": history,
            "seconds": started.elapsed().as_secs_f64(),
        }),
    };
    let bytes = store::save(trainer.head(), &info, Precision::F32).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, bytes).map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!(
        "wrote {} ({} head, {} epochs, {:.0} s)",
        args.out.display(),
        args.head,
        cfg.epochs,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A head from its file, on the CPU backend.
pub fn load_head(path: &Path, sam_weights: &Weights) -> Result<(Head, HeadInfo), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (info, weights) = store::read(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let device = autosam::backend::cpu();
    let head = Head::new(&info.kind, info.classes.len(), sam_weights, &device)
        .and_then(|h| store::assign(h, &weights))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((head, info))
}

pub fn eval(
    sam: &Sam,
    head: &Head,
    info: &HeadInfo,
    data: &Path,
    volumes: Option<&str>,
    cache_dir: &Path,
) -> Result<(), String> {
    let pairs = select(data, volumes)?;
    let device = autosam::backend::cpu();
    let pe = sam.prompt_encoder.dense_pe().to_device::<4>(&device);
    let names: Vec<&str> = info
        .classes
        .iter()
        .skip(1)
        .map(|c| c.name.as_str())
        .collect();
    let mut table = DiceTable::new(&names, &[]);
    print!("{}", table.header());
    for (name, image, gt) in &pairs {
        let volume = read_volume(image)?;
        let truth = read_volume(gt)?.labels();
        let prepared = PreparedVolume::new(&volume, sam.input_size());
        let emb = embeddings(sam, image, &prepared, cache_dir)?;
        let mut pred = vec![0u8; truth.len()];
        let [c, g, _] = emb.shape;
        for (z, e) in emb.slices.into_iter().enumerate() {
            let x = Tensor::<4>::from_data(TensorData::new(e, [1, c, g, g]), &device);
            let logits = head
                .forward(x, pe.clone())
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| format!("{e:?}"))?;
            let labels = labels_from_class_logits(&logits, head.classes(), &prepared.letterbox);
            put_label_slice(&mut pred, prepared.dims, prepared.axis, z, &labels);
        }
        let scores: Vec<Option<f64>> = (1..=names.len() as u8)
            .map(|k| dice(&pred, &truth, k))
            .collect();
        println!("{}", table.row(name, &[], &scores));
    }
    println!("{}", table.mean_row(&[]));
    Ok(())
}
