//! The KGW soft watermark (Kirchenbauer et al., 2023, "A Watermark for Large Language Models")
//! and its detector.
//!
//! Before each token is chosen, a keyed hash of the previous token(s) splits the vocabulary: the
//! ⌊γ·|V|⌋ tokens with the smallest keyed scores are "green", and δ is added to their logits.
//! The detector recomputes the green lists from the text alone (and the key), counts the green
//! tokens |s|_G among T scored ones, and tests against the lists' share γ (⌊γ·|V|⌋ / |V|
//! exactly, as small vocabularies round it):
//!
//! ```text
//! z = (|s|_G − γT) / √(T γ (1 − γ)),    p = P(N(0, 1) ≥ z)
//! ```
//!
//! A (context, token) pair that was scored before is skipped, as the reference implementation
//! (jwkirchenbauer/lm-watermarking) does, so repeated text cannot inflate z. Three seeding
//! schemes: left-hash (h = 1, the previous token), min-hash over h = 4 (the smallest keyed
//! hash of the last four tokens, robust to edits that leave one of them in place), and
//! self-hash (the same over the last three tokens and the candidate itself). The hash is
//! SipHash-1-3 keyed with 128 bits, on the host, so every device computes the same lists.

use std::fmt;
use std::hash::Hasher;

use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;

mod null;
mod tournament;
pub use null::{ExactNull, binomial_tail};
pub use tournament::{Tournament, TournamentScore};

/// A 128-bit watermark key. Its `Debug` form does not show it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WatermarkKey([u64; 2]);

impl fmt::Debug for WatermarkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WatermarkKey(<secret>)")
    }
}

impl WatermarkKey {
    /// The key written as 32 hexadecimal digits (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "a watermark key is 32 hexadecimal digits (128 bits); this one has {} characters{}",
                t.len(),
                if t.bytes().all(|b| b.is_ascii_hexdigit()) {
                    ""
                } else {
                    ", not all of them hexadecimal"
                }
            ));
        }
        let hi = u64::from_str_radix(&t[..16], 16).map_err(|e| e.to_string())?;
        let lo = u64::from_str_radix(&t[16..], 16).map_err(|e| e.to_string())?;
        Ok(Self([hi, lo]))
    }

    /// The `i`-th key derived from this one (a keyed hash of `i`): independent keys for
    /// measuring the detector's null distribution over keys.
    pub fn derive(&self, i: u64) -> Self {
        Self([self.prf(3, i, 0), self.prf(3, i, 1)])
    }

    /// A seed for a keyed random stream of domain `domain` (Tree-Ring's pattern, say): the
    /// key's own words never leave this type.
    pub fn stream_seed(&self, domain: u64) -> u64 {
        self.prf(6, domain, 0)
    }

    /// A key from two words (tests and programs that draw their own).
    pub fn from_words(hi: u64, lo: u64) -> Self {
        Self([hi, lo])
    }

    fn prf(&self, domain: u64, a: u64, b: u64) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.0[0], self.0[1]);
        h.write_u64(domain);
        h.write_u64(a);
        h.write_u64(b);
        h.finish()
    }
}

/// How the green list is seeded from the text before a token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Seeding {
    /// The previous token (h = 1).
    LeftHash,
    /// The smallest keyed hash of the previous four tokens (h = 4).
    MinHash,
    /// The smallest keyed hash of the previous three tokens and the candidate itself (h = 4,
    /// anchored on the token: Kirchenbauer et al.'s "self-hash", the reference's default): each
    /// candidate has its own list.
    SelfHash,
    /// A keyed hash of the previous four tokens, in order (h = 4): every distinct four-token
    /// context has its own list, so fewer (context, token) pairs repeat and more tokens are
    /// scored, at the price of robustness (an edit changes the lists of the next four tokens).
    /// The default: on a 65-character vocabulary it is the scheme that detects 200 characters.
    #[default]
    LeftHash4,
}

