//! Watermark keys from files, and KGW detection on text with a run's tokenizer (see
//! `oxgen_models::ar::watermark` for the scheme and the statistics).

pub mod attack;
pub mod eval;
pub mod images;
pub mod tradeoff;
pub mod treering;

use std::path::Path;

use oxgen_models::ar::watermark::{Kgw, Score, Tournament, WatermarkKey};
use oxgen_models::ar::{DecodeOptions, Tokenizer};

use crate::compress::ar::{Unit, units};
use crate::{Error, Result};

/// A text watermark: KGW's green lists or SynthID's tournament.
#[derive(Clone, Debug, PartialEq)]
pub enum Scheme {
    /// KGW (Kirchenbauer et al., 2023).
    Kgw(Kgw),
    /// Tournament sampling (Dathathri et al., 2024).
    Tournament(Tournament),
}

impl Scheme {
    /// Tokens of context before the first scored one.
    pub fn width(&self) -> usize {
        match self {
            Scheme::Kgw(k) => k.seeding.width(),
            Scheme::Tournament(t) => t.seeding.width(),
        }
    }

    /// Scores `tokens` in a vocabulary of `vocab`.
    pub fn score(&self, tokens: &[u32], vocab: usize) -> Score {
        match self {
            Scheme::Kgw(k) => k.detect(tokens, vocab),
            Scheme::Tournament(t) => t.detect(tokens).score,
        }
    }

    /// `base` with this watermark on.
    pub fn options(&self, base: DecodeOptions) -> DecodeOptions {
        match self {
            Scheme::Kgw(k) => DecodeOptions {
                watermark: Some(k.clone()),
                ..base
            },
            Scheme::Tournament(t) => DecodeOptions {
                tournament: Some(t.clone()),
                ..base
            },
        }
    }

    /// The same scheme under another key.
    pub fn with_key(&self, key: WatermarkKey) -> Self {
        match self {
            Scheme::Kgw(k) => Scheme::Kgw(Kgw { key, ..k.clone() }),
            Scheme::Tournament(t) => Scheme::Tournament(Tournament { key, ..t.clone() }),
        }
    }

    /// The key.
    pub fn key(&self) -> WatermarkKey {
        match self {
            Scheme::Kgw(k) => k.key,
            Scheme::Tournament(t) => t.key,
        }
    }

    /// A short description (no key).
    pub fn describe(&self) -> String {
        match self {
            Scheme::Kgw(k) => format!("KGW γ = {}, δ = {}, {:?}", k.gamma, k.delta, k.seeding),
            Scheme::Tournament(t) => format!("tournament, {} layers, {:?}", t.layers, t.seeding),
        }
    }
}

/// Writes a measurement's `report.json` into the folder `out`.
fn write_report(out: &Path, report: &impl serde::Serialize) -> Result<()> {
    std::fs::write(
        out.join("report.json"),
        serde_json::to_vec_pretty(report).expect("serializes"),
    )
    .map_err(|e| Error::io("report.json", out, e))
}

/// Reads a key file: 32 hexadecimal digits (128 bits), surrounding whitespace allowed.
pub fn read_key(path: &Path) -> Result<WatermarkKey> {
    if !path.exists() {
        return Err(Error::NotFound {
            what: "watermark key file",
            path: path.into(),
        });
    }
    let text = std::fs::read(path).map_err(|e| Error::io("watermark key file", path, e))?;
    let text = String::from_utf8(text).map_err(|_| Error::Parse {
        path: path.into(),
        reason: "a watermark key file is text: 32 hexadecimal digits".into(),
    })?;
    WatermarkKey::parse(&text).map_err(|reason| Error::Parse {
        path: path.into(),
        reason,
    })
}

/// The tokens the detector scores for `text` under `tokenizer`: a character outside a
/// character vocabulary (or a byte that is not UTF-8) becomes a token past the vocabulary,
/// never green (no model could have chosen it).
pub fn tokens_of(tokenizer: &Tokenizer, text: &[u8]) -> Vec<u32> {
    let outside = tokenizer.vocab() as u32;
    units(tokenizer, text)
        .into_iter()
        .map(|u| match u {
            Unit::Token(t) => t,
            _ => outside,
        })
        .collect()
}

/// Scores `text` with `scheme` under `tokenizer`. A text with no token to score (no more than
/// the seeding's h tokens) is an error, not a z of 0. `name` names it in the error.
pub fn detect(scheme: &Scheme, tokenizer: &Tokenizer, text: &[u8], name: &str) -> Result<Score> {
    let tokens = tokens_of(tokenizer, text);
    let h = scheme.width();
    if tokens.len() <= h {
        return Err(Error::Config(format!(
            "{name}: {} tokens; the detector needs more than the {h} of context the green lists \
             are seeded with",
            tokens.len()
        )));
    }
    Ok(scheme.score(&tokens, tokenizer.vocab()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxgen_models::ar::watermark::Seeding;

    #[test]
    fn keys_of_the_wrong_form_and_short_texts_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.key");
        std::fs::write(&good, "0123456789abcdef0123456789ABCDEF\n").unwrap();
        let key = read_key(&good).unwrap();
        for (name, bytes) in [
            ("short.key", &b"0123"[..]),
            ("long.key", &b"0123456789abcdef0123456789abcdef00"[..]),
            ("binary.key", &[0xff, 0xfe, 0x00][..]),
            ("words.key", &b"not a key at all, not a key at al"[..]),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let e = read_key(&p).unwrap_err();
            assert!(matches!(e, Error::Parse { .. }), "{name}: {e}");
        }
        let e = read_key(&dir.path().join("missing.key")).unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");

        let kgw = Scheme::Kgw(Kgw {
            key,
            gamma: 0.25,
            delta: 2.0,
            seeding: Seeding::MinHash,
        });
        let tok = Tokenizer::chars_of("abcdefgh ");
        let e = detect(&kgw, &tok, b"abcd", "t").unwrap_err();
        assert!(
            matches!(e, Error::Config(_)) && e.to_string().contains("4 tokens"),
            "{e}"
        );
        // Characters the vocabulary lacks are scored, never green.
        let s = detect(&kgw, &tok, "ZZZZZZZZZZZZ".as_bytes(), "t").unwrap();
        assert_eq!((s.tokens, s.green), (1, 0));
    }
}
