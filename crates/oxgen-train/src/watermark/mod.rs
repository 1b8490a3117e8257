//! Watermark keys from files, and KGW detection on text with a run's tokenizer (see
//! `oxgen_models::ar::watermark` for the scheme and the statistics).

pub mod attack;
pub mod eval;

use std::path::Path;

use oxgen_models::ar::Tokenizer;
use oxgen_models::ar::watermark::{Kgw, Score, WatermarkKey};

use crate::compress::ar::{Unit, units};
use crate::{Error, Result};

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

/// Scores `text` with `kgw` under `tokenizer`. A text with no token to score (no more than the
/// seeding's h tokens) is an error, not a z of 0. `name` names it in the error.
pub fn detect(kgw: &Kgw, tokenizer: &Tokenizer, text: &[u8], name: &str) -> Result<Score> {
    let tokens = tokens_of(tokenizer, text);
    let h = kgw.seeding.width();
    if tokens.len() <= h {
        return Err(Error::Config(format!(
            "{name}: {} tokens; the detector needs more than the {h} of context the green lists \
             are seeded with",
            tokens.len()
        )));
    }
    Ok(kgw.detect(&tokens, tokenizer.vocab()))
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

        let kgw = Kgw {
            key,
            gamma: 0.25,
            delta: 2.0,
            seeding: Seeding::MinHash,
        };
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
