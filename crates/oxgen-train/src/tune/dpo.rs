//! Direct preference optimisation (Rafailov et al., 2023) and IPO (Azar et al., 2023) of an
//! autoregressive run against its frozen self ([`super::objective::preference_loss`]), on the
//! shared loop. Pairs come from a JSONL file of `{"prompt", "chosen", "rejected"}` lines (TRL's
//! preference format), or are made by sampling the base `pairs_from_verifier` times per prompt
//! and ranking the samples with a verifier: a best and a worst make a pair, and prompts whose
//! samples all score alike make none. A seeded `val_fraction` of the pairs is held out; each
//! evaluation reports the held-out preference accuracy (the share of pairs whose implicit
//! reward margin β·h is positive), the mean margin, and, for sums, held-out exact match.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use oxgen_models::ar::Gpt;
use oxgen_models::ar::arithmetic::{self, Arithmetic};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::objective::{PreferenceLoss, preference_loss};
use super::pairs::{self, PairSource};
use super::rows::{Rows, append_line, host, token_log_probs};
use super::tuning::{self, Plan};
use crate::ar::{ArRun, ArTrainConfig, Codec, load_ar};
use crate::checkpoint::Loaded;
use crate::trainer::adamw::FusedAdamW;
use crate::trainer::parallel::{ParallelSummary, Replicas, Shard, shard_ranges};
use crate::trainer::rng::{Stream, step_rng};
use crate::trainer::{self, StepContext, StepOutput, TrainOptions, TrainStep};
use crate::{Error, Result};

/// How to run DPO. Every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpoConfig {
    /// A JSONL file of `{"prompt", "chosen", "rejected"}` lines (unused when
    /// `pairs_from_verifier` > 0).
    pub pairs: String,
    /// Make pairs by sampling the base this many times per prompt (0: read `pairs`).
    pub pairs_from_verifier: usize,
    /// The verifier that ranks the samples (a reward spec).
    pub reward: String,
    /// Prompts to sample pairs from.
    pub prompts: usize,
    /// Sampling temperature of the pairs.
    pub temperature: f32,
    /// `sigmoid` (DPO) or `ipo`.
    pub loss: PreferenceLoss,
    /// β.
    pub beta: f64,
    /// Weight of a negative log-likelihood term on the chosen completions (per token), added
    /// to the preference loss as in Pang et al. (2024), "Iterative reasoning preference
    /// optimization" (0: plain DPO or IPO).
    pub nll_weight: f64,
    /// Optimizer steps.
    pub steps: usize,
    /// Pairs per step.
    pub batch_size: usize,
    /// Peak learning rate (AdamW, 5 steps of warmup, then constant).
    pub lr: f64,
    /// Global gradient-norm clip (0: none).
    pub grad_clip: f64,
    /// Evaluate (and checkpoint) every this many steps.
    pub eval_every: usize,
    /// Share of the pairs held out.
    pub val_fraction: f64,
    /// Seed of the pairs, the split and the batches.
    pub seed: u64,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self {
            pairs: String::new(),
            pairs_from_verifier: 8,
            reward: "arithmetic".into(),
            prompts: 2000,
            temperature: 1.0,
            loss: PreferenceLoss::Sigmoid,
            beta: 0.1,
            nll_weight: 0.0,
            steps: 300,
            batch_size: 64,
            lr: 1e-3,
            grad_clip: 1.0,
            eval_every: 50,
            val_fraction: 0.1,
            seed: 0,
        }
    }
}

impl DpoConfig {
    /// The config with the fields of a TOML (or `.json`) file laid over it.
    pub fn merge_file(self, file: &Path) -> Result<Self> {
        crate::config::merge_file(self, file, "dpo")
    }

    /// Refuses a config no run can use.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(format!("dpo: {what}")));
        if self.steps == 0 || self.batch_size == 0 {
            return bad("steps and batch_size must be at least 1");
        }
        if self.pairs_from_verifier == 1 {
            return bad("pairs_from_verifier needs at least 2 samples per prompt to rank");
        }
        if self.pairs_from_verifier == 0 && self.pairs.is_empty() {
            return bad("give a pairs file, or pairs_from_verifier ≥ 2");
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(self.lr) || !positive(self.beta) || !positive(f64::from(self.temperature)) {
            return bad("lr, beta and temperature must be positive");
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return bad("val_fraction must be in (0, 1)");
        }
        if !(self.nll_weight.is_finite() && self.nll_weight >= 0.0) {
            return bad("nll_weight must be ≥ 0");
        }
        Ok(())
    }
}

