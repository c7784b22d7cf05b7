//! `autosam train` and `autosam eval`: a head on cached embeddings of labelled volumes, and its
//! per-class 3-D Dice.

use std::path::{Path, PathBuf};
use std::time::Instant;

use autosam::cache::{self, VolumeEmbeddings};
use autosam::container::Precision;
use autosam::heads::store::{self, HeadInfo, cardiac_classes};
use autosam::heads::{Head, HeadKind, Segmenter};
use autosam::metrics::dice;
use autosam::model::{Sam, Weights};
use autosam::pipeline::{PreparedVolume, label_slice, put_label_slice};
use autosam::train::{Progress, Sample, TrainConfig, fit, inputs, shuffle};
use burn::module::Module;
use burn::tensor::Tensor;

use super::eval_box::{DiceTable, labelled_pairs, read_volume, volume_from_bytes};

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

/// A volume's embeddings from the cache entry `key`, or encoded now and stored there.
pub fn embeddings(
    sam: &Sam,
    key: &str,
    prepared: &PreparedVolume,
    cache_dir: &Path,
) -> Result<VolumeEmbeddings, String> {
    let entry = cache_dir.join(format!("{key}.safetensors"));
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

/// A labelled volume ready for the heads and baselines: encoder inputs, cached embeddings and
/// the ground truth in the source grid.
pub struct Case {
    pub name: String,
    pub prepared: PreparedVolume,
    pub truth: Vec<u8>,
    pub embeddings: VolumeEmbeddings,
    /// The embedding cache key of the image file (content hash and encoder).
    pub key: String,
}

impl Case {
    pub fn load(
        sam: &Sam,
        pair: &(String, PathBuf, PathBuf),
        cache_dir: &Path,
    ) -> Result<Self, String> {
        let (name, image, gt) = pair;
        let t = Instant::now();
        // One read of the image serves both the volume and its cache key.
        let bytes = std::fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
        let volume = volume_from_bytes(image, &bytes)?;
        let key = cache::key(&bytes, &sam.config.encoder_id());
        let truth = read_volume(gt)?.labels();
        if truth.len() != volume.data.len() {
            return Err(format!("{name}: labels and image differ in size"));
        }
        let prepared = PreparedVolume::new(&volume, sam.input_size());
        let embeddings = embeddings(sam, &key, &prepared, cache_dir)?;
        eprintln!(
            "{name}: {} slices ready in {:.1} s",
            prepared.slice_count(),
            t.elapsed().as_secs_f64()
        );
        Ok(Self {
            name: name.clone(),
            key,
            prepared,
            truth,
            embeddings,
        })
    }

    /// Slice `z`'s labels letterboxed onto the encoder grid.
    pub fn labels(&self, z: usize) -> Vec<u8> {
        let p = &self.prepared;
        p.letterbox
            .labels(&label_slice(&self.truth, p.dims, p.axis, z))
    }

    /// Slice `z`'s image on the encoder grid, one channel in [0, 1].
    pub fn image(&self, z: usize) -> &[f32] {
        let s = self.prepared.letterbox.size;
        &self.prepared.inputs[z][..s * s]
    }

    pub fn embedding_samples(&self) -> Vec<Sample> {
        self.embeddings
            .slices
            .iter()
            .enumerate()
            .map(|(z, e)| Sample {
                input: e.clone(),
                shape: self.embeddings.shape,
                labels: self.labels(z),
            })
            .collect()
    }

    pub fn image_samples(&self) -> Vec<Sample> {
        let s = self.prepared.letterbox.size;
        (0..self.prepared.slice_count())
            .map(|z| Sample {
                input: self.image(z).to_vec(),
                shape: [1, s, s],
                labels: self.labels(z),
            })
            .collect()
    }

    /// The model's label volume in the source grid; `images` picks image inputs (the UNet)
    /// over embeddings.
    pub fn segment<M: Segmenter>(
        &self,
        model: &M,
        images: bool,
        dense_pe: &Tensor<4>,
    ) -> Result<Vec<u8>, String> {
        let device = dense_pe.device();
        let samples = if images {
            self.image_samples()
        } else {
            self.embedding_samples()
        };
        let p = &self.prepared;
        let mut pred = vec![0u8; self.truth.len()];
        let mut z = 0;
        for chunk in samples.chunks(4) {
            let batch: Vec<&Sample> = chunk.iter().collect();
            let logits = model
                .logits(inputs(&batch, &device), dense_pe.clone())
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| format!("{e:?}"))?;
            for l in logits.chunks_exact(logits.len() / chunk.len()) {
                let labels = p.letterbox.labels_from_class_logits(l, model.classes());
                put_label_slice(&mut pred, p.dims, p.axis, z, &labels);
                z += 1;
            }
        }
        Ok(pred)
    }

    /// Per foreground class, the 3-D Dice of `pred` against the truth.
    pub fn dice(&self, pred: &[u8], classes: usize) -> Vec<Option<f64>> {
        (1..classes as u8)
            .map(|k| dice(pred, &self.truth, k))
            .collect()
    }
}

