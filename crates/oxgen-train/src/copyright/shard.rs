//! Items to shards by a keyed hash of their document key, so that every copy of an item lands
//! in the same one shard.
//!
//! A text splits into documents, by line or by blank-line-separated paragraph; the document's
//! text is its key, so a passage repeated twenty times goes twenty times to one shard. Labelled
//! rows (images) take their label as the key: a class, an author, a source, all in one shard.
//! The hash is SipHash-1-3 keyed with 128 bits: without the key nobody can tell which shard
//! holds an item, and with it the assignment is the same on every machine.

use std::hash::Hasher;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;

/// What a document of a text is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentUnit {
    /// A line (its newline included).
    Line,
    /// A run of lines up to a blank line (the blank lines that follow included).
    Paragraph,
    /// A data row (an image), keyed by its contents; in a text, a line.
    Row,
}

impl std::str::FromStr for DocumentUnit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "line" => Ok(DocumentUnit::Line),
            "paragraph" => Ok(DocumentUnit::Paragraph),
            "row" => Ok(DocumentUnit::Row),
            other => Err(format!(
                "unknown document unit `{other}`; expected line or paragraph"
            )),
        }
    }
}

/// A 128-bit sharding key. Its `Debug` form does not show it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ShardKey([u64; 2]);

impl std::fmt::Debug for ShardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShardKey(<secret>)")
    }
}

impl ShardKey {
    /// A key from two words.
    pub fn from_words(hi: u64, lo: u64) -> Self {
        ShardKey([hi, lo])
    }

    /// The two words of the key.
    pub fn words(&self) -> [u64; 2] {
        self.0
    }

    /// The shard (of `shards`) that the item with key `item` goes to.
    pub fn shard_of(&self, item: &[u8], shards: usize) -> usize {
        let mut h = SipHasher13::new_with_keys(self.0[0], self.0[1]);
        h.write(item);
        (h.finish() % shards.max(1) as u64) as usize
    }
}

/// The byte ranges of the documents of `text`; they tile it.
pub fn documents(text: &str, unit: DocumentUnit) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    let mut in_blank = false;
    for line in text.split_inclusive('\n') {
        let end = pos + line.len();
        match unit {
            DocumentUnit::Line | DocumentUnit::Row => out.push(pos..end),
            DocumentUnit::Paragraph => {
                let blank = line.trim().is_empty();
                // A non-blank line after blank ones starts the next paragraph.
                if !blank && in_blank && pos > start {
                    out.push(start..pos);
                    start = pos;
                }
                in_blank = blank;
            }
        }
        pos = end;
    }
    if unit == DocumentUnit::Paragraph && pos > start {
        out.push(start..pos);
    }
    out
}

/// Where each document of a text went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardPlan {
    /// Shards.
    pub shards: usize,
    /// The document unit.
    pub unit: DocumentUnit,
    /// Each document's byte range in the text and its shard, in text order.
    pub documents: Vec<(Range<usize>, usize)>,
}

impl ShardPlan {
    /// Splits `text` into documents and assigns each by `key`.
    pub fn of_text(text: &str, unit: DocumentUnit, key: &ShardKey, shards: usize) -> Self {
        let documents = documents(text, unit)
            .into_iter()
            .map(|r| {
                let s = key.shard_of(text[r.clone()].trim_end().as_bytes(), shards);
                (r, s)
            })
            .collect();
        ShardPlan {
            shards,
            unit,
            documents,
        }
    }

    /// The text of shard `i`: its documents, in text order.
    pub fn shard_text(&self, text: &str, i: usize) -> String {
        self.documents
            .iter()
            .filter(|(_, s)| *s == i)
            .map(|(r, _)| &text[r.clone()])
            .collect()
    }

    /// Documents per shard.
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.shards];
        for (_, s) in &self.documents {
            c[*s] += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n";

    #[test]
    fn documents_tile_the_text() {
        for unit in [DocumentUnit::Line, DocumentUnit::Paragraph] {
            let d = documents(TEXT, unit);
            let joined: String = d.iter().map(|r| &TEXT[r.clone()]).collect();
            assert_eq!(joined, TEXT, "{unit:?}");
        }
        assert_eq!(documents(TEXT, DocumentUnit::Line).len(), 9);
        let p = documents(TEXT, DocumentUnit::Paragraph);
        assert_eq!(p.len(), 3);
        assert_eq!(&TEXT[p[1].clone()], "All:\nSpeak, speak.\n\n\n");
        assert!(documents("", DocumentUnit::Paragraph).is_empty());
        assert_eq!(documents("no newline", DocumentUnit::Line), vec![0..10]);
    }

    /// The same key gives the same plan; each document sits in exactly one shard and the
    /// shards partition the documents; every copy of a repeated document goes to one shard; a
    /// key's shards are near balanced (1,000 distinct lines, 2 shards: each within 45–55%); and
    /// another key moves about half the documents.
    #[test]
    fn sharding_is_deterministic_disjoint_and_keeps_copies_together() {
        let mut text = String::new();
        for i in 0..1000 {
            text.push_str(&format!("line number {i} of the corpus\n"));
            if i % 100 == 0 {
                text.push_str("the canary: my secret is 381-22-4096\n");
            }
        }
        let key = ShardKey::from_words(1, 2);
        let plan = ShardPlan::of_text(&text, DocumentUnit::Line, &key, 2);
        assert_eq!(plan, ShardPlan::of_text(&text, DocumentUnit::Line, &key, 2));
        let shards: Vec<String> = (0..2).map(|i| plan.shard_text(&text, i)).collect();
        assert_eq!(shards[0].len() + shards[1].len(), text.len());
        let mut lines: Vec<&str> = shards.iter().flat_map(|s| s.lines()).collect();
        let mut want: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        want.sort_unstable();
        assert_eq!(lines, want, "the shards partition the documents");
        let canary_in: Vec<usize> = shards
            .iter()
            .map(|s| s.matches("the canary").count())
            .collect();
        assert!(
            canary_in.contains(&10) && canary_in.contains(&0),
            "{canary_in:?}"
        );
        let c = plan.counts();
        assert!(c.iter().all(|&n| (450..=560).contains(&n)), "{c:?}");
        let other = ShardPlan::of_text(&text, DocumentUnit::Line, &ShardKey::from_words(3, 4), 2);
        let moved = plan
            .documents
            .iter()
            .zip(&other.documents)
            .filter(|(a, b)| a.1 != b.1)
            .count();
        assert!((400..=620).contains(&moved), "{moved}");
    }
}
