//! Tournament sampling, the distortion-free watermark of SynthID-Text (Dathathri et al., 2024,
//! "Scalable watermarking for identifying large language model outputs", Nature).
//!
//! Each of m layers gives every token a keyed pseudo-random bit g_l(seed, token), the seed coming
//! from the context as in KGW. Sampling draws 2^m candidates from the model's distribution p and
//! plays a knock-out tournament: in layer l the candidate with the larger g_l wins each pair
//! (a tie goes to either). With two candidates per match the winner's distribution is exact:
//!
//! ```text
//! p_l(x) = p_{l−1}(x) · (1 + g_l(x) − Σ_y p_{l−1}(y) g_l(y))
//! ```
//!
//! so sampling applies the m updates to p and draws once. Averaged over keys, each update leaves
//! p unchanged (E[g] = ½ on both sides): the watermark does not change the distribution of a
//! single token. The detector's score is the sum of the g-values of the scored tokens over all
//! layers; for a text the key did not make, those are m·T independent fair bits, so the sum is
//! Bin(mT, ½) exactly.

use serde::Serialize;

use super::{Kgw, Score, Seeding, WatermarkKey, binomial_tail, p_value, z_score};

/// A tournament-sampling watermark.
#[derive(Clone, Debug, PartialEq)]
pub struct Tournament {
    /// The key.
    pub key: WatermarkKey,
    /// Tournament layers m (SynthID uses 30).
    pub layers: usize,
    /// How the context seeds the g-values (any scheme but self-hash).
    pub seeding: Seeding,
}

/// What a tournament detector found.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TournamentScore {
    /// The score in KGW's terms: `tokens` scored, `green` the sum of their g-values over all
    /// layers (of m·T), z and p against Bin(mT, ½).
    pub score: Score,
    /// The mean g-value (½ without the watermark).
    pub mean_g: f64,
}

impl Tournament {
    /// Refuses no layers, too many, or self-hash seeding.
    pub fn validate(&self) -> Result<(), String> {
        if self.layers == 0 || self.layers > 64 {
            return Err(format!(
                "tournament layers must be in 1..=64, got {}",
                self.layers
            ));
        }
        if self.seeding == Seeding::SelfHash {
            return Err(
                "tournament sampling seeds from the context alone: use left-hash, \
                        left-hash-4 or min-hash"
                    .into(),
            );
        }
        Ok(())
    }

    fn seeder(&self) -> Kgw {
        Kgw {
            key: self.key,
            gamma: 0.5,
            delta: 0.0,
            seeding: self.seeding,
        }
    }

    /// The g-value of `token` in layer `layer` after context seed `seed`.
    pub fn g(&self, seed: u64, token: u32, layer: usize) -> bool {
        self.key
            .prf(5, seed, (u64::from(token) << 8) | layer as u64)
            & 1
            == 1
    }

    /// Plays the tournament on the distribution `probs` over the tokens `tokens` (the ones a
    /// sampler kept, after temperature, top-k and top-p), in place. Leaves `probs` alone when
    /// the context is shorter than the seeding's h.
    pub fn reweight(&self, tokens: &[usize], probs: &mut [f64], history: &[u32]) {
        let Some(seed) = self.seeder().context(history) else {
            return;
        };
        let total: f64 = probs.iter().sum();
        if total <= 0.0 {
            return;
        }
        probs.iter_mut().for_each(|p| *p /= total);
        for layer in 0..self.layers {
            let g: Vec<f64> = tokens
                .iter()
                .map(|&t| f64::from(u8::from(self.g(seed, t as u32, layer))))
                .collect();
            let mass: f64 = probs.iter().zip(&g).map(|(p, g)| p * g).sum();
            for (p, g) in probs.iter_mut().zip(&g) {
                *p *= 1.0 + g - mass;
            }
        }
    }

