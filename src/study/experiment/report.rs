//! An experiment's runs and what is written of them: one CSV (read back to resume), a markdown
//! table and an SVG plot per experiment name, merged under a file lock so that parts made by
//! several processes land in one file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::plan::{Budget, Method, Plan};
use crate::error::{Error, Result};
use crate::heads::store::cardiac_classes;
use crate::metrics::mean;
use crate::study::data::at;
use crate::study::score::fmt;
use crate::train::TrainConfig;

/// One trained-and-scored run.
#[derive(Clone, Debug)]
pub struct Run {
    pub method: Method,
    pub k: usize,
    pub draw: usize,
    pub patients: Vec<String>,
    /// Per class (RV, MYO, LV), the mean over test volumes.
    pub dice: Vec<Option<f64>>,
    pub train_s: f64,
    pub eval_s: f64,
    pub steps: usize,
    /// The budget in epochs, when the run had one (its steps then follow from its slices).
    pub epochs: Option<usize>,
    /// Mean training loss of the first and of the last epoch: whether a run has stopped
    /// improving, which its Dice alone cannot say.
    pub loss: Option<(f64, f64)>,
}

impl Run {
    pub fn mean(&self) -> Option<f64> {
        mean(self.dice.iter().copied())
    }

    pub fn is(&self, method: Method, k: usize, draw: usize) -> bool {
        (self.method, self.k, self.draw) == (method, k, draw)
    }

    pub fn budget(&self) -> Budget {
        self.epochs
            .map_or(Budget::Steps(self.steps), Budget::Epochs)
    }

    fn same(&self, other: &Run) -> bool {
        self.is(other.method, other.k, other.draw)
    }
}

/// This invocation's times, for the table's closing line.
pub struct Summary {
    pub wall_s: f64,
    pub ready_s: f64,
    pub simclr_s: Option<f64>,
    pub runs_here: usize,
}

/// The CSV, markdown and SVG of one experiment name.
#[derive(Debug)]
pub struct Outputs {
    pub stem: PathBuf,
    resume: bool,
    budget: Budget,
}

impl Outputs {
    /// The outputs `out/name.*` of runs of one `budget`; `resume` keeps the file's runs.
    pub fn new(out: &Path, name: &str, budget: Budget, resume: bool) -> Result<Self> {
        std::fs::create_dir_all(out).map_err(|e| at(out, e))?;
        let outputs = Self {
            stem: out.join(name),
            resume,
            budget,
        };
        outputs.read()?;
        Ok(outputs)
    }

    fn path(&self, ext: &str) -> PathBuf {
        self.stem.with_extension(ext)
    }

    /// The runs in the CSV when resuming (none otherwise, or when there is no file yet).
    pub fn read(&self) -> Result<Vec<Run>> {
        if !self.resume {
            return Ok(Vec::new());
        }
        let path = self.path("csv");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(at(&path, e)),
        };
        let runs = parse_csv(&text).map_err(|e| at(&path, e))?;
        if let Some(r) = runs.iter().find(|r| r.budget() != self.budget) {
            return Err(at(
                &path,
                format!(
                    "holds runs of {}, and this one trains {}: give it another --name",
                    r.budget().describe(),
                    self.budget.describe()
                ),
            ));
        }
        Ok(runs)
    }

    /// Writes this invocation's runs merged with the file's (under a lock, so two processes
    /// resuming the same name lose nothing); returns how many runs the file now holds.
    pub fn write(&self, mine: &[Run], plan: &Plan, summary: &Summary) -> Result<usize> {
        let err = |e: std::io::Error| at(&self.path("lock"), e);
        let lock = std::fs::File::create(self.path("lock")).map_err(err)?;
        lock.lock().map_err(err)?;
        let mut all = self.read()?;
        all.retain(|r| !mine.iter().any(|m| m.same(r)));
        all.extend(mine.iter().map(Run::clone));
        all.sort_by_key(|r| (r.method.rank(), r.k, r.draw));
        let write = |ext: &str, text: String| {
            let path = self.path(ext);
            std::fs::write(&path, text).map_err(|e| at(&path, e))
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

/// One line of a finished run, for the log.
pub fn report(r: &Run) -> String {
    format!(
        "{:<22} K={} draw {}: RV {} MYO {} LV {} mean {}  (train {:.0} s, eval {:.0} s)",
        r.method.label(),
        r.k,
        r.draw,
        fmt(r.dice[0]),
        fmt(r.dice[1]),
        fmt(r.dice[2]),
        fmt(r.mean()),
        r.train_s,
        r.eval_s
    )
}

const CSV_HEADER: &str =
    "method,k,draw,patients,rv,myo,lv,mean,train_s,eval_s,steps,first_loss,last_loss,epochs";

fn csv(runs: &[Run]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for r in runs {
        let d: Vec<String> = r
            .dice
            .iter()
            .map(|v| v.map_or(String::new(), |x| x.to_string()))
            .collect();
        let (first, last) = r.loss.map_or((String::new(), String::new()), |(a, b)| {
            (a.to_string(), b.to_string())
        });
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.1},{:.1},{},{first},{last},{}",
            r.method.label(),
            r.k,
            r.draw,
            r.patients.join(" "),
            d.join(","),
            r.mean().map_or(String::new(), |x| format!("{x:.4}")),
            r.train_s,
            r.eval_s,
            r.steps,
            r.epochs.map_or(String::new(), |e| e.to_string())
        );
    }
    out
}

