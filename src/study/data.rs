//! The study's data: labelled volumes in a folder (`NAME.nii.gz` + `NAME_gt.nii.gz`), chosen by
//! name, read once with their cached slice embeddings, as training samples and as volumes to score.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Tensor;

use crate::augment::{Augment, Family};
use crate::cache::{self, VolumeEmbeddings};
use crate::error::{Error, Result};
use crate::heads::Segmenter;
use crate::metrics::dice;
use crate::model::Sam;
use crate::nii::{self, ReadOptions};
use crate::pipeline::{PreparedVolume, label_slice, put_label_slice};
use crate::train::{Sample, inputs};
use crate::volume::Volume;

/// A labelled pair: its name (the image's stem), the image and the label map.
pub type Pair = (String, PathBuf, PathBuf);

/// An error about `path`.
pub fn at(path: &Path, e: impl Display) -> Error {
    Error::Invalid(format!("{}: {e}", path.display()))
}

/// `NAME.nii.gz` + `NAME_gt.nii.gz` pairs in a folder, sorted by name.
pub fn labelled_pairs(dir: &Path) -> Result<Vec<Pair>> {
    let entries = std::fs::read_dir(dir).map_err(|e| at(dir, e))?;
    let mut pairs: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let stem = name.strip_suffix("_gt.nii.gz")?.to_string();
            let image = dir.join(format!("{stem}.nii.gz"));
            image.exists().then(|| (stem, image, e.path()))
        })
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        return Err(at(dir, "no NAME.nii.gz + NAME_gt.nii.gz pairs"));
    }
    Ok(pairs)
}

/// Pairs whose name starts with one of the comma-separated prefixes (all when `None`).
pub fn select(dir: &Path, volumes: Option<&str>) -> Result<Vec<Pair>> {
    let pairs = labelled_pairs(dir)?;
    let Some(list) = volumes else {
        return Ok(pairs);
    };
    let prefixes: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let chosen: Vec<_> = pairs
        .into_iter()
        .filter(|(name, _, _)| prefixes.iter().any(|p| name.starts_with(p)))
        .collect();
    if chosen.is_empty() {
        return Err(at(dir, format!("no volumes match `{list}`")));
    }
    Ok(chosen)
}

/// Pairs whose name starts with one of `patients`.
pub fn pairs_of(pairs: &[Pair], patients: &[String]) -> Vec<Pair> {
    pairs
        .iter()
        .filter(|(n, _, _)| patients.iter().any(|p| n.starts_with(p.as_str())))
        .cloned()
        .collect()
}

pub fn read_volume(path: &Path) -> Result<Volume> {
    let bytes = std::fs::read(path).map_err(|e| at(path, e))?;
    volume_from_bytes(path, &bytes)
}

/// A volume from a file's bytes already read; `path` names it in errors.
pub fn volume_from_bytes(path: &Path, bytes: &[u8]) -> Result<Volume> {
    nii::read_nifti(bytes, &ReadOptions::default()).map_err(|e| at(path, e))
}

/// A volume's embeddings from the cache entry `key`, or encoded now and stored there.
pub fn embeddings(
    sam: &Sam,
    key: &str,
    prepared: &PreparedVolume,
    cache_dir: &Path,
) -> Result<VolumeEmbeddings> {
    let entry = cache_dir.join(format!("{key}.safetensors"));
    // A missing, unreadable or stale entry is simply recomputed.
    let cached = std::fs::read(&entry)
        .ok()
        .and_then(|stored| VolumeEmbeddings::from_bytes(&stored).ok())
        .filter(|v| v.slices.len() == prepared.slice_count());
    if let Some(v) = cached {
        return Ok(v);
    }
    let out = cache::encode_volume(sam, prepared).to_bytes()?;
    std::fs::create_dir_all(cache_dir).map_err(|e| at(cache_dir, e))?;
    std::fs::write(&entry, &out).map_err(|e| at(&entry, e))?;
    // Hand back what was stored (f16), so a first run and a cached rerun see the same values.
    VolumeEmbeddings::from_bytes(&out)
}

