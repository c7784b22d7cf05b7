//! Benchmarks (`autosam bench`, `autosam bench-ops`): the encoder's time per slice and peak memory on each backend this build has,
//! each backend in its own child process so its peak resident memory is its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::backend;
use crate::heads::{Head, HeadKind};
use crate::model::{HostTensor, Sam, SamConfig};
use crate::train::{Sample, TrainConfig, Trainer};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::study::data::at;

#[derive(Serialize, Deserialize)]
pub struct Measurement {
    pub backend: String,
    pub adapter: String,
    pub load_ms: f64,
    pub encode_ms: f64,
    pub decode_ms: f64,
    /// One AutoSAM-head training step on a batch of 4 embeddings (not on a software adapter,
    /// where a step takes minutes).
    pub train_ms: Option<f64>,
    /// Each head kind's inference per slice over a batch of [`HEAD_BATCH`] embeddings, as
    /// Segment runs it on a volume (not on a software adapter).
    #[serde(default)]
    pub head_ms: Vec<(HeadKind, f64)>,
    /// Away from the CPU backend: the largest difference from the CPU backend's output on the
    /// same input and weights, in the embedding and in the box decoder's mask logits.
    #[serde(default)]
    pub agreement: Option<Agreement>,
    pub peak_rss_mib: f64,
}

#[derive(Serialize, Deserialize)]
pub struct Agreement {
    pub embedding_max_diff: f64,
    pub embedding_max_abs: f64,
    pub mask_logit_max_diff: f64,
}

/// Slices per batch in the head-inference timing.
const HEAD_BATCH: usize = 8;

/// A box inside the bench slice.
const BENCH_BOX: [f32; 4] = [60.0, 60.0, 180.0, 170.0];

/// The allocator setting `main` changes, measured against mimalloc's own default in the same
/// run: the default gives freed pages back to the kernel after this many ms.
const MIMALLOC_DEFAULT_PURGE_MS: &str = "1000";

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The name wgpu gives the adapter a default high-performance request gets, which is the one
/// burn's default wgpu device takes.
fn wgpu_adapter() -> Option<wgpu::AdapterInfo> {
    let instance = wgpu::Instance::default();
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .ok()?;
    Some(adapter.get_info())
}

/// One backend, in this process: prints a JSON line for the parent.
pub fn child(name: &str, weights: &Path, repeats: usize) -> Result<()> {
    // A software adapter (llvmpipe, SwiftShader) takes minutes for what a GPU does in
    // milliseconds, so only the encoder and the box decoder are timed there.
    let (device, adapter, software) = match name {
        "flex" => (backend::cpu(), "CPU".to_string(), false),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => (Device::ndarray(), "CPU".to_string(), false),
        "wgpu" => {
            let info = wgpu_adapter().ok_or_else(|| Error::Invalid("no wgpu adapter".into()))?;
            let device = Device::wgpu_options()
                .init()
                .map_err(|e| Error::Invalid(format!("wgpu: {e}")))?;
            let adapter = format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type);
            (device, adapter, info.device_type == wgpu::DeviceType::Cpu)
        }
        other => {
            return Err(Error::Invalid(format!(
                "backend {other} is not in this build"
            )));
        }
    };
    let t = Instant::now();
    let (config, weights, _) =
        crate::model::checkpoint::load_path(weights).map_err(|e| at(weights, e))?;
    let sam = Sam::load(&weights, config, &device)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let input = bench_input(&sam.config);
    let encode_ms = time_ms(repeats, || sam.encode(&input).into_data().num_elements());
    let embedding = sam.encode(&input);
    let decode_ms = time_ms(repeats, || {
        let pred = sam.decode_boxes(embedding.clone(), &[BENCH_BOX]);
        pred.masks.into_data().num_elements()
    });
    let agreement = (name != "flex")
        .then(|| agreement(&sam, &weights, &input, embedding.clone()))
        .transpose()?;
    let (train_ms, head_ms) = if software {
        (None, Vec::new())
    } else {
        let heads = head_ms(&sam, &weights, embedding.clone(), &device, repeats)?;
        let train = train_step_ms(&sam, &weights, embedding, &device, repeats)?;
        (Some(train), heads)
    };
    let m = Measurement {
        backend: name.into(),
        adapter,
        load_ms,
        encode_ms,
        decode_ms,
        train_ms,
        head_ms,
        agreement,
        peak_rss_mib: peak_rss_mib(),
    };
    println!(
        "{}",
        serde_json::to_string(&m).map_err(|e| Error::Invalid(e.to_string()))?
    );
    Ok(())
}

