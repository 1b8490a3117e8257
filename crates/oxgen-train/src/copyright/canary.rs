//! Canaries (Carlini et al., 2019, "The Secret Sharer"): a prefix and a random secret, planted
//! in training text a known number of times, then looked for in the model. The secret's format
//! (each character a digit, a lowercase or an uppercase letter, or itself) defines the space of
//! candidates that exposure ranks the secret among.
//!
//! A canaries file holds one canary per line as JSON: `{"prefix": "...", "secret": "..."}`.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One canary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    /// The text before the secret, the prompt of an extraction attempt.
    pub prefix: String,
    /// The secret.
    pub secret: String,
}

impl Canary {
    /// A random string of the secret's format, drawn from `rng`: each digit replaced by a
    /// random digit, each ASCII letter by a random letter of its case, anything else kept.
    pub fn candidate(&self, rng: &mut impl Rng) -> String {
        self.secret
            .chars()
            .map(|c| match c {
                '0'..='9' => (b'0' + rng.random_range(0..10u8)) as char,
                'a'..='z' => (b'a' + rng.random_range(0..26u8)) as char,
                'A'..='Z' => (b'A' + rng.random_range(0..26u8)) as char,
                c => c,
            })
            .collect()
    }

    /// log₂ of the number of strings of the secret's format.
    pub fn format_bits(&self) -> f64 {
        self.secret
            .chars()
            .map(|c| match c {
                '0'..='9' => 10f64.log2(),
                'a'..='z' | 'A'..='Z' => 26f64.log2(),
                _ => 0.0,
            })
            .sum()
    }
}

/// Reads a canaries file (JSON Lines; blank lines skipped). Errors on a missing file, a line
/// that is not a canary, an empty secret and an empty file.
pub fn read_canaries(path: &Path) -> Result<Vec<Canary>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("canaries file", path, e))?;
    let parse = |reason: String| Error::Parse {
        path: path.to_path_buf(),
        reason,
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let c: Canary = serde_json::from_str(line).map_err(|e| {
            parse(format!(
                "line {}: expected {{\"prefix\": ..., \"secret\": ...}}: {e}",
                i + 1
            ))
        })?;
        if c.secret.is_empty() {
            return Err(parse(format!("line {}: the secret is empty", i + 1)));
        }
        out.push(c);
    }
    if out.is_empty() {
        return Err(parse("no canaries in the file".into()));
    }
    Ok(out)
}

/// The canaries as a canaries file's text.
pub fn canaries_text(canaries: &[Canary]) -> String {
    canaries
        .iter()
        .map(|c| serde_json::to_string(c).expect("serialises") + "\n")
        .collect()
}

