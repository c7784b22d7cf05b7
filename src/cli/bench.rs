//! `autosam bench` and `autosam bench-ops`: timings as markdown tables (`autosam::bench`).

use std::path::PathBuf;

use autosam::error::Result;

/// Time the encoder per slice (and the box decoder) with peak memory on each backend this
/// build has, and write a markdown table.
#[derive(clap::Args)]
pub struct Bench {
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
}

impl Bench {
    pub fn run(self) -> Result<()> {
        match &self.child {
            Some(name) => autosam::bench::child(name, &self.weights, self.repeats),
            None => autosam::bench::run(&self.weights, self.repeats, self.out.as_deref()),
        }
    }
}

/// Time conv2d and matmul on each available backend (the CPU-backend choice).
#[derive(clap::Args)]
pub struct BenchOps {
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

impl BenchOps {
    pub fn run(self) -> Result<()> {
        print!(
            "{}",
            autosam::bench::ops(self.out.as_deref(), self.repeats)?
        );
        Ok(())
    }
}

/// Time one training step (batch 4, 4 classes, Adam) of each head and of the UNet; prints JSON
/// lines `{"model", "ms"}` for scripts/bench-train, which sets them beside PyTorch's.
#[derive(clap::Args)]
pub struct BenchTrain {
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Only these (autosam, cnn, linear, unet); all when absent.
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    #[arg(long, default_value = "weights/lite_medsam.pth")]
    weights: PathBuf,
}

impl BenchTrain {
    pub fn run(self) -> Result<()> {
        let models = &self.models;
        for (model, ms) in autosam::bench::train_steps(&self.weights, self.repeats, models)? {
            println!("{}", serde_json::json!({"model": model, "ms": ms}));
        }
        Ok(())
    }
}
