//! Tree-Ring on a diffusion run ([`super::treering`]): sampling from marked noise, detection
//! by DDIM inversion, and the measurement: the AUC between marked and clean samples with and
//! without attacks (Gaussian noise, blur, crop, rescale), the p-values' false-positive rate, and
//! the quality cost (FD and class accuracy by the evaluation classifier).

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use oxgen_models::SampleConfig;
use oxgen_models::diffusion::{
    self,
    invert::{InvertOptions, ddim_invert},
};
use oxgen_models::ops::denoise::seeded_noise;
use oxgen_models::samplers::{self, SchedulerCore};
use serde::Serialize;

use super::treering::{RingScore, TreeRing, auc};
use crate::eval::sample::{LoadedRun, host_samples};
use crate::{Error, Result};

/// The run's image shape, with `ring` checked to hold frequencies of it.
fn image_dims(run: &LoadedRun, ring: &TreeRing) -> Result<[usize; 3]> {
    match run.manifest.shape.layout() {
        (true, [c, h, w]) => {
            ring.validate_for(h, w).map_err(Error::Config)?;
            Ok([c, h, w])
        }
        _ => Err(Error::Config(
            "Tree-Ring marks images; this diffusion run models vectors".into(),
        )),
    }
}

/// `n` samples of `run` from initial noise carrying `ring`'s pattern in its first channel
/// (the same seeded noise [`crate::eval::sample::draw`] starts from, marked).
///
/// # Shapes
/// - returns `[n · features]`.
pub fn draw_marked(
    run: &LoadedRun,
    ring: &TreeRing,
    sample: &SampleConfig,
    n: usize,
    labels: Option<&[u32]>,
    device: &Device,
) -> Result<Vec<f32>> {
    let [c, h, w] = image_dims(run, ring)?;
    let f = c * h * w;
    let mut noise: Vec<f32> = seeded_noise(sample.seed, u32::MAX, n * f, device)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32");
    for img in noise.chunks_exact_mut(f) {
        ring.mark(&mut img[..h * w], h, w);
    }
    let config = &run.config.model;
    let core = SchedulerCore::new(config.noise_schedule(), config.prediction, sample.clip)
        .with_dynamic_threshold(sample.dynamic_threshold);
    let mut scheduler = samplers::build(sample.sampler, core, sample.eta);
    scheduler.set_timesteps(sample.steps);
    let noise = Tensor::<1>::from_data(TensorData::new(noise, [n * f]), device);
    host_samples(
        diffusion::sample_from(
            &run.ema,
            scheduler.as_mut(),
            sample,
            noise,
            n,
            labels,
            device,
        ),
        "watermarked samples",
    )
}

/// Which label a class-conditional run's inversion conditions on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InvertLabels {
    /// The class the evaluation classifier reads in each image, with the sampler's guidance
    /// scale: the inversion then retraces the guided sampler's steps.
    #[default]
    Predicted,
    /// The null class, unguided: the unconditional inversion of the Tree-Ring paper.
    Null,
}

/// The labels to invert `images` (`[n · features]`) with: the evaluation classifier's reading
/// of each (`judge`, for class-conditional runs with [`InvertLabels::Predicted`]), else none.
pub fn inversion_labels(
    judge: Option<&crate::tune::judge::Judge>,
    how: InvertLabels,
    images: &[f32],
    device: &Device,
) -> Option<Vec<u32>> {
    match (judge, how) {
        (Some(j), InvertLabels::Predicted) => {
            Some(j.reward.predict(images, images.len() / j.features, device))
        }
        _ => None,
    }
}

/// The evaluation classifier of a class-conditional, labelled run (cached in `cache`), which
/// [`InvertLabels::Predicted`] reads labels with; `None` for other runs or with
/// [`InvertLabels::Null`].
pub fn inversion_judge(
    run: &LoadedRun,
    how: InvertLabels,
    cache: &Path,
    device: &Device,
) -> Result<Option<crate::tune::judge::Judge>> {
    if how == InvertLabels::Null || run.config.model.num_classes.is_none() {
        return Ok(None);
    }
    crate::tune::judge::Judge::new(&run.config, cache, device).map(Some)
}

