//! `autosam` subcommands. Each reads files, calls the library, and prints a result or an error
//! with a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

mod bench;
mod eval_box;
mod experiment;
mod parity;
mod quant_report;
mod train;

use autosam::backend;
use autosam::container::Precision;
use autosam::heads::HeadKind;
use autosam::model::checkpoint;
use autosam::model::format;
use autosam::model::{Sam, SamConfig, Weights};
use autosam::nii::{self, ReadLimits, ReadOptions};
use autosam::phantom;
use autosam::train::Schedule;
use burn::tensor::Device;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "autosam",
    version,
    about = "Prompt-free SAM segmentation of NIfTI volumes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a NIfTI file's header summary (dims, spacing, datatype, orientation, intensities).
    Info {
        file: PathBuf,
        /// Frame of a 4-D file.
        #[arg(long, default_value_t = 0)]
        frame: usize,
        /// Refuse volumes whose decoded size exceeds this many MiB.
        #[arg(long, default_value_t = 1024)]
        max_mib: u64,
    },
    /// Write the synthetic cardiac phantom as NAME.nii.gz and NAME_gt.nii.gz.
    Phantom {
        out: PathBuf,
        #[arg(long, num_args = 3, default_values_t = [128, 144, 8])]
        dims: Vec<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Compare our modules with upstream PyTorch outputs (fixtures as in ../shared/fixtures).
    Parity {
        /// Folder with litemedsam_slice.safetensors and/or sam_vit_small_random.{pth,safetensors}.
        dir: PathBuf,
        /// LiteMedSAM weights: the upstream .pth or a converted .safetensors (its precision sets
        /// the tolerance).
        #[arg(long, default_value = "weights/lite_medsam.pth")]
        weights: PathBuf,
        /// Write our embedding and box logits for the slice fixture here (safetensors), for the
        /// browser test to compare against.
        #[arg(long)]
        save_outputs: Option<PathBuf>,
    },
    /// SAM(box) on labelled volumes (NAME.nii.gz + NAME_gt.nii.gz): per-class 3-D Dice.
    EvalBox {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "weights/lite_medsam.pth")]
        weights: PathBuf,
        /// Comma-separated name prefixes (`patient041,patient042`); all pairs when absent.
        #[arg(long)]
        volumes: Option<String>,
        /// Only the first N pairs (sorted by name).
        #[arg(long)]
        limit: Option<usize>,
        /// Also write the markdown table here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where slice embeddings are cached (by file hash and encoder), shared with `train`.
        #[arg(long, default_value = "weights/embeddings")]
        cache: PathBuf,
    },
    /// f16 and int8 weights against f32 on labelled volumes: embedding cosine, box-mask Dice.
    QuantReport {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "weights/lite_medsam.pth")]
        weights: PathBuf,
        #[arg(long, default_value_t = 10)]
        volumes: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Train a prompt-free head on cached embeddings of labelled volumes.
    Train {
        #[arg(long)]
        data: PathBuf,
        /// Comma-separated name prefixes (`patient001,patient002`); all pairs when absent.
        #[arg(long)]
        volumes: Option<String>,
        #[arg(long, value_enum, default_value_t = HeadKind::AutoSam)]
        head: HeadKind,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 20)]
        epochs: usize,
        #[arg(long, default_value_t = 4)]
        batch_size: usize,
        #[arg(long, default_value_t = 5e-4)]
        lr: f64,
        /// How the learning rate moves from `--lr` over the run.
        #[arg(long, value_enum, default_value_t = Schedule::Cosine)]
        schedule: Schedule,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Train for exactly this many mini-batches instead of `--epochs` passes.
        #[arg(long)]
        steps: Option<usize>,
        /// Storage of the head file.
        #[arg(long, value_enum, default_value_t = Precision::F32)]
        precision: Precision,
        /// Continue training this head file (its kind and classes win over --head).
        #[arg(long)]
        init: Option<PathBuf>,
        /// Share of the slices held out for validation Dice.
        #[arg(long, default_value_t = 0.2)]
        val_fraction: f64,
        #[arg(long, default_value = "weights/lite_medsam.pth")]
        weights: PathBuf,
        /// Where slice embeddings are cached (by file hash and encoder).
        #[arg(long, default_value = "weights/embeddings")]
        cache: PathBuf,
    },
    /// The label-efficiency study: every method at K = 1, 2, 4, 8 labelled patients, scored on
    /// held-out patients; writes NAME.csv, NAME.md and NAME.svg into --out.
    Experiment {
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
        #[arg(long)]
        steps: Option<usize>,
        /// Only these Ks, as K:draws (`1:2,8:1`); the plan's when absent.
        #[arg(long, value_delimiter = ',', value_parser = parse_k)]
        ks: Vec<(usize, usize)>,
        /// Only these methods: sam-box, autosam, cnn, linear, autosam-aug, unet, unet-simclr.
        #[arg(long, value_delimiter = ',')]
        methods: Vec<String>,
        /// Keep the runs already in OUT/NAME.csv, skip them, and merge new ones in as each
        /// finishes (two processes may resume one name side by side, given different runs:
        /// a run that both start before either has written it is trained twice).
        #[arg(long)]
        resume: bool,
        #[arg(long, default_value = "weights/lite_medsam.pth")]
        weights: PathBuf,
        #[arg(long, default_value = "weights/embeddings")]
        cache: PathBuf,
    },
    /// Per-class 3-D Dice of a head on labelled volumes.
    Eval {
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
    },
    /// Convert a LiteMedSAM or SAM checkpoint (.pth) to the page's weights file.
    Convert {
        checkpoint: PathBuf,
        /// Output .safetensors file.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Precision::Int8)]
        precision: Precision,
    },
    /// Time the encoder per slice (and the box decoder) with peak memory on each backend this
    /// build has, and write a markdown table.
    Bench {
        /// Where to write the table (also printed).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        #[arg(long, default_value = "weights/lite_medsam.pth")]
        weights: PathBuf,
        /// Internal: measure one backend in this process.
        #[arg(long, hide = true)]
        child: Option<String>,
    },
    /// Time conv2d and matmul on each available backend (the CPU-backend choice).
    BenchOps {
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
}

