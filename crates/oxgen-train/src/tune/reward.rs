//! Rewards and verifiers: what post-training optimises (GRPO), pairs up (DPO) or ranks by
//! (best-of-n). One trait, [`Reward`], scores a prompt and its completion; the built-ins are
//! parsed from a spec ([`parse`]):
//!
//! - `arithmetic`: 1 when the completion starts with the exact answer of the embedded language
//!   of sums (computed from the prompt's operands, so no labelled answers are needed), else 0;
//! - `regex:PATTERN`: 1 when the whole completion (without its final newline) matches, else 0;
//! - `pairs:FILE`: a TSV of `prompt<TAB>answer` lines; 1 when the completion (without its final
//!   newline) is the prompt's answer, else 0 (and 0 for a prompt the file does not have);
//! - `model:RUN`: the score of a reward model trained with `oxgen tune rm`.
//!
//! [`WithFormat`] adds `weight` when the completion matches a format pattern, to any of them.

use std::collections::HashMap;
use std::path::Path;

use oxgen_models::ar::arithmetic::{Arithmetic, EQUALS, PLUS, START};
use regex_automata::meta::Regex;

use crate::{Error, Result};

/// One sample to score: its prompt and completion, as tokens and as text.
#[derive(Clone, Copy, Debug)]
pub struct Sample<'a> {
    /// Prompt tokens.
    pub prompt: &'a [u32],
    /// Completion tokens (after the prompt).
    pub completion: &'a [u32],
    /// The prompt as text.
    pub prompt_text: &'a str,
    /// The completion as text.
    pub completion_text: &'a str,
}

/// A score for samples: higher is better. Implementations must be deterministic; callers check
/// that the scores are finite ([`score_all`]).
pub trait Reward: Send + Sync {
    /// The score of `sample`.
    fn score(&self, sample: &Sample<'_>) -> f64;
    /// The spec it was parsed from, for logs and manifests.
    fn name(&self) -> String;
}

/// Scores every sample, refusing a non-finite score with a typed error.
pub fn score_all(reward: &dyn Reward, samples: &[Sample<'_>]) -> Result<Vec<f64>> {
    samples
        .iter()
        .map(|s| {
            let r = reward.score(s);
            if r.is_finite() {
                Ok(r)
            } else {
                Err(Error::Reward {
                    reward: reward.name(),
                    reason: format!(
                        "score {r} for the completion {:?} of {:?}",
                        s.completion_text, s.prompt_text
                    ),
                })
            }
        })
        .collect()
}

/// The completion as a line: without one final newline.
fn line(text: &str) -> &str {
    text.strip_suffix('\n').unwrap_or(text)
}

/// Exact match of the language of sums.
#[derive(Clone, Copy, Debug)]
pub struct ArithmeticReward(pub Arithmetic);

impl ArithmeticReward {
    /// The operands of a prompt `\na+b=` (None when it is not one).
    pub fn operands(&self, prompt: &[u32]) -> Option<(u64, u64)> {
        let d = self.0.digits as usize;
        if prompt.len() != self.0.prompt_len()
            || prompt[0] != START
            || prompt[1 + d] != PLUS
            || prompt[2 + 2 * d] != EQUALS
        {
            return None;
        }
        let number = |digits: &[u32]| {
            digits
                .iter()
                .try_fold(0u64, |acc, &t| (t < 10).then_some(acc * 10 + t as u64))
        };
        Some((
            number(&prompt[1..1 + d])?,
            number(&prompt[2 + d..2 + 2 * d])?,
        ))
    }
}

impl Reward for ArithmeticReward {
    fn score(&self, s: &Sample<'_>) -> f64 {
        match self.operands(s.prompt) {
            Some((a, b)) => {
                let answer = self.0.answer(a, b);
                f64::from(u8::from(s.completion.starts_with(&answer)))
            }
            None => 0.0,
        }
    }
    fn name(&self) -> String {
        "arithmetic".into()
    }
}

/// The whole completion matches a pattern.
#[derive(Clone, Debug)]
pub struct RegexReward {
    pattern: String,
    regex: Regex,
}

impl RegexReward {
    /// Compiles `pattern` (Rust `regex` syntax), anchored at both ends.
    pub fn new(pattern: &str) -> Result<Self> {
        let regex = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| Error::Reward {
            reward: format!("regex:{pattern}"),
            reason: format!("not a valid pattern: {e}"),
        })?;
        Ok(Self {
            pattern: pattern.to_string(),
            regex,
        })
    }

    /// Whether `text` (without one final newline) matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        self.regex.is_match(line(text))
    }
}

