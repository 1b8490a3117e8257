//! What the generators know: the strings seen so far, which languages are consistent with
//! them, and which contain which, and the hypotheses the generators draw from. Kleinberg and
//! Mullainathan (2024, "Language Generation in the Limit", section 5) only need membership
//! queries: "L_i ⊆ L_j" is tested on the first m strings of L_i (shortlex), with m growing over
//! time, and a string of L_i outside L_j, once found, rules the inclusion out for good.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::language::Language;

#[derive(Clone, Copy, Debug)]
enum Pair {
    /// Decided exactly ([`Language::is_subset_of`]).
    Exact(bool),
    /// Not tried yet.
    Unknown,
    /// A string of the first language outside the second was found.
    Witness,
    /// The first this many strings of the first language are in the second.
    Checked(usize),
}

/// The sample so far and what it implies about the collection's first languages.
pub struct Knowledge<'a> {
    /// The languages considered (the collection's first ones).
    pub languages: &'a [Language],
    consistent: Vec<bool>,
    seen: HashSet<String>,
    /// The sample in the order shown.
    pub sample: Vec<String>,
    elements: Vec<(Vec<String>, bool)>,
    pairs: Vec<Vec<Pair>>,
    /// Per language: how many of its first strings are all seen.
    skip: Vec<usize>,
    max_len: usize,
}

impl<'a> Knowledge<'a> {
    /// Nothing seen yet; strings are read up to `max_len` characters.
    pub fn new(languages: &'a [Language], max_len: usize) -> Self {
        let n = languages.len();
        Knowledge {
            languages,
            consistent: vec![true; n],
            seen: HashSet::new(),
            sample: Vec::new(),
            elements: vec![(Vec::new(), false); n],
            pairs: vec![vec![Pair::Unknown; n]; n],
            skip: vec![0; n],
            max_len,
        }
    }

    /// Takes in the adversary's next string.
    pub fn observe(&mut self, s: &str) {
        if self.seen.insert(s.to_owned()) {
            self.sample.push(s.to_owned());
        }
        for (c, l) in self.consistent.iter_mut().zip(self.languages) {
            *c = *c && l.contains(s);
        }
    }

    /// Whether `s` was shown.
    pub fn seen(&self, s: &str) -> bool {
        self.seen.contains(s)
    }

    /// Whether language `i` contains the whole sample.
    pub fn consistent(&self, i: usize) -> bool {
        self.consistent[i]
    }

    /// The first `m` strings of language `i` (fewer if it has fewer within the length bound).
    pub fn elements(&mut self, i: usize, m: usize) -> &[String] {
        let (list, done) = &mut self.elements[i];
        if list.len() < m && !*done {
            let want = m.max(2 * list.len()).max(16);
            *list = self.languages[i].strings(self.max_len, want);
            *done = list.len() < want;
        }
        let k = m.min(list.len());
        &list[..k]
    }

    /// The `rank`-th (0-based) unseen string of language `i` in shortlex order, or its last
    /// unseen one if it has fewer within the length bound.
    pub fn unseen(&mut self, i: usize, rank: usize) -> Option<String> {
        let mut want = self.skip[i] + 2 * rank + 16;
        loop {
            self.elements(i, want);
            let (list, done) = &self.elements[i];
            let mut skip = self.skip[i];
            while skip < list.len() && self.seen.contains(&list[skip]) {
                skip += 1;
            }
            self.skip[i] = skip;
            let unseen: Vec<&String> = list[skip..]
                .iter()
                .filter(|s| !self.seen.contains(*s))
                .take(rank + 1)
                .collect();
            if unseen.len() > rank {
                return Some(unseen[rank].clone());
            }
            if *done {
                return unseen.last().map(|s| (*s).clone());
            }
            want = 2 * want.max(list.len());
        }
    }

    /// Whether language `i` is inside language `j`: exactly where
    /// [`Language::is_subset_of`] decides it, else on the first `m` strings of `i`.
    pub fn subset(&mut self, i: usize, j: usize, m: usize) -> bool {
        if i == j {
            return true;
        }
        let checked = match self.pairs[i][j] {
            Pair::Exact(b) => return b,
            Pair::Witness => return false,
            Pair::Checked(c) if c >= m => return true,
            Pair::Checked(c) => c,
            Pair::Unknown => match self.languages[i].is_subset_of(&self.languages[j]) {
                Some(b) => {
                    self.pairs[i][j] = Pair::Exact(b);
                    return b;
                }
                None => 0,
            },
        };
        self.elements(i, m);
        let (list, done) = &self.elements[i];
        let end = m.min(list.len());
        let lj = &self.languages[j];
        let witness = list[checked.min(end)..end].iter().any(|s| !lj.contains(s));
        self.pairs[i][j] = if witness {
            Pair::Witness
        } else if *done && end == list.len() {
            Pair::Checked(usize::MAX)
        } else {
            Pair::Checked(end)
        };
        !witness
    }

