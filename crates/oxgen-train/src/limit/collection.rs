//! A collection of languages read from TOML: the listed languages in file order, then, if the
//! file has a `[generate]` table, an infinite family L(k) for k = from, from + 1, … . Every
//! error names the file's line.
//!
//! ```toml
//! alphabet = "ab"            # needed when a language is a regular expression
//!
//! [[language]]
//! name = "a-then-b"
//! regex = "a+b*"
//!
//! [[language]]
//! finite = ["ab", "aabb"]
//!
//! [[language]]
//! family = "progression"     # or anbn, dyck (depth = D), arithmetic (digits = D optional)
//! start = 0
//! step = 3
//!
//! [generate]                  # L(k), k = from, from + 1, …: a regex with {k}, or a family
//! regex = "a*|b{1,{k}}"      # family = "progression" (step k) or "dyck" (depth k)
//! from = 1
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::language::{Kind, Language, RegexLanguage, shortlex};
use crate::{Error, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    alphabet: Option<Spanned<String>>,
    #[serde(default)]
    language: Vec<Spanned<Entry>>,
    generate: Option<Spanned<Generate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: Option<String>,
    regex: Option<String>,
    finite: Option<Vec<String>>,
    family: Option<String>,
    start: Option<u64>,
    step: Option<u64>,
    depth: Option<usize>,
    digits: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Generate {
    regex: Option<String>,
    family: Option<String>,
    start: Option<u64>,
    #[serde(default = "one")]
    from: u64,
    name: Option<String>,
}

fn one() -> u64 {
    1
}

/// The infinite tail of a collection.
#[derive(Clone, Debug)]
enum Tail {
    Regex(String),
    Progression { start: u64 },
    Dyck,
}

/// A countable collection of languages over one alphabet.
#[derive(Clone, Debug)]
pub struct Collection {
    /// The file it was read from.
    pub path: PathBuf,
    /// The alphabet, sorted.
    pub alphabet: Vec<char>,
    listed: Vec<Language>,
    tail: Option<(Tail, u64, String)>,
}

impl Collection {
    /// Reads a collection file.
    pub fn load(path: &Path) -> Result<Collection> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("collection", path, e))?;
        Self::parse(&text, path)
    }

    /// Parses collection TOML (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Collection> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let err = |offset: usize, reason: String| Error::Collection {
            path: path.into(),
            line: line_of(offset),
            reason,
        };
        let file: File = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            err(at, e.message().to_string())
        })?;
        let mut languages = Vec::new();
        for (i, entry) in file.language.iter().enumerate() {
            let at = entry.span().start;
            let e = entry.get_ref();
            let name = e.name.clone().unwrap_or_else(|| format!("L{i}"));
            let kinds = [e.regex.is_some(), e.finite.is_some(), e.family.is_some()];
            if kinds.iter().filter(|&&k| k).count() != 1 {
                return Err(err(
                    at,
                    format!("language `{name}` needs exactly one of regex, finite or family"),
                ));
            }
            let kind = if let Some(f) = &e.finite {
                let mut set = f.clone();
                set.sort_by(|a, b| shortlex(a, b));
                set.dedup();
                Kind::Finite(set)
            } else if let Some(f) = &e.family {
                family(f, e.start, e.step, e.depth, e.digits).map_err(|r| err(at, r))?
            } else {
                // Compiled below, once the alphabet is known.
                languages.push((at, name, Err(e.regex.clone().unwrap_or_default())));
                continue;
            };
            languages.push((at, name, Ok(kind)));
        }
        // The alphabet: given, or the characters of the built-in families and finite sets.
        let mut alphabet: Vec<char> = match &file.alphabet {
            Some(a) => a.get_ref().chars().collect(),
            None => languages
                .iter()
                .filter_map(|(_, name, kind)| {
                    let kind = kind.as_ref().ok()?.clone();
                    let name = name.clone();
                    Some(Language { name, kind }.characters())
                })
                .flatten()
                .collect(),
        };
        alphabet.sort_unstable();
        alphabet.dedup();
        let has_regex = languages.iter().any(|(_, _, k)| k.is_err())
            || file
                .generate
                .as_ref()
                .is_some_and(|g| g.get_ref().regex.is_some());
        if has_regex && file.alphabet.is_none() {
            return Err(err(
                0,
                "a collection with regular expressions names its `alphabet`".into(),
            ));
        }
        let mut listed = Vec::new();
        for (at, name, kind) in languages {
            let kind = match kind {
                Ok(k) => k,
                Err(pattern) => {
                    Kind::Regex(RegexLanguage::new(&pattern, &alphabet).map_err(|r| err(at, r))?)
                }
            };
            let lang = Language { name, kind };
            if lang.is_empty() {
                return Err(err(at, format!("language `{}` is empty", lang.name)));
            }
            if let Some(c) = lang
                .characters()
                .into_iter()
                .find(|c| alphabet.binary_search(c).is_err())
            {
                return Err(err(
                    at,
                    format!(
                        "language `{}` uses `{c}`, which the alphabet lacks",
                        lang.name
                    ),
                ));
            }
            listed.push(lang);
        }
        let tail = match &file.generate {
            None => None,
            Some(g) => {
                let at = g.span().start;
                let g = g.get_ref();
                let tail = match (&g.regex, g.family.as_deref()) {
                    (Some(r), None) if r.contains("{k}") => Tail::Regex(r.clone()),
                    (Some(_), None) => {
                        return Err(err(at, "a generated regex has `{k}` in it".into()));
                    }
                    (None, Some("progression")) => Tail::Progression {
                        start: g.start.unwrap_or(0),
                    },
                    (None, Some("dyck")) => Tail::Dyck,
                    _ => {
                        return Err(err(
                            at,
                            "[generate] takes a regex with {k}, or family = \"progression\" or \"dyck\""
                                .into(),
                        ));
                    }
                };
                let name = g.name.clone().unwrap_or_else(|| "G{k}".into());
                let c = Collection {
                    path: path.into(),
                    alphabet: alphabet.clone(),
                    listed: Vec::new(),
                    tail: Some((tail.clone(), g.from, name.clone())),
                };
                // The first generated language must build.
                c.generated(g.from).map_err(|r| err(at, r))?;
                Some((tail, g.from, name))
            }
        };
        if listed.is_empty() && tail.is_none() {
            return Err(err(0, "the collection lists no language".into()));
        }
        Ok(Collection {
            path: path.into(),
            alphabet,
            listed,
            tail,
        })
    }

    /// Languages listed in the file, before any generated ones.
    pub fn listed(&self) -> usize {
        self.listed.len()
    }

    /// Whether the collection is infinite (it has a `[generate]` table).
    pub fn is_infinite(&self) -> bool {
        self.tail.is_some()
    }

    /// The first `n` languages (all of a finite collection if it has fewer).
    pub fn take(&self, n: usize) -> Result<Vec<Language>> {
        let mut out: Vec<Language> = self.listed.iter().take(n).cloned().collect();
        if let Some((_, from, _)) = &self.tail {
            for k in 0..n.saturating_sub(out.len()) {
                out.push(
                    self.generated(from + k as u64)
                        .map_err(|reason| Error::Collection {
                            path: self.path.clone(),
                            line: 0,
                            reason,
                        })?,
                );
            }
        }
        Ok(out)
    }

    fn generated(&self, k: u64) -> std::result::Result<Language, String> {
        let Some((tail, _, name)) = &self.tail else {
            return Err("no generated languages".into());
        };
        let kind = match tail {
            Tail::Regex(r) => Kind::Regex(RegexLanguage::new(
                &r.replace("{k}", &k.to_string()),
                &self.alphabet,
            )?),
            Tail::Progression { start } => Kind::Progression {
                start: *start,
                step: k.max(1),
            },
            Tail::Dyck => Kind::Dyck {
                depth: k.max(1) as usize,
            },
        };
        Ok(Language {
            name: name.replace("{k}", &k.to_string()),
            kind,
        })
    }
}

fn family(
    name: &str,
    start: Option<u64>,
    step: Option<u64>,
    depth: Option<usize>,
    digits: Option<u32>,
) -> std::result::Result<Kind, String> {
    match name {
        "progression" => {
            let step = step.unwrap_or(1);
            if step == 0 {
                return Err("a progression's step is at least 1".into());
            }
            Ok(Kind::Progression {
                start: start.unwrap_or(0),
                step,
            })
        }
        "anbn" => Ok(Kind::AnBn),
        "dyck" => match depth {
            Some(d) if d >= 1 => Ok(Kind::Dyck { depth: d }),
            _ => Err("a Dyck language needs depth ≥ 1".into()),
        },
        "arithmetic" => match digits {
            Some(d) if !(1..=18).contains(&d) => Err("arithmetic digits are 1..=18".into()),
            d => Ok(Kind::Arithmetic { digits: d }),
        },
        other => Err(format!(
            "unknown family `{other}` (progression, anbn, dyck, arithmetic)"
        )),
    }
}
