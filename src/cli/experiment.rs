//! `autosam experiment`: the paper's label-efficiency study. Every method trains on K labelled
//! patients (ED and ES volumes of each; several draws for small K) with the same step budget and
//! is scored by 3-D Dice on held-out patients. Writes a CSV, a markdown table and an SVG plot.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use autosam::augment::{Augment, Rng};
use autosam::baselines::UNet;
use autosam::baselines::simclr::{self, PretrainConfig};
use autosam::cache;
use autosam::heads::store::cardiac_classes;
use autosam::heads::{Head, HeadKind, Segmenter};
use autosam::metrics::mean;
use autosam::model::{HostTensor, Sam, Weights};
use autosam::train::{Sample, TrainConfig, fit, shuffle};
use burn::tensor::Tensor;

use super::eval_box::{CLASSES, box_segment_volume, fmt, labelled_pairs, read_volume};
use super::train::{Case, embeddings, load_cases};
use autosam::pipeline::PreparedVolume;

/// How big a study: `full` for docs/, `quick` for CI.
pub struct Plan {
    /// Patients the labelled ones are drawn from.
    pub pool: Vec<String>,
    /// Held-out patients scored by every method.
    pub test: Vec<String>,
    /// Patients whose images (no labels) SimCLR pretrains on; never the test patients.
    pub unlabelled: Vec<String>,
    /// (K, draws)
    pub ks: Vec<(usize, usize)>,
    /// Mini-batches per training run, the same for every method and K.
    pub steps: usize,
    pub simclr: PretrainConfig,
    /// Ks at which AutoSAM is also trained with augmented views added, and how many per slice.
    pub aug_ks: Vec<usize>,
    pub aug_views: usize,
    /// The methods to run, by key ([`METHOD_KEYS`]); all when empty. A converged run can then be
    /// made in parts (a few Ks and methods at a time) and each part's rows read side by side.
    pub methods: Vec<String>,
}

/// `--methods` keys, in the order the methods run.
pub const METHOD_KEYS: [&str; 7] = [
    "sam-box",
    "autosam",
    "cnn",
    "linear",
    "autosam-aug",
    "unet",
    "unet-simclr",
];

fn patients(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("patient{i:03}")).collect()
}

impl Plan {
    fn runs(&self, key: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == key)
    }

    /// Keeps the Ks and methods named (`1:2,8:1` gives K and draws; an empty list keeps all).
    pub fn select(&mut self, ks: &[(usize, usize)], methods: &[String]) -> Result<(), String> {
        if let Some(bad) = methods.iter().find(|m| !METHOD_KEYS.contains(&m.as_str())) {
            return Err(format!(
                "unknown method `{bad}`: use {}",
                METHOD_KEYS.join(", ")
            ));
        }
        if !ks.is_empty() {
            self.ks = ks.to_vec();
        }
        self.methods = methods.to_vec();
        Ok(())
    }

    pub fn full() -> Self {
        Self {
            pool: patients(1..=20),
            test: patients(45..=50),
            unlabelled: patients(1..=40),
            ks: vec![(1, 2), (2, 1), (4, 1), (8, 1)],
            steps: 30,
            simclr: PretrainConfig {
                steps: 80,
                ..PretrainConfig::default()
            },
            aug_ks: vec![1],
            methods: Vec::new(),
            aug_views: 2,
        }
    }

    pub fn quick() -> Self {
        Self {
            pool: patients(1..=1),
            test: patients(2..=2),
            unlabelled: patients(1..=1),
            ks: vec![(1, 1)],
            steps: 2,
            simclr: PretrainConfig {
                steps: 2,
                batch_size: 4,
                view_size: 64,
                ..PretrainConfig::default()
            },
            aug_ks: vec![1],
            methods: Vec::new(),
            aug_views: 1,
        }
    }
}

/// One trained-and-scored run.
#[derive(Clone, Debug)]
struct Run {
    method: String,
    k: usize,
    draw: usize,
    patients: Vec<String>,
    /// Per class (RV, MYO, LV), the mean over test volumes.
    dice: Vec<Option<f64>>,
    train_s: f64,
    eval_s: f64,
    steps: usize,
    /// Mean training loss of the first and of the last epoch: whether a run has stopped
    /// improving, which its Dice alone cannot say.
    loss: Option<(f64, f64)>,
}

