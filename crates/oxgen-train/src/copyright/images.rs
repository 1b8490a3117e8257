//! The image side of the extraction audit, for autoregressive pixel models on `digits8`: how
//! many samples (of one model, or of a NAF combination of shard models) are near duplicates of
//! a training image, of a planted duplicate in particular, against what held-out images give,
//! and the samples' Fréchet distance to held-out images.

use std::path::Path;

use burn::tensor::Device;
use oxgen_models::ar::naf::generate_naf;
use serde::Serialize;

use super::duplicates::planted_indices;
use super::extraction::Target;
use crate::ar::{ArTrainConfig, PIXEL_START, TextData, load_text, sample_images};
use crate::eval::metrics::classifier::{FEATURES, classifier, frechet_distance};
use crate::eval::metrics::{Memorization, memorization};
use crate::{Error, Result};

/// The audit of `n` sampled images.
#[derive(Clone, Debug, Serialize)]
pub struct ImageAudit {
    /// Near-duplicate statistics against the distinct training images, with the held-out
    /// baseline.
    pub memorization: Memorization,
    /// Share of samples that are near duplicates (d₁ < d₂/3) of a planted image.
    pub planted_near: f64,
    /// Planted images, and how many times each is in the training data.
    pub planted: [usize; 2],
    /// Fréchet distance of the samples to the held-out images, in the evaluation classifier's
    /// features.
    pub fd: f64,
}

fn to_values(images: &[Vec<u32>]) -> Vec<f32> {
    images
        .iter()
        .flat_map(|img| img.iter().map(|&v| v as f32 / 8.0 - 1.0))
        .collect()
}

fn dist2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| ((x - y) as f64).powi(2))
        .sum()
}

/// `n` images from `target` (seeds `seed + i`) and their audit against the data of `config`
/// (a `digits8` run), the evaluation classifier cached in `cache`. Errors on a run that is not
/// on digits8 and on sequence-level CP-k (64 pixels: no proposal would be accepted).
pub fn image_audit(
    target: &Target,
    config: &ArTrainConfig,
    n: usize,
    seed: u64,
    cache: &Path,
    device: &Device,
) -> Result<ImageAudit> {
    let mut clean = config.clone();
    clean.duplicates = None;
    let (TextData::Pixels { train, val }, true) = (load_text(&clean)?, config.data == "digits8")
    else {
        return Err(Error::Config(
            "the image audit takes an autoregressive digits8 run".into(),
        ));
    };
    let images: Vec<Vec<u32>> = match target {
        Target::Model(m) => sample_images(m, n, seed, device),
        Target::Naf { models, rule } => (0..n as u64)
            .map(|i| {
                generate_naf(models, *rule, &[PIXEL_START], 64, 1.0, seed + i, device)
                    .map(|(out, _)| out)
                    .map_err(Error::Config)
            })
            .collect::<Result<_>>()?,
        Target::NafSequence { .. } => {
            return Err(Error::Config(
                "sequence-level CP-k accepts almost no 64-pixel image; audit images with --naf cp-k or cp-delta".into(),
            ));
        }
    };
    let [k, r] = config.duplicates.unwrap_or([0, 1]);
    let planted = planted_indices(train.len(), k, config.seed);
    let data = crate::data::digits8();
    let (train_set, _) = data.split(config.val_fraction, config.seed);
    audit_samples(
        &to_values(&images),
        &Rows {
            train: &to_values(&train),
            val: &to_values(&val),
            dim: 64,
            planted: &planted,
            spec: [k, r],
        },
        &train_set,
        config.seed,
        cache,
        device,
    )
}

/// The rows an audit measures against: the distinct training rows (before planting), the
/// planted ones among them, and the held-out rows.
pub struct Rows<'a> {
    /// Training rows, row-major, each once.
    pub train: &'a [f32],
    /// Held-out rows.
    pub val: &'a [f32],
    /// Values per row.
    pub dim: usize,
    /// Indices of the planted rows in `train`.
    pub planted: &'a [usize],
    /// `[images, repeats]` planted.
    pub spec: [usize; 2],
}

/// The audit of samples `x` (row-major, values in [−1, 1]) against `rows`, FD in the features of
/// the evaluation classifier trained on `labelled` (cached in `cache`).
pub fn audit_samples(
    x: &[f32],
    rows: &Rows,
    labelled: &crate::data::Dataset,
    seed: u64,
    cache: &Path,
    device: &Device,
) -> Result<ImageAudit> {
    let (tr, va, dim) = (rows.train, rows.val, rows.dim);
    let n = x.len() / dim;
    let mem = memorization(x, tr, va, dim);
    // Near duplicates of a planted image: d₁ to it, below a third of d₂ to any other.
    let near_planted = x
        .chunks(dim)
        .filter(|s| {
            let mut d: Vec<(f64, usize)> = tr
                .chunks(dim)
                .enumerate()
                .map(|(j, t)| (dist2(s, t), j))
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0));
            rows.planted.contains(&d[0].1) && d[0].0.sqrt() < d[1].0.sqrt() / 3.0
        })
        .count();
    let clf = classifier(labelled, &cache.join("classifier.bpk"), seed, device)?;
    let fd = frechet_distance(
        &clf.host_features(va, dim, device),
        &clf.host_features(x, dim, device),
        FEATURES,
    );
    Ok(ImageAudit {
        memorization: mem,
        planted_near: near_planted as f64 / n.max(1) as f64,
        planted: rows.spec,
        fd,
    })
}

/// The audit of diffusion samples `x` against the data of the diffusion run `config` (its
/// split, and the duplicates it planted).
pub fn diffusion_image_audit(
    x: &[f32],
    config: &crate::TrainConfig,
    cache: &Path,
    device: &Device,
) -> Result<ImageAudit> {
    let data = config.load_data()?;
    let (train, val) = data.train_val(config.val_fraction, config.seed);
    let val = val.ok_or_else(|| Error::Config("the image audit needs held-out rows".into()))?;
    let [k, r] = config.duplicates.unwrap_or([0, 1]);
    let planted = planted_indices(train.len(), k, config.seed);
    audit_samples(
        x,
        &Rows {
            train: &train.x,
            val: &val.x,
            dim: data.shape.numel(),
            planted: &planted,
            spec: [k, r],
        },
        &train,
        config.seed,
        cache,
        device,
    )
}
