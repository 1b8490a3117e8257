//! Extraction audits of a text model, one model or a NAF combination of shard models:
//!
//! - **exposure** (Carlini et al., 2019): the canary's rank among `N` random candidates of its
//!   secret's format, by the log-probability of the secret after the prefix, with
//!   exposure = log₂(N + 1) − log₂ rank (at most log₂(N + 1); a secret the model never saw ranks
//!   uniformly, for a mean near log₂ e = 1.44 bits);
//! - **verbatim extraction**: whether the greedy continuation of the prefix is the secret, and the
//!   share of sampled continuations (temperature 1) that are.

use burn::tensor::{Device, Int, Tensor, TensorData};
use oxgen_models::ar::naf::{NafRule, generate_naf, generate_naf_sequence, naf_token_log_probs};
use oxgen_models::ar::{DecodeOptions, Gpt, generate, generate_batch};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use super::canary::Canary;
use crate::ar::Codec;
use crate::{Error, Result};

/// What is audited: one model, or the NAF combination of shard models.
pub enum Target<'a> {
    /// One model.
    Model(&'a Gpt),
    /// Shard models combined token by token.
    Naf {
        /// The shard models.
        models: Vec<&'a Gpt>,
        /// The rule.
        rule: NafRule,
    },
    /// Shard models combined over whole outputs: CP-k on complete continuations, sampled by
    /// rejection ([`generate_naf_sequence`]). Candidates rank by minᵢ qᵢ(secret | prefix); there
    /// is no greedy continuation and no per-token likelihood.
    NafSequence {
        /// The shard models.
        models: Vec<&'a Gpt>,
        /// Proposals allowed per sample before it counts as refused.
        max_proposals: usize,
    },
}

impl Target<'_> {
    fn context(&self) -> usize {
        match self {
            Target::Model(m) => m.context(),
            Target::Naf { models, .. } | Target::NafSequence { models, .. } => {
                models.iter().map(|m| m.context()).min().unwrap_or(0)
            }
        }
    }

    /// Each row's score of its last `s` tokens: log p, or for [`Target::NafSequence`]
    /// minᵢ log qᵢ (log p up to the constant log Z).
    fn suffix_scores(&self, tokens: Tensor<2, Int>, s: usize) -> Result<Vec<f64>> {
        let sum = |rows: Vec<Vec<f64>>| -> Vec<f64> {
            rows.iter()
                .map(|lp| lp[lp.len() - s..].iter().sum())
                .collect()
        };
        match self {
            Target::NafSequence { models, .. } => {
                let mut best: Option<Vec<f64>> = None;
                for m in models {
                    let v = sum(Target::Model(m).token_log_probs(tokens.clone())?);
                    best = Some(match best {
                        None => v,
                        Some(b) => b.iter().zip(&v).map(|(x, y)| x.min(*y)).collect(),
                    });
                }
                Ok(best.unwrap_or_default())
            }
            _ => Ok(sum(self.token_log_probs(tokens)?)),
        }
    }

    /// log p of each row's tokens after the first, `[b][t − 1]`.
    fn token_log_probs(&self, tokens: Tensor<2, Int>) -> Result<Vec<Vec<f64>>> {
        match self {
            Target::Model(m) => {
                let [b, t] = tokens.dims();
                let v: Vec<f32> = m
                    .token_log_probs(tokens)
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| Error::Device(format!("{e:?}")))?;
                Ok((0..b)
                    .map(|r| {
                        v[r * (t - 1)..(r + 1) * (t - 1)]
                            .iter()
                            .map(|&x| x as f64)
                            .collect()
                    })
                    .collect())
            }
            Target::Naf { models, rule } => {
                naf_token_log_probs(models, *rule, tokens).map_err(Error::Config)
            }
            Target::NafSequence { .. } => Err(Error::Config(
                "sequence-level CP-k has no per-token likelihood: its normaliser Z is known only \
                 through its acceptance rate"
                    .into(),
            )),
        }
    }

    /// `n` continuations of `max_new` tokens after `prompt`: greedy when `temperature` is 0,
    /// else sampled with seeds `seed + i`. [`Target::NafSequence`] has no greedy continuation
    /// (none is returned) and leaves out samples it refuses (no acceptance).
    fn continue_prompt(
        &self,
        prompt: &[u32],
        max_new: usize,
        n: usize,
        temperature: f64,
        seed: u64,
        device: &Device,
    ) -> Result<Vec<Vec<u32>>> {
        match self {
            Target::Model(m) => {
                let options = DecodeOptions {
                    max_new_tokens: max_new,
                    temperature: temperature as f32,
                    seed,
                    ..DecodeOptions::default()
                };
                Ok(if n == 1 {
                    vec![generate(m, prompt, &options, true, device, |_| {})]
                } else {
                    generate_batch(m, prompt, n, &options, device)
                })
            }
            Target::Naf { models, rule } => (0..n as u64)
                .map(|i| {
                    generate_naf(
                        models,
                        *rule,
                        prompt,
                        max_new,
                        temperature,
                        seed + i,
                        device,
                    )
                    .map(|(out, _)| out)
                    .map_err(Error::Config)
                })
                .collect(),
            Target::NafSequence {
                models,
                max_proposals,
            } => Ok(if temperature == 0.0 {
                Vec::new()
            } else {
                (0..n as u64)
                    .filter_map(|i| {
                        generate_naf_sequence(
                            models,
                            prompt,
                            max_new,
                            seed + i,
                            *max_proposals,
                            device,
                        )
                        .ok()
                        .map(|d| d.tokens)
                    })
                    .collect()
            }),
        }
    }
}

