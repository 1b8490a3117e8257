//! Near access-free sampling (Vyas, Kakade & Barak, 2023, "On Provable Copyright Protection
//! for Generative Models"): models q₁ … q_k trained on disjoint shards, so that a protected
//! item sits in at most one of them, and each token drawn from a combination p of their
//! next-token distributions that stays close to every qᵢ, and so to a model that never saw the
//! item.
//!
//! - **CP-k** (the paper's Algorithm 2): p(y) ∝ minᵢ qᵢ(y). With Z = Σ_y minᵢ qᵢ(y),
//!   p(y) = minᵢ qᵢ(y)/Z ≤ qᵢ(y)/Z, so every token obeys log(p(y)/qᵢ(y)) ≤ −log Z: a bound on
//!   the max-divergence, and so on every KL(p‖qᵢ).
//! - **CP-Δ, KL variant** (Algorithm 3; "sqrt"): p(y) ∝ (Πᵢ qᵢ(y))^{1/k}, √(q₁q₂) for k = 2.
//!   With Z = Σ_y (Πᵢ qᵢ(y))^{1/k},
//!
//!   ```text
//!   Σᵢ KL(p‖qᵢ) = Σ_y p(y) Σᵢ log(p(y)/qᵢ(y)) = k Σ_y p(y) log(p(y)/(Πᵢqᵢ(y))^{1/k}) = −k log Z
//!   ```
//!
//!   so each KL(p‖qᵢ) ≤ −k log Z (for k = 2, −2 log(1 − H²) with H the Hellinger distance).
//!
//! Over a sequence the bounds add, token by token (the chain rule of KL; the log-ratios add).
//! [`NafLedger`] keeps, for one output, each shard's summed log-ratio log(p(y)/qᵢ(y)) (the
//! realised Δ that the output carries against each shard model) and the summed per-token bound.

use serde::{Deserialize, Serialize};

mod decode;
mod score;
mod sequence;
pub use decode::generate_naf;
pub use score::naf_token_log_probs;
pub use sequence::{SequenceDraw, generate_naf_sequence, sequence_log_probs};

/// How the shard models' next-token distributions are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NafRule {
    /// p ∝ minᵢ qᵢ.
    CpK,
    /// p ∝ (Πᵢ qᵢ)^{1/k}.
    CpDelta,
}

impl std::str::FromStr for NafRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cp-k" => Ok(NafRule::CpK),
            "cp-delta" | "sqrt" => Ok(NafRule::CpDelta),
            other => Err(format!(
                "unknown NAF rule `{other}`; expected cp-k or cp-delta (also called sqrt)"
            )),
        }
    }
}

/// One token's combined distribution.
#[derive(Clone, Debug, PartialEq)]
pub struct Combined {
    /// p, summing to 1.
    pub probs: Vec<f64>,
    /// log Z, the log of the normaliser (≤ 0).
    pub log_z: f64,
    /// The rule's per-token bound: −log Z on the max-divergence (CP-k), −k·log Z on each
    /// KL(p‖qᵢ) (CP-Δ).
    pub bound: f64,
}

/// Combines the distributions `dists` (each over the same vocabulary, each summing to 1) by
/// `rule`. Errors on fewer than two, on lengths that differ, and on distributions with no
/// token in common (Z = 0: no p stays close to all of them).
pub fn combine(rule: NafRule, dists: &[&[f64]]) -> Result<Combined, String> {
    let k = dists.len();
    if k < 2 {
        return Err(format!(
            "NAF sampling combines at least 2 shard models, got {k}"
        ));
    }
    let v = dists[0].len();
    if dists.iter().any(|d| d.len() != v) || v == 0 {
        return Err("the shard models' vocabularies differ".into());
    }
    let weights: Vec<f64> = (0..v)
        .map(|y| match rule {
            NafRule::CpK => dists.iter().map(|d| d[y]).fold(f64::INFINITY, f64::min),
            NafRule::CpDelta => {
                let log_sum: f64 = dists.iter().map(|d| d[y].ln()).sum();
                (log_sum / k as f64).exp()
            }
        })
        .map(|w| if w.is_finite() && w > 0.0 { w } else { 0.0 })
        .collect();
    let z: f64 = weights.iter().sum();
    if z <= 0.0 {
        return Err("the shard models give no token positive probability together".into());
    }
    let log_z = z.ln();
    Ok(Combined {
        probs: weights.iter().map(|w| w / z).collect(),
        log_z,
        bound: match rule {
            NafRule::CpK => -log_z,
            NafRule::CpDelta => -(k as f64) * log_z,
        },
    })
}

