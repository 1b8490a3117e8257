//! Tokenizers: byte-level (256 tokens, any text) and character-level (the characters of a
//! corpus, sorted, as nanoGPT's shakespeare_char). Both serialise, so a checkpoint carries its
//! vocabulary.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why text could not be encoded.
#[derive(Debug, Error, PartialEq)]
pub enum TokenizerError {
    /// A character the vocabulary does not have.
    #[error("character {0:?} (at char {1}) is not in the vocabulary")]
    UnknownChar(char, usize),
}

/// A tokenizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Tokenizer {
    /// UTF-8 bytes.
    Bytes,
    /// One token per character of `chars` (sorted, no duplicates).
    Chars {
        /// The vocabulary.
        chars: Vec<char>,
    },
}

impl Tokenizer {
    /// A character vocabulary of every character in `corpus`.
    pub fn chars_of(corpus: &str) -> Self {
        let mut chars: Vec<char> = corpus.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Tokenizer::Chars { chars }
    }

    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        match self {
            Tokenizer::Bytes => 256,
            Tokenizer::Chars { chars } => chars.len(),
        }
    }

    /// Text to tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        match self {
            Tokenizer::Bytes => Ok(text.bytes().map(u32::from).collect()),
            Tokenizer::Chars { chars } => text
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    chars
                        .binary_search(&c)
                        .map(|t| t as u32)
                        .map_err(|_| TokenizerError::UnknownChar(c, i))
                })
                .collect(),
        }
    }

    /// Tokens to text (invalid UTF-8 from byte tokens is replaced by U+FFFD).
    pub fn decode(&self, tokens: &[u32]) -> String {
        match self {
            Tokenizer::Bytes => {
                let bytes: Vec<u8> = tokens.iter().map(|&t| t as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Tokenizer::Chars { chars } => tokens
                .iter()
                .map(|&t| chars.get(t as usize).copied().unwrap_or('\u{FFFD}'))
                .collect(),
        }
    }

    /// Characters (or bytes) per token of `text`, for bits-per-character from bits-per-token.
    pub fn chars_per_token(&self, text: &str) -> f64 {
        match self {
            Tokenizer::Bytes => text.chars().count() as f64 / text.len().max(1) as f64,
            Tokenizer::Chars { .. } => 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_errors() {
        let text = "To be, or not to be: ¿qué?";
        let bytes = Tokenizer::Bytes;
        assert_eq!(bytes.decode(&bytes.encode(text).unwrap()), text);
        assert_eq!(bytes.encode("é").unwrap(), vec![0xC3, 0xA9]);
        let chars = Tokenizer::chars_of(text);
        assert_eq!(chars.vocab(), 15);
        assert_eq!(chars.decode(&chars.encode(text).unwrap()), text);
        assert_eq!(chars.encode(" ").unwrap(), vec![0], "sorted: space first");
        assert_eq!(
            chars.encode("tox"),
            Err(TokenizerError::UnknownChar('x', 2))
        );
    }
}
