//! Export round trips: a label volume written for a source reads back with the source's geometry.

use autosam::nii::geometry::affine;
use autosam::nii::{ReadOptions, read_nifti, write_f32, write_labels};
use autosam::phantom::cardiac_phantom;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/nifti/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn labels_carry_the_source_geometry() {
    for name in [
        "dt_int16.nii",
        "int16_bigendian_scaled.nii",
        "float32_rotated_qform_only.nii",
        "uint8_gz.nii.gz",
        "int16_4d_3frames.nii",
    ] {
        let src = read_nifti(&fixture(name), &ReadOptions::default()).unwrap();
        let labels: Vec<u8> = (0..src.data.len()).map(|i| (i % 4) as u8).collect();
        let bytes = write_labels(&labels, src.dims, &src.header).unwrap();
        assert!(autosam::nii::read::is_gzip(&bytes));
        let back = read_nifti(&bytes, &ReadOptions::default()).unwrap();
        assert_eq!(back.dims, src.dims, "{name}");
        assert_eq!(back.source.datatype, "uint8");
        assert_eq!(
            back.data,
            labels.iter().map(|&l| l as f32).collect::<Vec<_>>()
        );
        let (h, s) = (&back.header, &src.header);
        assert_eq!(&h.pixdim[..4], &s.pixdim[..4], "{name}");
        assert_eq!((h.qform_code, h.sform_code), (s.qform_code, s.sform_code));
        assert_eq!(
            [h.quatern_b, h.quatern_c, h.quatern_d],
            [s.quatern_b, s.quatern_c, s.quatern_d]
        );
        assert_eq!(
            [h.quatern_x, h.quatern_y, h.quatern_z],
            [s.quatern_x, s.quatern_y, s.quatern_z]
        );
        assert_eq!(
            [h.srow_x, h.srow_y, h.srow_z],
            [s.srow_x, s.srow_y, s.srow_z]
        );
        assert_eq!(h.xyzt_units, s.xyzt_units);
        assert_eq!(affine(h), affine(s), "{name}");
        assert_eq!(h.intent_code, 1002, "labels are marked NIFTI_INTENT_LABEL");
    }
}

#[test]
fn a_label_volume_of_the_wrong_size_is_refused() {
    let src = read_nifti(&fixture("dt_int16.nii"), &ReadOptions::default()).unwrap();
    assert!(write_labels(&[0; 7], src.dims, &src.header).is_err());
}

#[test]
fn phantom_round_trips_as_float32() {
    let (image, labels) = cardiac_phantom([40, 48, 4], 3);
    let bytes = write_f32(&image.data, image.dims, &image.header).unwrap();
    let back = read_nifti(&bytes, &ReadOptions::default()).unwrap();
    assert_eq!(back.data, image.data);
    assert_eq!(back.spacing(), [1.5, 1.5, 8.0]);
    assert_eq!(back.slice_axis(), 2);
    let back = read_nifti(
        &write_labels(&labels.labels(), labels.dims, &labels.header).unwrap(),
        &ReadOptions::default(),
    )
    .unwrap();
    assert!(back.looks_like_labels());
    assert_eq!(back.data, labels.data);
}
