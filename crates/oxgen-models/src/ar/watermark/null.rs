//! The exact null distribution of a KGW green count over keys.
//!
//! Under a key drawn at random, each seed's green list is a uniformly random set of G of the V
//! tokens, independently across distinct seeds. The distinct tokens a text has scored under one
//! seed are then a draw without replacement: their green count is hypergeometric, and the
//! text's count is the sum of independent hypergeometrics, one per seed. That is exact for any
//! text the key did not make, whatever its statistics; the binomial Bin(T, G/V) is its
//! approximation when every seed judges one token, and the normal z the approximation of that.

/// ln C(n, k).
fn ln_choose(n: usize, k: usize) -> f64 {
    let (n, k) = (n as f64, k as f64);
    libm::lgamma(n + 1.0) - libm::lgamma(k + 1.0) - libm::lgamma(n - k + 1.0)
}

/// The distribution of a green count: its probabilities for 0, 1, 2, … green.
#[derive(Clone, Debug)]
pub struct ExactNull(Vec<f64>);

impl ExactNull {
    /// The null of `groups` (distinct tokens scored under each seed) for lists of `green` of
    /// `vocab` tokens.
    pub fn new(groups: &[usize], vocab: usize, green: usize) -> Self {
        let mut dist = vec![1.0];
        for &n in groups {
            let n = n.min(vocab);
            let lo = n.saturating_sub(vocab - green);
            let hi = n.min(green);
            let pmf: Vec<(usize, f64)> = (lo..=hi)
                .map(|k| {
                    let l =
                        ln_choose(green, k) + ln_choose(vocab - green, n - k) - ln_choose(vocab, n);
                    (k, l.exp())
                })
                .collect();
            let mut next = vec![0.0; dist.len() + hi];
            for (i, &p) in dist.iter().enumerate() {
                for &(k, q) in &pmf {
                    next[i + k] += p * q;
                }
            }
            dist = next;
        }
        Self(dist)
    }

    /// (P(X ≥ k), P(X = k)).
    pub fn tail(&self, k: usize) -> (f64, f64) {
        let eq = self.0.get(k).copied().unwrap_or(0.0);
        let ge: f64 = self.0.iter().skip(k).sum();
        (ge.min(1.0), eq)
    }
}

/// (P(X ≥ k), P(X = k)) for X ~ Bin(n, q).
pub fn binomial_tail(k: usize, n: usize, q: f64) -> (f64, f64) {
    if k > n {
        return (0.0, 0.0);
    }
    let q = q.clamp(1e-12, 1.0 - 1e-12);
    let log_pmf = |j: usize| ln_choose(n, j) + j as f64 * q.ln() + (n - j) as f64 * (1.0 - q).ln();
    let eq = log_pmf(k).exp();
    let ge: f64 = (k..=n).map(|j| log_pmf(j).exp()).sum();
    (ge.min(1.0), eq)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binomial tails by hand: Bin(10, ½) has P(X ≥ 8) = 56/1024 and P(X = 8) = 45/1024;
    /// Bin(200, ¼) has P(X ≥ 75) = Σ_{k ≥ 75} C(200, k) ¼^k ¾^(200−k) = 6.15271e-5 (the sum in
    /// exact integer arithmetic, Python's `math.comb`), above the normal tail at z = 4.08
    /// (2.23e-5), which ignores the skew.
    #[test]
    fn binomial_tails_by_hand() {
        let (ge, eq) = binomial_tail(8, 10, 0.5);
        assert!((ge - 56.0 / 1024.0).abs() < 1e-12 && (eq - 45.0 / 1024.0).abs() < 1e-12);
        assert_eq!(binomial_tail(0, 10, 0.5).0, 1.0);
        let (ge, _) = binomial_tail(75, 200, 0.25);
        assert!((ge - 6.15271e-5).abs() < 1e-9, "{ge}");
        assert_eq!(binomial_tail(3, 2, 0.5), (0.0, 0.0));
    }

    /// Hypergeometric by hand: 2 tokens judged by one list of 16 of 65 are both green with
    /// probability C(16,2)/C(65,2) = 120/2080; one token under each of two lists, 16²/65².
    /// With one token per seed the null is the binomial.
    #[test]
    fn the_exact_null_is_hypergeometric_per_seed() {
        let one = ExactNull::new(&[2], 65, 16);
        assert!((one.tail(2).1 - 120.0 / 2080.0).abs() < 1e-12);
        assert!((one.0.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let two = ExactNull::new(&[1, 1], 65, 16);
        assert!((two.tail(2).1 - 256.0 / 4225.0).abs() < 1e-12);
        let ones = ExactNull::new(&[1; 200], 65, 16);
        for k in [40, 60, 75] {
            let (a, b) = (ones.tail(k), binomial_tail(k, 200, 16.0 / 65.0));
            assert!(
                (a.0 - b.0).abs() < 1e-10 * (1.0 + b.0.abs() * 1e6),
                "{k}: {a:?} {b:?}"
            );
            assert!((a.0 / b.0 - 1.0).abs() < 1e-8, "{k}");
        }
        assert_eq!(ExactNull::new(&[], 65, 16).tail(0), (1.0, 1.0));
    }
}
