//! The Gaussian-DP accountant (Dong, Roth & Su 2019, "Gaussian Differential Privacy"; Bu,
//! Dong, Long & Su 2020, "Deep Learning with Gaussian Differential Privacy"): the central-limit
//! approximation of T Poisson-subsampled Gaussian steps as μ-GDP,
//!
//! ```text
//! μ = q·√T·√(e^{1/σ²} − 1)
//! δ(ε) = Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2)
//! ```
//!
//! and ε the root of δ(ε) = δ. An approximation, as Opacus warns: it can under-state ε for few
//! steps or large q.

use super::special::normal_cdf;

/// μ after `steps` Poisson-subsampled steps.
pub fn mu_poisson(q: f64, sigma: f64, steps: u64) -> f64 {
    ((1.0 / (sigma * sigma)).exp() - 1.0).sqrt() * (steps as f64).sqrt() * q
}

/// δ(ε) of μ-GDP (Dong, Roth & Su 2019, corollary 2.13).
pub fn delta_of(eps: f64, mu: f64) -> f64 {
    normal_cdf(-eps / mu + mu / 2.0) - eps.exp() * normal_cdf(-eps / mu - mu / 2.0)
}

/// The ε in [0, 500] with δ(ε) = `delta` (bisection to the last bit; δ(ε) falls with ε);
/// +∞ when even ε = 500 leaves more than `delta`.
pub fn eps_from_mu(mu: f64, delta: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 500.0f64);
    if delta_of(lo, mu) <= delta {
        return 0.0;
    }
    if delta_of(hi, mu) > delta {
        return f64::INFINITY;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if delta_of(mid, mu) > delta {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// ε at `delta` of a history: phases compose as μ² = Σ μᵢ² (Dong, Roth & Su 2019, corollary
/// 3.3), so one phase gives Opacus's value.
pub fn epsilon(history: &[super::Phase], delta: f64) -> f64 {
    let mu2: f64 = history
        .iter()
        .map(|p| mu_poisson(p.q, p.sigma, p.steps).powi(2))
        .sum();
    eps_from_mu(mu2.sqrt(), delta)
}