/// `text` with `k` canaries planted `repeats` times each, and the canaries. Each canary is
/// `"\nthe pin of account NNN is "` then six random digits, and each copy is its own paragraph
/// (and line), inserted between two paragraphs of the first `within` share of the text, so that
/// a validation split at the end stays clean. Errors when the text has no paragraph break there.
pub fn plant(
    text: &str,
    k: usize,
    repeats: usize,
    within: f64,
    seed: u64,
) -> Result<(String, Vec<Canary>)> {
    let limit = (text.len() as f64 * within.clamp(0.0, 1.0)) as usize;
    // Insertion points: between the two newlines of a blank line.
    let breaks: Vec<usize> = text
        .match_indices("\n\n")
        .map(|(i, _)| i + 1)
        .filter(|&i| i <= limit)
        .collect();
    if breaks.is_empty() && k * repeats > 0 {
        return Err(Error::Config(format!(
            "no paragraph break (a blank line) in the first {:.0}% of the text to plant canaries at",
            100.0 * within
        )));
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0xca7a_7135);
    let mut accounts: Vec<u32> = Vec::new();
    let mut canaries = Vec::with_capacity(k);
    while canaries.len() < k {
        let account = rng.random_range(100..1000u32);
        if accounts.contains(&account) {
            continue;
        }
        accounts.push(account);
        let secret: String = (0..6)
            .map(|_| (b'0' + rng.random_range(0..10u8)) as char)
            .collect();
        canaries.push(Canary {
            prefix: format!("\nthe pin of account {account} is "),
            secret,
        });
    }
    let mut inserts: Vec<(usize, usize)> = (0..k)
        .flat_map(|c| (0..repeats).map(move |r| (c, r)))
        .map(|(c, _)| (breaks[rng.random_range(0..breaks.len())], c))
        .collect();
    inserts.sort();
    let mut out = String::with_capacity(text.len() + inserts.len() * 40);
    let mut at = 0;
    for (pos, c) in inserts {
        out.push_str(&text[at..pos]);
        out.push_str(&canaries[c].prefix);
        out.push_str(&canaries[c].secret);
        out.push('\n');
        at = pos;
    }
    out.push_str(&text[at..]);
    Ok((out, canaries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planting_puts_every_copy_in_its_own_paragraph_early_in_the_text() {
        let text: String = (0..200)
            .map(|i| format!("Speaker {i}:\nwords here\n\n"))
            .collect();
        let (planted, canaries) = plant(&text, 3, 20, 0.8, 7).unwrap();
        assert_eq!(canaries.len(), 3);
        for c in &canaries {
            let line = format!("{}{}\n", c.prefix, c.secret);
            assert_eq!(planted.matches(&line).count(), 20, "{line:?}");
            // Each copy sits between blank lines: a paragraph of its own.
            // (Counted with overlaps: two copies may share the blank line between them.)
            let framed = format!("\n{line}\n");
            let n = (0..planted.len())
                .filter(|&i| planted[i..].starts_with(&framed))
                .count();
            assert_eq!(n, 20);
            assert_eq!(c.secret.len(), 6);
            assert!(c.secret.chars().all(|ch| ch.is_ascii_digit()));
        }
        // Removing the copies gives the text back; none falls in the last 20%.
        let mut back = planted.clone();
        for c in &canaries {
            back = back.replace(&format!("{}{}\n", c.prefix, c.secret), "");
        }
        assert_eq!(back, text);
        let tail = &planted[planted.len() - text.len() / 5..];
        assert!(!tail.contains("the pin of account"));
        assert_eq!(plant(&text, 3, 20, 0.8, 7).unwrap().1, canaries);
        assert!(plant("no breaks here", 1, 2, 0.8, 0).is_err());
    }

    #[test]
    fn candidates_keep_the_format() {
        let c = Canary {
            prefix: "p ".into(),
            secret: "ab-12Z".into(),
        };
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..50 {
            let s = c.candidate(&mut rng);
            let b = s.as_bytes();
            assert!(b[0].is_ascii_lowercase() && b[1].is_ascii_lowercase() && b[2] == b'-');
            assert!(b[3].is_ascii_digit() && b[4].is_ascii_digit() && b[5].is_ascii_uppercase());
        }
        assert!((c.format_bits() - (3.0 * 26f64.log2() + 2.0 * 10f64.log2())).abs() < 1e-12);
    }

    #[test]
    fn canary_files_round_trip_and_bad_ones_are_refused() {
        let dir = std::env::temp_dir().join(format!("oxgen-canary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cs = vec![Canary {
            prefix: "\nthe pin of account 1 is ".into(),
            secret: "123456".into(),
        }];
        let p = dir.join("c.jsonl");
        std::fs::write(&p, canaries_text(&cs)).unwrap();
        assert_eq!(read_canaries(&p).unwrap(), cs);
        std::fs::write(&p, "prefix\tsecret\n").unwrap();
        assert!(matches!(read_canaries(&p), Err(Error::Parse { .. })));
        std::fs::write(&p, "{\"prefix\": \"a\", \"secret\": \"\"}\n").unwrap();
        assert!(matches!(read_canaries(&p), Err(Error::Parse { .. })));
        assert!(matches!(
            read_canaries(&dir.join("missing.jsonl")),
            Err(Error::NotFound { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