/// The embedding and the box decoder's mask logits of `sam` against the CPU backend's on the
/// same input and weights.
fn agreement(
    sam: &Sam,
    weights: &crate::model::Weights,
    input: &[f32],
    embedding: burn::tensor::Tensor<4>,
) -> Result<Agreement> {
    let cpu = Sam::load(weights, sam.config.clone(), &backend::cpu())?;
    let reference = cpu.encode(input);
    let masks = |s: &Sam, e| s.decode_boxes(e, &[BENCH_BOX]).masks;
    let (ours, theirs) = (
        masks(sam, embedding.clone()),
        masks(&cpu, reference.clone()),
    );
    let reference = values(reference)?;
    Ok(Agreement {
        embedding_max_diff: max_diff(&values(embedding)?, &reference),
        embedding_max_abs: reference.iter().fold(0.0, |m, v| m.max(v.abs() as f64)),
        mask_logit_max_diff: max_diff(&values(ours)?, &values(theirs)?),
    })
}

fn values(t: burn::tensor::Tensor<4>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Invalid(format!("{e:?}")))
}

fn max_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .fold(0.0, |m, (x, y)| m.max((x - y).abs() as f64))
}

/// Median ms per slice of each head kind's forward over [`HEAD_BATCH`] copies of the bench
/// embedding (4 classes; the weights' values do not change the cost).
fn head_ms(
    sam: &Sam,
    weights: &crate::model::Weights,
    embedding: burn::tensor::Tensor<4>,
    device: &Device,
    repeats: usize,
) -> Result<Vec<(HeadKind, f64)>> {
    let classes = crate::heads::store::cardiac_classes().len();
    let batch = burn::tensor::Tensor::cat(vec![embedding; HEAD_BATCH], 0);
    let dense_pe = sam.dense_pe.clone();
    HeadKind::ALL
        .into_iter()
        .map(|kind| {
            let head = Head::new(kind, classes, weights, device)?;
            let ms = time_ms(repeats, || {
                head.forward(batch.clone(), dense_pe.clone())
                    .into_data()
                    .num_elements()
            });
            Ok((kind, ms / HEAD_BATCH as f64))
        })
        .collect()
}

/// Median ms of an AutoSAM-head training step (3 classes, batch 4, the paper's Adam) on the
/// bench slice's embedding, labelled with a disc.
fn train_step_ms(
    sam: &Sam,
    weights: &crate::model::Weights,
    embedding: burn::tensor::Tensor<4>,
    device: &Device,
    repeats: usize,
) -> Result<f64> {
    let ad = device.clone().autodiff();
    let head = Head::new(HeadKind::AutoSam, 3, weights, &ad)?;
    let shape = embedding.dims();
    let input = embedding
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Invalid(format!("{e:?}")))?;
    let s = sam.input_size();
    let labels = (0..s * s)
        .map(|i| {
            let (y, x) = ((i / s) as f32 - 128.0, (i % s) as f32 - 128.0);
            u8::from(x * x + y * y < 40.0 * 40.0) * 3
        })
        .collect();
    let sample = Sample {
        input,
        shape: [shape[1], shape[2], shape[3]],
        labels,
    };
    let dense_pe: HostTensor = sam.prompt_encoder.dense_pe();
    let mut trainer = Trainer::new(head, &dense_pe, TrainConfig::default().lr, &ad);
    let batch = [&sample; 4];
    Ok(time_ms(repeats, || {
        trainer.step(&batch).into_data().num_elements()
    }))
}

/// A smooth synthetic slice; the encoder's cost does not depend on the values.
fn bench_input(config: &SamConfig) -> Vec<f32> {
    let s = config.input_size();
    let plane: Vec<f32> = (0..s * s)
        .map(|i| {
            let (y, x) = ((i / s) as f32 / s as f32, (i % s) as f32 / s as f32);
            0.5 + 0.5 * (6.0 * x).sin() * (4.0 * y).cos()
        })
        .collect();
    plane.repeat(3)
}