    /// Scores `tokens`: every token after the first h, each (seed, token) pair once.
    pub fn detect(&self, tokens: &[u32]) -> TournamentScore {
        let seeder = self.seeder();
        let mut seen = std::collections::HashSet::new();
        let (mut scored, mut ones) = (0usize, 0usize);
        for i in self.seeding.width()..tokens.len() {
            let seed = seeder.context(&tokens[..i]).expect("i ≥ h");
            if !seen.insert((seed, tokens[i])) {
                continue;
            }
            scored += 1;
            ones += (0..self.layers)
                .filter(|&l| self.g(seed, tokens[i], l))
                .count();
        }
        let bits = scored * self.layers;
        let z = z_score(ones, bits, 0.5);
        let (ge, eq) = binomial_tail(ones, bits, 0.5);
        TournamentScore {
            score: Score {
                tokens: scored,
                green: ones,
                z,
                p: p_value(z),
                p_exact: if bits == 0 { 1.0 } else { ge },
                p_exact_point: eq,
            },
            mean_g: ones as f64 / bits.max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn tournament(layers: usize, key: u64) -> Tournament {
        Tournament {
            key: WatermarkKey::from_words(key, 77),
            layers,
            seeding: Seeding::LeftHash4,
        }
    }

    /// One layer over two tokens with g = (1, 0) and p = (0.3, 0.7): the winner of two draws is
    /// token 0 unless both draws are token 1, so p' = (1 − 0.7², 0.7²) = (0.51, 0.49); the
    /// update formula gives 0.3 · (1 + 1 − 0.3) = 0.51.
    #[test]
    fn one_layer_is_the_two_candidate_tournament() {
        let t = tournament(1, 1);
        let history = [1u32, 2, 3, 4];
        let seed = t.seeder().context(&history).unwrap();
        // Find two tokens whose layer-0 bits differ.
        let a = (0..100u32).find(|&x| t.g(seed, x, 0)).unwrap();
        let b = (0..100u32).find(|&x| !t.g(seed, x, 0)).unwrap();
        let mut p = vec![0.3, 0.7];
        t.reweight(&[a as usize, b as usize], &mut p, &history);
        assert!(
            (p[0] - 0.51).abs() < 1e-12 && (p[1] - 0.49).abs() < 1e-12,
            "{p:?}"
        );
    }

    /// Averaged over keys the tournament leaves the distribution alone (distortion-free), while
    /// one key moves it; the result is always a distribution.
    #[test]
    fn it_is_unbiased_over_keys() {
        let p0 = [0.5, 0.2, 0.15, 0.1, 0.05];
        let tokens: Vec<usize> = (0..5).collect();
        let keys = 20_000;
        let mut mean = [0.0; 5];
        let mut moved = 0.0f64;
        for k in 0..keys {
            let mut p = p0.to_vec();
            tournament(8, k).reweight(&tokens, &mut p, &[9, 9, 9, 9]);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            for i in 0..5 {
                mean[i] += p[i] / keys as f64;
            }
            moved = moved.max((p[0] - p0[0]).abs());
        }
        for i in 0..5 {
            assert!(
                (mean[i] - p0[i]).abs() < 0.01,
                "{i}: {} vs {}",
                mean[i],
                p0[i]
            );
        }
        assert!(moved > 0.2, "a single key barely moves p: {moved}");
    }

    /// Sampling with the tournament gives a mean g-value well above ½ and a large z; the same
    /// text under another key, and unwatermarked text, score like chance.
    #[test]
    fn tournament_text_is_detected_and_other_text_is_not() {
        let t = tournament(10, 5);
        let vocab = 65usize;
        let mut rng = StdRng::seed_from_u64(2);
        let mut text = vec![1u32, 2, 3, 4];
        let mut plain = text.clone();
        for _ in 0..300 {
            let tokens: Vec<usize> = (0..vocab).collect();
            let mut p = vec![1.0 / vocab as f64; vocab];
            t.reweight(&tokens, &mut p, &text);
            text.push(super::super::draw(&p, rng.random::<f64>()) as u32);
            plain.push(rng.random_range(0..vocab as u32));
        }
        let s = t.detect(&text);
        assert!(
            s.mean_g > 0.6 && s.score.z > 8.0 && s.score.p_exact < 1e-12,
            "{s:?}"
        );
        let other = tournament(10, 6).detect(&text);
        assert!(
            other.score.z.abs() < 3.5 && other.score.p_exact > 1e-3,
            "{other:?}"
        );
        let plain = t.detect(&plain);
        assert!(plain.score.z.abs() < 3.5, "{plain:?}");
        assert_eq!(plain.score.tokens, 300);
        assert!(tournament(0, 1).validate().is_err());
    }
}
