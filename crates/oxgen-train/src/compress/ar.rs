//! Coding with an autoregressive run: each symbol with the model's next-token distribution
//! ([`super::quantize`]) through constriction's range coder, the model fed the symbols as they
//! are coded, so the decoder, which feeds what it decodes, computes the same distributions.
//!
//! Text is split into up to [`MAX_LANES`] contiguous segments coded side by side, one row of a
//! batch each (the KV cache holds them all; the window policy is decoding's, so text longer
//! than the context is one pass). A segment's first symbol is coded uniformly. With a
//! character model, a character outside the vocabulary (or a byte that is not UTF-8) is an
//! escape symbol of frequency 1 after the model's, then the code point (or the byte) coded
//! uniformly; the model is then fed token 0. Images are coded one row each, after the start
//! token.

use burn::tensor::Device;
use constriction::stream::model::DefaultUniformModel;
use constriction::stream::queue::{DefaultRangeDecoder, DefaultRangeEncoder};
use constriction::stream::{Decode, Encode};
use indicatif::ProgressBar;
use oxgen_models::ar::{Gpt, RowStepper, Tokenizer};

use super::quantize::{categorical, frequencies};
use crate::{Error, Result};

/// Segments of a text coded side by side, at most.
pub const MAX_LANES: usize = 16;
/// Symbols per segment, at least (fewer lanes for short texts).
pub const MIN_LANE: usize = 2048;
/// Images coded in one batch.
const IMAGE_BATCH: usize = 256;

/// A unit of text: a token of the vocabulary, or what the vocabulary lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A token.
    Token(u32),
    /// A character outside a character vocabulary.
    Char(char),
    /// A byte that is not part of valid UTF-8 (character vocabularies only).
    Byte(u8),
}

/// The units of `data` under `tokenizer`.
pub fn units(tokenizer: &Tokenizer, data: &[u8]) -> Vec<Unit> {
    let chars = match tokenizer {
        Tokenizer::Bytes => return data.iter().map(|&b| Unit::Token(u32::from(b))).collect(),
        Tokenizer::Chars { chars } => chars,
    };
    let unit = |c: char| match chars.binary_search(&c) {
        Ok(t) => Unit::Token(t as u32),
        Err(_) => Unit::Char(c),
    };
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.extend(s.chars().map(unit));
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.extend(
                    std::str::from_utf8(good)
                        .expect("valid up to here")
                        .chars()
                        .map(unit),
                );
                let n = e.error_len().unwrap_or(bad.len());
                out.extend(bad[..n].iter().map(|&b| Unit::Byte(b)));
                rest = &bad[n..];
            }
        }
    }
    out
}

/// The bytes of `units` under `tokenizer`.
pub fn bytes_of(tokenizer: &Tokenizer, units: &[Unit]) -> Vec<u8> {
    let mut out = Vec::with_capacity(units.len());
    let mut buf = [0u8; 4];
    for u in units {
        match (u, tokenizer) {
            (Unit::Token(t), Tokenizer::Bytes) => out.push(*t as u8),
            (Unit::Token(t), Tokenizer::Chars { chars }) => {
                out.extend_from_slice(chars[*t as usize].encode_utf8(&mut buf).as_bytes());
            }
            (Unit::Char(c), _) => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
            (Unit::Byte(b), _) => out.push(*b),
        }
    }
    out
}

/// What coding gave.
#[derive(Debug)]
pub struct Coded {
    /// The range coder's words.
    pub words: Vec<u32>,
    /// The model's own code length of the coded symbols, in bits (−log₂ p before
    /// quantisation; escapes and their payloads at their quantised cost).
    pub model_bits: f64,
    /// Symbols coded (units, or pixels).
    pub symbols: usize,
}

fn corrupt(e: impl std::fmt::Debug) -> Error {
    Error::Config(format!("the range coder failed: {e:?}"))
}

/// Where lane `l` of `n` units in `lanes` lanes starts and ends.
fn lane(n: usize, lanes: usize, l: usize) -> std::ops::Range<usize> {
    let per = n.div_ceil(lanes.max(1));
    (l * per).min(n)..((l + 1) * per).min(n)
}

