//! GRPO with verifiable rewards (Shao et al., 2024) on an autoregressive run: each step draws
//! prompts, samples a group of completions per prompt through the KV-cached decoder, scores
//! them with a [`Reward`], normalises the rewards within each group, and takes the clipped
//! policy-gradient step with a per-token k3 KL penalty to the frozen base
//! ([`super::objective::grpo_loss`]); the log-probabilities are recomputed in one batched
//! forward. It runs on the shared loop (`metrics.jsonl`, checkpoints, exact resume), and writes
//! `eval.jsonl` and `curves.png` (reward, KL, clip fraction, entropy, held-out accuracy).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use oxgen_models::ar::arithmetic::{self, Arithmetic};
use oxgen_models::ar::{DecodeOptions, Gpt};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::objective::{group_advantages, grpo_loss};
use super::reward::{Reward, RewardContext, Sample, parse, score_all};
use super::rows::{Rows, append_line, host, sample, token_log_probs};
use super::tuning::{self, Plan};
use crate::ar::{ArRun, ArTrainConfig, Codec, load_ar};
use crate::checkpoint::Loaded;
use crate::trainer::adamw::FusedAdamW;
use crate::trainer::optim::clip_global_norm;
use crate::trainer::parallel::{Replicas, Shard as ParallelShard, shard_ranges};
use crate::trainer::rng::{Stream, step_rng};
use crate::trainer::{self, StepContext, StepOutput, TrainOptions, TrainStep};
use crate::{Error, Result};

/// How to run GRPO. Every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpoConfig {
    /// The reward's spec (see [`super::reward::parse`]).
    pub reward: String,
    /// A format pattern whose whole-completion match adds `format_weight` to the reward.
    pub format: Option<String>,
    /// See `format`.
    pub format_weight: f64,
    /// Optimizer steps.
    pub steps: usize,
    /// Prompts per step.
    pub prompts: usize,
    /// Completions sampled per prompt (the group).
    pub group: usize,
    /// Peak learning rate (AdamW, 5 steps of warmup, then constant). The default suits oxgen's
    /// small models (the sums' base trains at 3e-3).
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Weight of the k3 KL penalty to the base.
    pub beta: f64,
    /// ε of the clipped ratio.
    pub clip: f64,
    /// Gradient steps on each batch of samples (the ratio is 1 on the first).
    pub updates_per_batch: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// New tokens per completion (0: the answer's length for sums, else 64).
    pub max_new_tokens: usize,
    /// A completion ends after this text (empty: never; default a newline, one line each).
    pub stop: String,
    /// Global gradient-norm clip (0: none).
    pub grad_clip: f64,
    /// Evaluate (and checkpoint) every this many steps.
    pub eval_every: usize,
    /// Completions sampled for a held-out evaluation that is not exact match of sums.
    pub eval_samples: usize,
    /// Seed of the prompts and samples.
    pub seed: u64,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        Self {
            reward: "arithmetic".into(),
            format: None,
            format_weight: 0.1,
            steps: 500,
            prompts: 32,
            group: 8,
            lr: 1e-3,
            weight_decay: 0.0,
            beta: 0.04,
            clip: 0.2,
            updates_per_batch: 1,
            temperature: 1.0,
            max_new_tokens: 0,
            stop: "\n".into(),
            grad_clip: 1.0,
            eval_every: 10,
            eval_samples: 256,
            seed: 0,
        }
    }
}

impl GrpoConfig {
    /// The config with the fields of a TOML (or `.json`) file laid over it.
    pub fn merge_file(self, file: &Path) -> Result<Self> {
        crate::config::merge_file(self, file, "grpo")
    }

