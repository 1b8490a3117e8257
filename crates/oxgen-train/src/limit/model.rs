//! A trained autoregressive run (a character model whose lines are strings of the target) as a
//! generator of the game: each output is a line sampled after a newline with nucleus sampling,
//! optionally constrained to a regular hypothesis by masking every token that would leave the
//! live states of its DFA (and the newline wherever the prefix is not a member).

use burn::tensor::{Device, Int, Tensor, TensorData};
use oxgen_models::ar::decode::{DecodeOptions, pick};
use oxgen_models::ar::tokenizer::Tokenizer;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::language::{Kind, Language, RegexLanguage};
use crate::ar::{ArRun, Codec};
use crate::{Error, Result};

/// Lines of a trained character model.
pub struct ModelLines<'a> {
    run: &'a ArRun,
    device: Device,
    rng: StdRng,
    options: DecodeOptions,
    newline: u32,
    /// Each token's character.
    chars: Vec<char>,
    max_len: usize,
}

fn regex_of(l: Option<&Language>) -> Option<&RegexLanguage> {
    match l.map(|l| &l.kind) {
        Some(Kind::Regex(r)) => Some(r),
        _ => None,
    }
}

impl<'a> ModelLines<'a> {
    /// Lines of `run` (a character-tokenised text run with a newline in its vocabulary),
    /// nucleus `top_p`, at most `max_len` characters each.
    pub fn new(
        run: &'a ArRun,
        device: &Device,
        seed: u64,
        top_p: f32,
        max_len: usize,
    ) -> Result<Self> {
        let chars = match &run.codec {
            Codec::Text(Tokenizer::Chars { chars }) => chars.clone(),
            _ => {
                return Err(Error::Config(
                    "the game's model generator needs a character-level text run (oxgen train ar --data FILE)"
                        .into(),
                ));
            }
        };
        let newline = chars.binary_search(&'\n').map_err(|_| {
            Error::Config("the run's text has no newline: its lines cannot be strings".into())
        })? as u32;
        Ok(ModelLines {
            run,
            device: device.clone(),
            rng: StdRng::seed_from_u64(seed),
            options: DecodeOptions {
                top_p,
                ..DecodeOptions::default()
            },
            newline,
            chars,
            max_len: max_len.min(run.config.model.context.saturating_sub(2)),
        })
    }

    /// Logits after each prefix of `tokens`.
    fn logits(&self, tokens: &[u32]) -> Vec<Vec<f32>> {
        let n = tokens.len();
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(tokens.iter().map(|&t| t as i64).collect(), [1, n]),
            &self.device,
        );
        let v = self.chars.len();
        let flat: Vec<f32> = self
            .run
            .model
            .forward(ids)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 logits");
        flat.chunks(v).map(<[f32]>::to_vec).collect()
    }

    /// Sets to −∞ the logits of tokens the constraint forbids after DFA state `state`.
    fn mask(&self, row: &mut [f32], re: &RegexLanguage, state: usize) {
        for (t, l) in row.iter_mut().enumerate() {
            let ok = if t as u32 == self.newline {
                re.accepts(state)
            } else {
                re.step(state, self.chars[t]).is_some()
            };
            if !ok {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    /// One line, constrained to `constraint` when it is a regular expression; `None` when the
    /// model runs past `max_len` or the constraint leaves no token.
    pub fn line(&mut self, constraint: Option<&Language>) -> Option<String> {
        let re = regex_of(constraint);
        let mut tokens = vec![self.newline];
        let mut state = 0;
        for _ in 0..=self.max_len {
            let mut row = self.logits(&tokens).pop()?;
            if let Some(re) = re {
                self.mask(&mut row, re, state);
                if row.iter().all(|l| *l == f32::NEG_INFINITY) {
                    return None;
                }
            }
            let t = pick(&mut row, &tokens, &self.options, &mut self.rng);
            if t == self.newline {
                return Some(
                    tokens[1..]
                        .iter()
                        .map(|&t| self.chars[t as usize])
                        .collect(),
                );
            }
            if let Some(re) = re {
                state = re.step(state, self.chars[t as usize])?;
            }
            tokens.push(t);
        }
        None
    }

    /// Whether the sampler gives `s` positive probability: every token of `s` and the closing
    /// newline lies in the top-p nucleus of its (masked) distribution.
    pub fn in_support(&self, s: &str, constraint: Option<&Language>) -> bool {
        let re = regex_of(constraint);
        let mut tokens = vec![self.newline];
        for c in s.chars() {
            match self.chars.binary_search(&c) {
                Ok(t) => tokens.push(t as u32),
                Err(_) => return false,
            }
        }
        if tokens.len() > self.max_len + 1 {
            return false;
        }
        tokens.push(self.newline);
        let rows = self.logits(&tokens[..tokens.len() - 1]);
        let mut state = 0;
        for (i, mut row) in rows.into_iter().enumerate() {
            let next = tokens[i + 1];
            if let Some(re) = re {
                self.mask(&mut row, re, state);
                if next != self.newline {
                    match re.step(state, self.chars[next as usize]) {
                        Some(s2) => state = s2,
                        None => return false,
                    }
                }
            }
            if !in_nucleus(&row, next as usize, self.options.top_p) {
                return false;
            }
        }
        true
    }
}

/// Whether token `t` is in the smallest set of most likely tokens whose probability reaches
/// `p` (ties broken by index, as [`pick`] sorts them).
fn in_nucleus(logits: &[f32], t: usize, p: f32) -> bool {
    if logits[t] == f32::NEG_INFINITY {
        return false;
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let probs: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let z: f64 = probs.iter().sum();
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut mass = 0.0;
    for &i in &order {
        if i == t {
            return true;
        }
        mass += probs[i] / z;
        if mass >= f64::from(p) {
            return false;
        }
    }
    false
}
