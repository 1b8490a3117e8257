//! Sample-quality metrics between two point sets: the sliced Wasserstein distance (SWD) and the
//! maximum mean discrepancy (MMD), each reported with its finite-sample floor; precision,
//! recall, density and coverage ([`prdc`]); and memorization ([`memorization`]).
//!
//! All are computed on the host in `f64`. Sets are row-major `[n, dim]`.

pub mod classifier;
pub mod memorization;
pub mod prdc;

pub use memorization::{Memorization, memorization};
pub use prdc::{Prdc, prdc};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Number of random directions the SWD averages over.
pub const SWD_PROJECTIONS: usize = 256;

/// Sliced 2-Wasserstein distance: √(mean over unit directions θ of W₂²(θᵀa, θᵀb)), with
/// [`SWD_PROJECTIONS`] directions drawn from `seed`. Uses the first `min(n_a, n_b)` rows of each.
pub fn swd(a: &[f32], b: &[f32], dim: usize, seed: u64) -> f64 {
    let n = (a.len() / dim).min(b.len() / dim);
    assert!(n > 0, "swd needs at least one point in each set");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut total = 0.0;
    let (mut pa, mut pb) = (vec![0.0f64; n], vec![0.0f64; n]);
    for _ in 0..SWD_PROJECTIONS {
        let mut theta: Vec<f64> = (0..dim).map(|_| StandardNormal.sample(&mut rng)).collect();
        let norm = theta.iter().map(|v| v * v).sum::<f64>().sqrt();
        theta.iter_mut().for_each(|v| *v /= norm);
        let project = |x: &[f32], out: &mut [f64]| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = x[i * dim..(i + 1) * dim]
                    .iter()
                    .zip(&theta)
                    .map(|(&v, t)| v as f64 * t)
                    .sum();
            }
            out.sort_by(f64::total_cmp);
        };
        project(a, &mut pa);
        project(b, &mut pb);
        total += pa
            .iter()
            .zip(&pb)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            / n as f64;
    }
    (total / SWD_PROJECTIONS as f64).sqrt()
}

fn sq_dist(x: &[f32], y: &[f32]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum()
}

/// The median pairwise distance within `x` (the usual RBF bandwidth heuristic).
pub fn median_distance(x: &[f32], dim: usize) -> f64 {
    let n = (x.len() / dim).min(500);
    let mut d: Vec<f64> = Vec::with_capacity(n * n / 2);
    for i in 0..n {
        for j in 0..i {
            d.push(sq_dist(&x[i * dim..(i + 1) * dim], &x[j * dim..(j + 1) * dim]).sqrt());
        }
    }
    d.sort_by(f64::total_cmp);
    d.get(d.len() / 2).copied().unwrap_or(1.0).max(1e-6)
}

/// Maximum mean discrepancy with a Gaussian kernel of bandwidth `h`: the square root of the
/// biased (V-statistic) MMD², so that it is never negative.
pub fn mmd(a: &[f32], b: &[f32], dim: usize, h: f64) -> f64 {
    let (na, nb) = (a.len() / dim, b.len() / dim);
    let k = |x: &[f32], y: &[f32]| (-sq_dist(x, y) / (2.0 * h * h)).exp();
    let mean_k = |x: &[f32], nx: usize, y: &[f32], ny: usize| {
        let mut s = 0.0;
        for i in 0..nx {
            for j in 0..ny {
                s += k(&x[i * dim..(i + 1) * dim], &y[j * dim..(j + 1) * dim]);
            }
        }
        s / (nx * ny) as f64
    };
    let m2 = mean_k(a, na, a, na) + mean_k(b, nb, b, nb) - 2.0 * mean_k(a, na, b, nb);
    m2.max(0.0).sqrt()
}

/// Quality of `n` samples against held-out data, beside the floors.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Quality {
    /// Points compared per set.
    pub n: usize,
    /// SWD(samples, held-out A).
    pub swd: f64,
    /// SWD(held-out B, held-out A): what a perfect model of this size would get.
    pub swd_floor: f64,
    /// MMD(samples, held-out A).
    pub mmd: f64,
    /// MMD(held-out B, held-out A).
    pub mmd_floor: f64,
    /// RBF bandwidth used (median distance in held-out A).
    pub bandwidth: f64,
}

impl Quality {
    /// Compares `samples` with `held_a`; the floor compares `held_b` with `held_a`. All three
    /// sets are cut to the same number of rows.
    pub fn measure(samples: &[f32], held_a: &[f32], held_b: &[f32], dim: usize, seed: u64) -> Self {
        let n = (samples.len() / dim)
            .min(held_a.len() / dim)
            .min(held_b.len() / dim);
        let (s, a, b) = (&samples[..n * dim], &held_a[..n * dim], &held_b[..n * dim]);
        let h = median_distance(a, dim);
        Self {
            n,
            swd: swd(s, a, dim, seed),
            swd_floor: swd(b, a, dim, seed),
            mmd: mmd(s, a, dim, h),
            mmd_floor: mmd(b, a, dim, h),
            bandwidth: h,
        }
    }
}

impl std::fmt::Display for Quality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SWD {:.4} (floor {:.4}, ratio {:.2})  MMD {:.4} (floor {:.4}, ratio {:.2})  n={}",
            self.swd,
            self.swd_floor,
            self.swd / self.swd_floor,
            self.mmd,
            self.mmd_floor,
            self.mmd / self.mmd_floor,
            self.n
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauss(n: usize, dim: usize, shift: f32, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n * dim)
            .map(|_| StandardNormal.sample(&mut rng))
            .map(|v: f32| v + shift)
            .collect()
    }

    #[test]
    fn swd_of_a_shift_in_1d_is_the_shift() {
        // In 1D every direction is ±1, and W₂ between a set and its shift is the shift.
        let a = gauss(1000, 1, 0.0, 1);
        let b: Vec<f32> = a.iter().map(|v| v + 0.5).collect();
        assert!((swd(&a, &b, 1, 0) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn swd_of_a_2d_shift_matches_the_projected_mean() {
        // Shift by δ along x: E_θ[(δ cos θ)²] = δ²/2, so SWD = δ/√2 exactly.
        let a = gauss(500, 2, 0.0, 2);
        let b: Vec<f32> = a.chunks(2).flat_map(|p| [p[0] + 1.0, p[1]]).collect();
        let got = swd(&a, &b, 2, 0);
        assert!((got - 1.0 / 2f64.sqrt()).abs() < 0.05, "{got}");
    }

    #[test]
    fn mmd_is_zero_on_identical_sets_and_detects_shift() {
        let a = gauss(300, 2, 0.0, 3);
        assert!(mmd(&a, &a, 2, 1.0) < 1e-6);
        let q = Quality::measure(&gauss(300, 2, 1.0, 4), &a, &gauss(300, 2, 0.0, 5), 2, 0);
        assert!(
            q.mmd > 3.0 * q.mmd_floor && q.swd > 3.0 * q.swd_floor,
            "{q}"
        );
    }
}