impl Reward for RegexReward {
    fn score(&self, s: &Sample<'_>) -> f64 {
        f64::from(u8::from(self.matches(s.completion_text)))
    }
    fn name(&self) -> String {
        format!("regex:{}", self.pattern)
    }
}

/// Expected answers from a TSV file.
#[derive(Clone, Debug)]
pub struct PairsReward {
    file: String,
    answers: HashMap<String, String>,
}

impl PairsReward {
    /// Reads `prompt<TAB>answer` lines (`\n` and `\t` in either written as `\\n` and `\\t`);
    /// blank lines are skipped. A line without a tab, an empty prompt or a prompt given twice
    /// is a typed error naming the line.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("pairs file", path, e))?;
        let unescape = |s: &str| s.replace("\\n", "\n").replace("\\t", "\t");
        let mut answers = HashMap::new();
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let bad = |why: &str| Error::Parse {
                path: path.to_path_buf(),
                reason: format!("pairs file, line {}: {why}", i + 1),
            };
            let (prompt, answer) = l.split_once('\t').ok_or_else(|| bad("no tab"))?;
            if prompt.is_empty() {
                return Err(bad("empty prompt"));
            }
            if answers.insert(unescape(prompt), unescape(answer)).is_some() {
                return Err(bad("this prompt was given before"));
            }
        }
        if answers.is_empty() {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                reason: "pairs file without a prompt<TAB>answer line".into(),
            });
        }
        Ok(Self {
            file: path.display().to_string(),
            answers,
        })
    }

    /// The prompts, sorted.
    pub fn prompts(&self) -> Vec<&str> {
        let mut p: Vec<&str> = self.answers.keys().map(String::as_str).collect();
        p.sort_unstable();
        p
    }
}

impl Reward for PairsReward {
    fn score(&self, s: &Sample<'_>) -> f64 {
        let right = self
            .answers
            .get(s.prompt_text)
            .is_some_and(|a| line(s.completion_text) == line(a));
        f64::from(u8::from(right))
    }
    fn name(&self) -> String {
        format!("pairs:{}", self.file)
    }
}

/// Another reward plus `weight` when the completion (without its final newline) matches
/// `format` as a whole.
pub struct WithFormat {
    /// The reward it adds to.
    pub inner: Box<dyn Reward>,
    /// The format.
    pub format: RegexReward,
    /// Added on a match.
    pub weight: f64,
}

impl Reward for WithFormat {
    fn score(&self, s: &Sample<'_>) -> f64 {
        let bonus = if self.format.matches(s.completion_text) {
            self.weight
        } else {
            0.0
        };
        self.inner.score(s) + bonus
    }
    fn name(&self) -> String {
        format!(
            "{} + {} × format:{}",
            self.inner.name(),
            self.weight,
            self.format.pattern
        )
    }
}

/// What a spec may need: the language of sums of the base run, if it is one, and the device a
/// reward model runs on (the CPU when not given).
#[derive(Clone, Debug, Default)]
pub struct RewardContext {
    /// The base run's language of sums (for `arithmetic`).
    pub arithmetic: Option<Arithmetic>,
    /// The device of `model:RUN`.
    pub device: Option<burn::tensor::Device>,
}