pub fn main() -> ExitCode {
    env_logger::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info {
            file,
            frame,
            max_mib,
        } => info(&file, frame, max_mib),
        Command::Phantom { out, dims, seed } => {
            write_phantom(&out, [dims[0], dims[1], dims[2]], seed)
        }
        Command::Bench {
            repeats,
            weights,
            child: Some(name),
            ..
        } => bench::child(&name, &weights, repeats),
        Command::Bench {
            out,
            repeats,
            weights,
            child: None,
        } => bench::run(&weights, repeats, out.as_deref()),
        Command::BenchOps { out, repeats } => bench_ops(out.as_deref(), repeats),
        Command::EvalBox {
            data,
            weights,
            volumes,
            limit,
            out,
            cache,
        } => load_sam(&weights).and_then(|(sam, _)| {
            let mut pairs = train::select(&data, volumes.as_deref())?;
            pairs.truncate(limit.unwrap_or(pairs.len()));
            eval_box::run(&sam, &pairs, &cache, out.as_deref())
        }),
        Command::Parity {
            dir,
            weights,
            save_outputs,
        } => parity::run(&dir, &weights, &backend::cpu(), save_outputs.as_deref()),
        Command::Convert {
            checkpoint,
            out,
            precision,
        } => convert(&checkpoint, &out, precision),
        Command::Train {
            data,
            volumes,
            head,
            out,
            epochs,
            batch_size,
            lr,
            schedule,
            seed,
            steps,
            precision,
            init,
            val_fraction,
            weights,
            cache,
        } => load_weights(&weights).and_then(|(config, w)| {
            let sam = Sam::load(&w, config, &backend::cpu()).map_err(|e| e.to_string())?;
            let config = autosam::train::TrainConfig {
                epochs,
                batch_size,
                lr,
                schedule,
                seed,
                steps,
            };
            train::train(
                &sam,
                &w,
                train::TrainArgs {
                    data,
                    volumes,
                    head,
                    out,
                    config,
                    val_fraction,
                    cache,
                    precision,
                    init,
                },
            )
        }),
        Command::Eval {
            head,
            data,
            volumes,
            weights,
            cache,
        } => load_weights(&weights).and_then(|(config, w)| {
            let sam = Sam::load(&w, config, &backend::cpu()).map_err(|e| e.to_string())?;
            let (head, info) = match head {
                Some(path) => train::load_head(&path, &sam, &w)?,
                None => train::default_head(&sam, &w)?,
            };
            train::eval(&sam, &head, &info, &data, volumes.as_deref(), &cache)
        }),
        Command::Experiment {
            data,
            out,
            name,
            quick,
            steps,
            ks,
            methods,
            resume,
            weights,
            cache,
        } => load_weights(&weights).and_then(|(config, w)| {
            let sam = Sam::load(&w, config, &backend::cpu()).map_err(|e| e.to_string())?;
            let mut plan = if quick {
                experiment::Plan::quick()
            } else {
                experiment::Plan::full()
            };
            plan.steps = steps.unwrap_or(plan.steps);
            plan.select(&ks, &methods)?;
            experiment::run(
                &sam,
                &w,
                experiment::ExperimentArgs {
                    data,
                    out,
                    plan,
                    name,
                    cache,
                    resume,
                },
            )
        }),
        Command::QuantReport {
            data,
            weights,
            volumes,
            out,
        } => load_weights(&weights)
            .and_then(|(config, w)| quant_report::run(config, &w, &data, volumes, out.as_deref())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `K:draws` (or `K`, one draw) for `experiment --ks`.
fn parse_k(s: &str) -> Result<(usize, usize), String> {
    let (k, draws) = s.split_once(':').unwrap_or((s, "1"));
    let n = |v: &str| v.trim().parse::<usize>().map_err(|e| format!("`{s}`: {e}"));
    match (n(k)?, n(draws)?) {
        (0, _) | (_, 0) => Err(format!("`{s}`: K and draws start at 1")),
        pair => Ok(pair),
    }
}

fn info(file: &Path, frame: usize, max_mib: u64) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let limits = ReadLimits {
        max_decoded_bytes: max_mib << 20,
        ..Default::default()
    };
    let volume = nii::read_nifti(&bytes, &ReadOptions { frame, limits })
        .map_err(|e| format!("{}: {e}", file.display()))?;
    println!("file         {}", file.display());
    println!("{}", volume.summary());
    Ok(())
}

/// A state dict from an upstream checkpoint or a converted file, with its precision.
pub fn load_weights_with_precision(path: &Path) -> Result<(SamConfig, Weights, Precision), String> {
    checkpoint::load_path(path).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn load_weights(path: &Path) -> Result<(SamConfig, Weights), String> {
    load_weights_with_precision(path).map(|(c, w, _)| (c, w))
}

/// A model from an upstream checkpoint or a converted file, on the CPU backend.
pub fn load_sam(path: &Path) -> Result<(Sam, Precision), String> {
    let (config, weights, precision) = load_weights_with_precision(path)?;
    let sam = Sam::load(&weights, config, &backend::cpu())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((sam, precision))
}

fn convert(path: &Path, out: &Path, precision: Precision) -> Result<(), String> {
    let (config, weights) = load_weights(path)?;
    let bytes = format::write(&weights, &config, precision).map_err(|e| e.to_string())?;
    // Read back what was written, so a bad file is never left behind looking finished.
    let check = format::read(&bytes).map_err(|e| e.to_string())?;
    std::fs::write(out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    println!(
        "wrote {} ({}, {precision}, {} tensors, {} parameters, {:.2} MB, sha256 {})",
        out.display(),
        config.model_id,
        check.weights.len(),
        check.weights.parameter_count(),
        bytes.len() as f64 / 1e6,
        check.sha256
    );
    Ok(())
}

fn write_phantom(out: &Path, dims: [usize; 3], seed: u64) -> Result<(), String> {
    let (image, labels) = phantom::cardiac_phantom(dims, seed);
    let name = out.to_string_lossy();
    let name = name.trim_end_matches(".nii.gz");
    let files = [
        (
            format!("{name}.nii.gz"),
            nii::write_f32(&image.data, dims, &image.header),
        ),
        (
            format!("{name}_gt.nii.gz"),
            nii::write_labels(&labels.labels(), dims, &labels.header),
        ),
    ];
    for (path, bytes) in files {
        let bytes = bytes.map_err(|e| e.to_string())?;
        std::fs::write(&path, bytes).map_err(|e| format!("{path}: {e}"))?;
        println!("wrote {path}");
    }
    Ok(())
}

/// Median wall time of `repeats` runs after one warm-up, reading the result back each time so
/// asynchronous backends are timed to completion.
pub fn time_ms(repeats: usize, mut run: impl FnMut() -> usize) -> f64 {
    run();
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(run());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn bench_ops(out: Option<&Path>, repeats: usize) -> Result<(), String> {
    let mut devices: Vec<(String, Device)> = vec![("flex (CPU)".into(), backend::cpu())];
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    devices.push(("ndarray (CPU)".into(), Device::ndarray()));
    match Device::wgpu_options().init() {
        Ok(device) => devices.push(("wgpu".into(), device)),
        Err(e) => eprintln!("wgpu: no adapter ({e}); skipped"),
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let features = if cfg!(feature = "ndarray") {
        " --features ndarray"
    } else {
        ""
    };
    let mut table = format!(
        "Native, {threads} threads, median of {repeats} runs (`cargo run --release{features} -- bench-ops`).\n\n\
         | backend | conv2d 64->64 3x3 on 128x128 (ms) | matmul 1024x1024 (ms) |\n|---|---:|---:|\n"
    );
    for (name, device) in &devices {
        let conv = time_ms(repeats, || {
            backend::conv_workload(device, 64, 128)
                .into_data()
                .num_elements()
        });
        let matmul = time_ms(repeats, || {
            backend::matmul_workload(device, 1024)
                .into_data()
                .num_elements()
        });
        table.push_str(&format!("| {name} | {conv:.1} | {matmul:.1} |\n"));
    }
    print!("{table}");
    if let Some(out) = out {
        std::fs::write(out, &table).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    Ok(())
}
