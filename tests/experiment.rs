//! `autosam experiment --quick`: every method trains and is scored, and the CSV, table and plot
//! are written (skipped without ../shared/data/acdc or the weights).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const METHODS: [&str; 7] = [
    "SAM (box) zero-shot",
    "AutoSAM",
    "CNN head",
    "linear head",
    "AutoSAM + aug. views",
    "UNet (scratch)",
    "UNet + SimCLR",
];

/// The ACDC folder, when it and the encoder's weights are there (or the skip, where allowed).
fn acdc(root: &Path) -> Option<PathBuf> {
    let data = root.join("../shared/data/acdc");
    let weights = root.join("weights/lite_medsam.pth");
    if !data.join("patient002_frame01_gt.nii.gz").exists() || !weights.exists() {
        common::skip_without("../shared/data/acdc or weights/lite_medsam.pth");
        return None;
    }
    Some(data)
}

#[test]
fn quick_experiment_runs_every_method_and_writes_its_outputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(data) = acdc(root) else {
        return;
    };
    let out = std::env::temp_dir().join(format!("autosam-experiment-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_autosam"))
        .current_dir(root)
        .args(["experiment", "--quick", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");
    let csv = std::fs::read_to_string(out.join("experiment.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    for m in METHODS {
        let row = rows
            .iter()
            .find(|r| r[0] == m)
            .unwrap_or_else(|| panic!("{m} missing:\n{csv}"));
        // rv, myo, lv, mean: Dice values in [0, 1] where defined.
        for v in &row[4..8] {
            if !v.is_empty() {
                let d: f64 = v.parse().unwrap();
                assert!((0.0..=1.0).contains(&d), "{m}: {v}");
            }
        }
    }
    // Zero-shot SAM with ground-truth boxes finds the LV whatever the step budget.
    let sam = rows.iter().find(|r| r[0] == METHODS[0]).unwrap();
    assert!(sam[6].parse::<f64>().unwrap() > 0.8, "{csv}");
    // Every trained method records its first and last epoch's loss; a step budget leaves the
    // epochs column empty.
    for row in rows.iter().filter(|r| r[0] != METHODS[0]) {
        assert_eq!(row.len(), 14, "{csv}");
        assert!(row[11].parse::<f64>().unwrap() > 0.0, "{csv}");
        assert_eq!(row[13], "", "{csv}");
    }
    // Resuming skips what the file holds and keeps it.
    let again = Command::new(env!("CARGO_BIN_EXE_autosam"))
        .current_dir(root)
        .args([
            "experiment",
            "--quick",
            "--resume",
            "--methods",
            "sam-box",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success() && said.contains("(0 runs here, 7 in the file"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("experiment.csv")).unwrap(),
        csv
    );
    let md = std::fs::read_to_string(out.join("experiment.md")).unwrap();
    assert!(
        md.contains("| AutoSAM |") && md.contains("Wall time"),
        "{md}"
    );
    let svg = std::fs::read_to_string(out.join("experiment.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("UNet + SimCLR"),
        "{}",
        &svg[..200.min(svg.len())]
    );
    std::fs::remove_dir_all(&out).ok();
}

/// A part stopped as asked leaves its run's checkpoint and no row; `--resume` goes on from the
/// checkpoint, writes the row and removes the folder, and the row is the one a run that never
/// stopped writes. A resumed UNet + SimCLR run finds its pre-trained encoder in the checkpoint
/// and does not pre-train again.
#[test]
fn a_run_stopped_part_way_goes_on_from_its_checkpoint() {
    for (method, label) in [("cnn", "CNN head"), ("unet-simclr", "UNet + SimCLR")] {
        stopped_and_resumed(method, label);
    }
}

fn stopped_and_resumed(method: &str, label: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(data) = acdc(root) else {
        return;
    };
    let out = std::env::temp_dir().join(format!("autosam-stopped-{}-{method}", std::process::id()));
    let experiment = |dir: &str, extra: &[&str]| part(&data, &out.join(dir), method, extra);
    // Dice (rv, myo, lv, mean) and the first and last epoch's loss: after 12 steps the Dice
    // may be 0 either way, the losses tell runs apart.
    let row = |csv: &str| -> Option<Vec<Option<f64>>> {
        let line = csv.lines().find(|l| l.starts_with(&format!("{label},")))?;
        let cells: Vec<&str> = line.split(',').collect();
        let figures = cells[4..8].iter().chain(&cells[11..13]);
        Some(figures.map(|v| v.parse().ok()).collect())
    };
    let folder = out.join(format!("parts/runs/experiment/{method}-k1-d0"));
    let pretrains = |log: &str| log.contains("SimCLR on");

    let (log, csv) = experiment("parts", &["--stop-after-minutes", "0"]);
    assert!(log.contains("stopped as asked after"), "{log}");
    assert!(row(&csv).is_none(), "{csv}");
    assert!(folder.join("state.json").exists(), "{log}");
    assert_eq!(pretrains(&log), method == "unet-simclr", "{log}");

    let (log, csv) = experiment("parts", &["--resume"]);
    assert!(log.contains("continuing from"), "{log}");
    assert!(!pretrains(&log), "pre-trained again on resuming: {log}");
    assert!(!folder.exists(), "the checkpoint outlived its row");
    let resumed = row(&csv).unwrap_or_else(|| panic!("no row after resuming:\n{csv}"));

    let (_, csv) = experiment("whole", &[]);
    let whole = row(&csv).unwrap();
    assert!(whole[5].is_some(), "no last loss: {csv}");
    for (a, b) in resumed.iter().zip(&whole) {
        let close = match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-5,
            (a, b) => a == b,
        };
        assert!(close, "resumed {resumed:?}, whole {whole:?}");
    }
    std::fs::remove_dir_all(&out).ok();
}

/// A part goes on with a run it stopped before it starts one the plan lists earlier: the CNN
/// head comes before the UNet in the plan, yet a UNet run in progress goes first.
#[test]
fn a_run_in_progress_goes_before_the_plans_earlier_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(data) = acdc(root) else {
        return;
    };
    let out = std::env::temp_dir().join(format!("autosam-order-{}", std::process::id()));
    let runs = out.join("runs/experiment");
    let (log, _) = part(&data, &out, "unet", &["--stop-after-minutes", "0"]);
    assert!(runs.join("unet-k1-d0/state.json").exists(), "{log}");
    let (log, csv) = part(
        &data,
        &out,
        "cnn,unet",
        &["--resume", "--stop-after-minutes", "0"],
    );
    let unet = runs.join("unet-k1-d0");
    assert!(
        log.contains(&format!("continuing from {}", unet.display())),
        "{log}"
    );
    assert!(
        !runs.join("cnn-k1-d0").exists(),
        "the CNN head started first:\n{log}"
    );
    let rows = ["CNN head,", "UNet (scratch),"];
    assert!(
        !csv.lines().any(|l| rows.iter().any(|r| l.starts_with(r))),
        "a run ended though both parts stopped at their first epoch's end:\n{csv}"
    );
    std::fs::remove_dir_all(&out).ok();
}

/// One `experiment --quick` part of 12 steps a run writing under `out` (checkpoints in
/// `out/runs`): its log and CSV.
fn part(data: &Path, out: &Path, methods: &str, extra: &[&str]) -> (String, String) {
    let run = Command::new(env!("CARGO_BIN_EXE_autosam"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "experiment",
            "--quick",
            "--methods",
            methods,
            "--steps",
            "12",
        ])
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .arg("--checkpoints")
        .arg(out.join("runs"))
        .args(extra)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{log}");
    let csv = std::fs::read_to_string(out.join("experiment.csv")).unwrap();
    (log, csv)
}