/// The runs of a CSV that [`csv`] wrote. Dice and losses are written in full (Rust's shortest form
/// that reads back to the same `f64`), so a later part's means and rounding match the first part's;
/// rows from before that change carry 4 decimals.
fn parse_csv(text: &str) -> Result<Vec<Run>> {
    let mut lines = text.lines();
    // Files from before budgets in epochs lack the last column.
    let columns = match lines.next() {
        Some(CSV_HEADER) => 14,
        Some(h) if Some(h) == CSV_HEADER.strip_suffix(",epochs") => 13,
        _ => {
            return Err(Error::Invalid(format!(
                "not an experiment CSV with the columns {CSV_HEADER}"
            )));
        }
    };
    lines
        .enumerate()
        .map(|(i, line)| {
            let bad = |what: &str| Error::Invalid(format!("row {}: {what}", i + 1));
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != columns {
                return Err(bad(&format!("needs {columns} columns")));
            }
            let num = |s: &str| s.parse::<f64>().map_err(|_| bad(&format!("`{s}`")));
            let opt = |s: &str| (!s.is_empty()).then(|| num(s)).transpose();
            let int = |s: &str| s.parse::<usize>().map_err(|_| bad(&format!("`{s}`")));
            Ok(Run {
                method: Method::from_label(f[0])
                    .ok_or_else(|| bad(&format!("unknown method `{}`", f[0])))?,
                k: int(f[1])?,
                draw: int(f[2])?,
                patients: f[3].split_whitespace().map(String::from).collect(),
                dice: vec![opt(f[4])?, opt(f[5])?, opt(f[6])?],
                train_s: num(f[8])?,
                eval_s: num(f[9])?,
                steps: int(f[10])?,
                epochs: f
                    .get(13)
                    .filter(|e| !e.is_empty())
                    .map(|e| int(e))
                    .transpose()?,
                loss: opt(f[11])?.zip(opt(f[12])?),
            })
        })
        .collect()
}

fn methods(runs: &[Run]) -> Vec<Method> {
    let mut m: Vec<Method> = Vec::new();
    for r in runs {
        if !m.contains(&r.method) {
            m.push(r.method);
        }
    }
    m
}