/// How much of the encoder grid the labels `truth` of the `prepared` volume span.
fn grid_span(prepared: &PreparedVolume, truth: &[u8]) -> Option<f32> {
    let p = prepared;
    let slices: Vec<Vec<u8>> = (0..p.slice_count())
        .map(|z| p.letterbox.labels(&label_slice(truth, p.dims, p.axis, z)))
        .collect();
    crate::zoom::span(&slices, p.letterbox.size)
}

/// [`Case::span`] of a pair without encoding it: what a head trained on it records.
pub fn pair_span(pair: &Pair, size: usize) -> Result<Option<f32>> {
    let (name, image, gt) = pair;
    let volume = read_volume(image)?;
    let truth = read_truth(name, gt, &volume)?;
    Ok(grid_span(&PreparedVolume::new(&volume, size), &truth))
}

/// The label map at `gt` for `volume` (pair `name`), which must share its grid.
fn read_truth(name: &str, gt: &Path, volume: &Volume) -> Result<Vec<u8>> {
    let truth = read_volume(gt)?.labels();
    if truth.len() != volume.data.len() {
        return Err(Error::Invalid(format!(
            "{name}: labels and image differ in size"
        )));
    }
    Ok(truth)
}

/// A labelled volume ready for the heads and baselines: encoder inputs, cached embeddings and
/// the ground truth in the source grid.
pub struct Case {
    pub name: String,
    pub prepared: PreparedVolume,
    pub truth: Vec<u8>,
    pub embeddings: VolumeEmbeddings,
    /// The embedding cache key of the image file (content hash and encoder).
    pub key: String,
}

impl Case {
    pub fn load(sam: &Sam, pair: &Pair, cache_dir: &Path) -> Result<Self> {
        let (name, image, gt) = pair;
        let t = Instant::now();
        // One read of the image serves both the volume and its cache key.
        let bytes = std::fs::read(image).map_err(|e| at(image, e))?;
        let volume = volume_from_bytes(image, &bytes)?;
        let key = cache::key(&bytes, &sam.config.encoder_id());
        let truth = read_truth(name, gt, &volume)?;
        let prepared = PreparedVolume::new(&volume, sam.input_size());
        let embeddings = embeddings(sam, &key, &prepared, cache_dir)?;
        log::info!(
            "{name}: {} slices ready in {:.1} s",
            prepared.slice_count(),
            t.elapsed().as_secs_f64()
        );
        Ok(Self {
            name: name.clone(),
            key,
            prepared,
            truth,
            embeddings,
        })
    }

    /// Slice `z`'s labels letterboxed onto the encoder grid.
    pub fn labels(&self, z: usize) -> Vec<u8> {
        let p = &self.prepared;
        p.letterbox
            .labels(&label_slice(&self.truth, p.dims, p.axis, z))
    }

    /// How much of the encoder grid its labelled structures span ([`crate::zoom::span`]).
    pub fn span(&self) -> Option<f32> {
        grid_span(&self.prepared, &self.truth)
    }

    /// Slice `z`'s image on the encoder grid, one channel in [0, 1].
    pub fn image(&self, z: usize) -> &[f32] {
        let s = self.prepared.letterbox.size;
        &self.prepared.inputs[z][..s * s]
    }

    pub fn embedding_samples(&self) -> Vec<Sample> {
        self.embeddings
            .slices
            .iter()
            .enumerate()
            .map(|(z, e)| Sample {
                input: e.clone(),
                shape: self.embeddings.shape,
                labels: self.labels(z),
            })
            .collect()
    }

    pub fn image_samples(&self) -> Vec<Sample> {
        let s = self.prepared.letterbox.size;
        (0..self.prepared.slice_count())
            .map(|z| Sample {
                input: self.image(z).to_vec(),
                shape: [1, s, s],
                labels: self.labels(z),
            })
            .collect()
    }