impl Run {
    fn mean(&self) -> Option<f64> {
        mean(self.dice.iter().copied())
    }

    fn is(&self, method: &str, k: usize, draw: usize) -> bool {
        (self.method.as_str(), self.k, self.draw) == (method, k, draw)
    }

    fn same(&self, other: &Run) -> bool {
        self.is(&other.method, other.k, other.draw)
    }
}

/// The order methods are listed and plotted in, whichever order their runs finished in.
const ORDER: [&str; 7] = [
    SAM_BOX,
    HEADS[0].0,
    HEADS[1].0,
    HEADS[2].0,
    AUG,
    UNET,
    UNET_SIMCLR,
];

const HEADS: [(&str, HeadKind); 3] = [
    ("AutoSAM", HeadKind::AutoSam),
    ("CNN head", HeadKind::Cnn),
    ("linear head", HeadKind::Linear),
];
const UNET: &str = "UNet (scratch)";
const UNET_SIMCLR: &str = "UNet + SimCLR";
const AUG: &str = "AutoSAM + aug. views";
const SAM_BOX: &str = "SAM (box) zero-shot";

fn cases_of<'a>(cases: &'a [Case], patients: &[String]) -> Vec<&'a Case> {
    cases
        .iter()
        .filter(|c| patients.iter().any(|p| c.name.starts_with(p.as_str())))
        .collect()
}

/// Mean over test volumes of each class's Dice.
fn score<M: Segmenter>(
    model: &M,
    test: &[&Case],
    images: bool,
    pe: &Tensor<4>,
) -> Result<Vec<Option<f64>>, String> {
    let mut per_volume = Vec::new();
    for case in test {
        let pred = case.segment(model, images, pe)?;
        per_volume.push(case.dice(&pred, model.classes()));
    }
    Ok(class_means(&per_volume))
}

/// Per class, the mean of its Dice over volumes.
fn class_means(per_volume: &[Vec<Option<f64>>]) -> Vec<Option<f64>> {
    (0..CLASSES.len())
        .map(|k| mean(per_volume.iter().map(|d| d[k])))
        .collect()
}

/// `views` augmented copies of each slice of `case`, encoded (and cached) with their labels.
fn augmented(
    sam: &Sam,
    case: &Case,
    views: usize,
    seed: u64,
    cache_dir: &Path,
) -> Result<Vec<Sample>, String> {
    let s = case.prepared.letterbox.size;
    let n = case.prepared.slice_count();
    let draws: Vec<(usize, Augment)> = (0..n)
        .flat_map(|z| {
            let mut rng = Rng::new(seed ^ ((z as u64) << 20));
            (0..views)
                .map(move |_| (z, Augment::random(&mut rng)))
                .collect::<Vec<_>>()
        })
        .collect();
    let images: Vec<Vec<f32>> = draws
        .iter()
        .map(|(z, a)| {
            let plane = a.image(case.image(*z), s, s);
            plane.repeat(3)
        })
        .collect();
    let tag = format!("{}:aug{views}:seed{seed}", sam.config.encoder_id());
    let prepared = PreparedVolume {
        inputs: images,
        ..case.prepared.clone()
    };
    let key = cache::key(case.key.as_bytes(), &tag);
    let emb = embeddings(sam, &key, &prepared, cache_dir)?;
    Ok(draws
        .iter()
        .zip(emb.slices)
        .map(|((z, a), e)| Sample {
            input: e,
            shape: emb.shape,
            labels: a.labels(&case.labels(*z), s, s),
        })
        .collect())
}

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