/// Fixed-point refinements per inversion step by default: on the README's digits run they take
/// the AUC from 0.906 to 0.985 (100 per side; four refinements give 0.984).
pub const REFINE: usize = 2;

/// The inversion that retraces `sample`'s DDIM sampler: its steps, guidance and clipping, with
/// `refine` fixed-point refinements per step.
pub fn inversion(sample: &SampleConfig, refine: usize) -> InvertOptions {
    InvertOptions {
        steps: sample.steps,
        guidance: sample.guidance,
        clip: sample.clip,
        refine,
        final_denoise: sample.final_denoise,
    }
}

/// Scores images (`[n · features]`, values in [−1, 1]) for `ring`: inverts each to its initial
/// noise by deterministic DDIM (`opts`; conditioned on `labels` where given, else
/// unconditional), then tests the first channel's spectrum.
pub fn detect_images(
    run: &LoadedRun,
    ring: &TreeRing,
    images: &[f32],
    labels: Option<&[u32]>,
    opts: &InvertOptions,
    device: &Device,
) -> Result<Vec<RingScore>> {
    let [c, h, w] = image_dims(run, ring)?;
    let f = c * h * w;
    if images.is_empty() || !images.len().is_multiple_of(f) {
        return Err(Error::Shape {
            context: "images to test for Tree-Ring".into(),
            expected: format!("a whole number of {c}×{h}×{w} images"),
            got: format!("{} values", images.len()),
        });
    }
    let n = images.len() / f;
    if let Some(l) = labels
        && l.len() != n
    {
        return Err(Error::Shape {
            context: "labels of the images to test for Tree-Ring".into(),
            expected: format!("{n} labels"),
            got: format!("{}", l.len()),
        });
    }
    let mut scores = Vec::with_capacity(n);
    for (k, chunk) in images.chunks(256 * f).enumerate() {
        let m = chunk.len() / f;
        let x = Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [m, f]), device);
        let l = labels.map(|l| &l[k * 256..k * 256 + m]);
        let xt = host_samples(
            ddim_invert(&run.ema, &run.config.model, opts, x, l, device),
            "inverted noise",
        )?;
        scores.extend(
            xt.chunks_exact(f)
                .map(|img| ring.score(&img[..h * w], h, w)),
        );
    }
    Ok(scores)
}

/// An attack on images of `c × h × w`, in place.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum ImageAttack {
    /// None.
    None,
    /// Gaussian noise of this standard deviation (the data span [−1, 1]).
    Noise(f32),
    /// A 3 × 3 Gaussian blur (σ ≈ 0.85).
    Blur,
    /// Crop the central share of each side and scale it back up (bilinear).
    Crop(f32),
    /// Scale down by this factor and back up (bilinear).
    Rescale(f32),
}

/// Bilinear resampling of one `h × w` plane to `oh × ow` (pixel centres aligned).
fn resize(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let mut out = vec![0f32; oh * ow];
    for y in 0..oh {
        for x in 0..ow {
            let sy = ((y as f32 + 0.5) * h as f32 / oh as f32 - 0.5).clamp(0.0, (h - 1) as f32);
            let sx = ((x as f32 + 0.5) * w as f32 / ow as f32 - 0.5).clamp(0.0, (w - 1) as f32);
            let (y0, x0) = (sy.floor() as usize, sx.floor() as usize);
            let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
            let (fy, fx) = (sy - y0 as f32, sx - x0 as f32);
            let top = src[y0 * w + x0] * (1.0 - fx) + src[y0 * w + x1] * fx;
            let bottom = src[y1 * w + x0] * (1.0 - fx) + src[y1 * w + x1] * fx;
            out[y * ow + x] = top * (1.0 - fy) + bottom * fy;
        }
    }
    out
}

impl ImageAttack {
    /// A short name.
    pub fn name(&self) -> String {
        match self {
            ImageAttack::None => "none".into(),
            ImageAttack::Noise(s) => format!("Gaussian noise σ = {s}"),
            ImageAttack::Blur => "3×3 Gaussian blur".into(),
            ImageAttack::Crop(s) => format!("crop {:.0}% and scale back", 100.0 * s),
            ImageAttack::Rescale(s) => format!("rescale ×{s} and back"),
        }
    }