/// A reward from its spec: `arithmetic`, `regex:PATTERN`, `pairs:FILE` or `model:RUN`.
pub fn parse(spec: &str, ctx: &RewardContext) -> Result<Box<dyn Reward>> {
    let refuse = |reason: String| Error::Reward {
        reward: spec.to_string(),
        reason,
    };
    if spec == "arithmetic" {
        let lang = ctx
            .arithmetic
            .ok_or_else(|| refuse("needs a base run trained on the arithmetic language".into()))?;
        return Ok(Box::new(ArithmeticReward(lang)));
    }
    if let Some(p) = spec.strip_prefix("regex:") {
        return Ok(Box::new(RegexReward::new(p)?));
    }
    if let Some(f) = spec.strip_prefix("pairs:") {
        return Ok(Box::new(PairsReward::load(Path::new(f))?));
    }
    if let Some(run) = spec.strip_prefix("model:") {
        let device = ctx
            .device
            .clone()
            .unwrap_or_else(burn::tensor::Device::flex);
        return Ok(Box::new(super::rm::ModelReward::load(
            Path::new(run),
            &device,
        )?));
    }
    Err(refuse(
        "unknown reward: use arithmetic, regex:PATTERN, pairs:FILE or model:RUN".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(prompt: &'a [u32], completion: &'a [u32], p: &'a str, c: &'a str) -> Sample<'a> {
        Sample {
            prompt,
            completion,
            prompt_text: p,
            completion_text: c,
        }
    }

    /// 37 + 58 = 95, written reversed and padded: 5, 9, 0. A wrong digit, a short answer or a
    /// prompt that is not a sum scores 0.
    #[test]
    fn arithmetic_is_exact_match_of_the_computed_answer() {
        let lang = Arithmetic::default();
        let r = ArithmeticReward(lang);
        let prompt = lang.prompt(37, 58);
        assert_eq!(r.operands(&prompt), Some((37, 58)));
        let score = |c: &[u32]| r.score(&sample(&prompt, c, "", ""));
        assert_eq!(score(&[5, 9, 0]), 1.0);
        assert_eq!(score(&[5, 9, 0, 12]), 1.0);
        assert_eq!(score(&[5, 9, 1]), 0.0);
        assert_eq!(score(&[5, 9]), 0.0);
        assert_eq!(r.score(&sample(&[START, 1, 2], &[5, 9, 0], "", "")), 0.0);
        assert!(parse("arithmetic", &RewardContext::default()).is_err());
    }

    /// The whole completion must match (one final newline aside), alternatives included.
    #[test]
    fn regex_matches_the_whole_completion() {
        let r = RegexReward::new("a|ab").unwrap();
        assert!(r.matches("ab") && r.matches("a\n") && !r.matches("abc") && !r.matches("xab"));
        let r = parse("regex:the [a-z]+ is", &RewardContext::default()).unwrap();
        let score = |c: &str| r.score(&sample(&[], &[], "", c));
        assert_eq!(score("the king is\n"), 1.0);
        assert_eq!(score("the king is here"), 0.0);
        assert!(matches!(
            RegexReward::new("(unclosed"),
            Err(Error::Reward { .. })
        ));
    }

    /// Answers by prompt, escapes, and typed errors for bad files.
    #[test]
    fn pairs_files_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ok = file("ok.tsv", "2+2=\t4\nsay hi\\n\thello\n\n");
        let r = PairsReward::load(&ok).unwrap();
        assert_eq!(r.prompts(), vec!["2+2=", "say hi\n"]);
        assert_eq!(r.score(&sample(&[], &[], "2+2=", "4\n")), 1.0);
        assert_eq!(r.score(&sample(&[], &[], "2+2=", "5")), 0.0);
        assert_eq!(r.score(&sample(&[], &[], "3+3=", "6")), 0.0);
        for (name, text, says) in [
            ("tab.tsv", "no tab here\n", "line 1: no tab"),
            (
                "dup.tsv",
                "a\t1\na\t2\n",
                "line 2: this prompt was given before",
            ),
            ("empty.tsv", "\n\n", "without a prompt"),
            ("blank.tsv", "\t1\n", "empty prompt"),
        ] {
            let e = PairsReward::load(&file(name, text)).unwrap_err();
            assert!(
                matches!(e, Error::Parse { .. }) && e.to_string().contains(says),
                "{e}"
            );
        }
        let missing = dir.path().join("missing.tsv");
        assert!(matches!(
            PairsReward::load(&missing),
            Err(Error::NotFound { .. })
        ));
    }

    /// A format bonus adds to any reward; a NaN score is a typed error.
    #[test]
    fn format_bonus_and_non_finite_scores() {
        struct Nan;
        impl Reward for Nan {
            fn score(&self, _: &Sample<'_>) -> f64 {
                f64::NAN
            }
            fn name(&self) -> String {
                "nan".into()
            }
        }
        let with = WithFormat {
            inner: Box::new(RegexReward::new("x+").unwrap()),
            format: RegexReward::new("[a-z]+").unwrap(),
            weight: 0.25,
        };
        assert_eq!(with.score(&sample(&[], &[], "", "xx")), 1.25);
        assert_eq!(with.score(&sample(&[], &[], "", "ab")), 0.25);
        assert_eq!(with.score(&sample(&[], &[], "", "X")), 0.0);
        let e = score_all(&Nan, &[sample(&[], &[], "p", "c")]).unwrap_err();
        assert!(matches!(e, Error::Reward { .. }), "{e}");
    }
}
