//! `autosam` subcommands. Each command's file holds its arguments and one call into the library
//! (`autosam::study`, `autosam::bench`, `autosam::parity`), and prints the result; an error ends
//! the process with a non-zero exit.

use std::process::ExitCode;

mod bench;
mod labelled;
mod study;
mod train;
mod volumes;
mod weights;

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
    Info(volumes::Info),
    Phantom(volumes::Phantom),
    Parity(weights::Parity),
    EvalBox(study::EvalBox),
    QuantReport(weights::QuantReport),
    Train(train::Train),
    Experiment(study::Experiment),
    Eval(train::Eval),
    HeadExtent(train::HeadExtent),
    Soup(train::Soup),
    Robustness(train::Robustness),
    Curves(train::Curves),
    Convert(weights::Convert),
    Bench(bench::Bench),
    BenchOps(bench::BenchOps),
    BenchTrain(bench::BenchTrain),
    EmbeddingMap(study::EmbeddingMap),
}

pub fn main() -> ExitCode {
    // The library reports progress (volumes ready, SimCLR steps, finished runs) at info level.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("autosam=info"))
        .format_timestamp(None)
        .format_target(false)
        .init();
    let result = match Cli::parse().command {
        Command::Info(c) => c.run(),
        Command::Phantom(c) => c.run(),
        Command::Parity(c) => c.run(),
        Command::EvalBox(c) => c.run(),
        Command::QuantReport(c) => c.run(),
        Command::Train(c) => c.run(),
        Command::Experiment(c) => c.run(),
        Command::Eval(c) => c.run(),
        Command::HeadExtent(c) => c.run(),
        Command::Soup(c) => c.run(),
        Command::Robustness(c) => c.run(),
        Command::Curves(c) => c.run(),
        Command::Convert(c) => c.run(),
        Command::Bench(c) => c.run(),
        Command::BenchOps(c) => c.run(),
        Command::BenchTrain(c) => c.run(),
        Command::EmbeddingMap(c) => c.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