    /// The consistent languages among the first `n`, in order.
    pub fn consistent_among(&self, n: usize) -> Vec<usize> {
        (0..n.min(self.languages.len()))
            .filter(|&i| self.consistent[i])
            .collect()
    }

    /// The critical languages among the first `n` (Kleinberg and Mullainathan, 2024): a
    /// consistent L_i is critical when L_i ⊆ L_j for every consistent L_j with j < i (tested on
    /// `m` strings). The first consistent language is always critical.
    pub fn critical(&mut self, n: usize, m: usize) -> Vec<usize> {
        let c = self.consistent_among(n);
        let mut out = Vec::new();
        for (k, &i) in c.iter().enumerate() {
            if c[..k].iter().all(|&j| self.subset(i, j, m)) {
                out.push(i);
            }
        }
        out
    }
}

/// A generator of the game.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Generator {
    /// Kleinberg–Mullainathan: an unseen string of the last critical language.
    Km,
    /// Identification by enumeration with the subset principle: the first consistent
    /// language with no consistent language strictly inside it (Angluin, 1980); it identifies
    /// every collection with tell-tales, and changes its mind without end where they fail.
    Identify,
    /// Gold's identification by enumeration: the first consistent language.
    Gold,
    /// Repeats a string it has seen: never valid.
    Memorise,
    /// An unseen string of one critical language: the critical languages form a chain
    /// L_{c1} ⊇ L_{c2} ⊇ …, and breadth B picks the one at fraction B from its narrow end (B = 0
    /// is KM's, B = 1 the first consistent language): validity traded for breadth.
    Breadth(f64),
    /// A trained character model's lines ([`super::model::ModelLines`]), unconstrained or
    /// constrained to KM's hypothesis; its hypothesis is KM's.
    Model {
        /// Masked to KM's hypothesis (when it is a regular expression).
        constrained: bool,
    },
}

impl std::str::FromStr for Generator {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "km" => Ok(Generator::Km),
            "identify" => Ok(Generator::Identify),
            "gold" => Ok(Generator::Gold),
            "memorise" | "memorize" => Ok(Generator::Memorise),
            "model" => Ok(Generator::Model { constrained: false }),
            "model-constrained" => Ok(Generator::Model { constrained: true }),
            _ => match s.strip_prefix("breadth:").map(str::parse::<f64>) {
                Some(Ok(b)) if (0.0..=1.0).contains(&b) => Ok(Generator::Breadth(b)),
                _ => Err(format!(
                    "unknown generator `{s}` (km, identify, gold, memorise, breadth:B with B in [0, 1], model, model-constrained)"
                )),
            },
        }
    }
}

impl std::fmt::Display for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Generator::Km => f.write_str("km"),
            Generator::Identify => f.write_str("identify"),
            Generator::Gold => f.write_str("gold"),
            Generator::Memorise => f.write_str("memorise"),
            Generator::Breadth(b) => write!(f, "breadth:{b}"),
            Generator::Model { constrained: false } => f.write_str("model"),
            Generator::Model { constrained: true } => f.write_str("model-constrained"),
        }
    }
}

impl Generator {
    /// The language the generator draws from, among the first `n`, subsets tested on `m`
    /// strings (`None` for the memoriser, or when no language is consistent).
    pub fn hypothesis(&self, k: &mut Knowledge, n: usize, m: usize) -> Option<usize> {
        match self {
            Generator::Memorise => None,
            Generator::Km | Generator::Model { .. } => k.critical(n, m).last().copied(),
            Generator::Gold => k.consistent_among(n).first().copied(),
            Generator::Identify => {
                let c = k.consistent_among(n);
                c.iter().copied().find(|&i| {
                    !c.iter()
                        .any(|&j| j != i && k.subset(j, i, m) && !k.subset(i, j, m))
                })
            }
            Generator::Breadth(b) => {
                let c = k.critical(n, m);
                let last = c.len().checked_sub(1)?;
                Some(c[((1.0 - b) * last as f64).round() as usize])
            }
        }
    }
}
