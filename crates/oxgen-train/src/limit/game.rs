//! The game: at step t the adversary shows a string of the target, and the generator, having
//! seen S_t, outputs a string. It is valid when it is in the target and not in S_t. Measured at
//! each step: validity, the hypothesis (its changes), and every so often the breadth, the share
//! of the target's next unseen strings that the generator outputs with positive probability.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::language::{Kind, Language};
use super::learner::{Generator, Knowledge};
use super::model::ModelLines;
use super::text::{Adversary, Order, Pool};
use crate::{Error, Result};

/// One game's settings. Every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GameConfig {
    /// Index of the target in the collection (0-based).
    pub target: usize,
    /// The adversary's order.
    pub order: Order,
    /// The generator.
    pub generator: Generator,
    /// Steps.
    pub steps: usize,
    /// Seed of the random order and of the generators' draws.
    pub seed: u64,
    /// Languages considered: at step t the generators see the first min(t + 1, this) of the
    /// collection (Kleinberg and Mullainathan consider the first t).
    pub languages: usize,
    /// Longest string read from any language.
    pub max_len: usize,
    /// Inclusions that cannot be decided exactly are tested on the first min(m(t), this)
    /// strings of a language, m(t) = 32·2^⌊log₂(t/32 + 1)⌋.
    pub subset_strings: usize,
    /// Breadth is the share of the target's strings of at most this many characters that the
    /// hypothesis holds, counted exactly when both are regular expressions.
    pub breadth_len: usize,
    /// Otherwise it is measured on the target's first this many unseen strings (shortlex).
    pub breadth_strings: usize,
    /// A generator's output is its hypothesis' k-th unseen string (shortlex), k geometric with
    /// this mean: every unseen string has positive probability.
    pub mean_rank: f64,
    /// Points on the curves, at log-spaced steps.
    pub points: usize,
}

impl Default for GameConfig {
    fn default() -> Self {
        GameConfig {
            target: 0,
            order: Order::Shortlex,
            generator: Generator::Km,
            steps: 1000,
            seed: 0,
            languages: 64,
            max_len: 1000,
            subset_strings: 2048,
            breadth_len: 40,
            breadth_strings: 200,
            mean_rank: 8.0,
            points: 200,
        }
    }
}

/// A point of the curves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    /// The step (1-based: after this many strings).
    pub step: usize,
    /// Share of valid outputs since the previous point.
    pub validity: f64,
    /// Breadth at this step (`None` when the target has no unseen string within the bound).
    pub breadth: Option<f64>,
    /// Index of the hypothesis at this step.
    pub hypothesis: Option<usize>,
}

/// What a game found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GameReport {
    /// The settings.
    pub config: GameConfig,
    /// The target's name.
    pub target: String,
    /// Steps played (fewer than asked when the target ran out of strings within `max_len`).
    pub played: usize,
    /// Share of valid outputs over the whole game.
    pub validity: f64,
    /// Share of valid outputs over its last tenth.
    pub validity_last_tenth: f64,
    /// Share of outputs outside the target (hallucinations; the other invalid outputs are
    /// repeats of shown strings, or none).
    pub outside: f64,
    /// The step from which every output was valid to the end (1-based; `None`: the last output
    /// was invalid).
    pub valid_from: Option<usize>,
    /// Times the hypothesis changed.
    pub changes: usize,
    /// The step of the last change.
    pub last_change: Option<usize>,
    /// The final hypothesis' name.
    pub hypothesis: Option<String>,
    /// Mean breadth over the last tenth of the points.
    pub breadth_last_tenth: Option<f64>,
    /// The curves.
    pub points: Vec<Point>,
}