/// How hard to look.
#[derive(Clone, Debug)]
pub struct ExtractionOptions {
    /// Random candidates each secret is ranked among.
    pub candidates: usize,
    /// Sampled continuations per canary (temperature 1).
    pub samples: usize,
    /// Seed of the candidates and the samples.
    pub seed: u64,
}

impl Default for ExtractionOptions {
    fn default() -> Self {
        ExtractionOptions {
            candidates: 10_000,
            samples: 100,
            seed: 0,
        }
    }
}

/// One canary's audit.
#[derive(Clone, Debug, Serialize)]
pub struct CanaryAudit {
    /// The canary's prefix.
    pub prefix: String,
    /// Its secret.
    pub secret: String,
    /// −log p(secret | prefix), nats; for sequence-level CP-k −minᵢ log qᵢ(secret | prefix),
    /// which exceeds −log p by −log Z.
    pub nll: f64,
    /// 1 + the candidates scored strictly above the secret.
    pub rank: usize,
    /// log₂(N + 1) − log₂ rank.
    pub exposure: f64,
    /// The greedy continuation (none for sequence-level CP-k).
    pub greedy: Option<String>,
    /// Whether it is the secret.
    pub greedy_extracted: bool,
    /// Sampled continuations that are the secret.
    pub sampled_extracted: usize,
    /// Samples drawn (fewer than asked when sequence-level CP-k refused some).
    pub sampled: usize,
}

/// The audit of a set of canaries.
#[derive(Clone, Debug, Serialize)]
pub struct ExtractionReport {
    /// Candidates per canary (N).
    pub candidates: usize,
    /// Sampled continuations per canary.
    pub samples: usize,
    /// log₂(N + 1), the largest exposure measurable.
    pub max_exposure: f64,
    /// The mean exposure of a secret whose rank is uniform (a model that never saw it).
    pub chance_exposure: f64,
    /// Mean exposure over the canaries.
    pub mean_exposure: f64,
    /// Share of canaries whose greedy continuation is the secret (none for sequence-level
    /// CP-k).
    pub greedy_rate: Option<f64>,
    /// Share of all sampled continuations that are the secret.
    pub sampled_rate: f64,
    /// Samples that sequence-level CP-k refused (no proposal accepted).
    pub refused: usize,
    /// Each canary.
    pub canaries: Vec<CanaryAudit>,
}

/// E[log₂(N + 1) − log₂ R] for R uniform on 1..=N + 1.
pub fn chance_exposure(n: usize) -> f64 {
    let m = n + 1;
    let mean_log: f64 = (1..=m).map(|r| (r as f64).log2()).sum::<f64>() / m as f64;
    (m as f64).log2() - mean_log
}