    /// Refuses a config no run can use.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Config(format!("grpo: {what}")));
        if self.group < 2 {
            return bad(format!("group must be at least 2 (got {})", self.group));
        }
        if self.prompts == 0 || self.steps == 0 || self.updates_per_batch == 0 {
            return bad("prompts, steps and updates_per_batch must be at least 1".into());
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(self.lr) || !positive(f64::from(self.temperature)) {
            return bad("lr and temperature must be positive".into());
        }
        let in_unit = self.clip > 0.0 && self.clip < 1.0;
        if !(self.beta.is_finite() && self.beta >= 0.0 && in_unit) {
            return bad("beta must be ≥ 0 and clip in (0, 1)".into());
        }
        let decay_ok = self.weight_decay.is_finite() && self.weight_decay >= 0.0;
        if !self.format_weight.is_finite() || !decay_ok {
            return bad("format_weight must be finite and weight_decay ≥ 0".into());
        }
        Ok(())
    }
}

/// What a tuned run's manifests hold: the method, its config and the base's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunedConfig {
    /// `grpo`.
    pub method: String,
    /// The base run, as given.
    pub base: String,
    /// The base run's config (the model of the tuned run).
    pub base_config: ArTrainConfig,
    /// The method's config.
    pub grpo: GrpoConfig,
}

/// Family name of GRPO runs in manifests ([`load_ar`] loads them like `ar` runs).
pub const FAMILY: &str = "ar-grpo";

/// What a run returns.
#[derive(Debug)]
pub struct GrpoReport {
    /// The tuned model.
    pub model: Gpt,
    /// Steps done in total.
    pub steps: usize,
    /// Held-out evaluations: (step, value); step 0 is the base.
    pub evals: Vec<(usize, f64)>,
    /// What the held-out value is.
    pub eval_name: String,
}

/// Where the prompts come from.
enum Prompts {
    /// Sums: training problems to sample from, held-out ones to evaluate on.
    Sums {
        lang: Arithmetic,
        train: Vec<(u64, u64)>,
        held: Vec<(u64, u64)>,
    },
    /// Fixed prompts (a text run's line start, or a pairs file's prompts), as tokens.
    Fixed(Vec<Vec<u32>>),
}

impl Prompts {
    fn draw(&self, rng: &mut impl Rng, n: usize) -> Vec<Vec<u32>> {
        match self {
            Prompts::Sums { lang, train, .. } => (0..n)
                .map(|_| {
                    let (a, b) = train[rng.random_range(0..train.len())];
                    lang.prompt(a, b)
                })
                .collect(),
            Prompts::Fixed(p) => (0..n)
                .map(|_| p[rng.random_range(0..p.len())].clone())
                .collect(),
        }
    }
}

/// The GRPO step.
struct Step {
    config: GrpoConfig,
    codec: Codec,
    prompts: Prompts,
    reward: Box<dyn Reward>,
    /// The raw reward (no format bonus), for held-out evaluation.
    plain: Box<dyn Reward>,
    device: Device,
    eval_device: Device,
    model: Gpt,
    reference: Gpt,
    optim: ModuleOptimizer,
    max_new: usize,
    out: Option<PathBuf>,
    evals: Vec<(usize, f64)>,
    /// A data-parallel run's replicas (the sampling stays on the first device).
    replicas: Option<Replicas>,
}

/// One replica's rows of a GRPO batch, on the host: tokens `[n, l]`, the completion mask, the
/// reference's log-probabilities (`[n, l − 1]` each), the advantages `[n]`, and the old
/// policy's log-probabilities after the batch's first update.
struct Shard {
    tokens: Vec<i64>,
    mask: Vec<f32>,
    reference: Vec<f32>,
    adv: Vec<f32>,
    old: Option<Vec<f32>>,
    n: usize,
    l: usize,
}

/// What a replica hands back besides its loss: its old log-probabilities, and its sums of the
/// KL and clipped terms and of the entropy over its completion tokens, and their count.
type ShardStats = (Vec<f32>, f64, f64, f64, f64);

