//! Heads through their files: every kind round-trips through safetensors with its metadata,
//! gives the same logits after, and a wrong or damaged file is refused. Native: it reads the
//! upstream checkpoint from disk.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use autosam::container::Precision;
use autosam::heads::store::{self, HeadInfo, cardiac_classes};
use autosam::heads::{Head, HeadKind};
use autosam::model::{HostTensor, Weights};
use burn::tensor::{Tensor, TensorData};

fn info(kind: HeadKind) -> HeadInfo {
    HeadInfo {
        kind,
        classes: cardiac_classes(),
        encoder: autosam::model::SamConfig::lite_medsam().encoder_id(),
        training: serde_json::json!({ "epochs": 0 }),
        extent: Some(0.25),
    }
}

/// The upstream state dict for the heads that start from the pretrained decoder, when present.
fn sam_weights() -> Option<Weights> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/lite_medsam.pth");
    if !path.exists() {
        common::skip_without("weights/lite_medsam.pth (for the autosam and linear heads)");
        return None;
    }
    Some(autosam::model::checkpoint::load_path(&path).unwrap().1)
}

#[test]
fn heads_round_trip_through_their_files() {
    let device = autosam::backend::cpu();
    let sam = sam_weights();
    let kinds: &[HeadKind] = if sam.is_some() {
        &[HeadKind::Cnn, HeadKind::Linear, HeadKind::AutoSam]
    } else {
        &[HeadKind::Cnn]
    };
    let sam = sam.unwrap_or_default();
    let g = 16;
    let embedding = autosam::backend::pattern(256 * g * g, 5);
    let pe = HostTensor::new(
        vec![1, 256, g, g],
        autosam::backend::pattern(256 * g * g, 6),
    );
    for kind in kinds {
        let head = Head::new(*kind, 4, &sam, &device).unwrap();
        let run = |h: &Head| {
            let x =
                Tensor::<4>::from_data(TensorData::new(embedding.clone(), [1, 256, g, g]), &device);
            h.forward(x, pe.to_device(&device))
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let before = run(&head);
        let bytes = store::save(&head, &info(*kind), Precision::F32).unwrap();
        let (got, weights) = store::read(&bytes).unwrap();
        assert_eq!(got, info(*kind));
        // A fresh head of the same kind (new random tokens / init), then the file's values.
        let fresh = Head::new(*kind, 4, &sam, &device).unwrap();
        let loaded = store::assign(fresh, &weights).unwrap();
        assert_eq!(run(&loaded), before, "{kind}");

        // Two classes cannot take a four-class file.
        let small = Head::new(*kind, 2, &sam, &device).unwrap();
        let err = store::assign(small, &weights).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }
}

#[test]
fn damaged_and_foreign_head_files_are_refused() {
    let device = autosam::backend::cpu();
    let head = Head::new(HeadKind::Cnn, 4, &Weights::default(), &device).unwrap();
    let bytes = store::save(&head, &info(HeadKind::Cnn), Precision::F16).unwrap();
    let mut damaged = bytes.clone();
    let n = damaged.len() - 7;
    damaged[n] ^= 1;
    assert!(
        store::read(&damaged)
            .unwrap_err()
            .to_string()
            .contains("damaged")
    );
    let weights_file = autosam::model::format::write(
        &Weights::default(),
        &autosam::model::SamConfig::lite_medsam(),
        Precision::F32,
    )
    .unwrap();
    let err = store::read(&weights_file).unwrap_err().to_string();
    assert!(err.contains("not an autosam head file"), "{err}");
    let mut wrong = info(HeadKind::Cnn);
    wrong.classes.pop();
    assert!(store::save(&head, &wrong, Precision::F32).is_err());
}

#[test]
fn an_int8_head_takes_an_extent_and_keeps_its_tensors() {
    let device = autosam::backend::cpu();
    let head = Head::new(HeadKind::Cnn, 4, &Weights::default(), &device).unwrap();
    let mut before = info(HeadKind::Cnn);
    before.extent = None;
    let bytes = store::save(&head, &before, Precision::Int8).unwrap();
    let set = store::with_extent(&bytes, Some(0.3)).unwrap();
    let ((old, old_weights), (new, new_weights)) =
        (store::read(&bytes).unwrap(), store::read(&set).unwrap());
    assert_eq!((old.extent, new.extent), (None, Some(0.3)));
    assert_eq!(new.training, old.training);
    for (name, t) in old_weights.iter() {
        assert_eq!(new_weights.get(name).unwrap().data, t.data, "{name}");
    }
}

#[test]
fn a_head_for_other_embeddings_is_refused() {
    let device = autosam::backend::cpu();
    let head = Head::new(HeadKind::Cnn, 4, &Weights::default(), &device).unwrap();
    let lite = autosam::model::SamConfig::lite_medsam().encoder_id();
    let bytes = store::save(&head, &info(HeadKind::Cnn), Precision::F32).unwrap();
    assert!(store::load(&bytes, &Weights::default(), &lite, &device).is_ok());
    // What heads trained before the encoder added its learned attention biases recorded.
    let mut stale = info(HeadKind::Cnn);
    stale.encoder = "litemedsam".into();
    let bytes = store::save(&head, &stale, Precision::F32).unwrap();
    let err = store::load(&bytes, &Weights::default(), &lite, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("train it again"), "{err}");
}

#[test]
fn a_soup_is_the_mean_of_its_heads_and_refuses_strangers() {
    let device = autosam::backend::cpu();
    let cnn = || Head::new(HeadKind::Cnn, 4, &Weights::default(), &device).unwrap();
    let mut second = info(HeadKind::Cnn);
    second.extent = Some(0.35);
    let files = [
        store::save(&cnn(), &info(HeadKind::Cnn), Precision::F32).unwrap(),
        store::save(&cnn(), &second, Precision::F32).unwrap(),
    ];
    let (soup, mean) = autosam::heads::soup::average(&files).unwrap();
    assert_eq!(
        (soup.kind, &soup.classes),
        (HeadKind::Cnn, &cardiac_classes())
    );
    assert!((soup.extent.unwrap() - 0.3).abs() < 1e-6);
    assert_eq!(soup.training["soup"].as_array().unwrap().len(), 2);
    let (a, b) = (
        store::read(&files[0]).unwrap().1,
        store::read(&files[1]).unwrap().1,
    );
    assert_eq!(mean.len(), a.len());
    for (name, t) in mean.iter() {
        let (x, y) = (&a.get(name).unwrap().data, &b.get(name).unwrap().data);
        // Two fresh heads start from different random draws: the mean lies between them.
        assert!(x != y, "{name}");
        for ((m, x), y) in t.data.iter().zip(x).zip(y) {
            assert!((m - (x + y) / 2.0).abs() < 1e-6, "{name}");
        }
    }

    // One head is no soup; other classes or another encoder do not average.
    assert!(autosam::heads::soup::average(&files[..1]).is_err());
    let two = Head::new(HeadKind::Cnn, 2, &Weights::default(), &device).unwrap();
    let mut two_info = info(HeadKind::Cnn);
    two_info.classes.truncate(2);
    let other = store::save(&two, &two_info, Precision::F32).unwrap();
    let err = autosam::heads::soup::average(&[files[0].clone(), other])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("head 2 differs from head 1 in its classes"),
        "{err}"
    );
    let mut stale = info(HeadKind::Cnn);
    stale.encoder = "litemedsam".into();
    let other = store::save(&cnn(), &stale, Precision::F32).unwrap();
    let err = autosam::heads::soup::average(&[files[0].clone(), other])
        .unwrap_err()
        .to_string();
    assert!(err.contains("encoder"), "{err}");
}