/// Lanes for `n` units.
pub fn lanes_for(n: usize) -> usize {
    n.div_ceil(MIN_LANE).clamp(1, MAX_LANES)
}

/// Codes `units` with `model` (vocabulary `vocab`, a character model when `escape`).
pub fn encode_text(
    model: &Gpt,
    vocab: usize,
    escape: bool,
    units: &[Unit],
    lanes: usize,
    bar: &ProgressBar,
    device: &Device,
) -> Result<Coded> {
    let extra = usize::from(escape);
    let mut enc = DefaultRangeEncoder::new();
    let mut model_bits = 0.0;
    let n = units.len();
    let ranges: Vec<_> = (0..lanes).map(|l| lane(n, lanes, l)).collect();
    let longest = ranges.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut texts: Vec<Vec<u32>> = vec![Vec::with_capacity(longest); lanes];
    let mut stepper = RowStepper::new(model);
    for t in 0..longest {
        let logits = if t == 0 {
            vec![vec![0.0f32; vocab]; lanes]
        } else {
            stepper.next(model, &texts, device)
        };
        for (l, r) in ranges.iter().enumerate() {
            let feed = if t < r.len() {
                let (freqs, log2) = frequencies(&logits[l], extra);
                let m = categorical(&freqs);
                match units[r.start + t] {
                    Unit::Token(s) => {
                        enc.encode_symbol(s as usize, &m).map_err(corrupt)?;
                        model_bits -= log2[s as usize];
                        s
                    }
                    other => {
                        if !escape {
                            return Err(Error::Config(format!(
                                "{other:?} has no token in a byte vocabulary"
                            )));
                        }
                        enc.encode_symbol(vocab, &m).map_err(corrupt)?;
                        model_bits += f64::from(super::quantize::PRECISION);
                        let (flag, value, range) = match other {
                            Unit::Char(c) => (0, c as usize, 0x11_0000),
                            Unit::Byte(b) => (1, b as usize, 256),
                            Unit::Token(_) => unreachable!(),
                        };
                        enc.encode_symbol(flag, DefaultUniformModel::new(2))
                            .map_err(corrupt)?;
                        enc.encode_symbol(value, DefaultUniformModel::new(range))
                            .map_err(corrupt)?;
                        model_bits += 1.0 + (range as f64).log2();
                        0
                    }
                }
            } else {
                0
            };
            texts[l].push(feed);
        }
        bar.inc(ranges.iter().filter(|r| t < r.len()).count() as u64);
    }
    Ok(Coded {
        words: enc.into_compressed().map_err(corrupt)?,
        model_bits,
        symbols: n,
    })
}

/// Decodes `n` units from `words`, as [`encode_text`] coded them.
#[allow(clippy::too_many_arguments)]
pub fn decode_text(
    model: &Gpt,
    vocab: usize,
    escape: bool,
    words: Vec<u32>,
    n: usize,
    lanes: usize,
    bar: &ProgressBar,
    device: &Device,
) -> std::result::Result<Vec<Unit>, String> {
    let extra = usize::from(escape);
    let mut dec = DefaultRangeDecoder::from_compressed(words).map_err(|e| format!("{e:?}"))?;
    let ranges: Vec<_> = (0..lanes).map(|l| lane(n, lanes, l)).collect();
    let longest = ranges.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut out = vec![Unit::Token(0); n];
    let mut texts: Vec<Vec<u32>> = vec![Vec::with_capacity(longest); lanes];
    let mut stepper = RowStepper::new(model);
    let bad = |e: &dyn std::fmt::Debug| format!("the body does not decode ({e:?})");
    for t in 0..longest {
        let logits = if t == 0 {
            vec![vec![0.0f32; vocab]; lanes]
        } else {
            stepper.next(model, &texts, device)
        };
        for (l, r) in ranges.iter().enumerate() {
            let feed = if t < r.len() {
                let (freqs, _) = frequencies(&logits[l], extra);
                let s = dec
                    .decode_symbol(categorical(&freqs))
                    .map_err(|e| bad(&e))?;
                if s < vocab {
                    out[r.start + t] = Unit::Token(s as u32);
                    s as u32
                } else {
                    let flag = dec
                        .decode_symbol(DefaultUniformModel::new(2))
                        .map_err(|e| bad(&e))?;
                    let range = if flag == 0 { 0x11_0000 } else { 256 };
                    let v = dec
                        .decode_symbol(DefaultUniformModel::new(range))
                        .map_err(|e| bad(&e))?;
                    out[r.start + t] = if flag == 0 {
                        Unit::Char(char::from_u32(v as u32).ok_or("an invalid code point")?)
                    } else {
                        Unit::Byte(v as u8)
                    };
                    0
                }
            } else {
                0
            };
            texts[l].push(feed);
        }
        bar.inc(ranges.iter().filter(|r| t < r.len()).count() as u64);
    }
    Ok(out)
}