/// Refuses fewer than two shard models and an empty prompt.
fn check_sampling(models: usize, prompt: &[u32]) -> Result<(), String> {
    if models < 2 {
        return Err(format!(
            "NAF sampling combines at least 2 shard models, got {models}"
        ));
    }
    if prompt.is_empty() {
        return Err("NAF sampling needs a prompt of at least one token".into());
    }
    Ok(())
}

/// A one-layer GPT of `vocab` tokens (context 8, width 8) with weights drawn by `seed` at
/// `scale`, for the tests.
#[cfg(test)]
pub(crate) fn tiny_gpt(vocab: usize, seed: u64, scale: f32) -> crate::ar::Gpt {
    let model = crate::ar::GptConfig::new(vocab)
        .with_context(8)
        .with_layers(1)
        .with_heads(2)
        .with_width(8)
        .init(&burn::tensor::Device::flex());
    crate::testing::seeded(model, seed, scale)
}

/// Softmax of `logits` at `temperature` (> 0), in f64.
pub fn softmax(logits: &[f32], temperature: f64) -> Vec<f64> {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = logits
        .iter()
        .map(|&l| ((l as f64 - m) / temperature).exp())
        .collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// What one NAF output carries against each shard model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NafLedger {
    /// The rule.
    pub rule: NafRule,
    /// Σ_t log(p_t(y_t)/q_{i,t}(y_t)) for each shard i.
    pub log_ratio: Vec<f64>,
    /// Σ_t of the per-token bounds.
    pub bound: f64,
    /// Tokens drawn.
    pub tokens: usize,
}

impl NafLedger {
    /// An empty ledger over `k` shard models.
    pub fn new(rule: NafRule, k: usize) -> Self {
        NafLedger {
            rule,
            log_ratio: vec![0.0; k],
            bound: 0.0,
            tokens: 0,
        }
    }

    /// Records the token `y` drawn from `combined`, the combination of `dists`.
    pub fn push(&mut self, combined: &Combined, dists: &[&[f64]], y: usize) {
        for (r, d) in self.log_ratio.iter_mut().zip(dists) {
            *r += (combined.probs[y] / d[y]).ln();
        }
        self.bound += combined.bound;
        self.tokens += 1;
    }

