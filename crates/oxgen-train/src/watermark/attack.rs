//! Attacks on the KGW watermark and its quality cost: random token substitutions and
//! deletions, paraphrase by resampling spans with the unwatermarked model, and the oracle NLL
//! of watermarked against unwatermarked samples under the unwatermarked model.

use burn::tensor::{Device, Int, Tensor, TensorData};
use oxgen_models::ar::{DecodeOptions, Gpt, generate_rows};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::Scheme;

/// Tokens each paraphrased span resamples.
pub const SPAN: usize = 10;
/// The attack strengths measured: the share of tokens substituted, deleted or resampled.
pub const RATES: [f64; 4] = [0.0, 0.1, 0.2, 0.3];

/// One attack at one strength.
#[derive(Clone, Debug, Serialize)]
pub struct AttackRow {
    /// "substitution", "deletion" or "paraphrase".
    pub attack: &'static str,
    /// The share of tokens attacked.
    pub rate: f64,
    /// Share of attacked watermarked texts still detected at z ≥ 4.
    pub tpr_at_4: f64,
    /// Their mean z.
    pub mean_z: f64,
}

/// The watermark's quality cost.
#[derive(Clone, Debug, Serialize)]
pub struct QualityCost {
    /// Mean NLL (nats per token) of unwatermarked samples under the unwatermarked model.
    pub plain_nll: f64,
    /// The same of watermarked samples.
    pub marked_nll: f64,
    /// The same of windows of the human text.
    pub human_nll: f64,
}

/// Replaces each token after the first with another, uniformly drawn, with probability `rate`.
pub fn substitute(tokens: &[u32], rate: f64, vocab: usize, rng: &mut StdRng) -> Vec<u32> {
    let mut out = tokens.to_vec();
    for t in out.iter_mut().skip(1) {
        if rng.random::<f64>() < rate {
            let other = rng.random_range(0..vocab as u32 - 1);
            *t = if other >= *t { other + 1 } else { other };
        }
    }
    out
}

/// Deletes each token after the first with probability `rate`.
pub fn delete(tokens: &[u32], rate: f64, rng: &mut StdRng) -> Vec<u32> {
    let mut out = vec![tokens[0]];
    out.extend(
        tokens[1..]
            .iter()
            .copied()
            .filter(|_| rng.random::<f64>() >= rate),
    );
    out
}

/// Paraphrases `texts` (all of one length) by resampling `round(rate · len / SPAN)` spans of
/// [`SPAN`] tokens, evenly spread, each with the unwatermarked `model` given all text before
/// it (earlier spans already resampled).
pub fn paraphrase(
    model: &Gpt,
    texts: &[Vec<u32>],
    rate: f64,
    seed: u64,
    device: &Device,
) -> Vec<Vec<u32>> {
    let mut out = texts.to_vec();
    let Some(len) = texts.first().map(Vec::len) else {
        return out;
    };
    let spans = ((rate * (len - 1) as f64) / SPAN as f64).round() as usize;
    let mut rng = StdRng::seed_from_u64(seed);
    for j in 0..spans {
        let start = 1 + j * (len - 1) / spans;
        let end = (start + SPAN).min(len);
        let prompts: Vec<Vec<u32>> = out.iter().map(|t| t[..start].to_vec()).collect();
        let seeds: Vec<u64> = (0..out.len()).map(|_| rng.random()).collect();
        let options = DecodeOptions {
            max_new_tokens: end - start,
            ..DecodeOptions::default()
        };
        for (t, new) in out
            .iter_mut()
            .zip(generate_rows(model, &prompts, &seeds, &options, device))
        {
            for (k, v) in new.into_iter().enumerate().take(end - start) {
                t[start + k] = v;
            }
        }
    }
    out
}

/// Mean NLL in nats per token of `texts` (all of one length) under `model`, every token after
/// the first scored given up to a context of the tokens before it.
pub fn mean_nll(model: &Gpt, texts: &[Vec<u32>], device: &Device) -> f64 {
    let Some(len) = texts.first().map(Vec::len) else {
        return 0.0;
    };
    let ctx = model.context();
    let mut total = 0.0;
    for rows in texts.chunks(256) {
        let mut start = 0;
        while start + 1 < len {
            let end = (start + ctx).min(len);
            let data: Vec<i64> = rows
                .iter()
                .flat_map(|t| t[start..end].iter().map(|&v| i64::from(v)))
                .collect();
            let w = Tensor::<2, Int>::from_data(
                TensorData::new(data, [rows.len(), end - start]),
                device,
            );
            total -= f64::from(model.log_prob(w).sum().into_scalar::<f32>());
            start = end - 1;
        }
    }
    total / (texts.len() * (len - 1)) as f64
}

/// Every attack at every rate of [`RATES`] on the watermarked `marked` texts (all of one
/// length, vocabulary `vocab`).
pub fn attack_all(
    model: &Gpt,
    scheme: &Scheme,
    marked: &[Vec<u32>],
    vocab: usize,
    seed: u64,
    device: &Device,
) -> Vec<AttackRow> {
    let mut rows = Vec::new();
    let mut row = |attack: &'static str, rate: f64, texts: &[Vec<u32>]| {
        let scores: Vec<f64> = texts.iter().map(|t| scheme.score(t, vocab).z).collect();
        rows.push(AttackRow {
            attack,
            rate,
            tpr_at_4: scores.iter().filter(|&&z| z >= 4.0).count() as f64
                / scores.len().max(1) as f64,
            mean_z: scores.iter().sum::<f64>() / scores.len().max(1) as f64,
        });
    };
    let mut rng = StdRng::seed_from_u64(seed);
    for rate in RATES {
        let sub: Vec<Vec<u32>> = marked
            .iter()
            .map(|t| substitute(t, rate, vocab, &mut rng))
            .collect();
        row("substitution", rate, &sub);
        let del: Vec<Vec<u32>> = marked.iter().map(|t| delete(t, rate, &mut rng)).collect();
        row("deletion", rate, &del);
        let para = paraphrase(model, marked, rate, seed ^ rate.to_bits(), device);
        row("paraphrase", rate, &para);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_and_deletion_touch_about_their_share() {
        let mut rng = StdRng::seed_from_u64(1);
        let t: Vec<u32> = (0..10_001).map(|i| (i % 65) as u32).collect();
        let s = substitute(&t, 0.2, 65, &mut rng);
        let changed = t.iter().zip(&s).filter(|(a, b)| a != b).count();
        assert!((1800..2200).contains(&changed), "{changed}");
        assert!(s.iter().all(|&v| v < 65) && s[0] == t[0]);
        let d = delete(&t, 0.3, &mut rng);
        assert!((6800..7200).contains(&(d.len() - 1)), "{}", d.len());
        assert_eq!(substitute(&t, 0.0, 65, &mut rng), t);
    }
}