/// A replica's GRPO loss on its rows (see [`grpo_loss`]), and its [`ShardStats`].
fn shard_loss(
    model: &Gpt,
    s: Shard,
    device: &Device,
    clip: f64,
    beta: f64,
) -> (Tensor<1>, ShardStats) {
    let (n, l) = (s.n, s.l);
    let f2 = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [n, l - 1]), device);
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(s.tokens, [n, l]), device);
    let (logp, entropy) = token_log_probs(model, tokens);
    let old = s.old.unwrap_or_else(|| host(logp.clone().detach()));
    let adv = Tensor::<1>::from_data(TensorData::new(s.adv, [n]), device);
    let g = grpo_loss(
        logp,
        f2(old.clone()),
        f2(s.reference),
        adv,
        f2(s.mask.clone()),
        clip,
        beta,
    );
    // The KL and clipped shares are over the shard's tokens (at least 1): back to sums.
    let count = s.mask.iter().sum::<f32>() as f64;
    let per = count.max(1.0);
    let entropy: f64 = host(entropy.detach())
        .iter()
        .zip(&s.mask)
        .map(|(e, m)| (e * m) as f64)
        .sum();
    let kl = g.kl.into_scalar::<f32>() as f64 * per;
    let clipped = g.clipped.into_scalar::<f32>() as f64 * per;
    (g.loss, (old, kl, clipped, count, entropy))
}

impl Step {
    /// The batch's `updates_per_batch` updates split over the replicas: rows of whole
    /// sequences, each shard weighted by its rows (the loss is a mean over sequences).
    /// Returns (loss, gradient norm, KL, clipped share, entropy) of the last update.
    #[allow(clippy::too_many_arguments)]
    fn parallel_updates(
        &mut self,
        ctx: StepContext,
        tokens: &[i64],
        mask: &[f32],
        reference: &[f32],
        advantages: &[f64],
        n: usize,
        l: usize,
    ) -> Result<Option<(f64, f64, f64, f64, f64)>> {
        let c = self.config.clone();
        let replicas = self.replicas.as_mut().expect("a parallel run");
        let ranges = shard_ranges(n, replicas.len());
        let mut olds: Vec<Option<Vec<f32>>> = vec![None; ranges.len()];
        let mut stats = None;
        for _ in 0..c.updates_per_batch {
            let shards = ranges
                .iter()
                .zip(olds.iter_mut())
                .map(|(r, old)| {
                    let (a, b, k) = (r.start, r.end, r.len());
                    let shard = Shard {
                        tokens: tokens[a * l..b * l].to_vec(),
                        mask: mask[a * (l - 1)..b * (l - 1)].to_vec(),
                        reference: reference[a * (l - 1)..b * (l - 1)].to_vec(),
                        adv: advantages[a..b].iter().map(|&v| v as f32).collect(),
                        old: old.take(),
                        n: k,
                        l,
                    };
                    (shard, k)
                })
                .collect();
            let out = replicas.grads_with(
                ctx.step,
                &self.model,
                ParallelShard::by_rows(shards),
                None,
                |model, s: Shard, device, _| shard_loss(model, s, device, c.clip, c.beta),
            )?;
            let value = out.loss.into_scalar::<f32>() as f64;
            if !value.is_finite() {
                return Ok(None);
            }
            let (mut kl, mut clipped, mut tokens_n, mut entropy) = (0.0, 0.0, 0.0, 0.0);
            for (i, (old, k, cl, t, e)) in out.aux.into_iter().enumerate() {
                olds[i] = Some(old);
                (kl, clipped, tokens_n, entropy) =
                    (kl + k, clipped + cl, tokens_n + t, entropy + e);
            }
            let tokens_n = f64::max(tokens_n, 1.0);
            let mut grads = out.grads;
            let norm = clip_global_norm(&self.model, &mut grads, c.grad_clip);
            self.model = self.optim.step(ctx.lr, self.model.clone(), grads);
            stats = Some((
                value,
                norm,
                kl / tokens_n,
                clipped / tokens_n,
                entropy / tokens_n,
            ));
        }
        Ok(stats)
    }

    fn options(&self, temperature: f32) -> DecodeOptions {
        let stop = self.codec.encode(&self.config.stop).unwrap_or_default();
        DecodeOptions {
            max_new_tokens: self.max_new,
            temperature,
            stop: if stop.is_empty() { vec![] } else { vec![stop] },
            ..DecodeOptions::default()
        }
    }

