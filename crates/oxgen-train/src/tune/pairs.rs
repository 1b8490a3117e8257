//! Preference pairs for DPO and the reward model: from a JSONL file of `{"prompt", "chosen",
//! "rejected"}` lines (TRL's preference format), or made by sampling a model and ranking the
//! samples with a verifier (a best and a worst sample of a prompt make a pair; a prompt whose
//! samples all score alike makes none).

use std::path::Path;

use burn::tensor::Device;
use oxgen_models::ar::arithmetic::Arithmetic;
use oxgen_models::ar::{DecodeOptions, Gpt, generate_rows};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use super::reward::{RewardContext, Sample, parse, score_all};
use crate::ar::Codec;
use crate::{Error, Result};

/// One preference: prompt, chosen completion, rejected completion (tokens).
pub type Pair = (Vec<u32>, Vec<u32>, Vec<u32>);

/// How to make pairs with a verifier.
#[derive(Clone, Debug)]
pub(crate) struct PairSource {
    /// The verifier (a reward spec).
    pub(crate) reward: String,
    /// Prompts to sample (sums: training problems; text: the line start).
    pub(crate) prompts: usize,
    /// Samples per prompt.
    pub(crate) samples: usize,
    /// Sampling temperature.
    pub(crate) temperature: f32,
    /// Seed of the prompts and samples.
    pub(crate) seed: u64,
}

/// Pairs made by sampling `model` and ranking with the verifier.
fn verifier_pairs(
    config: &PairSource,
    model: &Gpt,
    codec: &Codec,
    lang: Option<Arithmetic>,
    device: &Device,
) -> Result<Vec<Pair>> {
    let reward = parse(
        &config.reward,
        &RewardContext {
            arithmetic: lang,
            device: Some(device.clone()),
        },
    )?;
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0xD90);
    let prompts: Vec<Vec<u32>> = match lang {
        Some(l) => {
            let train = l.problems(false);
            (0..config.prompts)
                .map(|_| {
                    let (a, b) = train[rng.random_range(0..train.len())];
                    l.prompt(a, b)
                })
                .collect()
        }
        None => vec![codec.default_prompt(); config.prompts],
    };
    let n = config.samples;
    let options = DecodeOptions {
        max_new_tokens: lang.map_or(64, |l| l.digits as usize + 1),
        temperature: config.temperature,
        stop: match lang {
            Some(_) => vec![],
            None => vec![codec.encode("\n").unwrap_or_default()],
        },
        ..DecodeOptions::default()
    };
    let mut pairs = Vec::new();
    for chunk in prompts.chunks(64) {
        let rows: Vec<Vec<u32>> = chunk
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.clone(), n))
            .collect();
        let seeds: Vec<u64> = (0..rows.len()).map(|_| rng.random()).collect();
        let completions = generate_rows(model, &rows, &seeds, &options, device);
        let texts: Vec<(String, String)> = rows
            .iter()
            .zip(&completions)
            .map(|(p, c)| (codec.decode(p), codec.decode(c)))
            .collect();
        let samples: Vec<Sample<'_>> = rows
            .iter()
            .zip(&completions)
            .zip(&texts)
            .map(|((p, c), (pt, ct))| Sample {
                prompt: p,
                completion: c,
                prompt_text: pt,
                completion_text: ct,
            })
            .collect();
        let scores = score_all(reward.as_ref(), &samples)?;
        for (g, prompt) in chunk.iter().enumerate() {
            let s = &scores[g * n..(g + 1) * n];
            let best = (0..n).max_by(|&a, &b| s[a].total_cmp(&s[b]).then(b.cmp(&a)));
            let worst = (0..n).min_by(|&a, &b| s[a].total_cmp(&s[b]).then(a.cmp(&b)));
            if let (Some(b), Some(w)) = (best, worst)
                && s[b] > s[w]
            {
                let c = |i: usize| completions[g * n + i].clone();
                pairs.push((prompt.clone(), c(b), c(w)));
            }
        }
    }
    Ok(pairs)
}

/// Pairs from a JSONL file, encoded with the base's codec.
fn file_pairs(path: &Path, codec: &Codec) -> Result<Vec<Pair>> {
    #[derive(Deserialize)]
    struct Line {
        prompt: String,
        chosen: String,
        rejected: String,
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("pairs file", path, e))?;
    let mut pairs = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let bad = |why: String| Error::Parse {
            path: path.to_path_buf(),
            reason: format!("line {}: {why}", i + 1),
        };
        let p: Line = serde_json::from_str(l).map_err(|e| bad(e.to_string()))?;
        if p.prompt.is_empty() || p.chosen.is_empty() || p.rejected.is_empty() {
            return Err(bad("an empty prompt, chosen or rejected".into()));
        }
        if p.chosen == p.rejected {
            return Err(bad("chosen and rejected are the same".into()));
        }
        let enc = |s: &str| codec.encode(s).map_err(|e| bad(format!("{e}")));
        pairs.push((enc(&p.prompt)?, enc(&p.chosen)?, enc(&p.rejected)?));
    }
    Ok(pairs)
}

/// The pairs of a run: made with `source` when it asks for samples, else read from `file`.
pub(crate) fn load(
    file: &str,
    source: &PairSource,
    model: &Gpt,
    codec: &Codec,
    lang: Option<Arithmetic>,
    device: &Device,
) -> Result<Vec<Pair>> {
    if source.samples > 0 {
        verifier_pairs(source, model, codec, lang, device)
    } else {
        file_pairs(Path::new(file), codec)
    }
}

/// (train, held out): a seeded `val_fraction` of `pairs` held out; too few pairs to leave some
/// on both sides is an error naming `method`.
pub(crate) fn split(
    method: &str,
    mut pairs: Vec<Pair>,
    val_fraction: f64,
    seed: u64,
) -> Result<(Vec<Pair>, Vec<Pair>)> {
    let held = ((pairs.len() as f64) * val_fraction).round() as usize;
    if pairs.len() < 2 || held == 0 || held == pairs.len() {
        return Err(Error::Config(format!(
            "{method}: {} pairs, too few to train on and hold out a {val_fraction} share",
            pairs.len()
        )));
    }
    pairs.shuffle(&mut StdRng::seed_from_u64(seed ^ 0x5F7));
    let train = pairs.split_off(held);
    Ok((train, pairs))
}
