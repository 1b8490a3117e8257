//! NAF generation: each shard model's next-token distribution through its own KV cache, the
//! combination drawn from, and the output's ledger.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{NafLedger, NafRule, combine, softmax};
use crate::ar::Gpt;
use crate::ar::decode::RowStepper;

/// Draws up to `max_new` tokens after `prompt` (at least one token) from the `rule`
/// combination of the shard `models`' next-token distributions at `temperature`, with the
/// draws seeded by `seed`; returns the new tokens and the output's [`NafLedger`]. Temperature 0
/// is greedy: the most likely token of the combination of the distributions at temperature 1.
/// Errors on fewer than two models, an empty prompt, a negative temperature, models whose
/// vocabularies differ, and a step where the models share no token.
pub fn generate_naf(
    models: &[&Gpt],
    rule: NafRule,
    prompt: &[u32],
    max_new: usize,
    temperature: f64,
    seed: u64,
    device: &burn::tensor::Device,
) -> Result<(Vec<u32>, NafLedger), String> {
    super::check_sampling(models.len(), prompt)?;
    if !(temperature >= 0.0 && temperature.is_finite()) {
        return Err(format!(
            "the temperature must be 0 (greedy) or positive, got {temperature}"
        ));
    }
    let greedy = temperature == 0.0;
    let temperature = if greedy { 1.0 } else { temperature };
    let mut steppers: Vec<RowStepper> = models.iter().map(|m| RowStepper::new(m)).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ledger = NafLedger::new(rule, models.len());
    let mut text = vec![prompt.to_vec()];
    for _ in 0..max_new {
        let dists: Vec<Vec<f64>> = models
            .iter()
            .zip(steppers.iter_mut())
            .map(|(m, s)| softmax(&s.next(m, &text, device)[0], temperature))
            .collect();
        let refs: Vec<&[f64]> = dists.iter().map(Vec::as_slice).collect();
        let c = combine(rule, &refs)?;
        let y = if greedy {
            argmax(&c.probs)
        } else {
            draw(&c.probs, rng.random())
        };
        ledger.push(&c, &refs, y);
        text[0].push(y as u32);
    }
    Ok((text[0].split_off(prompt.len()), ledger))
}

/// The index of the largest of `p` (the first on ties).
fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in p.iter().enumerate() {
        if x > p[best] {
            best = i;
        }
    }
    best
}

/// The index that `u` ∈ [0, 1) falls on in the cumulative sum of `probs` (never a zero).
fn draw(probs: &[f64], u: f64) -> usize {
    let mut acc = 0.0;
    for (i, p) in probs.iter().enumerate() {
        acc += p;
        if u < acc && *p > 0.0 {
            return i;
        }
    }
    probs.iter().rposition(|&p| p > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Int, Tensor, TensorData};

    fn tiny(seed: u64) -> Gpt {
        crate::ar::naf::tiny_gpt(7, seed, 1.0)
    }

    /// Each model's log-probability of every token of `seq` after the first, by one full forward
    /// pass, `[len − 1]` (the sequence fits the context).
    fn token_log_probs(model: &Gpt, seq: &[u32], t: f64) -> Vec<Vec<f64>> {
        let ids: Vec<i64> = seq.iter().map(|&x| x as i64).collect();
        let x = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, seq.len()]), &Device::flex());
        let logits: Vec<f32> = model
            .forward(x)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        logits
            .chunks(7)
            .take(seq.len() - 1)
            .map(|row| softmax(row, t))
            .collect()
    }

    /// Two shard models (different weights), 6 tokens after a prompt of 1: the ledger's log-
    /// ratios equal those recomputed from full forward passes over the output, and CP-k's
    /// realised Δ stays within its bound; two copies of one model give p = q and Δ = 0.
    #[test]
    fn the_ledger_matches_a_recomputation() {
        let (a, b) = (tiny(1), tiny(2));
        let device = Device::flex();
        for rule in [NafRule::CpK, NafRule::CpDelta] {
            let (out, ledger) = generate_naf(&[&a, &b], rule, &[3], 6, 0.9, 11, &device).unwrap();
            assert_eq!((out.len(), ledger.tokens), (6, 6));
            let seq: Vec<u32> = std::iter::once(3).chain(out.iter().copied()).collect();
            let (qa, qb) = (
                token_log_probs(&a, &seq, 0.9),
                token_log_probs(&b, &seq, 0.9),
            );
            let mut ratio = [0.0f64; 2];
            for t in 0..6 {
                let c = combine(rule, &[&qa[t], &qb[t]]).unwrap();
                let y = seq[t + 1] as usize;
                ratio[0] += (c.probs[y] / qa[t][y]).ln();
                ratio[1] += (c.probs[y] / qb[t][y]).ln();
            }
            for i in 0..2 {
                assert!(
                    (ledger.log_ratio[i] - ratio[i]).abs() < 1e-4,
                    "{ledger:?} vs {ratio:?}"
                );
            }
            if rule == NafRule::CpK {
                assert!(ledger.delta() <= ledger.bound + 1e-9);
            }
            assert!(ledger.bound > 0.0);
        }
        let (_, same) = generate_naf(&[&a, &a], NafRule::CpK, &[3], 4, 1.0, 5, &device).unwrap();
        assert!(
            same.delta().abs() < 1e-9 && same.bound.abs() < 1e-9,
            "{same:?}"
        );
        assert!(generate_naf(&[&a], NafRule::CpK, &[3], 4, 1.0, 5, &device).is_err());
        assert!(generate_naf(&[&a, &b], NafRule::CpK, &[], 4, 1.0, 5, &device).is_err());
        assert!(generate_naf(&[&a, &b], NafRule::CpK, &[3], 4, -1.0, 5, &device).is_err());
    }

    /// Temperature 0 takes the combination's most likely token at every step: the same output
    /// for every seed, each token the argmax of the recomputed CP-k distribution.
    #[test]
    fn greedy_takes_the_most_likely_combined_token() {
        let (a, b) = (tiny(1), tiny(2));
        let device = Device::flex();
        let (out, _) = generate_naf(&[&a, &b], NafRule::CpK, &[3], 5, 0.0, 1, &device).unwrap();
        let (again, _) = generate_naf(&[&a, &b], NafRule::CpK, &[3], 5, 0.0, 99, &device).unwrap();
        assert_eq!(out, again);
        let seq: Vec<u32> = std::iter::once(3).chain(out.iter().copied()).collect();
        let (qa, qb) = (
            token_log_probs(&a, &seq, 1.0),
            token_log_probs(&b, &seq, 1.0),
        );
        for t in 0..5 {
            let c = combine(NafRule::CpK, &[&qa[t], &qb[t]]).unwrap();
            assert_eq!(argmax(&c.probs), seq[t + 1] as usize);
        }
    }
}