    /// The model's label volume in the source grid; `images` picks image inputs (the UNet)
    /// over embeddings.
    pub fn segment<M: Segmenter>(
        &self,
        model: &M,
        images: bool,
        dense_pe: &Tensor<4>,
    ) -> Result<Vec<u8>> {
        let device = dense_pe.device();
        let samples = if images {
            self.image_samples()
        } else {
            self.embedding_samples()
        };
        let p = &self.prepared;
        let mut pred = vec![0u8; self.truth.len()];
        let mut z = 0;
        for chunk in samples.chunks(4) {
            let batch: Vec<&Sample> = chunk.iter().collect();
            let logits = model
                .logits(inputs(&batch, &device), dense_pe.clone())
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| Error::Invalid(format!("{e:?}")))?;
            for l in logits.chunks_exact(logits.len() / chunk.len()) {
                let labels = p.letterbox.labels_from_class_logits(l, model.classes());
                put_label_slice(&mut pred, p.dims, p.axis, z, &labels);
                z += 1;
            }
        }
        Ok(pred)
    }

    /// Per slice, `views` augmented copies of it drawn from `family` (seeded by `seed` and the
    /// slice), encoded once and cached under a key naming the file, encoder, family, count and
    /// seed; with their labels warped alike.
    pub fn views(
        &self,
        sam: &Sam,
        family: Family,
        views: usize,
        seed: u64,
        cache_dir: &Path,
    ) -> Result<Vec<Vec<Sample>>> {
        let n = self.prepared.slice_count();
        if views == 0 {
            return Ok(vec![Vec::new(); n]);
        }
        let draws: Vec<(usize, Augment)> = (0..n)
            .flat_map(|z| {
                family
                    .slice_views(seed, z, views)
                    .into_iter()
                    .map(move |a| (z, a))
            })
            .collect();
        let tag = format!("{}{views}:seed{seed}", family.tag());
        let mut out = vec![Vec::with_capacity(views); n];
        for (z, sample) in self.warped(sam, &draws, &tag, cache_dir)? {
            out[z].push(sample);
        }
        Ok(out)
    }

    /// The slices `draws` name, each warped by its augmentation, encoded once and cached under
    /// a key naming the file, the encoder and `tag` (which must name the draws); with their
    /// labels warped alike, in the order of `draws`.
    pub fn warped(
        &self,
        sam: &Sam,
        draws: &[(usize, Augment)],
        tag: &str,
        cache_dir: &Path,
    ) -> Result<Vec<(usize, Sample)>> {
        let s = self.prepared.letterbox.size;
        let images = draws
            .iter()
            .map(|(z, a)| a.image(self.image(*z), s, s).repeat(3))
            .collect();
        // The slices' own inputs are not copied only to be replaced.
        let p = &self.prepared;
        let prepared = PreparedVolume {
            dims: p.dims,
            axis: p.axis,
            letterbox: p.letterbox,
            inputs: images,
        };
        let tag = format!("{}:{tag}", sam.config.encoder_id());
        let key = cache::key(self.key.as_bytes(), &tag);
        let emb = embeddings(sam, &key, &prepared, cache_dir)?;
        Ok(draws
            .iter()
            .zip(emb.slices)
            .map(|((z, a), e)| {
                let sample = Sample {
                    input: e,
                    shape: emb.shape,
                    labels: a.labels(&self.labels(*z), s, s),
                };
                (*z, sample)
            })
            .collect())
    }

    /// Per foreground class, the 3-D Dice of `pred` against the truth.
    pub fn dice(&self, pred: &[u8], classes: usize) -> Vec<Option<f64>> {
        (1..classes as u8)
            .map(|k| dice(pred, &self.truth, k))
            .collect()
    }
}

pub fn load_cases(sam: &Sam, pairs: &[Pair], cache_dir: &Path) -> Result<Vec<Case>> {
    pairs
        .iter()
        .map(|p| Case::load(sam, p, cache_dir))
        .collect()
}

/// The cases of `patients` (by name prefix).
pub fn cases_of<'a>(cases: &'a [Case], patients: &[String]) -> Vec<&'a Case> {
    cases
        .iter()
        .filter(|c| patients.iter().any(|p| c.name.starts_with(p.as_str())))
        .collect()
}
