//! The shipped cardiac head: `autosam eval` without `--head` scores it on a held-out patient
//! (skipped without ../shared/data/acdc or the weights).

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn eval_scores_the_shipped_head_on_a_held_out_patient() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../shared/data/acdc");
    let weights = root.join("weights/lite_medsam.pth");
    if !data.join("patient050_frame01_gt.nii.gz").exists() || !weights.exists() {
        common::skip_without("../shared/data/acdc or weights/lite_medsam.pth");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_autosam"))
        .current_dir(root)
        .args(["eval", "--volumes", "patient050", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // | **mean of 2 volumes** | RV | MYO | LV | mean |
    let row = text
        .lines()
        .find(|l| l.starts_with("| **mean of 2 volumes**"))
        .unwrap_or_else(|| panic!("{text}"));
    let cells: Vec<f64> = row
        .split('|')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    eprintln!("{text}");
    assert_eq!(cells.len(), 4, "{row}");
    assert!(cells[2] > 0.5, "LV Dice {} on patient050: {row}", cells[2]);
}