/// Audits `target` (whose tokens `codec` reads) for each of `canaries`. Candidates the
/// tokenizer cannot encode (a digit the training text never had) count as ranked below the
/// secret, their probability being 0. Errors on a canary the
/// tokenizer cannot encode, a prefix that is empty after encoding, and a secret longer than the
/// context.
pub fn extraction_audit(
    target: &Target,
    codec: &Codec,
    canaries: &[Canary],
    opts: &ExtractionOptions,
    device: &Device,
) -> Result<ExtractionReport> {
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0xe4_7ac7);
    let ctx = target.context();
    let mut out = Vec::with_capacity(canaries.len());
    let bar = indicatif::ProgressBar::new(canaries.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30.cyan/blue} canary {pos}/{len} ETA {eta}")
            .expect("valid template"),
    );
    for c in canaries {
        let prefix = codec.encode(&c.prefix)?;
        let secret = codec.encode(&c.secret)?;
        let s = secret.len();
        if prefix.is_empty() || s + 1 > ctx {
            return Err(Error::Config(format!(
                "canary {:?}: needs a prefix and a secret of at most {} tokens",
                c.prefix,
                ctx - 1
            )));
        }
        // The prefix's last tokens that fit the context with the secret.
        let keep = &prefix[prefix.len().saturating_sub(ctx + 1 - s)..];
        // A candidate with a character the tokenizer lacks has probability 0: it ranks below
        // the secret without being scored.
        let mut rows: Vec<Vec<u32>> = vec![secret.clone()];
        let mut drawn = 0;
        while drawn < opts.candidates {
            let text = c.candidate(&mut rng);
            if text == c.secret {
                continue;
            }
            drawn += 1;
            if let Ok(cand) = codec.encode(&text)
                && cand.len() == s
            {
                rows.push(cand);
            }
        }
        let mut scores = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(512) {
            let t = keep.len() + s;
            let ids: Vec<i64> = chunk
                .iter()
                .flat_map(|r| keep.iter().chain(r).map(|&x| x as i64))
                .collect();
            let x = Tensor::<2, Int>::from_data(TensorData::new(ids, [chunk.len(), t]), device);
            scores.extend(target.suffix_scores(x, s)?);
        }
        let rank = 1 + scores[1..].iter().filter(|&&v| v > scores[0]).count();
        let greedy = target.continue_prompt(&prefix, s, 1, 0.0, 0, device)?.pop();
        let sampled = target.continue_prompt(&prefix, s, opts.samples, 1.0, opts.seed, device)?;
        out.push(CanaryAudit {
            prefix: c.prefix.clone(),
            secret: c.secret.clone(),
            nll: -scores[0],
            rank,
            exposure: ((opts.candidates + 1) as f64).log2() - (rank as f64).log2(),
            greedy: greedy.as_ref().map(|g| codec.decode(g)),
            greedy_extracted: greedy.as_ref() == Some(&secret),
            sampled_extracted: sampled.iter().filter(|o| **o == secret).count(),
            sampled: sampled.len(),
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let n = out.len().max(1) as f64;
    Ok(ExtractionReport {
        candidates: opts.candidates,
        samples: opts.samples,
        max_exposure: ((opts.candidates + 1) as f64).log2(),
        chance_exposure: chance_exposure(opts.candidates),
        mean_exposure: out.iter().map(|c| c.exposure).sum::<f64>() / n,
        greedy_rate: match out.iter().filter(|c| c.greedy.is_some()).count() {
            0 => None,
            g => Some(out.iter().filter(|c| c.greedy_extracted).count() as f64 / g as f64),
        },
        sampled_rate: out.iter().map(|c| c.sampled_extracted).sum::<usize>() as f64
            / out.iter().map(|c| c.sampled).sum::<usize>().max(1) as f64,
        refused: out.iter().map(|c| opts.samples - c.sampled).sum(),
        canaries: out,
    })
}

/// Exact NLL of `text` under `target`, in nats, over windows of the context that overlap by one
/// token (as [`crate::ar::nll_of_text`]); returns (nats, tokens scored).
pub fn nll_of_text_under(
    target: &Target,
    codec: &Codec,
    text: &str,
    device: &Device,
) -> Result<(f64, usize)> {
    let tokens = codec.encode(text)?;
    if tokens.len() < 2 {
        return Err(Error::Config("the text needs at least two tokens".into()));
    }
    let ctx = target.context();
    let mut total = 0.0;
    let mut start = 0;
    while start + 1 < tokens.len() {
        let end = (start + ctx).min(tokens.len());
        let ids: Vec<i64> = tokens[start..end].iter().map(|&t| t as i64).collect();
        let x = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, end - start]), device);
        total -= target.token_log_probs(x)?[0].iter().sum::<f64>();
        start = end - 1;
    }
    Ok((total, tokens.len() - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform ranks over N + 1 = 2 give (1 + 0)/2 bits; large N tends to log₂ e.
    #[test]
    fn chance_exposure_by_hand() {
        assert!((chance_exposure(1) - 0.5).abs() < 1e-12);
        assert!((chance_exposure(100_000) - std::f64::consts::LOG2_E).abs() < 1e-3);
    }
}