    fn score(
        &self,
        reward: &dyn Reward,
        prompts: &[Vec<u32>],
        completions: &[Vec<u32>],
    ) -> Result<Vec<f64>> {
        let texts: Vec<(String, String)> = prompts
            .iter()
            .zip(completions)
            .map(|(p, c)| (self.codec.decode(p), self.codec.decode(c)))
            .collect();
        let samples: Vec<Sample<'_>> = prompts
            .iter()
            .zip(completions)
            .zip(&texts)
            .map(|((p, c), (pt, ct))| Sample {
                prompt: p,
                completion: c,
                prompt_text: pt,
                completion_text: ct,
            })
            .collect();
        score_all(reward, &samples)
    }

    /// Held-out accuracy: exact match of greedy answers for sums, else the mean raw reward of
    /// sampled completions, with the share of them that are distinct.
    fn held_out(&self) -> Result<(f64, Option<f64>)> {
        let model = self.model.valid();
        match &self.prompts {
            Prompts::Sums { lang, held, .. } if self.plain.name() == "arithmetic" => Ok((
                arithmetic::exact_match(&model, lang, held, &self.eval_device),
                None,
            )),
            prompts => {
                let mut rng = step_rng(self.config.seed ^ 0xE7A1, 0, Stream::Tune);
                let p = prompts.draw(&mut rng, self.config.eval_samples);
                let seeds: Vec<u64> = (0..p.len()).map(|_| rng.random()).collect();
                let options = self.options(self.config.temperature);
                let c = sample(&model, &p, &seeds, &options, &self.eval_device);
                let r = self.score(self.plain.as_ref(), &p, &c)?;
                let distinct: std::collections::HashSet<&Vec<u32>> = c.iter().collect();
                let n = r.len().max(1) as f64;
                Ok((r.iter().sum::<f64>() / n, Some(distinct.len() as f64 / n)))
            }
        }
    }
}

