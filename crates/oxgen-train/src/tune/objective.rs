//! The objectives of post-training, as plain functions of log-probabilities and rewards, so
//! each can be checked against hand-computed values.
//!
//! - DPO (Rafailov et al., 2023, eq. 7): with h = (log π(y_w) − log π_ref(y_w)) −
//!   (log π(y_l) − log π_ref(y_l)), the loss is −log σ(β·h); IPO (Azar et al., 2023, eq. 17)
//!   is (h − 1/(2β))². The implicit rewards are β(log π − log π_ref) of each answer.
//! - GRPO (Shao et al., 2024, eqs. 3–4): advantages normalised within each group of samples of
//!   one prompt; a clipped ratio objective per token; a KL penalty to the reference per token by
//!   the k3 estimator (Schulman, 2020, "Approximating KL divergence"): π_ref/π − log(π_ref/π) − 1,
//!   unbiased and never negative.

use burn::tensor::Tensor;
use burn::tensor::activation::log_sigmoid;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Which preference loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreferenceLoss {
    /// DPO's −log σ(β·h).
    #[default]
    Sigmoid,
    /// IPO's (h − 1/(2β))².
    Ipo,
}

/// The preference loss, averaged over pairs, and h of each pair (β·h is the implicit-reward
/// margin).
///
/// # Shapes
/// - every input: `[n]` (sequence log-probabilities); returns (`[1]`, `[n]`).
pub fn preference_loss(
    policy_chosen: Tensor<1>,
    policy_rejected: Tensor<1>,
    ref_chosen: Tensor<1>,
    ref_rejected: Tensor<1>,
    beta: f64,
    kind: PreferenceLoss,
) -> (Tensor<1>, Tensor<1>) {
    let h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected);
    let loss = match kind {
        PreferenceLoss::Sigmoid => log_sigmoid(h.clone().mul_scalar(beta)).neg(),
        PreferenceLoss::Ipo => h.clone().sub_scalar(1.0 / (2.0 * beta)).powi_scalar(2),
    };
    (loss.mean(), h)
}

/// Group-normalised advantages: each reward minus its group's mean, over the group's standard
/// deviation (Bessel-corrected, as `torch.std` in TRL's `GRPOTrainer`) plus 10⁻⁴. `rewards`
/// holds its groups one after another, `group` each. A group whose rewards are all equal gives
/// zeros (no signal).
pub fn group_advantages(rewards: &[f64], group: usize) -> Result<Vec<f64>> {
    if group < 2 {
        return Err(Error::Config(format!(
            "a group needs at least 2 samples to compare, got {group}"
        )));
    }
    if rewards.is_empty() || !rewards.len().is_multiple_of(group) {
        return Err(Error::Config(format!(
            "{} rewards do not make groups of {group}",
            rewards.len()
        )));
    }
    Ok(rewards
        .chunks(group)
        .flat_map(|g| {
            let n = g.len() as f64;
            let mean = g.iter().sum::<f64>() / n;
            let var = g.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let std = var.sqrt();
            g.iter().map(move |r| (r - mean) / (std + 1e-4))
        })
        .collect())
}

/// The k3 estimate of KL(π ‖ π_ref) per token: e^(ref − logp) − (ref − logp) − 1.
pub fn k3<const D: usize>(logp: Tensor<D>, ref_logp: Tensor<D>) -> Tensor<D> {
    let d = ref_logp - logp;
    d.clone().exp() - d - 1.0
}

/// GRPO's loss (to minimise) and what to log of it.
#[derive(Debug)]
pub struct GrpoLoss {
    /// The loss, `[1]`.
    pub loss: Tensor<1>,
    /// Mean k3 KL per completion token, `[1]`.
    pub kl: Tensor<1>,
    /// Share of completion tokens where the clipped term was the smaller, `[1]`.
    pub clipped: Tensor<1>,
}