impl Seeding {
    /// Tokens of context the seed reads.
    pub fn width(self) -> usize {
        match self {
            Seeding::LeftHash => 1,
            Seeding::MinHash => 4,
            Seeding::SelfHash => 3,
            Seeding::LeftHash4 => 4,
        }
    }
}

/// A KGW watermark: key, green share γ, logit bias δ, and seeding.
#[derive(Clone, Debug, PartialEq)]
pub struct Kgw {
    /// The key.
    pub key: WatermarkKey,
    /// Share of the vocabulary that is green, in (0, 1).
    pub gamma: f64,
    /// Added to the green tokens' logits.
    pub delta: f32,
    /// The seeding scheme.
    pub seeding: Seeding,
}

/// One scored token.
struct Scored {
    /// Its position in the text.
    at: usize,
    /// The seed of the list it is judged by.
    seed: u64,
    /// Whether it is in the vocabulary (a token outside is never green).
    in_vocab: bool,
    /// Whether it is green.
    green: bool,
}

/// A detector's verdict on one text.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Score {
    /// Tokens scored (after the first h, without repeated (context, token) pairs).
    pub tokens: usize,
    /// Of them, green.
    pub green: usize,
    /// The z statistic (0 when nothing was scored).
    pub z: f64,
    /// Its one-sided p-value under the normal approximation.
    pub p: f64,
    /// The exact one-sided p-value P(X ≥ green) over keys ([`ExactNull`]): what a text the
    /// key did not make scores with probability at most p, whatever the text.
    pub p_exact: f64,
    /// P(X = green) under the same null (for randomised p-values).
    #[serde(skip)]
    pub p_exact_point: f64,
}

impl Score {
    /// The score of `green` of `tokens` against a list share `share`, with its exact null.
    pub fn new(green: usize, tokens: usize, share: f64, null: &ExactNull) -> Self {
        let z = z_score(green, tokens, share);
        let (ge, eq) = null.tail(green);
        Self {
            tokens,
            green,
            z,
            p: p_value(z),
            p_exact: ge,
            p_exact_point: eq,
        }
    }
}

/// z = (green − γT) / √(T γ (1 − γ)); 0 when T = 0.
pub fn z_score(green: usize, tokens: usize, gamma: f64) -> f64 {
    if tokens == 0 {
        return 0.0;
    }
    let t = tokens as f64;
    (green as f64 - gamma * t) / (t * gamma * (1.0 - gamma)).sqrt()
}