impl TrainStep for Step {
    fn step(&mut self, ctx: StepContext) -> Result<StepOutput> {
        // A copy: the parallel updates borrow the step mutably.
        let c = &self.config.clone();
        let mut rng = step_rng(c.seed, ctx.step, Stream::Tune);
        let distinct = self.prompts.draw(&mut rng, c.prompts);
        let prompts: Vec<Vec<u32>> = distinct
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.clone(), c.group))
            .collect();
        let seeds: Vec<u64> = (0..prompts.len()).map(|_| rng.random()).collect();
        let t0 = Instant::now();
        let completions = sample(
            &self.model.valid(),
            &prompts,
            &seeds,
            &self.options(c.temperature),
            &self.eval_device,
        );
        let t1 = Instant::now();
        let rewards = self.score(self.reward.as_ref(), &prompts, &completions)?;
        let advantages = group_advantages(&rewards, c.group)?;
        let t2 = Instant::now();
        let n = prompts.len();
        let pairs: Vec<(&[u32], &[u32])> = prompts
            .iter()
            .zip(&completions)
            .map(|(p, c)| (p.as_slice(), c.as_slice()))
            .collect();
        let Rows {
            tokens, mask, l, ..
        } = Rows::one_per_row(&pairs, usize::MAX);
        let on =
            |d: &Device| Tensor::<2, Int>::from_data(TensorData::new(tokens.clone(), [n, l]), d);
        let device = self.device.clone();
        let f2 = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [n, l - 1]), &device);
        let (reference, _) = token_log_probs(&self.reference, on(&self.eval_device));
        let reference = f2(host(reference));
        let mask_t = f2(mask.clone());
        let adv = Tensor::<1>::from_data(
            TensorData::new(
                advantages.iter().map(|&a| a as f32).collect::<Vec<_>>(),
                [n],
            ),
            &self.device,
        );
        let (mut old, mut stats) = (None, (0.0, 0.0, 0.0, 0.0, 0.0));
        if self.replicas.is_some() {
            let reference = host(reference.clone());
            match self.parallel_updates(ctx, &tokens, &mask, &reference, &advantages, n, l)? {
                Some(s) => stats = s,
                None => return Ok(StepOutput::loss(f64::NAN, f64::NAN)),
            }
        }
        let updates = match self.replicas {
            Some(_) => 0,
            None => c.updates_per_batch,
        };
        for _ in 0..updates {
            let (logp, entropy) = token_log_probs(&self.model, on(&self.device));
            let old_logp = old
                .get_or_insert_with(|| f2(host(logp.clone().detach())))
                .clone();
            let g = grpo_loss(
                logp,
                old_logp,
                reference.clone(),
                adv.clone(),
                mask_t.clone(),
                c.clip,
                c.beta,
            );
            let entropy = host(entropy.detach());
            let tokens_n = mask.iter().sum::<f32>().max(1.0) as f64;
            let ent = entropy
                .iter()
                .zip(&mask)
                .map(|(e, m)| (e * m) as f64)
                .sum::<f64>()
                / tokens_n;
            let value = g.loss.clone().into_scalar::<f32>() as f64;
            if !value.is_finite() {
                return Ok(StepOutput::loss(value, f64::NAN));
            }
            let kl = g.kl.into_scalar::<f32>() as f64;
            let clipped = g.clipped.into_scalar::<f32>() as f64;
            let mut grads = GradientsParams::from_grads(g.loss.backward(), &self.model);
            let norm = clip_global_norm(&self.model, &mut grads, c.grad_clip);
            self.model = self.optim.step(ctx.lr, self.model.clone(), grads);
            stats = (value, norm, kl, clipped, ent);
        }
        let mean = rewards.iter().sum::<f64>() / n as f64;
        let std = (rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        let (value, norm, kl, clipped, entropy) = stats;
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        Ok(StepOutput {
            loss: value,
            grad_norm: norm,
            extra: serde_json::json!({
                "reward_mean": mean, "reward_std": std, "kl": kl,
                "clip_frac": clipped, "entropy": entropy,
                "sample_ms": ms(t0, t1), "score_ms": ms(t1, t2), "update_ms": ms(t2, Instant::now()),
            }),
            message: Some(format!("reward {mean:.3} kl {kl:.4}")),
            pending: None,
        })
    }

    fn state(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        tuning::state(&self.model, &self.optim, &self.codec)
    }

    fn restore(&mut self, ck: &Loaded) -> Result<()> {
        self.model = tuning::restore(self.model.clone(), &mut self.optim, ck)?;
        Ok(())
    }

    fn parallel(&self) -> Option<crate::trainer::parallel::ParallelSummary> {
        self.replicas.as_ref().map(|r| r.summary())
    }

    fn evaluate(&mut self, done: usize) -> Result<()> {
        let (v, distinct) = self.held_out()?;
        match distinct {
            Some(d) => tracing::info!("step {done}: held-out {v:.4}, distinct samples {d:.3}"),
            None => tracing::info!("step {done}: held-out {v:.4}"),
        }
        self.evals.push((done, v));
        if let Some(out) = &self.out {
            let line = serde_json::json!({"step": done, "held_out": v, "distinct": distinct});
            append_line(&out.join("eval.jsonl"), &line)?;
        }
        Ok(())
    }
}