/// Codes 8×8 images of pixel levels (`[n][64]`, each 0..=16) with the pixel GPT, every image
/// after the start token `start`.
pub fn encode_pixels(
    model: &Gpt,
    images: &[Vec<u32>],
    start: u32,
    bar: &ProgressBar,
    device: &Device,
) -> Result<Coded> {
    let mut enc = DefaultRangeEncoder::new();
    let mut model_bits = 0.0;
    for group in images.chunks(IMAGE_BATCH) {
        let mut texts: Vec<Vec<u32>> = vec![vec![start]; group.len()];
        let mut stepper = RowStepper::new(model);
        for t in 0..64 {
            let logits = stepper.next(model, &texts, device);
            for (i, img) in group.iter().enumerate() {
                let (freqs, log2) = frequencies(&logits[i], 0);
                let s = img[t] as usize;
                enc.encode_symbol(s, categorical(&freqs)).map_err(corrupt)?;
                model_bits -= log2[s];
                texts[i].push(img[t]);
            }
            bar.inc(group.len() as u64);
        }
    }
    Ok(Coded {
        words: enc.into_compressed().map_err(corrupt)?,
        model_bits,
        symbols: images.len() * 64,
    })
}

/// Decodes `n` images, as [`encode_pixels`] coded them.
pub fn decode_pixels(
    model: &Gpt,
    words: Vec<u32>,
    n: usize,
    start: u32,
    bar: &ProgressBar,
    device: &Device,
) -> std::result::Result<Vec<Vec<u32>>, String> {
    let mut dec = DefaultRangeDecoder::from_compressed(words).map_err(|e| format!("{e:?}"))?;
    let mut images = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let b = left.min(IMAGE_BATCH);
        let mut texts: Vec<Vec<u32>> = vec![vec![start]; b];
        let mut stepper = RowStepper::new(model);
        for _ in 0..64 {
            let logits = stepper.next(model, &texts, device);
            for (i, text) in texts.iter_mut().enumerate() {
                let (freqs, _) = frequencies(&logits[i], 0);
                let s = dec
                    .decode_symbol(categorical(&freqs))
                    .map_err(|e| format!("the body does not decode ({e:?})"))?;
                text.push(s as u32);
            }
            bar.inc(b as u64);
        }
        images.extend(texts.into_iter().map(|t| t[1..].to_vec()));
        left -= b;
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_round_trip_any_bytes() {
        let chars = Tokenizer::chars_of("abc é");
        let bytes = Tokenizer::Bytes;
        let cases: [&[u8]; 5] = [
            b"",
            b"a",
            "abc é ünknown ✓".as_bytes(),
            &[0xff, b'a', 0xc3, 0x28, 0xe2, 0x82],
            &[0x80; 3],
        ];
        for data in cases {
            for t in [&chars, &bytes] {
                let u = units(t, data);
                assert_eq!(bytes_of(t, &u), data, "{t:?} {data:?}");
            }
        }
        let u = units(&chars, "aü\u{ff}".as_bytes());
        assert_eq!(u[0], Unit::Token(1)); // " abcé": the space sorts first
        assert_eq!(u[1], Unit::Char('ü'));
        assert_eq!(units(&chars, &[0xff])[0], Unit::Byte(0xff));
    }

    #[test]
    fn lanes_cover_every_unit_once() {
        for n in [0usize, 1, 5, 2048, 2049, 100_000] {
            let k = lanes_for(n);
            let total: usize = (0..k).map(|l| lane(n, k, l).len()).sum();
            assert_eq!(total, n);
            assert!((1..=MAX_LANES).contains(&k));
        }
    }
}
