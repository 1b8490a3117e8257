//! Best-of-n for class-conditional diffusion runs: n samples per row, and the one the
//! evaluation classifier ([`super::judge`]) is most confident is of the class asked for. The
//! check classifier measures whether that helps beyond fooling the first one.

use std::path::Path;

use burn::tensor::Device;
use oxgen_models::{Diffusion, SampleConfig};

use super::judge::{ImageScores, Judge};
use crate::config::TrainConfig;
use crate::sample::{draw, load_run};
use crate::{Error, Result};

/// Candidate j of every row: one batch per j, seeded `sample.seed + j`, so that the best of 4
/// is chosen among the first 4 candidates that the best of 16 sees. Returns, per candidate,
/// the samples (`[rows · features]`) and the classifier's confidence in each row's class.
fn candidates(
    model: &Diffusion,
    config: &TrainConfig,
    sample: &SampleConfig,
    labels: &[u32],
    n: usize,
    judge: &Judge,
    device: &Device,
) -> Result<Vec<(Vec<f32>, Vec<f64>)>> {
    (0..n)
        .map(|j| {
            let s = SampleConfig {
                seed: sample.seed.wrapping_add(j as u64),
                ..sample.clone()
            };
            let x = draw(model, &config.model, &s, labels.len(), Some(labels), device)?;
            let conf = judge.confidence(&x, labels, device);
            Ok((x, conf))
        })
        .collect()
}

/// Row k of the best of the first `n` candidates: (samples, confidences).
fn pick(cands: &[(Vec<f32>, Vec<f64>)], n: usize, features: usize) -> (Vec<f32>, Vec<f64>) {
    let rows = cands[0].1.len();
    let mut x = Vec::with_capacity(rows * features);
    let mut conf = Vec::with_capacity(rows);
    for k in 0..rows {
        let best = (0..n)
            .max_by(|&a, &b| cands[a].1[k].total_cmp(&cands[b].1[k]).then(b.cmp(&a)))
            .expect("n ≥ 1");
        x.extend_from_slice(&cands[best].0[k * features..(k + 1) * features]);
        conf.push(cands[best].1[k]);
    }
    (x, conf)
}

/// For each row of `labels`, the best of `n` samples of that class by the classifier's
/// confidence: (samples `[rows · features]`, confidences).
pub fn best_of_n_images(
    model: &Diffusion,
    config: &TrainConfig,
    sample: &SampleConfig,
    labels: &[u32],
    n: usize,
    judge: &Judge,
    device: &Device,
) -> Result<(Vec<f32>, Vec<f64>)> {
    if n == 0 {
        return Err(Error::Config("best-of-n needs n ≥ 1".into()));
    }
    let cands = candidates(model, config, sample, labels, n, judge, device)?;
    Ok(pick(&cands, n, judge.features))
}

/// Class accuracy (evaluation and check classifiers), confidence and FD of best-of-n samples of
/// the class-conditional diffusion run at `base`, `per_class` per class, for each n in `ns`
/// (one set of candidates serves every n). `guidance` overrides the run's scale; the
/// classifiers are cached in `cache`.
pub fn best_of_n_classes(
    base: &Path,
    ns: &[usize],
    per_class: usize,
    guidance: Option<f32>,
    seed: u64,
    cache: &Path,
    device: &Device,
) -> Result<Vec<(usize, ImageScores)>> {
    let run = load_run(base, device)?;
    let judge = Judge::new(&run.config, cache, device)?;
    if ns.contains(&0) || per_class == 0 {
        return Err(Error::Config(
            "best-of-n needs n ≥ 1 and at least one sample per class".into(),
        ));
    }
    let labels: Vec<u32> = (0..judge.classes as u32)
        .flat_map(|c| std::iter::repeat_n(c, per_class))
        .collect();
    let sample = SampleConfig {
        guidance: guidance.unwrap_or(run.config.sample.guidance),
        seed,
        ..run.config.sample.clone()
    };
    let most = ns.iter().copied().max().unwrap_or(1);
    let cands = candidates(
        &run.ema,
        &run.config,
        &sample,
        &labels,
        most,
        &judge,
        device,
    )?;
    Ok(ns
        .iter()
        .map(|&n| {
            let (x, _) = pick(&cands, n, judge.features);
            (n, judge.measure(&x, &labels, device))
        })
        .collect())
}