pub fn load_cases(
    sam: &Sam,
    pairs: &[(String, PathBuf, PathBuf)],
    cache_dir: &Path,
) -> Result<Vec<Case>, String> {
    pairs
        .iter()
        .map(|p| Case::load(sam, p, cache_dir))
        .collect()
}

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

pub fn train(sam: &Sam, sam_weights: &Weights, args: TrainArgs) -> Result<(), String> {
    let started = Instant::now();
    let pairs = select(&args.data, args.volumes.as_deref())?;
    let cases = load_cases(sam, &pairs, &args.cache)?;
    let mut all: Vec<Sample> = cases.iter().flat_map(Case::embedding_samples).collect();
    drop(cases);
    let cfg = &args.config;
    shuffle(&mut all, cfg.seed);
    let n_val = ((all.len() as f64) * args.val_fraction).round() as usize;
    let val = all.split_off(all.len() - n_val.min(all.len().saturating_sub(1)));
    let device = autosam::backend::cpu().autodiff();
    // The seed fixes the head's initialisation too, not only the data order.
    device.seed(cfg.seed);
    let (head, classes, before) = match &args.init {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let (head, info) = head_from_bytes(&bytes, sam, sam_weights, &device)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            // Loaded parameters are constants until asked to track gradients.
            (
                head.set_require_grad(true),
                info.classes,
                Some(info.training),
            )
        }
        None => {
            let classes = cardiac_classes();
            let head = Head::new(args.head, classes.len(), sam_weights, &device)
                .map_err(|e| e.to_string())?;
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
    let save = |head: &Head, history: &[Progress]| -> Result<(), String> {
        let bytes = store::save(head, &info(history), args.precision).map_err(|e| e.to_string())?;
        std::fs::write(&args.out, bytes).map_err(|e| format!("{}: {e}", args.out.display()))
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
            eprintln!(
                "epoch {:>3}  loss {:.4}  val Dice {}{}  ({:.0} s)",
                p.epoch,
                p.loss,
                p.val_dice.map_or("-".into(), |d| format!("{d:.4}")),
                if p.best { " (best)" } else { "" },
                started.elapsed().as_secs_f64()
            );
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
    println!(
        "wrote {} ({} head, {} epochs, {:.0} s)",
        args.out.display(),
        kind,
        history.last().map_or(0, |p| p.epoch),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A head from its file, on the CPU backend.
pub fn load_head(
    path: &Path,
    sam: &Sam,
    sam_weights: &Weights,
) -> Result<(Head, HeadInfo), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    head_from_bytes(&bytes, sam, sam_weights, &autosam::backend::cpu())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The default cardiac head (RV, MYO, LV on LiteMedSAM); docs/heads.md says how it was trained.
/// The page fetches the same file.
const DEFAULT_HEAD: &[u8] = include_bytes!("../../www/heads/cardiac.safetensors");

/// The shipped cardiac head (built into the binary, so `eval` works from any directory).
pub fn default_head(sam: &Sam, sam_weights: &Weights) -> Result<(Head, HeadInfo), String> {
    head_from_bytes(DEFAULT_HEAD, sam, sam_weights, &autosam::backend::cpu())
        .map_err(|e| format!("the built-in default head: {e}"))
}

fn head_from_bytes(
    bytes: &[u8],
    sam: &Sam,
    sam_weights: &Weights,
    device: &burn::tensor::Device,
) -> Result<(Head, HeadInfo), String> {
    store::load(bytes, sam_weights, &sam.config.encoder_id(), device).map_err(|e| e.to_string())
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
    let pe = sam
        .prompt_encoder
        .dense_pe()
        .to_device::<4>(&autosam::backend::cpu());
    let names: Vec<&str> = info
        .classes
        .iter()
        .skip(1)
        .map(|c| c.name.as_str())
        .collect();
    let mut table = DiceTable::new(&names, &[]);
    print!("{}", table.header());
    for pair in &pairs {
        let case = Case::load(sam, pair, cache_dir)?;
        let pred = case.segment(head, false, &pe)?;
        println!(
            "{}",
            table.row(&case.name, &[], &case.dice(&pred, head.classes()))
        );
    }
    println!("{}", table.mean_row(&[]));
    Ok(())
}