/// Tunes the autoregressive run at `base` with GRPO as `config` says; `opts.out` gets the tuned
/// run (a run folder that `oxgen sample` and [`load_ar`] read like an `ar` run). Held-out
/// accuracy is evaluated on the base first (step 0), every `eval_every` steps and at the end.
pub fn grpo(base: &Path, config: &GrpoConfig, opts: &TrainOptions) -> Result<GrpoReport> {
    config.validate()?;
    opts.parallel
        .check(&opts.device, config.prompts * config.group)?;
    let ArRun {
        config: base_config,
        model: reference,
        codec,
    } = tuning::load_base(base, &opts.device)?;
    let lang = (base_config.data == "arithmetic").then_some(Arithmetic {
        digits: base_config.digits,
        seed: base_config.seed,
    });
    let ctx = RewardContext {
        arithmetic: lang,
        device: Some(opts.device.clone()),
    };
    let plain = parse(&config.reward, &ctx)?;
    let reward: Box<dyn Reward> = match &config.format {
        Some(f) => Box::new(super::reward::WithFormat {
            inner: parse(&config.reward, &ctx)?,
            format: super::reward::RegexReward::new(f)?,
            weight: config.format_weight,
        }),
        None => parse(&config.reward, &ctx)?,
    };
    let prompts = match (lang, config.reward.strip_prefix("pairs:")) {
        (_, Some(file)) => {
            let pairs = super::reward::PairsReward::load(Path::new(file))?;
            Prompts::Fixed(
                pairs
                    .prompts()
                    .iter()
                    .map(|p| codec.prompt(p))
                    .collect::<Result<_>>()?,
            )
        }
        (Some(lang), None) => Prompts::Sums {
            lang,
            train: lang.problems(false),
            held: lang.problems(true),
        },
        (None, None) => Prompts::Fixed(vec![codec.default_prompt()]),
    };
    let longest = match &prompts {
        Prompts::Sums { lang, .. } => lang.prompt_len(),
        Prompts::Fixed(p) => p.iter().map(Vec::len).max().unwrap_or(1),
    };
    let context = base_config.model.context;
    let wanted = match (config.max_new_tokens, lang) {
        (0, Some(l)) => l.digits as usize + 1,
        (0, None) => 64,
        (n, _) => n,
    };
    if longest >= context {
        return Err(Error::Config(format!(
            "grpo: a prompt of {longest} tokens leaves no room in the base's context of {context}"
        )));
    }
    let max_new = wanted.min(context - longest);
    let run = trainer::open_run(opts)?;
    let ad = opts.device.clone().autodiff();
    let model = load_ar(base, &ad)?.model;
    let mut step = Step {
        config: config.clone(),
        codec: codec.clone(),
        prompts,
        reward,
        plain,
        device: ad,
        eval_device: opts.device.clone(),
        model,
        reference,
        optim: FusedAdamW {
            weight_decay: config.weight_decay as f32,
            ..Default::default()
        }
        .init(),
        max_new,
        out: run.as_ref().map(|r| r.path().to_path_buf()),
        evals: Vec::new(),
        replicas: Replicas::new(&opts.parallel, None),
    };
    let tuned = TunedConfig {
        method: "grpo".into(),
        base: base.display().to_string(),
        base_config,
        grpo: config.clone(),
    };
    let plan = Plan {
        family: FAMILY,
        config: &tuned,
        method: "grpo",
        shape: oxgen_models::DataShape::Vector { dim: context },
        seed: config.seed,
        steps: config.steps,
        lr: config.lr,
        rows_per_step: config.prompts * config.group,
        eval_every: config.eval_every,
        title: "GRPO loss",
    };
    let summary = tuning::run(&mut step, plan, run.as_ref(), opts)?;
    let eval_name = match &step.prompts {
        Prompts::Sums { .. } if step.plain.name() == "arithmetic" => "held-out exact match",
        _ => "mean reward of samples",
    };
    let evals = match &run {
        Some(r) => tuning::curves(r.path(), "GRPO", eval_name, step_series(r.path())?)?,
        None => step.evals.clone(),
    };
    Ok(GrpoReport {
        model: step.model.valid(),
        steps: summary.done,
        evals,
        eval_name: eval_name.into(),
    })
}

/// The per-step panels of `curves.png`: reward mean, KL, clip fraction and entropy (from
/// `metrics.jsonl`).
fn step_series(dir: &Path) -> Result<Vec<tuning::Panel<'static>>> {
    let path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("metrics", &path, e))?;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let series = |key: &str| -> Vec<(f64, f64)> {
        lines
            .iter()
            .filter_map(|v| Some((v["step"].as_f64()? + 1.0, v[key].as_f64()?)))
            .collect()
    };
    Ok(vec![
        ("reward (mean)", series("reward_mean")),
        ("KL to base (k3)", series("kl")),
        ("clip fraction", series("clip_frac")),
        ("entropy (nats)", series("entropy")),
    ])
}