    /// The realised Δ of the output: maxᵢ log(p(y)/qᵢ(y)) over the whole output.
    pub fn delta(&self) -> f64 {
        self.log_ratio
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// CP-k by hand: q₁ = (0.5, 0.3, 0.2), q₂ = (0.2, 0.3, 0.5): min = (0.2, 0.3, 0.2),
    /// Z = 0.7, p = (2/7, 3/7, 2/7), bound −ln 0.7 = 0.356675.
    #[test]
    fn cp_k_by_hand() {
        let c = combine(NafRule::CpK, &[&[0.5, 0.3, 0.2], &[0.2, 0.3, 0.5]]).unwrap();
        for (p, w) in c.probs.iter().zip([2.0 / 7.0, 3.0 / 7.0, 2.0 / 7.0]) {
            assert!(close(*p, w), "{:?}", c.probs);
        }
        assert!(close(c.bound, -(0.7f64.ln())));
        assert!((c.bound - 0.356_674_943_9).abs() < 1e-9);
    }

    /// CP-Δ by hand: q₁ = (0.5, 0.5, 0), q₂ = (0.25, 0.25, 0.5): √(q₁q₂) = (√0.125, √0.125, 0),
    /// Z = 1/√2, p = (0.5, 0.5, 0); bound −2 ln Z = ln 2, met with equality by
    /// KL(p‖q₂) = ln 2 (KL(p‖q₁) = 0).
    #[test]
    fn cp_delta_by_hand() {
        let c = combine(NafRule::CpDelta, &[&[0.5, 0.5, 0.0], &[0.25, 0.25, 0.5]]).unwrap();
        assert!(close(c.probs[0], 0.5) && close(c.probs[1], 0.5) && c.probs[2] == 0.0);
        assert!(close(c.bound, 2f64.ln()));
        let kl2: f64 = c.probs[..2].iter().map(|p| p * (p / 0.25).ln()).sum();
        assert!(close(kl2, c.bound));
    }

    #[test]
    fn bad_combinations_are_refused() {
        assert!(combine(NafRule::CpK, &[&[1.0, 0.0]]).is_err());
        assert!(combine(NafRule::CpK, &[&[1.0, 0.0], &[0.5, 0.25, 0.25]]).is_err());
        assert!(combine(NafRule::CpDelta, &[&[1.0, 0.0], &[0.0, 1.0]]).is_err());
        assert!("cp-x".parse::<NafRule>().is_err());
        assert_eq!("sqrt".parse::<NafRule>(), Ok(NafRule::CpDelta));
    }

    /// A pseudo-random next-token distribution of shard `i` after `prefix` (V = 4).
    fn shard_dist(i: usize, prefix: &[usize]) -> Vec<f64> {
        let mut h = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 * 0x1234_5677);
        for &t in prefix {
            h = (h ^ t as u64).wrapping_mul(0x100_0000_01b3).rotate_left(17);
        }
        let w: Vec<f64> = (0..4)
            .map(|y| {
                h = h
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1 + y);
                0.05 + (h >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect();
        let s: f64 = w.iter().sum();
        w.into_iter().map(|x| x / s).collect()
    }

    /// Over every sequence of 3 tokens from a vocabulary of 4, with shard models whose
    /// next-token distributions depend on the prefix (k = 2 and 3): the exact sequence-level
    /// KL(p‖qᵢ) never exceeds the ledger's bound (its expectation under p for CP-Δ; its
    /// largest value over sequences for CP-k), and for CP-k no sequence's log-ratio exceeds its
    /// own bound.
    #[test]
    fn the_reported_bound_holds_against_the_exact_kl() {
        for k in [2, 3] {
            for rule in [NafRule::CpK, NafRule::CpDelta] {
                let mut kl = vec![0.0f64; k];
                let (mut expected_bound, mut max_bound) = (0.0f64, 0.0f64);
                for seq in 0..64usize {
                    let ys = [seq / 16, (seq / 4) % 4, seq % 4];
                    let (mut log_p, mut log_q) = (0.0, vec![0.0; k]);
                    let mut ledger = NafLedger::new(rule, k);
                    for t in 0..3 {
                        let dists: Vec<Vec<f64>> =
                            (0..k).map(|i| shard_dist(i, &ys[..t])).collect();
                        let refs: Vec<&[f64]> = dists.iter().map(Vec::as_slice).collect();
                        let c = combine(rule, &refs).unwrap();
                        log_p += c.probs[ys[t]].ln();
                        for i in 0..k {
                            log_q[i] += dists[i][ys[t]].ln();
                        }
                        ledger.push(&c, &refs, ys[t]);
                    }
                    let p = log_p.exp();
                    for i in 0..k {
                        kl[i] += p * (log_p - log_q[i]);
                        assert!((ledger.log_ratio[i] - (log_p - log_q[i])).abs() < 1e-12);
                    }
                    if rule == NafRule::CpK {
                        assert!(ledger.delta() <= ledger.bound + 1e-12, "{ledger:?}");
                    }
                    expected_bound += p * ledger.bound;
                    max_bound = max_bound.max(ledger.bound);
                }
                let bound = match rule {
                    NafRule::CpK => max_bound,
                    NafRule::CpDelta => expected_bound,
                };
                for (i, d) in kl.iter().enumerate() {
                    assert!(
                        *d >= 0.0 && *d <= bound + 1e-12,
                        "{rule:?} k = {k}: KL to shard {i} {d} above {bound}"
                    );
                }
            }
        }
    }
}