/// What a DPO run's manifests hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DpoRunConfig {
    /// `dpo`.
    pub method: String,
    /// The base run, as given.
    pub base: String,
    /// The base run's config (the model of the tuned run).
    pub base_config: ArTrainConfig,
    /// The method's config.
    pub dpo: DpoConfig,
}

/// Family name of DPO runs in manifests ([`load_ar`] loads them like `ar` runs).
pub const FAMILY: &str = "ar-dpo";

pub use super::pairs::Pair;

/// What a run returns.
#[derive(Debug)]
pub struct DpoReport {
    /// The tuned model.
    pub model: Gpt,
    /// Steps done in total.
    pub steps: usize,
    /// Pairs trained on and held out.
    pub pairs: (usize, usize),
    /// Held-out evaluations: (step, preference accuracy, mean margin β·h, exact match of sums).
    pub evals: Vec<(usize, f64, f64, Option<f64>)>,
}

/// The DPO step.
struct Step {
    config: DpoConfig,
    codec: Codec,
    lang: Option<Arithmetic>,
    train: Vec<Pair>,
    held: Vec<Pair>,
    device: Device,
    eval_device: Device,
    model: Gpt,
    reference: Gpt,
    optim: ModuleOptimizer,
    context: usize,
    out: Option<PathBuf>,
    evals: Vec<(usize, f64, f64, Option<f64>)>,
    /// A data-parallel run's replicas.
    replicas: Option<Replicas>,
}

impl Step {
    /// The loss of `pairs` and h of each pair (see [`policy_loss`]), the reference's
    /// log-probabilities computed here.
    fn loss(&self, model: &Gpt, pairs: &[&Pair], device: &Device) -> (Tensor<1>, Tensor<1>) {
        let reference = self.reference_log_probs(pairs);
        policy_loss(&self.config, self.context, model, pairs, &reference, device)
    }

    /// The frozen reference's sequence log-probabilities of `pairs`: the chosen completions',
    /// then the rejected ones' (`2n` values, on the host).
    fn reference_log_probs(&self, pairs: &[&Pair]) -> Vec<f32> {
        let n = pairs.len();
        let (reference, _) =
            sequence_log_probs(self.context, &self.reference, pairs, &self.eval_device);
        host(reference.reshape([1, 2 * n]))
    }
}

/// Sequence log-probabilities of each pair's chosen completion, then of each rejected one
/// (`[2n]`), and the completions' token counts.
fn sequence_log_probs(
    context: usize,
    model: &Gpt,
    pairs: &[&Pair],
    device: &Device,
) -> (Tensor<1>, Vec<f32>) {
    let refs: Vec<(&[u32], &[u32])> = pairs
        .iter()
        .map(|(p, c, _)| (p.as_slice(), c.as_slice()))
        .chain(pairs.iter().map(|(p, _, r)| (p.as_slice(), r.as_slice())))
        .collect();
    let rows = Rows::one_per_row(&refs, context + 1);
    let counts = rows
        .mask
        .chunks(rows.l - 1)
        .map(|m| m.iter().sum())
        .collect();
    let tokens =
        Tensor::<2, Int>::from_data(TensorData::new(rows.tokens, [rows.n, rows.l]), device);
    let mask = Tensor::<2>::from_data(TensorData::new(rows.mask, [rows.n, rows.l - 1]), device);
    let (logp, _) = token_log_probs(model, tokens);
    ((logp * mask).sum_dim(1).reshape([rows.n]), counts)
}

