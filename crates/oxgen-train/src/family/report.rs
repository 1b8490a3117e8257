//! The final report of a VAE, flow or GAN run: sample quality (SWD and MMD against held-out
//! data, with their floors), the held-out likelihood where the family has one (labelled exact
//! or bound), the IWAE bound of a VAE, mode coverage on 8 gaussians, and sampling speed.

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use oxgen_models::generative::{Bound, Likelihood, Nll};
use serde::{Deserialize, Serialize};

use super::{FamilyConfig, Trained};
use crate::data::Dataset;
use crate::data::toy2d::Toy2d;
use crate::error::{Error, Result};
use crate::metrics::Quality;

/// Mode coverage on 8 gaussians.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModeCoverage {
    /// Modes that got at least 2% of the samples within 3σ of their centre.
    pub covered: usize,
    /// Share of samples within 3σ of some centre.
    pub high_quality: f64,
    /// Share of samples per mode (within 3σ).
    pub shares: Vec<f64>,
}

/// Counts, for 8 gaussians, the modes that received at least 2% of `samples` within 3σ.
pub fn mode_coverage(samples: &[f32]) -> ModeCoverage {
    let n = samples.len() / 2;
    let r = 3.0 * Toy2d::EIGHT_GAUSSIANS_SIGMA;
    let mut counts = [0usize; 8];
    for p in samples.chunks(2) {
        for (k, c) in counts.iter_mut().enumerate() {
            let a = std::f64::consts::TAU * k as f64 / 8.0;
            let d2 = (p[0] as f64 - 2.0 * a.cos()).powi(2) + (p[1] as f64 - 2.0 * a.sin()).powi(2);
            if d2 < r * r {
                *c += 1;
            }
        }
    }
    let shares: Vec<f64> = counts.iter().map(|&c| c as f64 / n.max(1) as f64).collect();
    ModeCoverage {
        covered: shares.iter().filter(|&&s| s >= 0.02).count(),
        high_quality: shares.iter().sum(),
        shares,
    }
}

/// What `quality.json` of a VAE, flow or GAN run holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FamilyQuality {
    /// `vae`, `flow` or `gan`.
    pub family: String,
    /// Sample quality.
    pub quality: Quality,
    /// Held-out NLL (exact, a bound, or none).
    pub nll: Nll,
    /// The IWAE bound (VAE only).
    pub iwae: Option<Nll>,
    /// The true entropy of the data, where known: the floor of any model's NLL.
    pub entropy: Option<f64>,
    /// Mode coverage (8 gaussians only).
    pub modes: Option<ModeCoverage>,
    /// Samples drawn per second.
    pub samples_per_second: f64,
    /// Training wall time, seconds (0 when only evaluated).
    pub train_seconds: f64,
    /// Failure modes seen in training.
    pub warnings: Vec<String>,
}

impl std::fmt::Display for FamilyQuality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.nll)?;
        if let Some(i) = &self.iwae {
            writeln!(f, "{i}")?;
        }
        if let Some(h) = self.entropy {
            writeln!(
                f,
                "true entropy: {h:.4} nats (the floor of any model's NLL)"
            )?;
        }
        write!(f, "{}", self.quality)?;
        if let Some(m) = &self.modes {
            write!(
                f,
                "\nmodes covered: {}/8 ({:.1}% of samples within 3σ of a mode)",
                m.covered,
                100.0 * m.high_quality
            )?;
        }
        for w in &self.warnings {
            write!(f, "\nwarning: {w}")?;
        }
        Ok(())
    }
}

fn host1(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32")
}

/// Mean of a per-row score over `rows` (`[n, f]` row-major) in chunks, `None` if `score` is.
fn mean_score(
    rows: &[f32],
    f: usize,
    chunk: usize,
    device: &Device,
    score: impl Fn(Tensor<2>, u64) -> Option<Tensor<1>>,
) -> Result<Option<f64>> {
    let n = rows.len() / f;
    let mut total = 0.0;
    for (i, c) in rows.chunks(chunk * f).enumerate() {
        let x = Tensor::<2>::from_data(TensorData::new(c.to_vec(), [c.len() / f, f]), device);
        let Some(s) = score(x, 0x11d ^ i as u64) else {
            return Ok(None);
        };
        let v = host1(s);
        if let Some(index) = v.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                context: "held-out likelihood".into(),
                index,
            });
        }
        total += v.iter().map(|&x| x as f64).sum::<f64>();
    }
    Ok(Some(total / n.max(1) as f64))
}

/// Samples `model`, scores held-out data, writes `samples.png`, `samples.npy` and
/// `quality.json` into `out`.
pub fn evaluate_model(
    model: &Trained,
    config: &FamilyConfig,
    data: &Dataset,
    val: Option<&Dataset>,
    device: &Device,
    out: &Path,
    train_seconds: f64,
    warnings: &[String],
) -> Result<FamilyQuality> {
    let f = data.shape.numel();
    let g = model.generative();
    let n = match data.toy {
        Some(_) => config.eval_samples,
        None => (val.map_or(0, |v| v.len()) / 2).min(config.eval_samples),
    };
    if n < 2 {
        return Err(Error::Config(format!(
            "too few held-out rows ({n}) for a report; raise val_fraction"
        )));
    }
    let (a, b) = match (data.toy, val) {
        (Some(toy), _) => {
            use rand::SeedableRng;
            let draw = |k: u64| {
                toy.sample(
                    n,
                    &mut rand::rngs::StdRng::seed_from_u64(config.seed.wrapping_add(k)),
                )
            };
            (draw(1001), draw(1002))
        }
        (None, Some(v)) => {
            let h = v.len() / 2;
            (v.x[..h * f].to_vec(), v.x[h * f..2 * h * f].to_vec())
        }
        (None, None) => unreachable!("file data always has a validation split"),
    };
    let t0 = Instant::now();
    let samples: Vec<f32> = g
        .sample(n, None, config.seed ^ 0x5a11, device)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Config(format!("reading samples back: {e:?}")))?;
    let samples_per_second = n as f64 / t0.elapsed().as_secs_f64().max(1e-9);
    if let Some(index) = samples.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            context: "generated samples".into(),
            index,
        });
    }
    let quality = Quality::measure(&samples, &a, &b, f, config.seed);
    // Held-out likelihood on the B half (the A half is the SWD reference).
    let caps = g.capabilities();
    let nats = mean_score(&b, f, 500, device, |x, s| g.nll(x, s))?;
    let nll = Nll {
        nats,
        dims: f,
        likelihood: caps.likelihood,
    };
    let iwae = match model {
        Trained::Vae(v) => {
            let k = config.iwae_k;
            let chunk = (4096 / k).max(1);
            let nats = mean_score(&b, f, chunk, device, |x, s| Some(v.nll_bound(x, k, s)))?;
            Some(Nll {
                nats,
                dims: f,
                likelihood: Likelihood::Bound {
                    bound: Bound::Iwae { k },
                },
            })
        }
        _ => None,
    };
    let modes = (data.toy == Some(Toy2d::EightGaussians)).then(|| mode_coverage(&samples));
    crate::run::write_samples(out, &samples, None, data.shape, Some(&a))?;
    let report = FamilyQuality {
        family: caps.family.into(),
        quality,
        nll,
        iwae,
        entropy: data.toy.and_then(|t| t.entropy()),
        modes,
        samples_per_second,
        train_seconds,
        warnings: warnings.to_vec(),
    };
    std::fs::write(
        out.join("quality.json"),
        serde_json::to_vec_pretty(&report).expect("serializes"),
    )
    .map_err(|e| Error::io("quality report", out, e))?;
    Ok(report)
}