/// P(N(0, 1) ≥ z).
pub fn p_value(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

impl Kgw {
    /// Refuses γ outside (0, 1) or a non-finite δ.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.gamma > 0.0 && self.gamma < 1.0) {
            return Err(format!("γ must be in (0, 1), got {}", self.gamma));
        }
        if !self.delta.is_finite() {
            return Err(format!("δ must be finite, got {}", self.delta));
        }
        Ok(())
    }

    /// The seed of the green list of the token after `history`, or `None` when the history is
    /// shorter than the scheme's h (that token is neither biased nor scored).
    pub fn context(&self, history: &[u32]) -> Option<u64> {
        let h = self.seeding.width();
        let last = history.get(history.len().checked_sub(h)?..)?;
        Some(match self.seeding {
            Seeding::LeftHash => self.key.prf(0, u64::from(last[0]), 0),
            Seeding::LeftHash4 => last
                .iter()
                .fold(0u64, |acc, &t| self.key.prf(4, acc, u64::from(t))),
            Seeding::MinHash | Seeding::SelfHash => last
                .iter()
                .map(|&t| self.key.prf(1, u64::from(t), 0))
                .min()
                .expect("h ≥ 1"),
        })
    }

    /// The seed of the list `token` is judged by after `history` (with self-hash, the
    /// token's own hash takes part).
    fn seed_for(&self, history: &[u32], token: u32) -> Option<u64> {
        let ctx = self.context(history)?;
        Some(match self.seeding {
            Seeding::SelfHash => ctx.min(self.key.prf(1, u64::from(token), 0)),
            _ => ctx,
        })
    }

    /// The green list after context seed `ctx`: `vocab` flags, exactly ⌊γ·vocab⌋ set (at least
    /// one).
    pub fn green_list(&self, ctx: u64, vocab: usize) -> Vec<bool> {
        let n = self.list_size(vocab);
        let mut order: Vec<(u64, usize)> = (0..vocab)
            .map(|t| (self.key.prf(2, ctx, t as u64), t))
            .collect();
        order.sort_unstable();
        let mut green = vec![false; vocab];
        for &(_, t) in &order[..n.min(vocab)] {
            green[t] = true;
        }
        green
    }

    /// Green tokens per list: ⌊γ·vocab⌋, at least one.
    pub fn list_size(&self, vocab: usize) -> usize {
        ((self.gamma * vocab as f64).floor() as usize).clamp(1, vocab.max(1))
    }

    /// Adds δ to the logits of the green tokens after `history`.
    pub fn bias(&self, logits: &mut [f32], history: &[u32]) {
        if self.seeding == Seeding::SelfHash {
            let vocab = logits.len();
            for (v, l) in logits.iter_mut().enumerate() {
                if let Some(seed) = self.seed_for(history, v as u32)
                    && self.green_list(seed, vocab)[v]
                {
                    *l += self.delta;
                }
            }
            return;
        }
        if let Some(ctx) = self.context(history) {
            let green = self.green_list(ctx, logits.len());
            for (l, g) in logits.iter_mut().zip(green) {
                if g {
                    *l += self.delta;
                }
            }
        }
    }

    /// Scores `tokens` (a text in a vocabulary of `vocab`): every token after the first h, but
    /// each (context, token) pair once.
    pub fn detect(&self, tokens: &[u32], vocab: usize) -> Score {
        let scored = self.scored(tokens, vocab);
        let green = scored.iter().filter(|s| s.green).count();
        let null = self.null(&scored, vocab);
        Score::new(green, scored.len(), self.share(vocab), &null)
    }

    /// The scored tokens of `tokens`: every token after the first h, each (seed, token) pair
    /// once.
    fn scored(&self, tokens: &[u32], vocab: usize) -> Vec<Scored> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for i in self.seeding.width()..tokens.len() {
            let seed = self.seed_for(&tokens[..i], tokens[i]).expect("i ≥ h");
            if !seen.insert((seed, tokens[i])) {
                continue;
            }
            let t = tokens[i] as usize;
            out.push(Scored {
                at: i,
                seed,
                in_vocab: t < vocab,
                green: t < vocab && self.green_list(seed, vocab)[t],
            });
        }
        out
    }

    /// The exact null of the green count of `scored` over keys: per seed, the distinct tokens
    /// judged by its list are a hypergeometric draw from the vocabulary.
    fn null(&self, scored: &[Scored], vocab: usize) -> ExactNull {
        let mut groups = std::collections::HashMap::new();
        for s in scored.iter().filter(|s| s.in_vocab) {
            *groups.entry(s.seed).or_insert(0usize) += 1;
        }
        let mut sizes: Vec<usize> = groups.into_values().collect();
        sizes.sort_unstable();
        ExactNull::new(&sizes, vocab, self.list_size(vocab))
    }

    /// The lists' real share of the vocabulary: ⌊γ·|V|⌋ / |V|.
    pub fn share(&self, vocab: usize) -> f64 {
        self.list_size(vocab) as f64 / vocab.max(1) as f64
    }
}

