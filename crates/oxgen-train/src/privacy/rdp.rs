//! The Rényi-DP accountant of the subsampled Gaussian mechanism (Mironov, Talwar & Zhang 2019,
//! "Rényi Differential Privacy of the Sampled Gaussian Mechanism", section 3.3), with the
//! conversion to (ε, δ) of Balle et al. 2020 ("Hypothesis Testing Interpretations and Rényi
//! Differential Privacy", theorem 21), as Opacus and TensorFlow Privacy compute them:
//!
//! ```text
//! A_α = E_{z∼μ₀}[(μ(z)/μ₀(z))^α],  μ = (1 − q)μ₀ + qμ₁,  μᵢ = N(i, σ²)
//! RDP(α) = steps · ln A_α / (α − 1)
//! ε = min_α  RDP(α) − (ln δ + ln α)/(α − 1) + ln((α − 1)/α)
//! ```
//!
//! For integer α, A_α is a finite binomial sum; for fractional α, the two-sided series of the
//! paper, summed until its terms fall below e⁻³⁰.

use super::special::{log_add, log_binom, log_erfc, log_sub};

/// Opacus's default orders: 1.1, 1.2, …, 10.9, then 12, 13, …, 63.
pub fn default_orders() -> Vec<f64> {
    (1..100)
        .map(|x| 1.0 + x as f64 / 10.0)
        .chain((12..64).map(f64::from))
        .collect()
}

fn log_a_int(q: f64, sigma: f64, alpha: usize) -> f64 {
    let mut log_a = f64::NEG_INFINITY;
    for i in 0..=alpha {
        let (lc, _) = log_binom(alpha as f64, i);
        let coef = lc + i as f64 * q.ln() + (alpha - i) as f64 * (1.0 - q).ln();
        let s = coef + ((i * i) as f64 - i as f64) / (2.0 * sigma * sigma);
        log_a = log_add(log_a, s);
    }
    log_a
}

fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut a0, mut a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let s2 = std::f64::consts::SQRT_2 * sigma;
    let mut i = 0usize;
    // ln|C(α, i)| and its sign, carried from term to term: C(α, i+1) = C(α, i)·(α − i)/(i + 1).
    let (mut lc, mut sign) = (0.0f64, 1.0f64);
    loop {
        let fi = i as f64;
        let j = alpha - fi;
        let t0 = lc + fi * q.ln() + j * (1.0 - q).ln();
        let t1 = lc + j * q.ln() + fi * (1.0 - q).ln();
        let e0 = 0.5f64.ln() + log_erfc((fi - z0) / s2);
        let e1 = 0.5f64.ln() + log_erfc((z0 - j) / s2);
        let s0 = t0 + (fi * fi - fi) / (2.0 * sigma * sigma) + e0;
        let s1 = t1 + (j * j - j) / (2.0 * sigma * sigma) + e1;
        if sign > 0.0 {
            a0 = log_add(a0, s0);
            a1 = log_add(a1, s1);
        } else {
            a0 = log_sub(a0, s0);
            a1 = log_sub(a1, s1);
        }
        let f = (alpha - fi) / (fi + 1.0);
        if f < 0.0 {
            sign = -sign;
        }
        lc += f.abs().ln();
        i += 1;
        if s0.max(s1) < -30.0 || i > 100_000 {
            break;
        }
    }
    log_add(a0, a1)
}

/// RDP of one step of the sampled Gaussian mechanism at order `alpha` (may be +∞).
pub fn rdp_one(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if sigma == 0.0 || alpha.is_infinite() {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    let log_a = if alpha.fract() == 0.0 {
        log_a_int(q, sigma, alpha as usize)
    } else {
        log_a_frac(q, sigma, alpha)
    };
    log_a / (alpha - 1.0)
}

/// RDP at each of `orders` after `steps` steps.
pub fn rdp(q: f64, sigma: f64, steps: u64, orders: &[f64]) -> Vec<f64> {
    orders
        .iter()
        .map(|&a| rdp_one(q, sigma, a) * steps as f64)
        .collect()
}

/// The smallest ε at `delta` over `orders` (Balle et al. 2020, theorem 21), with its order.
/// +∞ when every order gives +∞ or NaN.
pub fn epsilon_from_rdp(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::NAN);
    for (&a, &r) in orders.iter().zip(rdp) {
        let e = r - (delta.ln() + a.ln()) / (a - 1.0) + ((a - 1.0) / a).ln();
        if e < best.0 {
            best = (e, a);
        }
    }
    best
}

/// ε at `delta` of a history of (σ, q, steps), over `orders`.
pub fn epsilon(history: &[super::Phase], delta: f64, orders: &[f64]) -> (f64, f64) {
    let mut total = vec![0.0; orders.len()];
    for p in history {
        for (t, r) in total.iter_mut().zip(rdp(p.q, p.sigma, p.steps, orders)) {
            *t += r;
        }
    }
    epsilon_from_rdp(orders, &total, delta)
}
