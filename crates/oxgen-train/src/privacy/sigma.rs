//! σ from a target ε, as Opacus's `get_noise_multiplier` finds it: double σ from 10 until ε
//! falls to the target (refusing past σ = 10⁶), then bisect while the target exceeds the
//! upper end's ε by more than the tolerance; the answer is the upper end, so its ε never
//! exceeds the target.

use super::{AccountantKind, Phase, epsilon, validate_delta};
use crate::{Error, Result};

/// The largest σ the search tries.
pub const MAX_SIGMA: f64 = 1e6;

/// The noise multiplier that spends at most `target_eps` at `delta` in `steps` steps of
/// sampling rate `q`, to within `tolerance` in ε (Opacus: 0.01).
pub fn sigma_for_epsilon(
    kind: AccountantKind,
    target_eps: f64,
    delta: f64,
    q: f64,
    steps: u64,
    tolerance: f64,
) -> Result<f64> {
    if !(target_eps > 0.0 && target_eps.is_finite()) {
        return Err(Error::Privacy {
            parameter: "epsilon",
            reason: format!("the target ε must be positive and finite, got {target_eps}"),
        });
    }
    validate_delta(delta, None)?;
    Phase {
        sigma: 1.0,
        q,
        steps,
    }
    .validate()?;
    let eps_at = |sigma: f64| epsilon(kind, &[Phase { sigma, q, steps }], delta);
    let (mut low, mut high) = (0.0f64, 10.0f64);
    let mut eps_high = f64::INFINITY;
    while eps_high > target_eps {
        high *= 2.0;
        if high > MAX_SIGMA {
            return Err(Error::Privacy {
                parameter: "epsilon",
                reason: format!(
                    "no noise multiplier up to {MAX_SIGMA:e} reaches ε = {target_eps} at δ = {delta} in {steps} steps of q = {q}"
                ),
            });
        }
        eps_high = eps_at(high)?;
    }
    while target_eps - eps_high > tolerance {
        let mid = (low + high) / 2.0;
        let e = eps_at(mid)?;
        if e < target_eps {
            high = mid;
            eps_high = e;
        } else {
            low = mid;
        }
    }
    Ok(high)
}
