//! CP-k over whole outputs (the paper's Algorithm 2 as stated, on the distribution of complete
//! outputs rather than token by token), by rejection sampling: propose y from the mixture
//! (1/k) Σᵢ qᵢ (a shard chosen uniformly, then its draw), accept with probability
//! minᵢ qᵢ(y) / ((1/k) Σᵢ qᵢ(y)) ≤ 1. Accepted outputs follow p(y) = minᵢ qᵢ(y)/Z exactly, with
//! Z = Σ_y minᵢ qᵢ(y) the acceptance rate, so every output obeys p(y) ≤ qᵢ(y)/Z for every shard:
//! one Δ = −log Z for all outputs, instead of a per-token bound that renormalises at each step.
//! The cost is 1/Z proposals per output: fine for short outputs (a secret, an answer), hopeless
//! for long ones, where Z falls geometrically with the length.

use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::ar::Gpt;
use crate::ar::decode::{DecodeOptions, generate};

/// An output of [`generate_naf_sequence`].
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceDraw {
    /// The accepted tokens (after the prompt).
    pub tokens: Vec<u32>,
    /// Proposals made, the accepted one included.
    pub proposals: usize,
    /// log qᵢ(tokens | prompt) for each shard model.
    pub log_q: Vec<f64>,
}

/// log qᵢ(`out` | `prompt`) for each model (the last `context + 1` tokens of prompt and output).
pub fn sequence_log_probs(
    models: &[&Gpt],
    prompt: &[u32],
    out: &[u32],
    device: &burn::tensor::Device,
) -> Vec<f64> {
    models
        .iter()
        .map(|m| {
            let all: Vec<i64> = prompt.iter().chain(out).map(|&t| t as i64).collect();
            let keep = &all[all.len().saturating_sub(m.context() + 1)..];
            let x = Tensor::<2, Int>::from_data(
                TensorData::new(keep.to_vec(), [1, keep.len()]),
                device,
            );
            let lp: Vec<f32> = m
                .token_log_probs(x)
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 data");
            lp[lp.len() - out.len()..].iter().map(|&v| v as f64).sum()
        })
        .collect()
}

/// One output of `len` tokens after `prompt` from sequence-level CP-k over `models`, by
/// rejection from their mixture, with at most `max_proposals` proposals; draws seeded by `seed`.
/// Errors on fewer than two models, an empty prompt, an output longer than a context, and no
/// acceptance within `max_proposals` (Z too small: the models agree on almost no output).
pub fn generate_naf_sequence(
    models: &[&Gpt],
    prompt: &[u32],
    len: usize,
    seed: u64,
    max_proposals: usize,
    device: &burn::tensor::Device,
) -> Result<SequenceDraw, String> {
    super::check_sampling(models.len(), prompt)?;
    if models.iter().any(|m| len + 1 > m.context()) {
        return Err(format!(
            "sequence-level CP-k scores whole outputs: {len} tokens do not fit the context"
        ));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let k = models.len() as f64;
    for proposals in 1..=max_proposals {
        let j = rng.random_range(0..models.len());
        let options = DecodeOptions {
            max_new_tokens: len,
            temperature: 1.0,
            seed: rng.random(),
            ..DecodeOptions::default()
        };
        let out = generate(models[j], prompt, &options, true, device, |_| {});
        let log_q = sequence_log_probs(models, prompt, &out, device);
        let min = log_q.iter().copied().fold(f64::INFINITY, f64::min);
        let max = log_q.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_mix = max + (log_q.iter().map(|l| (l - max).exp()).sum::<f64>() / k).ln();
        let u: f64 = rng.random();
        if u.ln() < min - log_mix {
            return Ok(SequenceDraw {
                tokens: out,
                proposals,
                log_q,
            });
        }
    }
    Err(format!(
        "no proposal accepted in {max_proposals}: the shard models agree on almost no output here (Z < ~1/{max_proposals})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn tiny(seed: u64, scale: f32) -> Gpt {
        crate::ar::naf::tiny_gpt(3, seed, scale)
    }

    /// Over a vocabulary of 3 and outputs of 2 tokens (9 outputs), the accepted outputs'
    /// frequencies match minᵢ qᵢ(y)/Z computed exactly from full forward passes, and the mean
    /// number of proposals matches 1/Z.
    #[test]
    fn accepted_outputs_follow_the_normalised_minimum() {
        let (a, b) = (tiny(1, 3.0), tiny(2, 3.0));
        let device = Device::flex();
        let models = [&a, &b];
        let outputs: Vec<Vec<u32>> = (0..9).map(|i| vec![i / 3, i % 3]).collect();
        let mins: Vec<f64> = outputs
            .iter()
            .map(|y| {
                sequence_log_probs(&models, &[0], y, &device)
                    .into_iter()
                    .fold(f64::INFINITY, f64::min)
                    .exp()
            })
            .collect();
        let z: f64 = mins.iter().sum();
        assert!(z < 0.95 && z > 0.05, "Z = {z}");
        let n = 3000;
        let mut counts = [0usize; 9];
        let mut proposals = 0;
        for s in 0..n {
            let d = generate_naf_sequence(&models, &[0], 2, s, 1000, &device).unwrap();
            counts[(d.tokens[0] * 3 + d.tokens[1]) as usize] += 1;
            proposals += d.proposals;
        }
        for (c, m) in counts.iter().zip(&mins) {
            let p = m / z;
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!(
                (*c as f64 / n as f64 - p).abs() < 4.0 * sd + 1e-3,
                "{counts:?} vs {mins:?}"
            );
        }
        let mean = proposals as f64 / n as f64;
        assert!(
            (mean - 1.0 / z).abs() < 0.1 / z,
            "{mean} vs 1/Z = {}",
            1.0 / z
        );
        assert!(generate_naf_sequence(&[&a], &[0], 2, 0, 10, &device).is_err());
        assert!(generate_naf_sequence(&models, &[0], 8, 0, 10, &device).is_err());
    }
}
