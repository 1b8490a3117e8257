//! The KGW watermark measured: calibration on unwatermarked text (windows of a human text file
//! and the model's own unwatermarked samples), power on watermarked samples, and the
//! true-positive rate against the text's length, written as PNG curves and `report.json`.

use std::path::Path;

use burn::tensor::Device;
use oxgen_models::ar::watermark::Score;
use oxgen_models::ar::{DecodeOptions, generate_rows};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::attack::{AttackRow, QualityCost, attack_all, mean_nll};
use super::tradeoff::{TradeoffPoint, tradeoff};
use super::{Scheme, tokens_of};
use crate::ar::{ArRun, Codec};
use crate::{Error, Result};

/// What to measure.
#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// Windows of the human text.
    pub windows: usize,
    /// Unwatermarked samples of the model.
    pub plain: usize,
    /// Watermarked samples.
    pub marked: usize,
    /// Tokens per text (the T).
    pub length: usize,
    /// The longest prefix of the watermarked samples in the TPR curve.
    pub max_length: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Seed of the windows and samples.
    pub seed: u64,
    /// Watermarked texts attacked (the first ones).
    pub attacked: usize,
    /// Samples per setting of the power-against-cost sweep (0: no sweep; needs a KGW scheme,
    /// whose key, γ and seeding the sweep keeps).
    pub tradeoff: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            windows: 5000,
            plain: 5000,
            marked: 1000,
            length: 200,
            max_length: 400,
            temperature: 1.0,
            seed: 0,
            attacked: 500,
            tradeoff: 0,
        }
    }
}

/// What was measured.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// Unwatermarked texts scored.
    pub negatives: usize,
    /// Of them, with z ≥ 4.
    pub false_positives: usize,
    /// Their share (the normal tail gives 3.2e-5).
    pub fpr_at_4: f64,
    /// Kolmogorov–Smirnov statistic of the negatives' normal p-values against Uniform(0, 1).
    pub ks_d: f64,
    /// Its asymptotic p-value.
    pub ks_p: f64,
    /// The KS p of the negatives' randomised exact p-values, under the one key.
    pub ks_p_exact: f64,
    /// The same negatives, each scored under its own key derived from the key: the null over
    /// keys, which the binomial p-value is exact for.
    pub key_per_text: KeyPerText,
    /// Watermarked samples scored at `length`.
    pub positives: usize,
    /// Share of them with z ≥ 4.
    pub tpr_at_4: f64,
    /// Mean tokens scored per watermarked text of `length` (repeated pairs are skipped).
    pub mean_scored: f64,
    /// (length, share with z ≥ 4) of the watermarked samples' prefixes.
    pub tpr_by_length: Vec<(usize, f64)>,
    /// Detection after each attack (on up to `attacked` watermarked texts of `length`).
    pub attacks: Vec<AttackRow>,
    /// The quality cost: NLL under the unwatermarked model.
    pub quality: QualityCost,
    /// Power against quality cost, KGW and the tournament side by side (when asked for).
    pub tradeoff: Vec<TradeoffPoint>,
}

/// The negatives scored each under its own key.
#[derive(Clone, Debug, Serialize)]
pub struct KeyPerText {
    /// Of them, with z ≥ 4.
    pub false_positives: usize,
    /// KS p of their normal p-values.
    pub ks_p: f64,
    /// KS statistic of their randomised exact p-values.
    pub ks_d_exact: f64,
    /// Its asymptotic p-value.
    pub ks_p_exact: f64,
}

/// The randomised exact p-value P(X > s) + U·P(X = s) under the null over keys: exactly
/// uniform on (0, 1) for U uniform, when the key is random and did not make the text.
pub fn randomised_p(score: &Score, u: f64) -> f64 {
    (score.p_exact - score.p_exact_point + u * score.p_exact_point).clamp(0.0, 1.0)
}

/// The asymptotic Kolmogorov distribution's tail P(K ≥ λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}.
pub fn kolmogorov_tail(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = k as f64;
        let term = (-2.0 * k * k * lambda * lambda).exp();
        sum += if (k as u64) % 2 == 1 { term } else { -term };
        if term < 1e-16 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// The KS statistic of `p` against Uniform(0, 1), and its asymptotic p-value.
pub fn ks_uniform(p: &[f64]) -> (f64, f64) {
    let mut v = p.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let d = v
        .iter()
        .enumerate()
        .map(|(i, &x)| ((i as f64 + 1.0) / n - x).max(x - i as f64 / n))
        .fold(0.0, f64::max);
    (d, kolmogorov_tail(n.sqrt() * d))
}

/// Draws `n` samples of `length` tokens, each after one token picked from `starts`.
pub(crate) fn samples(
    run: &ArRun,
    n: usize,
    length: usize,
    options: &DecodeOptions,
    starts: &[u32],
    seed: u64,
    device: &Device,
) -> Vec<Vec<u32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let b = (n - out.len()).min(256);
        let prompts: Vec<Vec<u32>> = (0..b)
            .map(|_| vec![starts[rng.random_range(0..starts.len())]])
            .collect();
        let seeds: Vec<u64> = (0..b).map(|_| rng.random()).collect();
        let o = DecodeOptions {
            max_new_tokens: length,
            ..options.clone()
        };
        for (p, c) in prompts
            .iter()
            .zip(generate_rows(&run.model, &prompts, &seeds, &o, device))
        {
            let mut t = p.clone();
            t.extend(c);
            out.push(t);
        }
    }
    out
}

