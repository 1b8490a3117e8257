//! Precision, recall, density and coverage of samples against real data, with the k-nearest-
//! neighbour definitions of Kynkäänniemi et al. (2019, precision and recall) and Naeem et al.
//! (2020, density and coverage).
//!
//! Every real point gets a ball reaching its k-th nearest real neighbour (every sample, one
//! reaching its k-th nearest sample, for recall):
//! - precision: the share of samples inside some real ball;
//! - recall: the share of real points inside some sample ball;
//! - density: the mean number of real balls a sample falls in, over k (≈ 1 when matched; can
//!   exceed 1);
//! - coverage: the share of real points whose ball holds at least one sample.
//!
//! Computed on the host in `f64` by brute force, O(n·m·dim): fine for a few thousand points.

use serde::{Deserialize, Serialize};

/// The four numbers, and the k they used.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Prdc {
    /// Neighbours defining each ball.
    pub k: usize,
    /// Share of samples inside the real manifold.
    pub precision: f64,
    /// Share of real points inside the sample manifold.
    pub recall: f64,
    /// Mean real-ball membership of samples, over k.
    pub density: f64,
    /// Share of real balls holding a sample.
    pub coverage: f64,
}

fn dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Distance from each row of `x` to its k-th nearest other row of `x`.
pub fn knn_radii(x: &[f32], dim: usize, k: usize) -> Vec<f64> {
    let n = x.len() / dim;
    assert!(k >= 1 && k < n, "knn_radii: need 1 ≤ k < n ({k}, {n})");
    (0..n)
        .map(|i| {
            let xi = &x[i * dim..(i + 1) * dim];
            let mut d: Vec<f64> = (0..n)
                .filter(|&j| j != i)
                .map(|j| dist(xi, &x[j * dim..(j + 1) * dim]))
                .collect();
            d.select_nth_unstable_by(k - 1, f64::total_cmp);
            d[k - 1]
        })
        .collect()
}

/// PRDC of `fake` against `real` (row-major, `dim` features) with balls of the `k`-th neighbour.
pub fn prdc(real: &[f32], fake: &[f32], dim: usize, k: usize) -> Prdc {
    let (n, m) = (real.len() / dim, fake.len() / dim);
    let r_real = knn_radii(real, dim, k);
    let r_fake = knn_radii(fake, dim, k);
    let (mut inside, mut members) = (0usize, 0usize);
    let mut covered = vec![false; n];
    let mut recalled = vec![false; n];
    for j in 0..m {
        let fj = &fake[j * dim..(j + 1) * dim];
        let mut any = false;
        for i in 0..n {
            let d = dist(fj, &real[i * dim..(i + 1) * dim]);
            if d <= r_real[i] {
                any = true;
                members += 1;
                covered[i] = true;
            }
            if d <= r_fake[j] {
                recalled[i] = true;
            }
        }
        inside += any as usize;
    }
    let share = |v: &[bool]| v.iter().filter(|&&b| b).count() as f64 / v.len().max(1) as f64;
    Prdc {
        k,
        precision: inside as f64 / m.max(1) as f64,
        recall: share(&recalled),
        density: members as f64 / (k * m.max(1)) as f64,
        coverage: share(&covered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on a line at 0, 1, …, n−1 (1-D).
    fn line(n: usize, offset: f32) -> Vec<f32> {
        (0..n).map(|i| i as f32 + offset).collect()
    }

    #[test]
    fn identical_sets_score_one() {
        let x = line(50, 0.0);
        let p = prdc(&x, &x, 1, 3);
        assert_eq!((p.precision, p.recall, p.coverage), (1.0, 1.0, 1.0));
        // On the unit grid an interior ball (3rd neighbour) has radius 2, so an interior sample
        // lies in 5 balls: density 5/3, a little more with the wider balls at the ends.
        assert!((p.density - 5.0 / 3.0).abs() < 0.1, "{p:?}");
    }

    #[test]
    fn disjoint_sets_score_zero() {
        let p = prdc(&line(40, 0.0), &line(40, 1000.0), 1, 3);
        assert_eq!(
            (p.precision, p.recall, p.density, p.coverage),
            (0.0, 0.0, 0.0, 0.0)
        );
    }

    /// Real points 0..40 on a line; samples: copies of 0..20 and 20 points far away. With
    /// k = 2 the real balls have radius 1 (2 at the ends), the copies' balls radius 1 (2 at
    /// the ends, so the copy at 19 reaches 21). By hand: precision 20/40; coverage 21/40 (the
    /// real points 0..=20: the ball of 20 holds the copy at 19); recall 22/40 (the real
    /// points 0..=21).
    #[test]
    fn half_overlap_matches_the_hand_count() {
        let real = line(40, 0.0);
        let mut fake = line(20, 0.0);
        fake.extend(line(20, 1000.0));
        let p = prdc(&real, &fake, 1, 2);
        assert_eq!(p.precision, 0.5, "{p:?}");
        assert_eq!(p.coverage, 21.0 / 40.0, "{p:?}");
        assert_eq!(p.recall, 22.0 / 40.0, "{p:?}");
    }

    #[test]
    fn knn_radius_on_a_grid() {
        // On the integers, the 2nd nearest neighbour of an interior point is at distance 1,
        // the 3rd at 2.
        let r = knn_radii(&line(10, 0.0), 1, 3);
        assert_eq!(r[5], 2.0);
        assert_eq!(r[0], 3.0);
    }
}