pub fn run(sam: &Sam, sam_weights: &Weights, args: ExperimentArgs) -> Result<(), String> {
    let started = Instant::now();
    let plan = &args.plan;
    let pairs = labelled_pairs(&args.data)?;
    let wanted = |list: &[String]| -> Vec<(String, PathBuf, PathBuf)> {
        pairs
            .iter()
            .filter(|(n, _, _)| list.iter().any(|p| n.starts_with(p.as_str())))
            .cloned()
            .collect()
    };
    let mut labelled: Vec<String> = plan.pool.clone();
    labelled.extend(plan.test.iter().cloned());
    let chosen = wanted(&labelled);
    if chosen.is_empty() {
        return Err(format!(
            "no ACDC patients of the plan in {}",
            args.data.display()
        ));
    }
    let cases = load_cases(sam, &chosen, &args.cache)?;
    let test = cases_of(&cases, &plan.test);
    let ready_s = started.elapsed().as_secs_f64();
    eprintln!(
        "{} volumes ready ({} test) in {ready_s:.0} s",
        cases.len(),
        test.len()
    );

    let cpu = autosam::backend::cpu();
    let dense_pe = sam.prompt_encoder.dense_pe();
    let pe = dense_pe.to_device::<4>(&cpu);
    let classes = cardiac_classes().len();
    let mut runs: Vec<Run> = Vec::new();
    let outputs = Outputs::new(&args)?;
    // Runs another process (or an earlier part) has already written.
    let done = |method: &str, k: usize, draw: usize| -> Result<bool, String> {
        Ok(args.resume && outputs.read()?.iter().any(|r| r.is(method, k, draw)))
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
    let sam_box = plan.runs("sam-box") && !done(SAM_BOX, 0, 0)?;
    for case in test.iter().filter(|_| sam_box) {
        let pred = box_segment_volume(sam, &case.prepared, &case.truth, |z| {
            case.embeddings.slice(z, &cpu)
        });
        per_volume.push(case.dice(&pred, classes));
    }
    if sam_box {
        runs.push(Run {
            method: SAM_BOX.into(),
            k: 0,
            draw: 0,
            patients: vec![],
            dice: class_means(&per_volume),
            train_s: 0.0,
            eval_s: t.elapsed().as_secs_f64(),
            steps: plan.steps,
            loss: None,
        });
        report(runs.last().unwrap());
        outputs.write(&runs, plan, &summary(&runs, None))?;
    }

    // SimCLR once, on unlabelled images of the non-test patients, when a run still needs it.
    let ad = cpu.autodiff();
    let simclr_needed = plan.runs("unet-simclr")
        && plan
            .ks
            .iter()
            .any(|&(k, draws)| (0..draws).any(|d| !done(UNET_SIMCLR, k, d).unwrap_or(false)));
    let pretrained = if simclr_needed {
        let t = Instant::now();
        let images = unlabelled_slices(sam, &wanted(&plan.unlabelled))?;
        if images.is_empty() {
            return Err(format!(
                "SimCLR: no images of {} in {}",
                range_name(&plan.unlabelled),
                args.data.display()
            ));
        }
        let encoder = simclr::pretrain(
            &images,
            sam.input_size(),
            &plan.simclr,
            &ad,
            |step, loss| {
                if step % 10 == 0 || step == plan.simclr.steps {
                    eprintln!("SimCLR step {step}: NT-Xent {loss:.4}");
                }
            },
        );
        let s = t.elapsed().as_secs_f64();
        eprintln!("SimCLR on {} slices: {s:.0} s", images.len());
        Some((encoder, s))
    } else {
        None
    };
    let simclr_s = pretrained.as_ref().map(|p| p.1);

    for &(k, draws) in &plan.ks {
        for draw in 0..draws {
            let mut pool = plan.pool.clone();
            shuffle(&mut pool, (k * 1000 + draw) as u64);
            let chosen: Vec<String> = pool.into_iter().take(k).collect();
            let train_cases = cases_of(&cases, &chosen);
            let emb: Vec<Sample> = train_cases
                .iter()
                .flat_map(|c| c.embedding_samples())
                .collect();
            let img: Vec<Sample> = train_cases.iter().flat_map(|c| c.image_samples()).collect();
            let cfg = TrainConfig {
                steps: Some(plan.steps),
                seed: draw as u64,
                ..TrainConfig::default()
            };
            let mut go = |method: &str, scored: Scored| {
                let (dice, loss, train_s, eval_s) = scored?;
                runs.push(Run {
                    method: method.into(),
                    k,
                    draw,
                    patients: chosen.clone(),
                    dice,
                    train_s,
                    eval_s,
                    steps: plan.steps,
                    loss,
                });
                report(runs.last().unwrap());
                outputs.write(&runs, plan, &summary(&runs, simclr_s))
            };
            let todo = |method: &str, key: &str| -> Result<bool, String> {
                Ok(plan.runs(key) && !done(method, k, draw)?)
            };
            let fit_score = |model: Head, samples: &[Sample]| {
                train_and_score(model, samples, false, &cfg, &dense_pe, &test, &pe)
            };
            for (method, kind) in HEADS {
                if !todo(method, kind.as_str())? {
                    continue;
                }
                ad.seed(draw as u64);
                let head = Head::new(kind, classes, sam_weights, &ad).map_err(|e| e.to_string())?;
                go(method, fit_score(head, &emb))?;
            }
            if plan.aug_ks.contains(&k) && todo(AUG, "autosam-aug")? {
                let mut with_views = emb.clone();
                for c in &train_cases {
                    with_views.extend(augmented(sam, c, plan.aug_views, draw as u64, &args.cache)?);
                }
                ad.seed(draw as u64);
                let head = Head::new(HeadKind::AutoSam, classes, sam_weights, &ad)
                    .map_err(|e| e.to_string())?;
                go(AUG, fit_score(head, &with_views))?;
            }
            if todo(UNET, "unet")? {
                ad.seed(draw as u64);
                let unet = UNet::new(1, classes, &ad);
                go(
                    UNET,
                    train_and_score(unet, &img, true, &cfg, &dense_pe, &test, &pe),
                )?;
            }
            if let Some((encoder, _)) = &pretrained
                && todo(UNET_SIMCLR, "unet-simclr")?
            {
                ad.seed(draw as u64);
                let unet = UNet::with_encoder(encoder.clone(), classes, &ad);
                go(
                    UNET_SIMCLR,
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
    println!(
        "wrote {}.{{csv,md,svg}} ({} runs here, {all} in the file, wall time {:.1} min)",
        outputs.stem.display(),
        runs.len(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// This invocation's times, for the table's closing line.
struct Summary {
    wall_s: f64,
    ready_s: f64,
    simclr_s: Option<f64>,
    runs_here: usize,
}

/// The CSV, markdown and SVG of one experiment name.
#[derive(Debug)]
struct Outputs {
    stem: PathBuf,
    resume: bool,
    steps: usize,
}

impl Outputs {
    fn new(args: &ExperimentArgs) -> Result<Self, String> {
        std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
        let outputs = Self {
            stem: args.out.join(&args.name),
            resume: args.resume,
            steps: args.plan.steps,
        };
        outputs.read()?;
        Ok(outputs)
    }

    fn path(&self, ext: &str) -> PathBuf {
        self.stem.with_extension(ext)
    }

    /// The runs in the CSV when resuming (none otherwise, or when there is no file yet).
    fn read(&self) -> Result<Vec<Run>, String> {
        if !self.resume {
            return Ok(Vec::new());
        }
        let path = self.path("csv");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let runs = parse_csv(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(r) = runs.iter().find(|r| r.steps != self.steps) {
            return Err(format!(
                "{} holds runs of {} steps, and this one trains {}: give it another --name",
                path.display(),
                r.steps,
                self.steps
            ));
        }
        Ok(runs)
    }

    /// Writes this invocation's runs merged with the file's (under a lock, so two processes
    /// resuming the same name lose nothing); returns how many runs the file now holds.
    fn write(&self, mine: &[Run], plan: &Plan, summary: &Summary) -> Result<usize, String> {
        let err = |e: std::io::Error| format!("{}: {e}", self.path("lock").display());
        let lock = std::fs::File::create(self.path("lock")).map_err(err)?;
        lock.lock().map_err(err)?;
        let mut all = self.read()?;
        all.retain(|r| !mine.iter().any(|m| m.same(r)));
        all.extend(mine.iter().map(Run::clone));
        all.sort_by_key(|r| {
            let at = ORDER.iter().position(|m| *m == r.method);
            (at.unwrap_or(ORDER.len()), r.k, r.draw)
        });
        let write = |ext: &str, text: String| {
            let path = self.path(ext);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
        };
        write("csv", csv(&all))?;
        write("md", markdown(&all, plan, summary))?;
        plot(&all, &self.path("svg"))?;
        // The lock file stays: removing it would let a process still waiting on the old file and
        // one that creates a new file both hold "the" lock.
        drop(lock);
        Ok(all.len())
    }
}

/// Every slice of the volumes' images as one plane (the encoder input's first channel).
fn unlabelled_slices(
    sam: &Sam,
    volumes: &[(String, PathBuf, PathBuf)],
) -> Result<Vec<Vec<f32>>, String> {
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
type Scored = Result<(Vec<Option<f64>>, Option<(f64, f64)>, f64, f64), String>;

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
        .ok_or("a model without parameters")?;
    let (model, history) = fit(model, samples, &[], cfg, dense_pe, &device, |_, _| {});
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

fn report(r: &Run) {
    eprintln!(
        "{:<22} K={} draw {}: RV {} MYO {} LV {} mean {}  (train {:.0} s, eval {:.0} s)",
        r.method,
        r.k,
        r.draw,
        fmt(r.dice[0]),
        fmt(r.dice[1]),
        fmt(r.dice[2]),
        fmt(r.mean()),
        r.train_s,
        r.eval_s
    );
}

const CSV_HEADER: &str =
    "method,k,draw,patients,rv,myo,lv,mean,train_s,eval_s,steps,first_loss,last_loss";

fn csv(runs: &[Run]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for r in runs {
        let d: Vec<String> = r
            .dice
            .iter()
            .map(|v| v.map_or(String::new(), |x| format!("{x:.4}")))
            .collect();
        let (first, last) = r.loss.map_or((String::new(), String::new()), |(a, b)| {
            (format!("{a:.4}"), format!("{b:.4}"))
        });
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.1},{:.1},{},{first},{last}",
            // A comma would shift every later column.
            r.method.replace(',', ";"),
            r.k,
            r.draw,
            r.patients.join(" "),
            d.join(","),
            r.mean().map_or(String::new(), |x| format!("{x:.4}")),
            r.train_s,
            r.eval_s,
            r.steps
        );
    }
    out
}

/// The runs of a CSV that [`csv`] wrote. The per-run Dice are kept at 4 decimals, which is all the
/// table prints.
fn parse_csv(text: &str) -> Result<Vec<Run>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(CSV_HEADER) {
        return Err(format!(
            "not an experiment CSV with the columns {CSV_HEADER}"
        ));
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            let bad = |what: &str| format!("row {}: {what}", i + 1);
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 13 {
                return Err(bad("needs 13 columns"));
            }
            let num = |s: &str| s.parse::<f64>().map_err(|_| bad(&format!("`{s}`")));
            let opt = |s: &str| (!s.is_empty()).then(|| num(s)).transpose();
            let int = |s: &str| s.parse::<usize>().map_err(|_| bad(&format!("`{s}`")));
            Ok(Run {
                method: f[0].to_string(),
                k: int(f[1])?,
                draw: int(f[2])?,
                patients: f[3].split_whitespace().map(String::from).collect(),
                dice: vec![opt(f[4])?, opt(f[5])?, opt(f[6])?],
                train_s: num(f[8])?,
                eval_s: num(f[9])?,
                steps: int(f[10])?,
                loss: opt(f[11])?.zip(opt(f[12])?),
            })
        })
        .collect()
}

fn methods(runs: &[Run]) -> Vec<String> {
    let mut m: Vec<String> = Vec::new();
    for r in runs {
        if !m.contains(&r.method) {
            m.push(r.method.clone());
        }
    }
    m
}

/// Mean (and spread over draws) of `f` over the runs of one method and K.
fn cell(
    runs: &[Run],
    method: &str,
    k: usize,
    f: impl Fn(&Run) -> Option<f64>,
) -> Option<(f64, f64, f64, usize)> {
    let v: Vec<f64> = runs
        .iter()
        .filter(|r| r.method == method && (r.k == k || r.k == 0))
        .filter_map(f)
        .collect();
    if v.is_empty() {
        return None;
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((v.iter().sum::<f64>() / v.len() as f64, lo, hi, v.len()))
}

fn markdown(runs: &[Run], plan: &Plan, summary: &Summary) -> String {
    let ks = ks_of(runs);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Mean 3-D Dice over RV, MYO and LV on {} held-out volumes ({}), against K labelled patients \
         (ED + ES each). Each run trains {} mini-batches of 4 slices (Adam, lr 5e-4); with several \
         draws the cell gives the mean and the range. SAM (box) uses ground-truth boxes and no training.\n",
        plan.test.len() * 2,
        range_name(&plan.test),
        plan.steps
    );
    out.push_str(&k_header(&ks, "---:|"));
    for m in methods(runs) {
        let _ = write!(out, "| {m} |");
        for &k in &ks {
            let _ = match cell(runs, &m, k, Run::mean) {
                Some((mean, lo, hi, n)) if n > 1 => write!(out, " {mean:.3} ({lo:.3}-{hi:.3}) |"),
                Some((mean, ..)) => write!(out, " {mean:.3} |"),
                None => write!(out, " |"),
            };
        }
        out.push('\n');
    }
    let _ = writeln!(out, "\nPer class (mean over draws), RV / MYO / LV:\n");
    out.push_str(&k_header(&ks, "---|"));
    for m in methods(runs) {
        let _ = write!(out, "| {m} |");
        for &k in &ks {
            let per: Vec<String> = (0..CLASSES.len())
                .map(|c| {
                    cell(runs, &m, k, |r| r.dice[c]).map_or("-".into(), |x| format!("{:.2}", x.0))
                })
                .collect();
            let _ = write!(out, " {} |", per.join(" / "));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\nSeconds per run (training / scoring the test set), mean over runs, and the training \
         loss (mean of the first epoch -> of the last) per K:\n"
    );
    let _ = writeln!(
        out,
        "| method | train s | eval s | loss |\n|---|---:|---:|---|"
    );
    for m in methods(runs) {
        let of: Vec<&Run> = runs.iter().filter(|r| r.method == m).collect();
        let avg = |f: fn(&Run) -> f64| of.iter().map(|r| f(r)).sum::<f64>() / of.len() as f64;
        let losses: Vec<String> = ks
            .iter()
            .filter_map(|&k| {
                let first = cell(runs, &m, k, |r| r.loss.map(|l| l.0))?.0;
                let last = cell(runs, &m, k, |r| r.loss.map(|l| l.1))?.0;
                Some(format!("K = {k}: {first:.2} -> {last:.2}"))
            })
            .collect();
        let _ = writeln!(
            out,
            "| {m} | {:.0} | {:.0} | {} |",
            avg(|r| r.train_s),
            avg(|r| r.eval_s),
            losses.join("; ")
        );
    }
    let simclr = match summary.simclr_s {
        Some(s) => format!(
            "{s:.0} s of SimCLR pre-training ({} steps of {} slices, two {}px views each, on {})",
            plan.simclr.steps,
            plan.simclr.batch_size,
            plan.simclr.view_size,
            range_name(&plan.unlabelled)
        ),
        None => "no SimCLR pre-training".into(),
    };
    let here = format!(
        "{:.1} min: {:.0} s to read and encode (or load cached embeddings), {simclr}",
        summary.wall_s / 60.0,
        summary.ready_s
    );
    if summary.runs_here == runs.len() {
        let _ = writeln!(out, "\nWall time {here}.");
    } else {
        let total: f64 = runs.iter().map(|r| r.train_s + r.eval_s).sum();
        let _ = writeln!(
            out,
            "\nMade in parts (`--resume`): the {} runs' training and scoring add up to {:.0} min \
             (parts running side by side slow each other). The part that wrote this file last \
             made {} of them, wall time {here}.",
            runs.len(),
            total / 60.0,
            summary.runs_here
        );
    }
    out
}

/// The Ks that runs were trained at, in order (SAM (box) has none).
fn ks_of(runs: &[Run]) -> Vec<usize> {
    let mut ks: Vec<usize> = runs.iter().map(|r| r.k).filter(|&k| k > 0).collect();
    ks.sort_unstable();
    ks.dedup();
    ks
}

/// `| method | K = 1 | ... |` and its rule, each K column aligned by `rule`.
fn k_header(ks: &[usize], rule: &str) -> String {
    let names: String = ks.iter().map(|k| format!(" K = {k} |")).collect();
    format!("| method |{names}\n|---|{}\n", rule.repeat(ks.len()))
}

fn range_name(list: &[String]) -> String {
    match (list.first(), list.last()) {
        (Some(a), Some(b)) if a != b => format!("{a}-{}", b.trim_start_matches("patient")),
        (Some(a), _) => a.clone(),
        _ => String::new(),
    }
}

fn plot(runs: &[Run], path: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let ks = ks_of(runs);
    let x = |k: usize| (k as f64).log2();
    let x_max = x(*ks.last().unwrap_or(&1)).max(1.0);
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Mean Dice (RV, MYO, LV) vs labelled patients",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(-0.2..x_max + 0.2, 0.0..1.0)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("labelled patients K (log scale)")
        .y_desc("mean Dice")
        .x_labels(ks.len().max(2))
        .x_label_formatter(&|v| format!("{:.0}", 2f64.powf(*v)))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, m) in methods(runs).iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line: Vec<(f64, f64)> = if m == SAM_BOX {
            cell(runs, m, 0, Run::mean)
                .map(|c| vec![(-0.2, c.0), (x_max + 0.2, c.0)])
                .unwrap_or_default()
        } else {
            ks.iter()
                .filter_map(|&k| {
                    runs.iter()
                        .any(|r| r.method == *m && r.k == k)
                        .then(|| cell(runs, m, k, Run::mean).map(|c| (x(k), c.0)))
                        .flatten()
                })
                .collect()
        };
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(line.clone(), style))
            .map_err(|e| err(&e))?
            .label(m.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        if m != SAM_BOX {
            let points = runs
                .iter()
                .filter(|r| r.method == *m && r.k > 0)
                .filter_map(|r| r.mean().map(|d| (x(r.k), d)));
            chart
                .draw_series(points.map(|p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(method: &str, k: usize, draw: usize, steps: usize) -> Run {
        Run {
            method: method.into(),
            k,
            draw,
            patients: vec!["patient003".into(), "patient007".into()],
            dice: vec![Some(0.25), None, Some(0.5)],
            train_s: 12.5,
            eval_s: 3.0,
            steps,
            loss: Some((2.5, 0.75)),
        }
    }

    fn summary() -> Summary {
        Summary {
            wall_s: 60.0,
            ready_s: 1.0,
            simclr_s: None,
            runs_here: 1,
        }
    }

    #[test]
    fn csv_rows_read_back_as_written() {
        let runs = vec![run("AutoSAM", 2, 0, 300), run(SAM_BOX, 0, 0, 300)];
        let text = csv(&runs);
        assert_eq!(csv(&parse_csv(&text).unwrap()), text);
        assert!(parse_csv("method,k\nAutoSAM,1\n").is_err());
        let short = format!("{CSV_HEADER}\nAutoSAM,1,0\n");
        assert!(parse_csv(&short).unwrap_err().contains("row 1"));
    }

    #[test]
    fn resumed_parts_merge_into_one_file_of_one_budget() {
        let dir = std::env::temp_dir().join(format!("autosam-parts-{}", std::process::id()));
        let args = |steps: usize, resume: bool| ExperimentArgs {
            data: PathBuf::new(),
            out: dir.clone(),
            plan: Plan {
                steps,
                ..Plan::quick()
            },
            name: "parts".into(),
            cache: PathBuf::new(),
            resume,
        };
        let plan = Plan::quick();
        let a = Outputs::new(&args(300, true)).unwrap();
        a.write(&[run(UNET, 1, 0, 300)], &plan, &summary()).unwrap();
        // A second part (another process) adds its run and keeps the first one's.
        let b = Outputs::new(&args(300, true)).unwrap();
        let n = b
            .write(
                &[run("AutoSAM", 1, 0, 300), run(UNET, 2, 0, 300)],
                &plan,
                &summary(),
            )
            .unwrap();
        assert_eq!(n, 3);
        let merged = a.read().unwrap();
        let keys: Vec<(&str, usize)> = merged.iter().map(|r| (r.method.as_str(), r.k)).collect();
        assert_eq!(keys, [("AutoSAM", 1), (UNET, 1), (UNET, 2)]);
        let md = std::fs::read_to_string(dir.join("parts.md")).unwrap();
        assert!(
            md.contains("Made in parts") && md.contains("K = 1: 2.50 -> 0.75"),
            "{md}"
        );
        // Another budget may not be mixed in; without --resume the file starts over.
        assert!(
            Outputs::new(&args(100, true))
                .unwrap_err()
                .contains("300 steps")
        );
        let fresh = Outputs::new(&args(100, false)).unwrap();
        assert_eq!(
            fresh
                .write(&[run(UNET, 4, 0, 100)], &plan, &summary())
                .unwrap(),
            1
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