    /// Applies the attack to `images` (`[n · c·h·w]`) with noise from `seed`.
    pub fn apply(&self, images: &mut [f32], [c, h, w]: [usize; 3], seed: u64) {
        let plane = h * w;
        match *self {
            ImageAttack::None => {}
            ImageAttack::Noise(s) => {
                let noise = oxgen_models::rng::normals(seed, 0, images.len());
                for (x, z) in images.iter_mut().zip(noise) {
                    *x = (*x + s * z).clamp(-1.0, 1.0);
                }
            }
            ImageAttack::Blur => {
                let k = [0.25f32, 0.5, 0.25];
                for p in images.chunks_exact_mut(plane) {
                    let src = p.to_vec();
                    for y in 0..h {
                        for x in 0..w {
                            let mut acc = 0.0;
                            for (dy, ky) in k.iter().enumerate() {
                                for (dx, kx) in k.iter().enumerate() {
                                    let yy = (y + dy).saturating_sub(1).min(h - 1);
                                    let xx = (x + dx).saturating_sub(1).min(w - 1);
                                    acc += ky * kx * src[yy * w + xx];
                                }
                            }
                            p[y * w + x] = acc;
                        }
                    }
                }
            }
            ImageAttack::Crop(share) => {
                let (ch, cw) = (
                    ((h as f32 * share).round() as usize).clamp(2, h),
                    ((w as f32 * share).round() as usize).clamp(2, w),
                );
                let (oy, ox) = ((h - ch) / 2, (w - cw) / 2);
                for p in images.chunks_exact_mut(plane) {
                    let crop: Vec<f32> = (0..ch)
                        .flat_map(|y| p[(oy + y) * w + ox..(oy + y) * w + ox + cw].to_vec())
                        .collect();
                    p.copy_from_slice(&resize(&crop, ch, cw, h, w));
                }
            }
            ImageAttack::Rescale(factor) => {
                let (sh, sw) = (
                    ((h as f32 * factor).round() as usize).max(2),
                    ((w as f32 * factor).round() as usize).max(2),
                );
                for p in images.chunks_exact_mut(plane) {
                    let small = resize(p, h, w, sh, sw);
                    p.copy_from_slice(&resize(&small, sh, sw, h, w));
                }
            }
        }
        let _ = c;
    }
}

/// The attacks measured.
pub const ATTACKS: [ImageAttack; 6] = [
    ImageAttack::None,
    ImageAttack::Noise(0.1),
    ImageAttack::Noise(0.3),
    ImageAttack::Blur,
    ImageAttack::Crop(0.75),
    ImageAttack::Rescale(0.5),
];

/// One attack's result.
#[derive(Clone, Debug, Serialize)]
pub struct ImageAttackRow {
    /// The attack.
    pub attack: String,
    /// AUC between marked and clean samples by η.
    pub auc: f64,
    /// Share of marked samples with p < 0.01.
    pub tpr_at_p01: f64,
    /// Share of clean samples with p < 0.01.
    pub fpr_at_p01: f64,
}

/// What the measurement found.
#[derive(Clone, Debug, Serialize)]
pub struct TreeRingReport {
    /// Samples per side.
    pub n: usize,
    /// The labels the inversion conditioned on.
    pub invert: InvertLabels,
    /// Fixed-point refinements per inversion step.
    pub refine: usize,
    /// Whether the sampler took its last step (`SampleConfig::final_denoise`).
    pub final_denoise: bool,
    /// Per attack.
    pub attacks: Vec<ImageAttackRow>,
    /// FD and class accuracy of the clean samples (labelled runs).
    pub clean: Option<crate::tune::judge::ImageScores>,
    /// The same of the marked samples.
    pub marked: Option<crate::tune::judge::ImageScores>,
}