/// Plays one game on `languages` (the collection's first ones), one tick of `bar` a step.
///
/// `lines` is the trained model that [`Generator::Model`] samples (other generators ignore it).
pub fn play(
    languages: &[Language],
    config: &GameConfig,
    mut lines: Option<&mut ModelLines>,
    bar: &indicatif::ProgressBar,
) -> Result<GameReport> {
    let target = languages.get(config.target).ok_or_else(|| {
        Error::Config(format!(
            "target {} is out of range: the collection has {} languages here",
            config.target,
            languages.len()
        ))
    })?;
    if target.is_finite() {
        return Err(Error::Config(format!(
            "target `{}` is finite: generation in the limit needs an infinite target",
            target.name
        )));
    }
    if config.steps == 0 || config.mean_rank < 1.0 || config.languages == 0 {
        return Err(Error::Config(
            "a game needs steps ≥ 1, languages ≥ 1 and mean_rank ≥ 1".into(),
        ));
    }
    let languages = &languages[..config.languages.min(languages.len())];
    let mut k = Knowledge::new(languages, config.max_len);
    let mut adversary = Adversary::new(config.order, config.max_len, config.seed);
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5EED);
    let mut breadth_pool = Pool::new(config.max_len);
    // Points at log-spaced steps: each ratio× the last (at least one step apart).
    let ratio = (config.steps as f64).powf(1.0 / config.points.max(1) as f64);
    let mut next_point = 1usize;
    let (mut valid, mut points) = (Vec::new(), Vec::new());
    let mut outside = 0usize;
    let (mut changes, mut last_change, mut current): (usize, Option<usize>, Option<usize>) =
        (0, None, None);
    // Geometric ranks with mean `mean_rank`: P(r) = (1 − q)·q^r.
    let q = 1.0 - 1.0 / config.mean_rank;
    for t in 0..config.steps {
        let n = (t + 1).min(languages.len());
        let alive: Vec<&Language> = if config.order == Order::Adversarial {
            (0..n)
                .filter(|&i| i != config.target && k.consistent(i))
                .map(|i| &languages[i])
                .collect()
        } else {
            Vec::new()
        };
        let Some(w) = adversary.next(target, t, &alive) else {
            break;
        };
        k.observe(&w);
        bar.inc(1);
        // Doubling, so that each inclusion is re-tested O(log t) times.
        let m = (32usize << (t / 32 + 1).ilog2()).min(config.subset_strings);
        let h = config.generator.hypothesis(&mut k, n, m);
        let rank = if q > 0.0 {
            (rng.random::<f64>().max(f64::MIN_POSITIVE).ln() / q.ln()).floor() as usize
        } else {
            0
        };
        let output = match h {
            None if config.generator == Generator::Memorise => {
                let i = rng.random_range(0..k.sample.len());
                Some(k.sample[i].clone())
            }
            _ if matches!(config.generator, Generator::Model { .. }) => {
                let src = lines.as_deref_mut().ok_or_else(|| {
                    Error::Config("the model generator needs a trained run (--model RUN)".into())
                })?;
                let constraint = constraint_of(config, languages, h);
                // Up to 8 lines, the first unseen one kept (else the last).
                let mut out = None;
                for _ in 0..8 {
                    if let Some(line) = src.line(constraint) {
                        let fresh = !k.seen(&line);
                        out = Some(line);
                        if fresh {
                            break;
                        }
                    }
                }
                out
            }
            None => None,
            Some(i) => k.unseen(i, rank),
        };
        let member = output.as_deref().is_some_and(|o| target.contains(o));
        outside += usize::from(output.is_some() && !member);
        valid.push(member && output.as_deref().is_some_and(|o| !k.seen(o)));
        if h != current {
            if current.is_some() {
                changes += 1;
                last_change = Some(t + 1);
            }
            current = h;
        }
        if t + 1 >= next_point || t + 1 == config.steps {
            next_point = ((next_point as f64 * ratio).ceil() as usize).max(next_point + 1);
            let from = points.last().map_or(0, |p: &Point| p.step);
            let window = &valid[from..];
            points.push(Point {
                step: t + 1,
                validity: window.iter().filter(|&&v| v).count() as f64 / window.len() as f64,
                breadth: match lines.as_deref_mut() {
                    Some(src) if matches!(config.generator, Generator::Model { .. }) => {
                        model_breadth(
                            &k,
                            &mut breadth_pool,
                            target,
                            src,
                            constraint_of(config, languages, h),
                            config,
                        )
                    }
                    _ => breadth(&mut k, &mut breadth_pool, target, h, config),
                },
                hypothesis: h,
            });
        }
    }
    let played = valid.len();
    let share = |v: &[bool]| v.iter().filter(|&&x| x).count() as f64 / v.len().max(1) as f64;
    let valid_from = match valid.iter().rposition(|&v| !v) {
        None => Some(1),
        Some(i) if i + 1 < played => Some(i + 2),
        Some(_) => None,
    };
    let tail: Vec<f64> = points[points.len() - points.len().div_ceil(10)..]
        .iter()
        .filter_map(|p| p.breadth)
        .collect();
    Ok(GameReport {
        config: config.clone(),
        target: target.name.clone(),
        played,
        validity: share(&valid),
        validity_last_tenth: share(&valid[played - played.div_ceil(10)..]),
        outside: outside as f64 / played.max(1) as f64,
        valid_from,
        changes,
        last_change,
        hypothesis: current.map(|i| languages[i].name.clone()),
        breadth_last_tenth: (!tail.is_empty())
            .then(|| tail.iter().sum::<f64>() / tail.len() as f64),
        points,
    })
}

