//! `autosam train` and `autosam eval`: a head on cached embeddings of labelled volumes, and its
//! per-class 3-D Dice (`autosam::study`).

use std::path::PathBuf;
use std::time::Instant;

use autosam::augment::Family;
use autosam::components::Pieces;
use autosam::container::Precision;
use autosam::error::{Error, Result};
use autosam::heads::store::HeadInfo;
use autosam::heads::{Head, HeadKind};
use autosam::model::{Sam, Weights};
use autosam::study::curves;
use autosam::study::data::{at, load_cases};
use autosam::study::heads::{TrainArgs, default_head, load_head, train};
use autosam::study::robustness::{self, Shift};
use autosam::study::score::{self, Scored};
use autosam::train::{Schedule, TrainConfig};

use super::labelled::Labelled;

/// Train a prompt-free head on cached embeddings of labelled volumes.
#[derive(clap::Args)]
pub struct Train {
    #[command(flatten)]
    labelled: Labelled,
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
    /// Augmented views per slice, encoded once and cached; each epoch shows every slice in a
    /// different one (or as it is).
    #[arg(long, default_value_t = 0)]
    views: usize,
    /// The family the views are drawn from.
    #[arg(long, value_enum, default_value_t)]
    family: Family,
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
}

impl Train {
    pub fn run(self) -> Result<()> {
        let started = Instant::now();
        let (sam, weights) = self.labelled.model()?;
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
            data: self.labelled.data,
            volumes: self.labelled.volumes,
            head: self.head,
            out: self.out,
            config,
            family: self.family,
            val_fraction: self.val_fraction,
            cache: self.labelled.cache,
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

/// Records in a head file how much of the encoder grid its training volumes' structures span
/// (the median over the volumes), which Segment's second look zooms small structures up to.
/// `train` and the page's Teach record it themselves; this sets it on a head made before.
#[derive(clap::Args)]
pub struct HeadExtent {
    /// The head file, rewritten in place (its tensors as they were).
    #[arg(long)]
    head: PathBuf,
    /// The volumes it was trained on (`--data`, `--volumes`).
    #[command(flatten)]
    labelled: Labelled,
}

impl HeadExtent {
    pub fn run(self) -> Result<()> {
        let size = self.labelled.model()?.0.input_size();
        let spans = self
            .labelled
            .pairs()?
            .iter()
            .map(|pair| autosam::study::data::pair_span(pair, size))
            .collect::<Result<Vec<_>>>()?;
        let volumes = spans.len();
        let extent = autosam::zoom::training_extent(spans);
        let bytes = std::fs::read(&self.head).map_err(|e| at(&self.head, e))?;
        let out = autosam::heads::store::with_extent(&bytes, extent)?;
        std::fs::write(&self.head, out).map_err(|e| at(&self.head, e))?;
        match extent {
            Some(e) => println!(
                "{}: extent {e:.3} of the grid (the median of {volumes} volumes)",
                self.head.display()
            ),
            None => println!("{}: no labelled volume, no extent", self.head.display()),
        }
        Ok(())
    }
}

/// Averages heads fine-tuned from one start, parameter by parameter (a uniform model soup):
/// one head at one head's cost, usually better than each of the runs it averages.
#[derive(clap::Args)]
pub struct Soup {
    /// The head files, comma-separated: one kind, classes and encoder, from one starting head.
    #[arg(long, value_delimiter = ',', required = true)]
    heads: Vec<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    /// Storage of the head file.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
}

impl Soup {
    pub fn run(self) -> Result<()> {
        let files = self
            .heads
            .iter()
            .map(|path| std::fs::read(path).map_err(|e| at(path, e)))
            .collect::<Result<Vec<_>>>()?;
        let (info, weights) = autosam::heads::soup::average(&files)?;
        let bytes = autosam::heads::store::write(&weights, &info, self.precision)?;
        std::fs::write(&self.out, bytes).map_err(|e| at(&self.out, e))?;
        println!(
            "wrote {} (the mean of {} {} heads)",
            self.out.display(),
            files.len(),
            info.kind
        );
        Ok(())
    }
}

/// Per-class 3-D Dice of a head on labelled volumes.
#[derive(clap::Args)]
pub struct Eval {
    #[command(flatten)]
    scoring: Scoring,
    #[command(flatten)]
    labelled: Labelled,
}

impl Eval {
    pub fn run(self) -> Result<()> {
        let (sam, weights) = self.labelled.model()?;
        let scoring = self.scoring.open(&sam, &weights)?;
        score::head_table(
            &sam,
            &scoring.scored(),
            &self.labelled.pairs()?,
            &self.labelled.cache,
            |row| println!("{row}"),
        )?;
        Ok(())
    }
}

/// A head's mean 3-D Dice on labelled volumes changed as other scanners change them: rotated,
/// mirrored, another field of view, contrast, noise (each changed slice encoded once, cached).
#[derive(clap::Args)]
pub struct Robustness {
    #[command(flatten)]
    scoring: Scoring,
    #[command(flatten)]
    labelled: Labelled,
    /// Also write the markdown table here.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl Robustness {
    pub fn run(self) -> Result<()> {
        let (sam, weights) = self.labelled.model()?;
        let scoring = self.scoring.open(&sam, &weights)?;
        let cases = load_cases(&sam, &self.labelled.pairs()?, &self.labelled.cache)?;
        let table = robustness::table(
            &sam,
            &scoring.scored(),
            &cases,
            &Shift::ALL,
            &self.labelled.cache,
            |row| eprintln!("{row}"),
        )?;
        print!("{table}");
        if let Some(out) = &self.out {
            std::fs::write(out, table).map_err(|e| at(out, e))?;
        }
        Ok(())
    }
}

/// Which head scores labelled volumes, and Segment's steps after it.
#[derive(clap::Args)]
struct Scoring {
    /// A head file from `train`; the shipped default head when absent.
    #[arg(long)]
    head: Option<PathBuf>,
    /// What each class keeps of the head's voxels (as Segment does by default: the largest pieces).
    #[arg(long, value_enum, default_value_t)]
    pieces: Pieces,
    /// A second look, zoomed, at volumes whose structures come out small (a wider field of view).
    #[arg(long)]
    zoom: bool,
}

/// An opened [`Scoring`]: the head and its second look's target (the head's training extent).
struct OpenScoring {
    head: Head,
    info: HeadInfo,
    pieces: Pieces,
    zoom: Option<f32>,
}

impl Scoring {
    /// Loads the head file (or the shipped default); `--zoom` needs the head's training extent.
    fn open(&self, sam: &Sam, weights: &Weights) -> Result<OpenScoring> {
        let (head, info) = match &self.head {
            Some(path) => load_head(path, sam, weights)?,
            None => default_head(sam, weights)?,
        };
        let zoom = match (self.zoom, info.extent) {
            (false, _) => None,
            (true, Some(extent)) => Some(extent),
            (true, None) => {
                return Err(Error::Invalid(
                    "--zoom: the head records no training extent to zoom small structures up to"
                        .into(),
                ));
            }
        };
        Ok(OpenScoring {
            head,
            info,
            pieces: self.pieces,
            zoom,
        })
    }
}

impl OpenScoring {
    fn scored(&self) -> Scored<'_, Head> {
        Scored {
            head: &self.head,
            classes: &self.info.classes,
            pieces: self.pieces,
            zoom: self.zoom,
        }
    }
}

/// Training loss and validation Dice per epoch from checkpoint folders (`train --checkpoint`),
/// each run continuing the one before: a markdown table, and an SVG plot with --plot.
#[derive(clap::Args)]
pub struct Curves {
    /// Checkpoint folders in the order the runs ran, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    runs: Vec<PathBuf>,
    /// Draw the curves into this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
}

impl Curves {
    pub fn run(self) -> Result<()> {
        let stages = curves::load(&self.runs)?;
        print!("{}", curves::table(&stages));
        if let Some(path) = &self.plot {
            curves::plot(&stages, path)?;
        }
        Ok(())
    }
}