/// GRPO's per-token objective: −min(r·A, clip(r, 1 − ε, 1 + ε)·A) + β·k3, with r =
/// e^(logp − old_logp); averaged over each sequence's completion tokens (`mask`), then over
/// sequences (Shao et al., 2024, eq. 3).
///
/// # Shapes
/// - `logp`, `old_logp`, `ref_logp`, `mask`: `[n, t]` (log-probabilities of the sampled tokens;
///   `mask` 1 on completion tokens, 0 elsewhere); `advantages`: `[n]`.
pub fn grpo_loss(
    logp: Tensor<2>,
    old_logp: Tensor<2>,
    ref_logp: Tensor<2>,
    advantages: Tensor<1>,
    mask: Tensor<2>,
    clip: f64,
    beta: f64,
) -> GrpoLoss {
    let [n, t] = logp.dims();
    let ratio = (logp.clone() - old_logp).exp();
    let adv = advantages.reshape([n, 1]).expand([n, t]);
    let plain = ratio.clone() * adv.clone();
    let bounded = ratio.clamp(1.0 - clip, 1.0 + clip) * adv;
    let clipped = bounded.clone().lower(plain.clone()).float() * mask.clone();
    let objective = plain.min_pair(bounded);
    let kl = k3(logp, ref_logp) * mask.clone();
    let per_token = (objective.neg() * mask.clone()) + kl.clone().mul_scalar(beta);
    let tokens = mask.clone().sum_dim(1).clamp_min(1.0); // [n, 1]
    let loss = (per_token.sum_dim(1) / tokens).mean();
    let total = mask.sum().clamp_min(1.0);
    GrpoLoss {
        loss,
        kl: kl.sum() / total.clone(),
        clipped: clipped.sum() / total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn t1(v: &[f32]) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Device::flex())
    }
    fn t2(v: &[f32], shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v.to_vec(), shape), &Device::flex())
    }
    fn value(t: Tensor<1>) -> f64 {
        t.into_scalar::<f32>() as f64
    }

    /// Hand-computed: pair 1 has h = (−1 + 1.5) − (−2 + 1.5) = 1, pair 2 h = (−3 + 2) −
    /// (−1 + 2) = −2. With β = 0.1, DPO = mean(ln(1 + e^−0.1), ln(1 + e^0.2)) =
    /// mean(0.6443967, 0.7981389) = 0.7212678; IPO = mean((1 − 5)², (−2 − 5)²) = 32.5.
    #[test]
    fn dpo_and_ipo_on_fixed_log_probs() {
        let args = || {
            (
                t1(&[-1.0, -3.0]),
                t1(&[-2.0, -1.0]),
                t1(&[-1.5, -2.0]),
                t1(&[-1.5, -2.0]),
            )
        };
        let (pc, pr, rc, rr) = args();
        let (loss, h) = preference_loss(pc, pr, rc, rr, 0.1, PreferenceLoss::Sigmoid);
        assert!((value(loss) - 0.721_267_8).abs() < 1e-6);
        let h: Vec<f32> = h.into_data().convert::<f32>().try_into_vec().unwrap();
        assert_eq!(h, vec![1.0, -2.0]);
        let (pc, pr, rc, rr) = args();
        let (loss, _) = preference_loss(pc, pr, rc, rr, 0.1, PreferenceLoss::Ipo);
        assert!((value(loss) - 32.5).abs() < 1e-4);
    }

    /// Group [1, 0, 0, 1]: mean 0.5, std √(1/3) = 0.5773503 (Bessel), so ±0.5 / 0.5774503 =
    /// ±0.8658754; a group of equal rewards gives zeros; an empty or ragged batch and a group
    /// of one are errors.
    #[test]
    fn group_advantages_by_hand() {
        let a = group_advantages(&[1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0], 4).unwrap();
        let want = [
            0.865_875_4,
            -0.865_875_4,
            -0.865_875_4,
            0.865_875_4,
            0.0,
            0.0,
            0.0,
            0.0,
        ];
        for (g, w) in a.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
        assert!(group_advantages(&[], 4).is_err());
        assert!(group_advantages(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(group_advantages(&[1.0, 2.0], 1).is_err());
    }

    /// π = 0.5, π_ref = 0.25: k3 = 0.5 − ln 0.5 − 1 = 0.1931472; and 0 where they agree.
    #[test]
    fn k3_by_hand() {
        let logp = t1(&[0.5f32.ln(), -1.0]);
        let reference = t1(&[0.25f32.ln(), -1.0]);
        let k: Vec<f32> = k3(logp, reference)
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        assert!(
            (k[0] - 0.193_147_2).abs() < 1e-6 && k[1].abs() < 1e-7,
            "{k:?}"
        );
    }

    /// Four one-token sequences with ratios 1.5, 1.5, 0.5, 0.5 and advantages 1, −1, −1, 1,
    /// ε = 0.2: the objectives are min(1.5, 1.2) = 1.2, min(−1.5, −1.2) = −1.5,
    /// min(−0.5, −0.8) = −0.8, min(0.5, 0.8) = 0.5, so the loss is −(1.2 − 1.5 − 0.8 + 0.5)/4
    /// = 0.15, and the clipped term was taken in the first and third: 0.5. A fifth token,
    /// masked out, changes nothing; with β = 0.5 and π_ref = π/2 on every token, the loss grows
    /// by 0.5·k3 = 0.5·(0.5 + ln 2 − 1) = 0.0965736.
    #[test]
    fn grpo_clipped_objective_by_hand() {
        let lp = [1.5f32.ln(), 1.5f32.ln(), 0.5f32.ln(), 0.5f32.ln()];
        let logp = |extra: f32| t2(&[lp[0], extra, lp[1], 0.0, lp[2], 0.0, lp[3], 0.0], [4, 2]);
        let old = t2(&[0.0; 8], [4, 2]);
        let mask = || t2(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0], [4, 2]);
        let adv = || t1(&[1.0, -1.0, -1.0, 1.0]);
        for extra in [0.0, 7.0] {
            let g = grpo_loss(
                logp(extra),
                old.clone(),
                logp(extra),
                adv(),
                mask(),
                0.2,
                0.1,
            );
            assert!((value(g.loss) - 0.15).abs() < 1e-6);
            assert!((value(g.clipped) - 0.5).abs() < 1e-6);
            assert!(value(g.kl).abs() < 1e-7);
        }
        let half = logp(0.0) + (0.5f32).ln();
        let g = grpo_loss(logp(0.0), old, half, adv(), mask(), 0.2, 0.5);
        assert!((value(g.loss) - (0.15 + 0.096_573_6)).abs() < 1e-6);
        assert!((value(g.kl) - 0.193_147_2).abs() < 1e-6);
    }
}
