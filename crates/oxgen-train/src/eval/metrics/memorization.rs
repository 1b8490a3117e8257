//! Memorization: how close samples come to the training items.
//!
//! For each sample, the distance to its nearest training item (d₁) and to the second nearest
//! (d₂). A sample is an **exact duplicate** when d₁ is zero (to 1e-6 of the data's scale), and a
//! **near duplicate** when d₁ < d₂ / 3 — much closer to one training item than to any other
//! (the criterion of Yoon et al., 2023, and Gu et al., 2023, for diffusion models). The
//! distribution of d₁ is set against the training items' own nearest-neighbour distances: a
//! model that generalises puts its samples about as far from the training set as the training
//! items are from each other; one that copies puts them much closer.
//!
//! Both criteria depend on dimension and sample density (for points scattered uniformly in 2D,
//! d₁ < d₂/3 happens by chance 1 time in 9), so every number comes with its **baseline**: the
//! same statistic for held-out real data, which no model has seen.

use serde::{Deserialize, Serialize};

/// Quantiles (5, 25, 50, 75, 95%) of a distance distribution.
pub type Quantiles = [f64; 5];

/// The memorization report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Memorization {
    /// Samples checked.
    pub samples: usize,
    /// Share of samples that equal a training item.
    pub exact: f64,
    /// Share of samples with d₁ < d₂ / 3 (exact duplicates included).
    pub near: f64,
    /// Quantiles of the samples' distance to their nearest training item.
    pub sample_to_train: Quantiles,
    /// Quantiles of the training items' distance to their nearest other training item.
    pub train_to_train: Quantiles,
    /// Median sample-to-train distance over the median train-to-train distance (≈ 1 or more
    /// for a model that generalises; ≪ 1 for one that copies).
    pub median_ratio: f64,
    /// `near` for held-out real rows instead of samples: what chance gives.
    pub near_baseline: f64,
    /// `median_ratio` for held-out real rows.
    pub median_ratio_baseline: f64,
}

impl Memorization {
    /// Whether it looks like copying: 10 points more near duplicates than held-out data has, or
    /// a median ratio below half of held-out data's.
    pub fn flagged(&self) -> bool {
        self.near > self.near_baseline + 0.1 || self.median_ratio < 0.5 * self.median_ratio_baseline
    }
}

fn dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// The two smallest distances from `x` to the rows of `set`, skipping row `skip`.
fn two_nearest(x: &[f32], set: &[f32], dim: usize, skip: Option<usize>) -> (f64, f64) {
    let (mut a, mut b) = (f64::INFINITY, f64::INFINITY);
    for (j, row) in set.chunks(dim).enumerate() {
        if Some(j) == skip {
            continue;
        }
        let d = dist(x, row);
        if d < a {
            (a, b) = (d, a);
        } else if d < b {
            b = d;
        }
    }
    (a, b)
}

fn quantiles(mut v: Vec<f64>) -> Quantiles {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    [q(0.05), q(0.25), q(0.5), q(0.75), q(0.95)]
}

/// (exact share, near share, distances to the nearest training row) of `rows`.
fn nearest(rows: &[f32], train: &[f32], dim: usize) -> (f64, f64, Vec<f64>) {
    let m = rows.len() / dim;
    let scale = train
        .iter()
        .map(|v| v.abs() as f64)
        .fold(0.0, f64::max)
        .max(1e-12);
    let (mut exact, mut near, mut d1s) = (0usize, 0usize, Vec::with_capacity(m));
    for s in rows.chunks(dim) {
        let (d1, d2) = two_nearest(s, train, dim, None);
        exact += (d1 <= 1e-6 * scale) as usize;
        near += (d1 < d2 / 3.0) as usize;
        d1s.push(d1);
    }
    (exact as f64 / m as f64, near as f64 / m as f64, d1s)
}

/// Checks `samples` against `train`, with `held_out` real rows (never trained on) as the
/// baseline. Row-major, `dim` features; at least 3 training rows.
pub fn memorization(samples: &[f32], train: &[f32], held_out: &[f32], dim: usize) -> Memorization {
    let m = samples.len() / dim;
    assert!(
        train.len() / dim >= 3 && m > 0 && held_out.len() >= dim,
        "memorization needs ≥ 3 training rows, a sample and a held-out row"
    );
    let (exact, near, d1s) = nearest(samples, train, dim);
    let (_, near_baseline, base) = nearest(held_out, train, dim);
    let tt: Vec<f64> = train
        .chunks(dim)
        .enumerate()
        .map(|(i, row)| two_nearest(row, train, dim, Some(i)).0)
        .collect();
    let (s, t, h) = (quantiles(d1s), quantiles(tt), quantiles(base));
    Memorization {
        samples: m,
        exact,
        near,
        median_ratio: s[2] / t[2].max(1e-12),
        sample_to_train: s,
        train_to_train: t,
        near_baseline,
        median_ratio_baseline: h[2] / t[2].max(1e-12),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    fn gauss(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n * dim)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect()
    }

    /// A "model" that returns training items is flagged: every sample an exact duplicate.
    #[test]
    fn a_copying_model_is_flagged() {
        let train = gauss(300, 4, 1);
        let copies: Vec<f32> = train[..100 * 4].to_vec();
        let m = memorization(&copies, &train, &gauss(100, 4, 9), 4);
        assert_eq!((m.exact, m.near), (1.0, 1.0));
        assert_eq!(m.sample_to_train[4], 0.0);
        assert!(m.flagged());
    }

    /// Fresh draws from the same distribution are neither duplicates nor closer than the
    /// training items are to each other.
    #[test]
    fn fresh_draws_are_not_flagged() {
        let train = gauss(300, 4, 1);
        let fresh = gauss(100, 4, 2);
        let m = memorization(&fresh, &train, &gauss(100, 4, 9), 4);
        assert_eq!(m.exact, 0.0);
        assert!(m.near < 0.1, "{m:?}");
        assert!(m.median_ratio > 0.7, "{m:?}");
        assert!(
            (m.median_ratio - m.median_ratio_baseline).abs() < 0.3,
            "{m:?}"
        );
        assert!(!m.flagged());
    }

    /// Copies with a little noise (1% of the typical neighbour distance) are near duplicates.
    /// In 2D, d₁ < d₂/3 happens by chance about 1 time in 9: the baseline says so, and fresh
    /// draws are not flagged although 11% of them are "near".
    #[test]
    fn the_baseline_absorbs_chance_in_low_dimensions() {
        let train = gauss(2000, 2, 1);
        let m = memorization(&gauss(1000, 2, 2), &train, &gauss(1000, 2, 3), 2);
        assert!((m.near_baseline - 1.0 / 9.0).abs() < 0.04, "{m:?}");
        assert!((m.near - m.near_baseline).abs() < 0.04, "{m:?}");
        assert!(!m.flagged());
    }

    #[test]
    fn noisy_copies_are_near_duplicates() {
        let train = gauss(300, 4, 1);
        let noise = gauss(100, 4, 3);
        let noisy: Vec<f32> = train[..400]
            .iter()
            .zip(&noise)
            .map(|(x, e)| x + 0.005 * e)
            .collect();
        let m = memorization(&noisy, &train, &gauss(100, 4, 9), 4);
        assert_eq!(m.exact, 0.0);
        assert_eq!(m.near, 1.0);
        assert!(m.flagged());
    }
}