/// The loss of `pairs` (the preference loss, plus the chosen completions' NLL per token times
/// `nll_weight`; a mean over pairs) and h of each pair. `reference` holds the frozen
/// reference's log-probabilities as [`Step::reference_log_probs`] gives them: constants.
fn policy_loss(
    config: &DpoConfig,
    context: usize,
    model: &Gpt,
    pairs: &[&Pair],
    reference: &[f32],
    device: &Device,
) -> (Tensor<1>, Tensor<1>) {
    let n = pairs.len();
    let (policy, counts) = sequence_log_probs(context, model, pairs, device);
    let reference = Tensor::<1>::from_data(TensorData::new(reference.to_vec(), [2 * n]), device);
    let part = |t: &Tensor<1>, i: usize| t.clone().narrow(0, i * n, n);
    let (loss, h) = preference_loss(
        part(&policy, 0),
        part(&policy, 1),
        part(&reference, 0),
        part(&reference, 1),
        config.beta,
        config.loss,
    );
    if config.nll_weight == 0.0 {
        return (loss, h);
    }
    let per_token: Vec<f32> = counts[..n].iter().map(|c| 1.0 / c.max(1.0)).collect();
    let per_token = Tensor::<1>::from_data(TensorData::new(per_token, [n]), device);
    let nll = (part(&policy, 0) * per_token).mean().neg();
    (loss + nll.mul_scalar(config.nll_weight), h)
}

impl TrainStep for Step {
    fn step(&mut self, ctx: StepContext) -> Result<StepOutput> {
        let c = &self.config;
        let mut rng = step_rng(c.seed, ctx.step, Stream::Tune);
        let batch: Vec<&Pair> = (0..c.batch_size)
            .map(|_| &self.train[rng.random_range(0..self.train.len())])
            .collect();
        // Several devices: the reference runs here, on the whole batch (its values are
        // constants), and each replica gets its pairs and their reference values.
        let reference = self
            .replicas
            .is_some()
            .then(|| self.reference_log_probs(&batch));
        let (value, h, grads) = match (self.replicas.as_mut(), reference) {
            (Some(replicas), Some(reference)) => {
                let n = batch.len();
                let shards = shard_ranges(n, replicas.len())
                    .into_iter()
                    .map(|r| {
                        let (a, b) = (r.start, r.end);
                        let values = [&reference[a..b], &reference[n + a..n + b]].concat();
                        ((batch[a..b].to_vec(), values), r.len())
                    })
                    .collect();
                let (config, context) = (&self.config, self.context);
                let out = replicas.grads_with(
                    ctx.step,
                    &self.model,
                    Shard::by_rows(shards),
                    None,
                    |model, (pairs, r): (Vec<&Pair>, Vec<f32>), device, _| {
                        let (loss, h) = policy_loss(config, context, model, &pairs, &r, device);
                        (loss, host(h.detach().reshape([1, pairs.len()])))
                    },
                )?;
                let value = out.loss.into_scalar::<f32>() as f64;
                (value, out.aux.concat(), out.grads)
            }
            _ => {
                let (loss, h) = self.loss(&self.model, &batch, &self.device);
                let value = loss.clone().into_scalar::<f32>() as f64;
                if !value.is_finite() {
                    return Ok(StepOutput::loss(value, f64::NAN));
                }
                let h = host(h.detach().reshape([1, batch.len()]));
                (
                    value,
                    h,
                    GradientsParams::from_grads(loss.backward(), &self.model),
                )
            }
        };
        let accuracy = h.iter().filter(|&&x| x > 0.0).count() as f64 / h.len() as f64;
        let margin = c.beta * h.iter().map(|&x| x as f64).sum::<f64>() / h.len() as f64;
        let out = tuning::apply(
            &mut self.model,
            &mut self.optim,
            value,
            grads,
            ctx.lr,
            c.grad_clip,
        );
        Ok(StepOutput {
            extra: serde_json::json!({"pref_accuracy": accuracy, "margin": margin}),
            message: Some(format!("loss {value:.4} acc {accuracy:.2}")),
            ..out
        })
    }

    fn parallel(&self) -> Option<ParallelSummary> {
        self.replicas.as_ref().map(|r| r.summary())
    }

    fn state(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        tuning::state(&self.model, &self.optim, &self.codec)
    }

    fn restore(&mut self, ck: &Loaded) -> Result<()> {
        self.model = tuning::restore(self.model.clone(), &mut self.optim, ck)?;
        Ok(())
    }