/// What a model generator is constrained to: KM's hypothesis, when asked.
fn constraint_of<'l>(
    config: &GameConfig,
    languages: &'l [Language],
    h: Option<usize>,
) -> Option<&'l Language> {
    match config.generator {
        Generator::Model { constrained: true } => h.map(|i| &languages[i]),
        _ => None,
    }
}

/// The target's first `n` unseen strings, shortlex.
fn unseen_of_target(k: &Knowledge, pool: &mut Pool, target: &Language, n: usize) -> Vec<String> {
    let mut unseen = Vec::new();
    let mut i = 0;
    while unseen.len() < n {
        let Some(s) = pool.get(target, i) else { break };
        if !k.seen(s) {
            unseen.push(s.to_owned());
        }
        i += 1;
    }
    unseen
}

/// A model generator's breadth: the share of the target's first `breadth_strings / 4` unseen
/// strings that its nucleus sampler (masked, when constrained) gives positive probability.
fn model_breadth(
    k: &Knowledge,
    pool: &mut Pool,
    target: &Language,
    src: &mut ModelLines,
    constraint: Option<&Language>,
    config: &GameConfig,
) -> Option<f64> {
    let unseen = unseen_of_target(k, pool, target, (config.breadth_strings / 4).max(1));
    if unseen.is_empty() {
        return None;
    }
    let hit = unseen
        .iter()
        .filter(|s| src.in_support(s, constraint))
        .count();
    Some(hit as f64 / unseen.len() as f64)
}

/// The share of the target's strings up to `breadth_len` characters in the hypothesis, when
/// both are regular expressions; else of its first `breadth_strings` unseen strings (the
/// memoriser's support is the sample: 0).
fn breadth(
    k: &mut Knowledge,
    pool: &mut Pool,
    target: &Language,
    h: Option<usize>,
    config: &GameConfig,
) -> Option<f64> {
    if let (Kind::Regex(t), Some(Kind::Regex(hyp))) =
        (&target.kind, h.map(|i| &k.languages[i].kind))
    {
        let (all, both) = t.count_within(hyp, config.breadth_len);
        return (all > 0.0).then(|| both / all);
    }
    let unseen = unseen_of_target(k, pool, target, config.breadth_strings);
    if unseen.is_empty() {
        return None;
    }
    let Some(h) = h else { return Some(0.0) };
    let hit = unseen.iter().filter(|s| k.languages[h].contains(s)).count();
    Some(hit as f64 / unseen.len() as f64)
}