impl Kgw {
    /// WinMax (Kirchenbauer et al., 2024, "On the Reliability of Watermarks for Large Language
    /// Models"): the largest z over every span of at least `min_window` scored tokens, to find
    /// a watermarked passage inside other text. Returns the span's score and its token range,
    /// or `None` when fewer than `min_window` tokens are scored. Its p-value is the normal
    /// tail of the best z, uncorrected for the many spans tried: small p-values are not
    /// calibrated false-positive rates here.
    pub fn detect_windowed(
        &self,
        tokens: &[u32],
        vocab: usize,
        min_window: usize,
    ) -> Option<(Score, std::ops::Range<usize>)> {
        let scored = self.scored(tokens, vocab);
        let n = scored.len();
        let min_window = min_window.max(1);
        if n < min_window {
            return None;
        }
        let mut prefix = vec![0usize; n + 1];
        for (k, s) in scored.iter().enumerate() {
            prefix[k + 1] = prefix[k] + usize::from(s.green);
        }
        let share = self.list_size(vocab) as f64 / vocab.max(1) as f64;
        // Every span for texts of up to 2,000 scored tokens; longer ones step both ends.
        let step = n.div_ceil(2000).max(1);
        let mut best: Option<(f64, usize, usize)> = None;
        for a in (0..=n - min_window).step_by(step) {
            for b in (a + min_window..=n).step_by(step) {
                let z = z_score(prefix[b] - prefix[a], b - a, share);
                if best.is_none_or(|(bz, _, _)| z > bz) {
                    best = Some((z, a, b));
                }
            }
        }
        let (_, a, b) = best?;
        let null = self.null(&scored[a..b], vocab);
        let score = Score::new(prefix[b] - prefix[a], b - a, share, &null);
        Some((score, scored[a].at..scored[b - 1].at + 1))
    }
}

