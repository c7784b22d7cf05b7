//! The reader against nibabel: every fixture in tests/fixtures/nifti was written by nibabel and
//! expected.json holds what nibabel reads back (scripts/make_nifti_fixtures.py).

use std::path::{Path, PathBuf};

use autosam::nii::geometry::{affine, orientation};
use autosam::nii::{ReadOptions, read_nifti};
use autosam::{Error, Volume};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nifti")
}

fn expected() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

fn read(name: &str, frame: usize) -> autosam::Result<Volume> {
    let bytes = std::fs::read(fixtures().join(name)).unwrap();
    read_nifti(
        &bytes,
        &ReadOptions {
            frame,
            ..Default::default()
        },
    )
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn every_fixture_reads_as_nibabel_reads_it() {
    let expected = expected();
    assert!(expected.len() >= 14);
    for (name, want) in &expected {
        let dims: Vec<usize> = floats(&want["dims"]).iter().map(|&d| d as usize).collect();
        let frames = dims.get(3).copied().unwrap_or(1);
        let values = floats(&want["values"]);
        let per_frame = dims[..3].iter().product::<usize>();
        for frame in 0..frames {
            let v = read(name, frame).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(v.dims.to_vec(), dims[..3].to_vec(), "{name}");
            assert_eq!(v.source.frames, frames, "{name}");
            assert_eq!(
                v.source.datatype,
                want["datatype"].as_str().unwrap(),
                "{name}"
            );
            let want_frame = &values[frame * per_frame..(frame + 1) * per_frame];
            for (i, (got, want)) in v.data.iter().zip(want_frame).enumerate() {
                assert!(
                    (*got as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{name} frame {frame} voxel {i}: {got} vs {want}"
                );
            }
            let (a, _) = affine(&v.header);
            let want_affine: Vec<Vec<f64>> = want["affine"]
                .as_array()
                .unwrap()
                .iter()
                .map(floats)
                .collect();
            for r in 0..4 {
                for c in 0..4 {
                    assert!(
                        (a[r][c] - want_affine[r][c]).abs() < 1e-5,
                        "{name} affine[{r}][{c}]: {} vs {}",
                        a[r][c],
                        want_affine[r][c]
                    );
                }
            }
            assert_eq!(
                orientation(&a),
                want["orientation"].as_str().unwrap(),
                "{name}"
            );
        }
    }
}

#[test]
fn a_frame_past_the_end_is_refused() {
    assert!(matches!(
        read("int16_4d_3frames.nii", 3),
        Err(Error::NoSuchFrame {
            frame: 3,
            frames: 3
        })
    ));
}

#[test]
fn gzip_is_recognised_by_content_not_name() {
    let bytes = std::fs::read(fixtures().join("uint8_gz.nii.gz")).unwrap();
    let dir = std::env::temp_dir().join("autosam-gz-no-suffix");
    std::fs::create_dir_all(&dir).unwrap();
    let renamed = dir.join("volume.nii");
    std::fs::write(&renamed, &bytes).unwrap();
    let v = read_nifti(&std::fs::read(&renamed).unwrap(), &ReadOptions::default()).unwrap();
    assert!(v.source.gzipped);
    assert_eq!(v.dims, [5, 4, 3]);
}

/// The ACDC slice the LiteMedSAM fixtures were made from, read from the real file when present.
#[test]
fn acdc_slice_matches_the_reference_slice() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/acdc/patient001_frame01.nii.gz");
    if !path.exists() {
        common::skip_without(&path.display().to_string());
        return;
    }
    let v = read_nifti(&std::fs::read(&path).unwrap(), &ReadOptions::default()).unwrap();
    assert_eq!(v.slice_axis(), 2, "ACDC's short axis is k");
    let slice = v.slice(2, 5);
    let reference = common::fixture_tensor("slice_hw");
    assert_eq!((slice.height, slice.width), (216, 256));
    assert_eq!(slice.data, reference);
}

mod common;
