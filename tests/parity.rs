//! `autosam parity` on the committed fixtures (a trimmed copy of ../shared/fixtures), in f32 and
//! through converted f16 and int8 files; and that it fails when the reference disagrees.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

const WEIGHTS: &str = "weights/lite_medsam.pth";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The upstream checkpoint, which `scripts/setup` fetches; tests that need it say so and pass
/// where it is absent.
fn weights() -> Option<PathBuf> {
    let path = root().join(WEIGHTS);
    if path.exists() {
        Some(path)
    } else {
        common::skip_without(&format!("{WEIGHTS} (run scripts/setup)"));
        None
    }
}

fn autosam(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_autosam"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("autosam-parity-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn parity_passes_in_f32_on_the_committed_fixtures() {
    let Some(w) = weights() else { return };
    let out = autosam(&[
        "parity",
        "tests/fixtures/parity",
        "--weights",
        w.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for check in [
        "| embedding |",
        "| box.logits |",
        "| vit.output |",
        "| box.mask_hw (Dice) |",
    ] {
        let row = stdout.lines().find(|l| l.starts_with(check)).unwrap();
        assert!(row.contains("| ok"), "{row}");
    }
}

#[test]
fn converted_files_pass_their_documented_tolerances() {
    let Some(w) = weights() else { return };
    let dir = scratch("convert");
    for precision in ["f16", "int8"] {
        let file = dir.join(format!("lite_medsam.{precision}.safetensors"));
        let f = file.to_str().unwrap();
        let out = autosam(&[
            "convert",
            w.to_str().unwrap(),
            "--out",
            f,
            "--precision",
            precision,
        ]);
        assert!(out.status.success());
        let size = std::fs::metadata(&file).unwrap().len();
        if precision == "int8" {
            assert!(size <= 11_000_000, "int8 weights are {size} bytes");
        }
        let out = autosam(&["parity", "tests/fixtures/parity", "--weights", f]);
        assert!(out.status.success(), "{precision} parity failed");
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("({precision})")));
    }
    std::fs::remove_dir_all(dir).ok();
}

/// The same fixture with its embedding scaled by 1%: the command must notice and exit non-zero.
#[test]
fn parity_fails_when_the_reference_disagrees() {
    let Some(w) = weights() else { return };
    let bytes =
        std::fs::read(root().join("tests/fixtures/parity/litemedsam_slice.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let mut data = view.data().to_vec();
        if name == "embedding" {
            for c in data.chunks_exact_mut(4) {
                let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * 1.01;
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        owned.push((name, view.dtype(), view.shape().to_vec(), data));
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let dir = scratch("bad");
    std::fs::write(
        dir.join("litemedsam_slice.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    let out = autosam(&[
        "parity",
        dir.to_str().unwrap(),
        "--weights",
        w.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| embedding |"))
        .unwrap();
    assert!(row.contains("FAIL"), "{row}");
    std::fs::remove_dir_all(dir).ok();
}
