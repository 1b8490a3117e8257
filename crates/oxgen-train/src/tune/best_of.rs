//! Best-of-n at sampling time: n completions of each prompt, and the one a reward ranks
//! highest. With a verifier this is an oracle; with a reward model (`model:RUN`) it measures
//! how well the model's ranking transfers to held-out prompts ([`best_of_n_sums`]).

use std::path::Path;

use burn::tensor::Device;
use oxgen_models::ar::arithmetic::Arithmetic;
use oxgen_models::ar::{DecodeOptions, Gpt};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::reward::{Reward, RewardContext, Sample, parse, score_all};
use super::rows::sample;
use crate::ar::{Codec, load_ar};
use crate::{Error, Result};

/// For each prompt, the best of `n` completions by `reward` and its score (the first on ties).
/// Candidate j of prompt k is sampled with seed `seed + k·2¹⁶ + j`, so the best of 4 is chosen
/// among the first 4 candidates that the best of 16 sees.
pub fn best_of_n(
    model: &Gpt,
    codec: &Codec,
    prompts: &[Vec<u32>],
    n: usize,
    reward: &dyn Reward,
    options: &DecodeOptions,
    seed: u64,
    device: &Device,
) -> Result<Vec<(Vec<u32>, f64)>> {
    if n == 0 {
        return Err(Error::Config("best-of-n needs n ≥ 1".into()));
    }
    let rows: Vec<Vec<u32>> = prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), n))
        .collect();
    let seeds: Vec<u64> = (0..rows.len() as u64)
        .map(|i| seed.wrapping_add(((i / n as u64) << 16) | (i % n as u64)))
        .collect();
    let completions = sample(model, &rows, &seeds, options, device);
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
    let scores = score_all(reward, &samples)?;
    Ok((0..prompts.len())
        .map(|k| {
            let group = k * n..(k + 1) * n;
            let best = group
                .clone()
                .max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)))
                .expect("n ≥ 1");
            (completions[best].clone(), scores[best])
        })
        .collect())
}

/// Held-out exact match of best-of-n answers of the sums run at `base`, ranked by the reward
/// `spec`, for each n in `ns`: `problems` held-out sums (all of them when 0, else a seeded
/// choice), sampled at temperature 1.
pub fn best_of_n_sums(
    base: &Path,
    spec: &str,
    ns: &[usize],
    problems: usize,
    seed: u64,
    device: &Device,
) -> Result<Vec<(usize, f64)>> {
    let run = load_ar(base, device)?;
    if run.config.data != "arithmetic" {
        return Err(Error::Config(format!(
            "best-of-n exact match needs a run on the arithmetic language, not {}",
            run.config.data
        )));
    }
    let lang = Arithmetic {
        digits: run.config.digits,
        seed: run.config.seed,
    };
    let ctx = RewardContext {
        arithmetic: Some(lang),
        device: Some(device.clone()),
    };
    let reward = parse(spec, &ctx)?;
    let mut held = lang.problems(true);
    if problems > 0 && problems < held.len() {
        held.shuffle(&mut StdRng::seed_from_u64(seed));
        held.truncate(problems);
    }
    let prompts: Vec<Vec<u32>> = held.iter().map(|&(a, b)| lang.prompt(a, b)).collect();
    let options = DecodeOptions {
        max_new_tokens: lang.digits as usize + 1,
        temperature: 1.0,
        ..DecodeOptions::default()
    };
    ns.iter()
        .map(|&n| {
            let best = best_of_n(
                &run.model,
                &run.codec,
                &prompts,
                n,
                reward.as_ref(),
                &options,
                seed,
                device,
            )?;
            let right = held
                .iter()
                .zip(&best)
                .filter(|((a, b), (c, _))| c.starts_with(&lang.answer(*a, *b)))
                .count();
            Ok((n, right as f64 / held.len() as f64))
        })
        .collect()
}