    fn evaluate(&mut self, done: usize) -> Result<()> {
        let model = self.model.valid();
        let (mut right, mut margin) = (0usize, 0.0);
        for chunk in self.held.chunks(64) {
            let refs: Vec<&Pair> = chunk.iter().collect();
            let (_, h) = self.loss(&model, &refs, &self.eval_device);
            let h = host(h.reshape([1, refs.len()]));
            right += h.iter().filter(|&&x| x > 0.0).count();
            margin += self.config.beta * h.iter().map(|&x| x as f64).sum::<f64>();
        }
        let n = self.held.len().max(1) as f64;
        let (accuracy, margin) = (right as f64 / n, margin / n);
        let exact = self
            .lang
            .map(|l| arithmetic::exact_match(&model, &l, &l.problems(true), &self.eval_device));
        tracing::info!(
            "step {done}: held-out preference accuracy {accuracy:.4}, margin {margin:.4}{}",
            exact.map_or(String::new(), |e| format!(", exact match {e:.4}"))
        );
        self.evals.push((done, accuracy, margin, exact));
        if let Some(out) = &self.out {
            let line = serde_json::json!({
                "step": done, "held_out": exact.unwrap_or(accuracy),
                "pref_accuracy": accuracy, "margin": margin, "exact_match": exact,
            });
            append_line(&out.join("eval.jsonl"), &line)?;
        }
        Ok(())
    }
}

/// Tunes the autoregressive run at `base` with DPO (or IPO) as `config` says; `opts.out` gets
/// the tuned run (read like an `ar` run).
pub fn dpo(base: &Path, config: &DpoConfig, opts: &TrainOptions) -> Result<DpoReport> {
    config.validate()?;
    opts.parallel.check(&opts.device, config.batch_size)?;
    let ArRun {
        config: base_config,
        model: reference,
        codec,
    } = tuning::load_base(base, &opts.device)?;
    let lang = (base_config.data == "arithmetic").then_some(Arithmetic {
        digits: base_config.digits,
        seed: base_config.seed,
    });
    let source = PairSource {
        reward: config.reward.clone(),
        prompts: config.prompts,
        samples: config.pairs_from_verifier,
        temperature: config.temperature,
        seed: config.seed,
    };
    let all = pairs::load(
        &config.pairs,
        &source,
        &reference,
        &codec,
        lang,
        &opts.device,
    )?;
    let (train, pairs) = pairs::split("dpo", all, config.val_fraction, config.seed)?;
    tracing::info!(
        "{} preference pairs ({} held out)",
        train.len() + pairs.len(),
        pairs.len()
    );
    let run = trainer::open_run(opts)?;
    let ad = opts.device.clone().autodiff();
    let model = load_ar(base, &ad)?.model;
    let context = base_config.model.context;
    let mut step = Step {
        config: config.clone(),
        codec,
        lang,
        train,
        held: pairs,
        device: ad,
        eval_device: opts.device.clone(),
        model,
        reference,
        optim: FusedAdamW::default().init(),
        context,
        out: run.as_ref().map(|r| r.path().to_path_buf()),
        evals: Vec::new(),
        replicas: Replicas::new(&opts.parallel, None),
    };
    let tuned = DpoRunConfig {
        method: "dpo".into(),
        base: base.display().to_string(),
        base_config,
        dpo: config.clone(),
    };
    let plan = Plan {
        family: FAMILY,
        config: &tuned,
        method: "dpo",
        shape: oxgen_models::DataShape::Vector { dim: context },
        seed: config.seed,
        steps: config.steps,
        lr: config.lr,
        rows_per_step: config.batch_size,
        eval_every: config.eval_every,
        title: "DPO loss",
    };
    let summary = tuning::run(&mut step, plan, run.as_ref(), opts)?;
    if let Some(r) = &run {
        let name = if lang.is_some() {
            "held-out exact match"
        } else {
            "held-out preference accuracy"
        };
        tuning::curves(r.path(), "DPO", name, vec![])?;
    }
    Ok(DpoReport {
        model: step.model.valid(),
        steps: summary.done,
        pairs: (step.train.len(), step.held.len()),
        evals: step.evals,
    })
}
