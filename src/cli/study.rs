//! `autosam eval-box` and `autosam experiment`: SAM(box) on labelled volumes, and the paper's
//! label-efficiency study (`autosam::study`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use autosam::error::Result;
use autosam::study::data::at;
use autosam::study::experiment::{self, Budget, ExperimentArgs, Method, Plan, parse_k};
use autosam::study::{load_model, score};

use super::labelled::Labelled;

/// SAM(box) on labelled volumes (NAME.nii.gz + NAME_gt.nii.gz): per-class 3-D Dice.
#[derive(clap::Args)]
pub struct EvalBox {
    #[command(flatten)]
    labelled: Labelled,
    /// Only the first N pairs (sorted by name).
    #[arg(long)]
    limit: Option<usize>,
    /// Also write the markdown table here.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl EvalBox {
    pub fn run(self) -> Result<()> {
        let (sam, _) = self.labelled.model()?;
        let mut pairs = self.labelled.pairs()?;
        pairs.truncate(self.limit.unwrap_or(pairs.len()));
        let table = score::sam_box(&sam, &pairs, &self.labelled.cache, |row| eprintln!("{row}"))?;
        print!("{table}");
        if let Some(out) = &self.out {
            std::fs::write(out, table).map_err(|e| at(out, e))?;
        }
        Ok(())
    }
}

/// The label-efficiency study: every method at K = 1, 2, 4, 8 labelled patients, scored on
/// held-out patients; writes NAME.csv, NAME.md and NAME.svg into --out.
#[derive(clap::Args)]
pub struct Experiment {
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value = "docs")]
    out: PathBuf,
    /// File name stem of the outputs.
    #[arg(long, default_value = "experiment")]
    name: String,
    /// The CI size: one patient to train on, one to test, two steps per method.
    #[arg(long)]
    quick: bool,
    /// Mini-batches per training run (every method, every K); the plan's when absent.
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<usize>,
    /// Passes over each run's training slices instead (the paper trains 120): larger Ks then
    /// train for more mini-batches.
    #[arg(long)]
    epochs: Option<usize>,
    /// Only these Ks, as K:draws (`1:2,8:1`; `all` for every development patient, 001-044);
    /// the plan's when absent.
    #[arg(long, value_delimiter = ',', value_parser = parse_k)]
    ks: Vec<(usize, usize)>,
    /// Only these methods: sam-box, autosam, cnn, linear, autosam-aug, unet, unet-simclr.
    #[arg(long, value_delimiter = ',')]
    methods: Vec<Method>,
    /// Keep the runs already in OUT/NAME.csv, skip them, and merge new ones in as each
    /// finishes (two processes may resume one name side by side, given different runs:
    /// a run that both start before either has written it is trained twice).
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value = "weights/lite_medsam.pth")]
    weights: PathBuf,
    #[arg(long, default_value = "weights/embeddings")]
    cache: PathBuf,
    /// Where runs in progress keep their checkpoints (CHECKPOINTS/NAME/method-kK-dDRAW): with
    /// --resume a stopped run goes on from its last one (written every 5 minutes).
    #[arg(long, default_value = "weights/runs")]
    checkpoints: PathBuf,
    /// Stop after this many minutes: the run in progress writes its checkpoint at its next
    /// epoch's end and the command ends (a part that must finish before the machine is gone).
    #[arg(long)]
    stop_after_minutes: Option<f64>,
}

impl Experiment {
    pub fn run(self) -> Result<()> {
        let started = Instant::now();
        let (sam, weights) = load_model(&self.weights)?;
        let mut plan = if self.quick {
            Plan::quick()
        } else {
            Plan::full()
        };
        if let Some(n) = self.steps {
            plan.budget = Budget::Steps(n);
        }
        if let Some(e) = self.epochs {
            plan.budget = Budget::Epochs(e);
        }
        plan.select(&self.ks, &self.methods)?;
        let args = ExperimentArgs {
            checkpoints: self.checkpoints.join(&self.name),
            // Beyond what a clock holds means never.
            stop_at: self
                .stop_after_minutes
                .and_then(|m| Duration::try_from_secs_f64(m.max(0.0) * 60.0).ok())
                .and_then(|d| started.checked_add(d)),
            data: self.data,
            out: self.out,
            plan,
            name: self.name,
            cache: self.cache,
            resume: self.resume,
        };
        let (here, all) = experiment::run(&sam, &weights, &args)?;
        println!(
            "wrote {}.{{csv,md,svg}} ({here} runs here, {all} in the file, wall time {:.1} min)",
            args.out.join(&args.name).display(),
            started.elapsed().as_secs_f64() / 60.0
        );
        Ok(())
    }
}

/// The paper's embedding map: t-SNE of the encoder's embeddings (one point per class per slice,
/// the class's mean vector), coloured by class and marked by ACDC patient group; writes
/// NAME.svg and NAME.csv into --out.
#[derive(clap::Args)]
pub struct EmbeddingMap {
    #[command(flatten)]
    labelled: Labelled,
    #[arg(long, default_value = "docs")]
    out: PathBuf,
    #[arg(long, default_value = "embedding-map")]
    name: String,
    #[arg(long, default_value_t = 30.0)]
    perplexity: f32,
}

impl EmbeddingMap {
    pub fn run(self) -> Result<()> {
        use autosam::heads::store::{PALETTE, cardiac_classes};
        use autosam::study::embedding_map;
        let (sam, _) = self.labelled.model()?;
        let pairs = self.labelled.pairs()?;
        let cases = autosam::study::data::load_cases(&sam, &pairs, &self.labelled.cache)?;
        let t = Instant::now();
        let points = embedding_map::map(&cases, self.perplexity)?;
        let classes: Vec<String> = cardiac_classes().into_iter().map(|c| c.name).collect();
        let svg = self.out.join(format!("{}.svg", self.name));
        embedding_map::plot(&points, &classes, &PALETTE, &svg)?;
        let csv = self.out.join(format!("{}.csv", self.name));
        std::fs::write(&csv, embedding_map::csv(&points, &classes)).map_err(|e| at(&csv, e))?;
        println!(
            "{} points from {} volumes in {:.0} s: {} and {}",
            points.len(),
            cases.len(),
            t.elapsed().as_secs_f64(),
            svg.display(),
            csv.display()
        );
        Ok(())
    }
}
