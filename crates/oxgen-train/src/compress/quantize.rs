//! Predictive distributions to integer frequencies, the same on every machine: the softmax of
//! the model's f32 logits in f64 on the host, in index order, then each symbol gets 1 plus its
//! share of the rest of 2^24, rounded down, and the remainder goes to the most likely symbol.
//! Extra symbols (an escape) get frequency 1 each.

use constriction::stream::model::DefaultContiguousCategoricalEntropyModel;

/// Bits of the frequencies' total (constriction's default range coder precision).
pub const PRECISION: u32 = 24;

/// A categorical entropy model.
pub type Categorical = DefaultContiguousCategoricalEntropyModel;

/// Frequencies summing to 2^24, each at least 1: the softmax of `logits`, then `extra` symbols
/// of frequency 1 after them. Also returns log₂ of the softmax's probabilities (the model's
/// own code length of each symbol, before quantisation).
pub fn frequencies(logits: &[f32], extra: usize) -> (Vec<u32>, Vec<f64>) {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let exps: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    let mut p = exps.clone();
    p.extend(std::iter::repeat_n(0.0, extra));
    let log2 = exps.iter().map(|&e| (e / total).log2()).collect();
    (from_probabilities(&p), log2)
}

/// Frequencies summing to 2^24, each at least 1, of probabilities `p` (not necessarily
/// normalised): 1 plus each one's share of the rest, rounded down, the remainder to the most
/// likely (the first on ties).
pub fn from_probabilities(p: &[f64]) -> Vec<u32> {
    let total: f64 = p.iter().sum();
    let budget = (1u64 << PRECISION) - p.len() as u64;
    let mut f: Vec<u32> = p
        .iter()
        .map(|&x| 1 + ((x / total) * budget as f64).floor() as u32)
        .collect();
    let sum: u64 = f.iter().map(|&x| u64::from(x)).sum();
    let best = (0..p.len())
        .max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)))
        .unwrap_or(0);
    f[best] += ((1u64 << PRECISION) - sum) as u32;
    f
}

/// The entropy model of `freqs` (as [`frequencies`] makes them).
pub fn categorical(freqs: &[u32]) -> Categorical {
    Categorical::from_nonzero_fixed_point_probabilities(freqs, false)
        .expect("frequencies sum to 2^24 and are non-zero")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_sum_to_the_total_and_none_is_zero() {
        for (logits, extra) in [
            (vec![0.0f32, 0.0, 0.0], 0),
            (vec![100.0, -100.0, 3.0, -1e30], 1),
            (vec![f32::MIN, 0.0], 2),
            (vec![5.0; 300], 1),
        ] {
            let (f, log2) = frequencies(&logits, extra);
            assert_eq!(f.len(), logits.len() + extra);
            assert_eq!(f.iter().map(|&x| u64::from(x)).sum::<u64>(), 1 << PRECISION);
            assert!(f.iter().all(|&x| x >= 1));
            assert_eq!(log2.len(), logits.len());
            let _ = categorical(&f);
        }
        // Equal logits give equal frequencies but for the remainder, which goes to the first.
        let (f, _) = frequencies(&[1.0, 1.0, 1.0, 1.0], 0);
        assert_eq!(f, vec![1 << 22; 4]);
        // The quantised code length is within 10⁻⁵ bits of the model's for a likely symbol.
        let (f, log2) = frequencies(&[2.0, 0.5, -1.0], 0);
        let q = (f64::from(f[0]) / (1u64 << PRECISION) as f64).log2();
        assert!((q - log2[0]).abs() < 1e-5, "{q} vs {}", log2[0]);
    }
}