pub fn run(weights: &Path, repeats: usize, out: Option<&Path>) -> Result<()> {
    let exe: PathBuf = std::env::current_exe()?;
    let mut backends = vec!["flex"];
    if cfg!(feature = "ndarray") {
        backends.push("ndarray");
    }
    backends.push("wgpu");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    let mut children: Vec<(&str, Option<&str>)> = backends.into_iter().map(|b| (b, None)).collect();
    children.insert(1, ("flex", Some(MIMALLOC_DEFAULT_PURGE_MS)));
    for (name, purge) in children {
        let mut child = Command::new(&exe);
        child
            .args(["bench", "--child", name, "--repeats", &repeats.to_string()])
            .arg("--weights")
            .arg(weights);
        if let Some(ms) = purge {
            child.env("MIMALLOC_PURGE_DELAY", ms);
        }
        let output = child.output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        match stdout
            .lines()
            .find_map(|l| serde_json::from_str::<Measurement>(l).ok())
        {
            Some(mut m) => {
                if let Some(ms) = purge {
                    m.backend = format!("{name}, freed memory returned after {ms} ms");
                }
                rows.push(m)
            }
            None => eprintln!(
                "{name}: skipped ({})",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }
    }
    if rows.is_empty() {
        return Err(Error::Invalid(
            "no backend could run the encoder (see the reasons above)".into(),
        ));
    }
    let features = if cfg!(feature = "ndarray") {
        " --features ndarray"
    } else {
        ""
    };
    let mut table = format!(
        "LiteMedSAM encoder, one 256x256 slice, native, {threads} threads; median of {repeats} runs \
         after a warm-up (`cargo run --release{features} -- bench --repeats {repeats}`). Peak memory is the \
         process's peak resident set (weights, activations and runtime; GPU memory is not in it). \
         The train step is one AutoSAM-head step (3 classes, 4 embeddings, Adam); head inference is \
         per slice over a batch of {HEAD_BATCH} (4 classes). Away from the CPU backend, the last column \
         is the largest difference from the CPU backend's embedding (of values up to the given size) and \
         box-mask logits on the same slice. The CLI keeps the memory it frees; the second row is \
         mimalloc's default, which hands it back to the kernel. PyTorch and ONNX Runtime on the same \
         slice, measured in the same run: `scripts/bench-encoder`.\n\n\
         | backend | adapter | encoder ms/slice | box decoder ms | train step ms | head ms/slice (AutoSAM / CNN / linear) | model load ms | peak RSS MiB | vs CPU backend |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|\n"
    );
    for m in &rows {
        table.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {} | {} | {:.0} | {:.0} | {} |\n",
            m.backend,
            m.adapter,
            m.encode_ms,
            m.decode_ms,
            m.train_ms.map_or("-".into(), |t| format!("{t:.0}")),
            if m.head_ms.is_empty() {
                "-".to_string()
            } else {
                let ms: Vec<String> = m.head_ms.iter().map(|(_, t)| format!("{t:.1}")).collect();
                ms.join(" / ")
            },
            m.load_ms,
            m.peak_rss_mib,
            m.agreement.as_ref().map_or("-".into(), |a| format!(
                "embedding {:.1e} (of {:.2}), mask logits {:.1e}",
                a.embedding_max_diff, a.embedding_max_abs, a.mask_logit_max_diff
            )),
        ));
    }
    print!("{table}");
    if let Some(out) = out {
        std::fs::write(out, &table).map_err(|e| at(out, e))?;
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

/// conv2d and matmul on each backend this build has: the table (also written to `out`).
pub fn ops(out: Option<&Path>, repeats: usize) -> Result<String> {
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
    if let Some(out) = out {
        std::fs::write(out, &table).map_err(|e| at(out, e))?;
    }
    Ok(table)
}

/// The models `bench-train` times, by the names `scripts/bench_train.py` prints.
pub const TRAINED: [&str; 4] = ["autosam", "cnn", "linear", "unet"];

/// Median ms of one training step of each head kind and of the UNet: batch 4, the default
/// head's 4 classes, CE + soft Dice, Adam at the default rate, on the CPU backend. The inputs
/// are synthetic (a pattern for embeddings, labels in four bands): a step's cost does not depend
/// on the values. `scripts/bench_train.py` times the same networks in PyTorch.
pub fn train_steps(
    weights: &Path,
    repeats: usize,
    only: &[String],
) -> Result<Vec<(&'static str, f64)>> {
    let (sam, state) = crate::study::load_model(weights)?;
    let ad = backend::cpu().autodiff();
    let classes = crate::heads::store::cardiac_classes().len();
    let band =
        |s: usize| -> Vec<u8> { (0..s * s).map(|i| ((i / s) * classes / s) as u8).collect() };
    let dense_pe: HostTensor = sam.prompt_encoder.dense_pe();
    let [_, c, h, w] = dense_pe.shape[..] else {
        return Err(Error::Invalid("dense PE is not 4-D".into()));
    };
    let s = sam.input_size();
    let embedding = Sample {
        input: backend::pattern(c * h * w, 1),
        shape: [c, h, w],
        labels: band(s),
    };
    let image = Sample {
        input: backend::pattern(s * s, 2),
        shape: [1, s, s],
        labels: band(s),
    };
    let lr = TrainConfig::default().lr;
    let mut out = Vec::new();
    for name in TRAINED
        .into_iter()
        .filter(|n| only.is_empty() || only.iter().any(|o| o == n))
    {
        let step_ms = match name {
            "unet" => {
                let unet = crate::baselines::UNet::new(1, classes, &ad);
                let mut trainer = Trainer::new(unet, &dense_pe, lr, &ad);
                time_ms(repeats, || {
                    trainer.step(&[&image; 4]).into_data().num_elements()
                })
            }
            kind => {
                let head = Head::new(kind.parse::<HeadKind>()?, classes, &state, &ad)?;
                let mut trainer = Trainer::new(head, &dense_pe, lr, &ad);
                time_ms(repeats, || {
                    trainer.step(&[&embedding; 4]).into_data().num_elements()
                })
            }
        };
        log::info!("{name}: {step_ms:.0} ms a step");
        out.push((name, step_ms));
    }
    Ok(out)
}
