//! `autosam train` and `autosam eval`: a head on cached embeddings of labelled volumes, and its
//! per-class 3-D Dice (`autosam::study`).

use std::path::PathBuf;
use std::time::Instant;

use autosam::container::Precision;
use autosam::error::Result;
use autosam::heads::HeadKind;
use autosam::study::heads::{TrainArgs, default_head, load_head, train};
use autosam::study::{load_model, score};
use autosam::train::{Schedule, TrainConfig};

/// Train a prompt-free head on cached embeddings of labelled volumes.
#[derive(clap::Args)]
pub struct Train {
    #[arg(long)]
    data: PathBuf,
    /// Comma-separated name prefixes (`patient001,patient002`); all pairs when absent.
    #[arg(long)]
    volumes: Option<String>,
    #[arg(long, value_enum, default_value_t = HeadKind::AutoSam)]
    head: HeadKind,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    batch_size: usize,
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    lr: f64,
    /// How the learning rate moves from `--lr` over the run.
    #[arg(long, value_enum, default_value_t = Schedule::Cosine)]
    schedule: Schedule,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Augmented views per slice, of the paper's family (elastic deformation included), encoded
    /// once and cached; each epoch shows every slice in a different one (or as it is).
    #[arg(long, default_value_t = 0)]
    views: usize,
    /// Train for exactly this many mini-batches instead of `--epochs` passes.
    #[arg(long)]
    steps: Option<usize>,
    /// Storage of the head file.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
    /// Continue training this head file (its kind and classes win over --head).
    #[arg(long)]
    init: Option<PathBuf>,
    /// A folder where the run's checkpoint (head, Adam's state, history) is kept after every
    /// epoch; when it holds one of this same run, training goes on from there.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Share of the slices held out for validation Dice.
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f64,
    #[arg(long, default_value = "weights/lite_medsam.pth")]
    weights: PathBuf,
    /// Where slice embeddings are cached (by file hash and encoder).
    #[arg(long, default_value = "weights/embeddings")]
    cache: PathBuf,
}

impl Train {
    pub fn run(self) -> Result<()> {
        let started = Instant::now();
        let (sam, weights) = load_model(&self.weights)?;
        let config = TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            schedule: self.schedule,
            seed: self.seed,
            steps: self.steps,
            views: self.views,
        };
        let args = TrainArgs {
            data: self.data,
            volumes: self.volumes,
            head: self.head,
            out: self.out,
            config,
            val_fraction: self.val_fraction,
            cache: self.cache,
            precision: self.precision,
            init: self.init,
            checkpoint: self.checkpoint,
        };
        let (kind, history) = train(&sam, &weights, &args, |p| {
            eprintln!(
                "epoch {:>3}  loss {:.4}  val Dice {}{}  ({:.0} s)",
                p.epoch,
                p.loss,
                p.val_dice.map_or("-".into(), |d| format!("{d:.4}")),
                if p.best { " (best)" } else { "" },
                started.elapsed().as_secs_f64()
            );
        })?;
        println!(
            "wrote {} ({kind} head, {} epochs, {:.0} s)",
            args.out.display(),
            history.last().map_or(0, |p| p.epoch),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// Per-class 3-D Dice of a head on labelled volumes.
#[derive(clap::Args)]
pub struct Eval {
    /// A head file from `train`; the shipped default head when absent.
    #[arg(long)]
    head: Option<PathBuf>,
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    volumes: Option<String>,
    #[arg(long, default_value = "weights/lite_medsam.pth")]
    weights: PathBuf,
    #[arg(long, default_value = "weights/embeddings")]
    cache: PathBuf,
}

impl Eval {
    pub fn run(self) -> Result<()> {
        let (sam, weights) = load_model(&self.weights)?;
        let (head, info) = match &self.head {
            Some(path) => load_head(path, &sam, &weights)?,
            None => default_head(&sam, &weights)?,
        };
        let (data, volumes) = (&self.data, self.volumes.as_deref());
        score::head_table(
            &sam,
            &head,
            &info.classes,
            data,
            volumes,
            &self.cache,
            |row| println!("{row}"),
        )?;
        Ok(())
    }
}