/// Mean (and spread over draws) of `f` over the runs of one method and K.
fn cell(
    runs: &[Run],
    method: Method,
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

/// "300 mini-batches of 4 slices", or "120 epochs (...) in mini-batches of 4 slices (K = 1: 600
/// mini-batches, ...)" with the steps each K's runs took.
fn budget_words(runs: &[Run], budget: Budget) -> String {
    let batch = TrainConfig::default().batch_size;
    match budget {
        Budget::Steps(n) => format!("{n} mini-batches of {batch} slices"),
        Budget::Epochs(_) => {
            let per_k: Vec<String> = ks_of(runs)
                .into_iter()
                .filter_map(|k| {
                    let r = runs
                        .iter()
                        .find(|r| r.k == k && r.method != Method::SamBox)?;
                    Some(format!("K = {k}: {} mini-batches", r.steps))
                })
                .collect();
            format!(
                "{} in mini-batches of {batch} slices ({})",
                budget.describe(),
                per_k.join(", ")
            )
        }
    }
}

fn markdown(runs: &[Run], plan: &Plan, summary: &Summary) -> String {
    let ks = ks_of(runs);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Mean 3-D Dice over RV, MYO and LV on {} held-out volumes ({}), against K labelled patients \
         (ED + ES each). Each run trains {} (Adam, lr {:e}); with several draws the cell gives \
         the mean and the range. SAM (box) uses ground-truth boxes and no training.\n",
        plan.test.len() * 2,
        range_name(&plan.test),
        budget_words(runs, plan.budget),
        TrainConfig::default().lr
    );
    out.push_str(&k_header(&ks, "---:|"));
    for m in methods(runs) {
        let _ = write!(out, "| {} |", m.label());
        for &k in &ks {
            let _ = match cell(runs, m, k, Run::mean) {
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
        let _ = write!(out, "| {} |", m.label());
        for &k in &ks {
            let per: Vec<String> = (0..cardiac_classes().len() - 1)
                .map(|c| {
                    cell(runs, m, k, |r| r.dice[c]).map_or("-".into(), |x| format!("{:.2}", x.0))
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
                let first = cell(runs, m, k, |r| r.loss.map(|l| l.0))?.0;
                let last = cell(runs, m, k, |r| r.loss.map(|l| l.1))?.0;
                Some(format!("K = {k}: {first:.2} -> {last:.2}"))
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {} |",
            m.label(),
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

pub fn range_name(list: &[String]) -> String {
    match (list.first(), list.last()) {
        (Some(a), Some(b)) if a != b => format!("{a}-{}", b.trim_start_matches("patient")),
        (Some(a), _) => a.clone(),
        _ => String::new(),
    }
}

fn plot(runs: &[Run], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| at(path, e);
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
        let line: Vec<(f64, f64)> = if *m == Method::SamBox {
            cell(runs, *m, 0, Run::mean)
                .map(|c| vec![(-0.2, c.0), (x_max + 0.2, c.0)])
                .unwrap_or_default()
        } else {
            ks.iter()
                .filter_map(|&k| {
                    runs.iter()
                        .any(|r| r.method == *m && r.k == k)
                        .then(|| cell(runs, *m, k, Run::mean).map(|c| (x(k), c.0)))
                        .flatten()
                })
                .collect()
        };
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(line.clone(), style))
            .map_err(|e| err(&e))?
            .label(m.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        if *m != Method::SamBox {
            let points = runs
                .iter()
                .filter(|r| r.method == *m && r.k > 0)
                .filter_map(|r| r.mean().map(|d| (x(r.k), d)));
            chart
                .draw_series(points.map(|p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
    }
    crate::study::plot::legend_and_save(&mut chart, &root, SeriesLabelPosition::UpperRight, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTOSAM: Method = Method::Head(crate::heads::HeadKind::AutoSam);
    const UNET: Method = Method::UNet;

    fn run(method: Method, k: usize, draw: usize, steps: usize) -> Run {
        Run {
            method,
            k,
            draw,
            patients: vec!["patient003".into(), "patient007".into()],
            dice: vec![Some(0.25), None, Some(0.5)],
            train_s: 12.5,
            eval_s: 3.0,
            steps,
            epochs: None,
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
        let runs = vec![run(AUTOSAM, 2, 0, 300), run(Method::SamBox, 0, 0, 300)];
        let text = csv(&runs);
        assert_eq!(csv(&parse_csv(&text).unwrap()), text);
        // Values between 4-decimal steps read back exactly: a resumed part must not move a mean
        // (0.29474, 0.49274, 0.77426 average 0.52058; rounded first they average 0.52057) or a
        // loss printed at 2 decimals (0.04503 prints 0.05; 0.0450 prints 0.04).
        let mut fine = run(AUTOSAM, 4, 0, 2400);
        fine.dice = vec![Some(0.29474), Some(0.49274), Some(0.77426)];
        fine.loss = Some((1.75671, 0.04503));
        let back = &parse_csv(&csv(&[fine.clone()])).unwrap()[0];
        assert_eq!(back.mean(), fine.mean());
        assert_eq!((back.dice.clone(), back.loss), (fine.dice, fine.loss));
        assert!(parse_csv("method,k\nAutoSAM,1\n").is_err());
        let short = format!("{CSV_HEADER}\nAutoSAM,1,0\n");
        assert!(parse_csv(&short).unwrap_err().to_string().contains("row 1"));
        // A file from before epoch budgets (13 columns) reads as step-budget runs.
        let old = "method,k,draw,patients,rv,myo,lv,mean,train_s,eval_s,steps,first_loss,last_loss\n\
                   AutoSAM,1,0,patient003,0.2500,,0.5000,0.3750,12.5,3.0,300,2.5000,0.7500\n";
        let read = parse_csv(old).unwrap();
        assert_eq!(read[0].budget(), Budget::Steps(300));
        let mut epochs = run(AUTOSAM, 1, 0, 600);
        epochs.epochs = Some(120);
        let back = parse_csv(&csv(&[epochs])).unwrap();
        assert_eq!(back[0].budget(), Budget::Epochs(120));
    }

    #[test]
    fn resumed_parts_merge_into_one_file_of_one_budget() {
        let dir = std::env::temp_dir().join(format!("autosam-parts-{}", std::process::id()));
        let outputs =
            |steps: usize, resume: bool| Outputs::new(&dir, "parts", Budget::Steps(steps), resume);
        let plan = Plan::quick();
        let a = outputs(300, true).unwrap();
        a.write(&[run(UNET, 1, 0, 300)], &plan, &summary()).unwrap();
        // A second part (another process) adds its run and keeps the first one's.
        let b = outputs(300, true).unwrap();
        let n = b
            .write(
                &[run(AUTOSAM, 1, 0, 300), run(UNET, 2, 0, 300)],
                &plan,
                &summary(),
            )
            .unwrap();
        assert_eq!(n, 3);
        let merged = a.read().unwrap();
        let keys: Vec<(Method, usize)> = merged.iter().map(|r| (r.method, r.k)).collect();
        assert_eq!(keys, [(AUTOSAM, 1), (UNET, 1), (UNET, 2)]);
        let md = std::fs::read_to_string(dir.join("parts.md")).unwrap();
        assert!(
            md.contains("Made in parts") && md.contains("K = 1: 2.50 -> 0.75"),
            "{md}"
        );
        // Another budget may not be mixed in; without --resume the file starts over.
        assert!(
            outputs(100, true)
                .unwrap_err()
                .to_string()
                .contains("300 mini-batches")
        );
        let fresh = outputs(100, false).unwrap();
        assert_eq!(
            fresh
                .write(&[run(UNET, 4, 0, 100)], &plan, &summary())
                .unwrap(),
            1
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