/// Index drawn from unnormalised `weights` with a uniform `u` in [0, 1) (tests' samplers).
#[cfg(test)]
pub(crate) fn draw(weights: &[f64], u: f64) -> usize {
    let mut u = u * weights.iter().sum::<f64>();
    for (i, x) in weights.iter().enumerate() {
        if u < *x {
            return i;
        }
        u -= x;
    }
    weights.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn kgw(seeding: Seeding) -> Kgw {
        Kgw {
            key: WatermarkKey::from_words(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
            gamma: 0.25,
            delta: 2.0,
            seeding,
        }
    }

    /// The issue's hand value: γ = 0.25, T = 200, 75 green: z = 25 / √37.5 = 4.0824829; and the
    /// normal tail at 4 is 3.1671242e-5 (Abramowitz & Stegun, table 26.1).
    #[test]
    fn z_and_p_by_hand() {
        assert!((z_score(75, 200, 0.25) - 4.082_482_9).abs() < 1e-6);
        assert_eq!(z_score(0, 0, 0.25), 0.0);
        assert!((p_value(4.0) - 3.167_124e-5).abs() < 1e-10);
        assert!((p_value(0.0) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn keys_parse_and_do_not_print() {
        let k = WatermarkKey::parse(" 0123456789abcdefFEDCBA9876543210\n").unwrap();
        assert_eq!(
            k,
            WatermarkKey::from_words(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210)
        );
        assert!(!format!("{k:?}").contains("0123"));
        assert!(
            WatermarkKey::parse("0123")
                .unwrap_err()
                .contains("32 hexadecimal")
        );
        assert!(
            WatermarkKey::parse(&"g".repeat(32))
                .unwrap_err()
                .contains("not all")
        );
    }

    /// Exactly ⌊γV⌋ green tokens, a fixed list for a fixed key and context (these values are
    /// the host's integer hash: the same on every device), another for another key.
    #[test]
    fn green_lists_are_fixed_and_sized() {
        let w = kgw(Seeding::LeftHash);
        let g = w.green_list(w.context(&[7]).unwrap(), 65);
        assert_eq!(g.iter().filter(|&&x| x).count(), 16);
        assert_eq!(g, w.green_list(w.context(&[7]).unwrap(), 65));
        let other = Kgw {
            key: WatermarkKey::from_words(1, 2),
            ..w.clone()
        };
        assert_ne!(g, other.green_list(other.context(&[7]).unwrap(), 65));
        assert!(kgw(Seeding::MinHash).context(&[1, 2, 3]).is_none());
        assert_eq!(
            kgw(Seeding::MinHash).context(&[9, 1, 2, 3]),
            kgw(Seeding::MinHash).context(&[5, 3, 2, 1])
        );
    }

    /// A watermarked passage of 150 tokens between 300 random ones on each side: WinMax finds a
    /// span that overlaps it with z > 5, where the whole text's z is lower.
    #[test]
    fn winmax_finds_a_watermarked_passage() {
        let w = kgw(Seeding::LeftHash);
        let vocab = 65usize;
        let mut rng = StdRng::seed_from_u64(9);
        let mut text: Vec<u32> = (0..300)
            .map(|_| rng.random_range(0..vocab as u32))
            .collect();
        for _ in 0..150 {
            let mut logits = vec![0.0f32; vocab];
            w.bias(&mut logits, &text);
            let weights: Vec<f64> = logits.iter().map(|&l| f64::from(l).exp()).collect();
            let mut u = rng.random::<f64>() * weights.iter().sum::<f64>();
            let pick = weights
                .iter()
                .position(|&x| {
                    let hit = u < x;
                    u -= x;
                    hit
                })
                .unwrap_or(vocab - 1);
            text.push(pick as u32);
        }
        text.extend((0..300).map(|_| rng.random_range(0..vocab as u32)));
        let whole = w.detect(&text, vocab);
        let (span, range) = w.detect_windowed(&text, vocab, 25).unwrap();
        assert!(span.z > 5.0 && span.z > whole.z, "{span:?} vs {whole:?}");
        assert!(range.start < 450 && range.end > 300, "{range:?}");
        assert!(w.detect_windowed(&text[..10], vocab, 25).is_none());
    }

    /// Sampling from flat logits with the watermark gives a large z and, with left-hash, a
    /// green share near γ'e^δ / (γ'e^δ + 1 − γ') = 0.707 (γ' = 16/65, the list's real share); the same text under another key, and
    /// unwatermarked text, score near 0; a text repeating one pair is scored once.
    #[test]
    fn watermarked_text_is_detected_and_other_text_is_not() {
        for seeding in [
            Seeding::LeftHash,
            Seeding::LeftHash4,
            Seeding::MinHash,
            Seeding::SelfHash,
        ] {
            let w = kgw(seeding);
            let mut rng = StdRng::seed_from_u64(3);
            let (vocab, n) = (65usize, 400usize);
            let mut text: Vec<u32> = vec![1, 2, 3, 4];
            let mut plain = text.clone();
            for _ in 0..n {
                let mut logits = vec![0.0f32; vocab];
                w.bias(&mut logits, &text);
                let weights: Vec<f64> = logits.iter().map(|&l| f64::from(l).exp()).collect();
                text.push(draw(&weights, rng.random::<f64>()) as u32);
                plain.push(rng.random_range(0..vocab as u32));
            }
            let s = w.detect(&text, vocab);
            assert!(
                s.z > 8.0 && s.p < 1e-15 && s.p_exact < 1e-12,
                "{seeding:?}: {s:?}"
            );
            // With min-hash a context lasts several tokens, and the repeats the bias causes are
            // dropped, so fewer green pairs stay; left-hash keeps near the formula.
            let share = s.green as f64 / s.tokens as f64;
            if matches!(seeding, Seeding::LeftHash | Seeding::LeftHash4) {
                assert!((share - 0.707).abs() < 0.06, "{seeding:?}: {share}");
            }
            let wrong = Kgw {
                key: WatermarkKey::from_words(5, 6),
                ..w.clone()
            };
            let (other, plain) = (wrong.detect(&text, vocab), w.detect(&plain, vocab));
            assert!(other.z.abs() < 3.5 && other.p_exact > 1e-3, "{other:?}");
            assert!(plain.z.abs() < 3.5 && plain.p_exact > 1e-3, "{plain:?}");
            let repeated = [7u32, 8].repeat(200);
            assert_eq!(w.detect(&repeated, vocab).tokens, 2);
        }
    }
}