/// Measures `scheme` with the text run `run`: `config.windows` windows of `text` and
/// `config.plain` unwatermarked samples are the negatives, `config.marked` watermarked samples
/// the positives; writes `calibration.png` (the negatives' p-value histogram), `power.png`
/// (TPR at z ≥ 4 against length) and `report.json` into `out`.
pub fn evaluate(
    run: &ArRun,
    scheme: &Scheme,
    text: &[u8],
    config: &EvalConfig,
    out: &Path,
    device: &Device,
) -> Result<EvalReport> {
    let Codec::Text(tok) = &run.codec else {
        return Err(Error::Config(
            "the watermark is measured on a text run".into(),
        ));
    };
    let vocab = tok.vocab();
    let human = tokens_of(tok, text);
    if human.len() < config.length + 1 {
        return Err(Error::Config(format!(
            "the text has {} tokens: fewer than one window of {}",
            human.len(),
            config.length
        )));
    }
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x77);
    let mut texts: Vec<Vec<u32>> = (0..config.windows)
        .map(|_| {
            let at = rng.random_range(0..=human.len() - config.length);
            human[at..at + config.length].to_vec()
        })
        .collect();
    let starts: Vec<u32> = human
        .iter()
        .copied()
        .filter(|&t| (t as usize) < vocab)
        .collect();
    let plain_opts = DecodeOptions {
        temperature: config.temperature,
        ..DecodeOptions::default()
    };
    texts.extend(samples(
        run,
        config.plain,
        config.length,
        &plain_opts,
        &starts,
        config.seed,
        device,
    ));
    let negatives: Vec<Score> = texts.iter().map(|t| scheme.score(t, vocab)).collect();
    let own: Vec<Score> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            scheme
                .with_key(scheme.key().derive(i as u64))
                .score(t, vocab)
        })
        .collect();
    let marked_opts = scheme.options(plain_opts.clone());
    let marked = samples(
        run,
        config.marked,
        config.max_length.max(config.length),
        &marked_opts,
        &starts,
        config.seed ^ 0x5EED,
        device,
    );
    let fp = |s: &[Score]| s.iter().filter(|s| s.z >= 4.0).count();
    let false_positives = fp(&negatives);
    let pvals: Vec<f64> = negatives.iter().map(|s| s.p).collect();
    let (ks_d, ks_p) = ks_uniform(&pvals);
    let mut urng = StdRng::seed_from_u64(config.seed ^ 0xC0FFEE);
    let mut exact = |s: &[Score]| -> Vec<f64> {
        s.iter()
            .map(|x| randomised_p(x, urng.random::<f64>()))
            .collect()
    };
    let exact_fixed = exact(&negatives);
    let exact_own = exact(&own);
    let (ks_d_exact, ks_p_exact) = ks_uniform(&exact_own);
    let key_per_text = KeyPerText {
        false_positives: fp(&own),
        ks_p: ks_uniform(&own.iter().map(|s| s.p).collect::<Vec<_>>()).1,
        ks_d_exact,
        ks_p_exact,
    };
    let at = |len: usize| -> Vec<Score> {
        marked
            .iter()
            .map(|t| scheme.score(&t[..(len + 1).min(t.len())], vocab))
            .collect()
    };
    let tpr = |s: &[Score]| s.iter().filter(|x| x.z >= 4.0).count() as f64 / s.len().max(1) as f64;
    let main = at(config.length);
    let lengths: Vec<usize> = [25, 50, 100, 150, 200, 300, 400]
        .into_iter()
        .filter(|&l| l <= config.max_length)
        .collect();
    let tpr_by_length: Vec<(usize, f64)> = lengths.iter().map(|&l| (l, tpr(&at(l)))).collect();
    let cut: Vec<Vec<u32>> = marked
        .iter()
        .map(|t| t[..(config.length + 1).min(t.len())].to_vec())
        .collect();
    let n_att = config.attacked.min(cut.len());
    let attacks = attack_all(
        &run.model,
        scheme,
        &cut[..n_att],
        vocab,
        config.seed ^ 0xA77,
        device,
    );
    let quality = QualityCost {
        plain_nll: mean_nll(&run.model, &texts[config.windows..], device),
        marked_nll: mean_nll(&run.model, &cut, device),
        human_nll: mean_nll(&run.model, &texts[..config.windows], device),
    };
    let tradeoff = match scheme {
        Scheme::Kgw(k) if config.tradeoff > 0 => tradeoff(
            run,
            k,
            vocab,
            &starts,
            config.tradeoff,
            config.length,
            &plain_opts,
            quality.plain_nll,
            config.seed ^ 0x7AD,
            device,
        ),
        _ => Vec::new(),
    };
    let report = EvalReport {
        negatives: negatives.len(),
        false_positives,
        fpr_at_4: false_positives as f64 / negatives.len().max(1) as f64,
        ks_d,
        ks_p,
        ks_p_exact: ks_uniform(&exact_fixed).1,
        key_per_text,
        positives: main.len(),
        tpr_at_4: tpr(&main),
        mean_scored: main.iter().map(|s| s.tokens as f64).sum::<f64>() / main.len().max(1) as f64,
        tpr_by_length,
        attacks,
        quality,
        tradeoff,
    };
    std::fs::create_dir_all(out).map_err(|e| Error::io("output folder", out, e))?;
    let histogram = |p: &[f64]| -> Vec<(f64, f64)> {
        let bins = 20;
        let mut hist = vec![0usize; bins];
        for p in p {
            hist[((p * bins as f64) as usize).min(bins - 1)] += 1;
        }
        hist.iter()
            .enumerate()
            .map(|(i, &c)| ((i as f64 + 0.5) / bins as f64, c as f64))
            .collect()
    };
    crate::plot::panels_over(
        &out.join("calibration.png"),
        &format!(
            "{} texts; one key: KS p {:.1e}; a key each: exact KS p {:.3}",
            report.negatives, report.ks_p, report.key_per_text.ks_p_exact
        ),
        "one-sided p-value (20 bins)",
        &[
            ("one key: normal p, texts per bin", histogram(&pvals)),
            (
                "a key per text: randomised exact p (flat: calibrated)",
                histogram(&exact_own),
            ),
        ],
    )?;
    let curve: Vec<(f64, f64)> = report
        .tpr_by_length
        .iter()
        .map(|&(l, r)| (l as f64, r))
        .collect();
    crate::plot::panels_over(
        &out.join("power.png"),
        &format!("power: {}", scheme.describe()),
        "tokens generated (T)",
        &[("watermarked samples with z ≥ 4", curve)],
    )?;
    let series = |name: &'static str| -> Vec<(f64, f64)> {
        report
            .attacks
            .iter()
            .filter(|r| r.attack == name)
            .map(|r| (r.rate, r.tpr_at_4))
            .collect()
    };
    crate::plot::panels_over(
        &out.join("attacks.png"),
        &format!(
            "{}: {} texts of {}",
            scheme.describe(),
            n_att,
            config.length
        ),
        "share of tokens attacked",
        &[
            ("random substitutions", series("substitution")),
            ("random deletions", series("deletion")),
            (
                "paraphrase: spans resampled by the plain model",
                series("paraphrase"),
            ),
        ],
    )?;
    if !report.tradeoff.is_empty() {
        let points = |name: &str| -> Vec<(f64, f64)> {
            let mut v: Vec<(f64, f64)> = report
                .tradeoff
                .iter()
                .filter(|p| p.scheme == name)
                .map(|p| (p.nll_cost, p.tpr_at_4))
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v
        };
        crate::plot::panels_over(
            &out.join("tradeoff.png"),
            &format!("power at T = {} against quality cost", config.length),
            "rise in NLL under the unwatermarked model (nats per token)",
            &[
                ("KGW, δ = 0.5, 1, 2, 4: detected", points("kgw")),
                ("tournament, m = 5, 10, 30: detected", points("tournament")),
            ],
        )?;
    }
    super::write_report(out, &report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Kolmogorov tail at λ = 1.36 is 0.0494 and at 1.63 is 0.0098 (the 5% and 1% critical
    /// values, Smirnov 1948); uniform p-values pass, skewed ones fail.
    #[test]
    fn ks_by_hand() {
        assert!((kolmogorov_tail(1.36) - 0.0494).abs() < 5e-4);
        assert!((kolmogorov_tail(1.63) - 0.0098).abs() < 5e-4);
        let uniform: Vec<f64> = (0..1000).map(|i| (i as f64 + 0.5) / 1000.0).collect();
        assert!(ks_uniform(&uniform).1 > 0.99);
        let skewed: Vec<f64> = uniform.iter().map(|p| p * p).collect();
        assert!(ks_uniform(&skewed).1 < 1e-6);
    }
}