/// Measures `ring` on `run` with `n` clean and `n` marked samples (the same seeds and
/// labels); inversion takes `steps` DDIM steps. Writes `roc.png` and `report.json` into `out`;
/// FD and accuracy come from the evaluation classifier (cached in `out`) of labelled runs.
pub fn evaluate_images(
    run: &LoadedRun,
    ring: &TreeRing,
    sample: &SampleConfig,
    n: usize,
    how: InvertLabels,
    refine: usize,
    out: &Path,
    device: &Device,
) -> Result<TreeRingReport> {
    let dims = image_dims(run, ring)?;
    let labels: Option<Vec<u32>> = run
        .config
        .model
        .num_classes
        .map(|k| (0..n).map(|i| (i % k) as u32).collect());
    let clean = crate::eval::sample::draw(
        &run.ema,
        &run.config.model,
        sample,
        n,
        labels.as_deref(),
        device,
    )?;
    let marked = draw_marked(run, ring, sample, n, labels.as_deref(), device)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io("output folder", out, e))?;
    let judge = match &labels {
        Some(_) => Some(crate::tune::judge::Judge::new(
            &run.config,
            &out.join("judge"),
            device,
        )?),
        None => None,
    };
    let mut rows = Vec::new();
    let mut rocs = Vec::new();
    for (i, attack) in ATTACKS.iter().enumerate() {
        let (mut a, mut b) = (clean.clone(), marked.clone());
        attack.apply(&mut a, dims, 1000 + i as u64);
        attack.apply(&mut b, dims, 2000 + i as u64);
        let opts = inversion(sample, refine);
        let detect = |x: &[f32]| {
            let l = inversion_labels(judge.as_ref(), how, x, device);
            detect_images(run, ring, x, l.as_deref(), &opts, device)
        };
        let (sc, sm) = (detect(&a)?, detect(&b)?);
        let eta = |s: &[RingScore]| s.iter().map(|r| r.eta).collect::<Vec<f64>>();
        let below = |s: &[RingScore]| {
            s.iter().filter(|r| r.p < 0.01).count() as f64 / s.len().max(1) as f64
        };
        rows.push(ImageAttackRow {
            attack: attack.name(),
            auc: auc(&eta(&sm), &eta(&sc)),
            tpr_at_p01: below(&sm),
            fpr_at_p01: below(&sc),
        });
        let (ec, em) = (eta(&sc), eta(&sm));
        let mut cuts: Vec<f64> = ec.iter().chain(&em).copied().collect();
        cuts.sort_by(f64::total_cmp);
        let roc: Vec<(f64, f64)> = cuts
            .iter()
            .map(|&t| {
                let share = |v: &[f64]| v.iter().filter(|&&x| x <= t).count() as f64 / n as f64;
                (share(&ec), share(&em))
            })
            .collect();
        rocs.push((attack.name(), roc));
    }
    let (clean_q, marked_q) = match (&labels, &judge) {
        (Some(l), Some(judge)) => (
            Some(judge.measure(&clean, l, device)),
            Some(judge.measure(&marked, l, device)),
        ),
        _ => (None, None),
    };
    let report = TreeRingReport {
        n,
        invert: how,
        refine,
        final_denoise: sample.final_denoise,
        attacks: rows,
        clean: clean_q,
        marked: marked_q,
    };
    let series: Vec<(&str, Vec<(f64, f64)>)> = rocs
        .iter()
        .map(|(name, r)| (name.as_str(), r.clone()))
        .collect();
    crate::plot::panels_over(
        &out.join("roc.png"),
        &format!(
            "Tree-Ring ROC, {} ≤ r ≤ {}: {n} marked, {n} clean",
            ring.inner, ring.radius
        ),
        "false-positive rate (clean samples at or below the threshold on η)",
        &series,
    )?;
    super::write_report(out, &report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacks_keep_shape_and_range_and_change_the_image() {
        let dims = [1, 8, 8];
        let img: Vec<f32> = (0..128).map(|i| ((i % 17) as f32 / 8.0) - 1.0).collect();
        for a in ATTACKS {
            let mut x = img.clone();
            a.apply(&mut x, dims, 3);
            assert_eq!(x.len(), img.len());
            assert!(
                x.iter().all(|v| v.is_finite() && (-1.0..=1.0).contains(v)),
                "{a:?}"
            );
            if a != ImageAttack::None {
                assert_ne!(x, img, "{a:?}");
            }
        }
        // Resizing a constant plane keeps it constant.
        let flat = resize(&[0.5; 64], 8, 8, 4, 4);
        assert!(flat.iter().all(|&v| (v - 0.5).abs() < 1e-6));
    }
}
