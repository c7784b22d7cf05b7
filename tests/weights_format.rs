//! The page's weights file: round trips at each precision, and every way a file can be wrong is
//! refused with a message that says so.

use autosam::container::{INT8_BLOCK, Precision, dequantize_int8, quantize_int8};
use autosam::model::format;
use autosam::model::{HostTensor, Sam, SamConfig, Weights};

fn sample() -> Weights {
    let mut w = Weights::default();
    let big: Vec<f32> = (0..8192)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    w.insert("layer.weight", HostTensor::new(vec![64, 128], big));
    w.insert(
        "layer.bias",
        HostTensor::new(vec![3], vec![0.5, -0.25, 1e-3]),
    );
    w.insert(
        "zeros.weight",
        HostTensor::new(vec![64, 64], vec![0.0; 4096]),
    );
    w
}

fn max_err(a: &HostTensor, b: &HostTensor) -> f32 {
    assert_eq!(a.shape, b.shape);
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn round_trips_at_each_precision() {
    let w = sample();
    let config = SamConfig::lite_medsam();
    for precision in Precision::ALL {
        let bytes = format::write(&w, &config, precision).unwrap();
        assert!(format::is_converted(&bytes));
        let file = format::read(&bytes).unwrap();
        assert_eq!(file.config, config);
        assert_eq!(file.precision, precision);
        assert_eq!(file.weights.len(), 3);
        let bound = match precision {
            Precision::F32 => 0.0,
            Precision::F16 => 1e-3,
            // half a quantisation step of the block's max (1.0 / 127 / 2), plus f16 scale rounding
            Precision::Int8 => 0.0045,
        };
        for (name, t) in w.iter() {
            let err = max_err(t, file.weights.get(name).unwrap());
            assert!(err <= bound, "{precision} {name}: {err}");
        }
    }
}

#[test]
fn int8_blocks_share_a_scale_and_zero_blocks_stay_zero() {
    let mut v = vec![0.0f32; 2 * INT8_BLOCK];
    v[INT8_BLOCK] = 2.54;
    v[INT8_BLOCK + 1] = -1.0;
    let (q, scales) = quantize_int8(&v);
    assert_eq!(scales.len(), 2);
    assert_eq!(q[INT8_BLOCK], 127);
    assert_eq!(q[INT8_BLOCK + 1], -50);
    let back = dequantize_int8(&q, &scales);
    assert!(back[..INT8_BLOCK].iter().all(|&x| x == 0.0));
    assert!((back[INT8_BLOCK] - 2.54).abs() < 2e-3);
}

fn refused(bytes: &[u8], needle: &str) {
    match format::read(bytes) {
        Ok(_) => panic!("accepted a bad file (expected `{needle}`)"),
        Err(e) => assert!(e.to_string().contains(needle), "{e}"),
    }
}

#[test]
fn damaged_truncated_and_foreign_files_are_refused() {
    let bytes = format::write(&sample(), &SamConfig::lite_medsam(), Precision::Int8).unwrap();
    // One flipped bit in the tensor data.
    let mut damaged = bytes.clone();
    let last = damaged.len() - 10;
    damaged[last] ^= 0x10;
    refused(&damaged, "damaged");
    refused(&bytes[..bytes.len() - 100], "not an autosam weights file");
    refused(&bytes[..5], "not an autosam weights file");
    refused(&[], "not an autosam weights file");
    // A NIfTI file dropped where weights belong.
    let nifti = autosam::nii::write_labels(
        &[0; 8],
        [2, 2, 2],
        &autosam::phantom::header([2, 2, 2], [1.0; 3]),
    )
    .unwrap();
    refused(&nifti, "not an autosam weights file");
    // A plain safetensors file (upstream layout, no header of ours).
    let plain = safetensors::serialize(
        [(
            "x",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0, 0, 0, 0])
                .unwrap(),
        )],
        None,
    )
    .unwrap();
    assert!(!format::is_converted(&plain));
    refused(&plain, "no metadata");
}

#[test]
fn a_state_dict_that_does_not_fit_the_model_names_what_is_missing() {
    let err = Sam::load(
        &sample(),
        SamConfig::lite_medsam(),
        &autosam::backend::cpu(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("image_encoder.patch_embed.seq.0.weight"),
        "{err}"
    );
}
