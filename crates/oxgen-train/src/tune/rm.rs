//! A reward model: the base GPT with a scalar head on its final features at a completion's last
//! token, trained on preference pairs with the Bradley–Terry loss −log σ(r(x, y_w) − r(x, y_l))
//! (Ouyang et al., 2022, eq. 1; TRL's `RewardTrainer`). Pairs come from a JSONL file or are made
//! by a verifier from the base's samples (`pairs.rs`); a seeded share is held out, and each
//! evaluation reports the held-out pairwise accuracy. A trained run serves as the `model:RUN`
//! reward ([`ModelReward`]).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};
use oxgen_models::ar::Gpt;
use oxgen_models::ar::arithmetic::Arithmetic;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::pairs::{self, Pair, PairSource};
use super::reward::{Reward, Sample};
use super::rows::{Rows, append_line, host};
use super::tuning::{self, Plan};
use crate::ar::{ArRun, ArTrainConfig, Codec, load_ar};
use crate::checkpoint::{self, Loaded, load_weights};
use crate::trainer::adamw::FusedAdamW;
use crate::trainer::parallel::{ParallelSummary, Replicas, Shard, shard_ranges};
use crate::trainer::rng::{Stream, step_rng};
use crate::trainer::{self, StepContext, StepOutput, TrainOptions, TrainStep};
use crate::{Error, Result};

/// The GPT and a scalar head.
#[derive(Module, Debug)]
pub struct RewardModel {
    gpt: Gpt,
    head: Linear,
}

impl RewardModel {
    /// The score of each row at its last token.
    ///
    /// # Shapes
    /// - `tokens`: `[n, l]`; `last`: n positions (< l); returns `[n]`.
    pub fn score(&self, tokens: Tensor<2, Int>, last: &[usize]) -> Tensor<1> {
        let features = self.gpt.features(tokens); // [n, l, w]
        let [n, _, w] = features.dims();
        let index: Vec<i64> = last
            .iter()
            .flat_map(|&p| std::iter::repeat_n(p as i64, w))
            .collect();
        let index =
            Tensor::<3, Int>::from_data(TensorData::new(index, [n, 1, w]), &features.device());
        let at = features.gather(1, index).reshape([n, w]);
        self.head.forward(at).reshape([n])
    }
}

/// How to train a reward model. Every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RmConfig {
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
    /// Seed of the pairs, the split, the head and the batches.
    pub seed: u64,
}

impl Default for RmConfig {
    fn default() -> Self {
        Self {
            pairs: String::new(),
            pairs_from_verifier: 8,
            reward: "arithmetic".into(),
            prompts: 8000,
            temperature: 1.0,
            steps: 2000,
            batch_size: 64,
            lr: 1e-3,
            grad_clip: 1.0,
            eval_every: 50,
            val_fraction: 0.1,
            seed: 0,
        }
    }
}

impl RmConfig {
    /// The config with the fields of a TOML (or `.json`) file laid over it.
    pub fn merge_file(self, file: &Path) -> Result<Self> {
        crate::config::merge_file(self, file, "rm")
    }

    /// Refuses a config no run can use.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(format!("rm: {what}")));
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
        if !positive(self.lr) || !positive(f64::from(self.temperature)) {
            return bad("lr and temperature must be positive");
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return bad("val_fraction must be in (0, 1)");
        }
        Ok(())
    }
}

/// What a reward model run's manifests hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RmRunConfig {
    /// `rm`.
    pub method: String,
    /// The base run, as given.
    pub base: String,
    /// The base run's config (the reward model's backbone).
    pub base_config: ArTrainConfig,
    /// The method's config.
    pub rm: RmConfig,
}

/// Family name of reward model runs in manifests (not an `ar` run: it has no output head).
pub const FAMILY: &str = "rm";

/// What a run returns.
#[derive(Debug)]
pub struct RmReport {
    /// The reward model.
    pub model: RewardModel,
    /// Steps done in total.
    pub steps: usize,
    /// Pairs trained on and held out.
    pub pairs: (usize, usize),
    /// Held-out pairwise accuracy: (step, accuracy).
    pub evals: Vec<(usize, f64)>,
}

/// Prompt + completion rows of the chosen then the rejected answers, and each row's last
/// token position.
fn rows_of(pairs: &[&Pair], context: usize) -> (Rows, Vec<usize>) {
    let refs: Vec<(&[u32], &[u32])> = pairs
        .iter()
        .map(|(p, c, _)| (p.as_slice(), c.as_slice()))
        .chain(pairs.iter().map(|(p, _, r)| (p.as_slice(), r.as_slice())))
        .collect();
    let last = refs
        .iter()
        .map(|(p, c)| (p.len() + c.len()).min(context + 1) - 1)
        .collect();
    (Rows::one_per_row(&refs, context + 1), last)
}

struct Step {
    config: RmConfig,
    codec: Codec,
    train: Vec<Pair>,
    held: Vec<Pair>,
    device: Device,
    eval_device: Device,
    model: RewardModel,
    optim: ModuleOptimizer,
    context: usize,
    out: Option<PathBuf>,
    evals: Vec<(usize, f64)>,
    /// A data-parallel run's replicas.
    replicas: Option<Replicas>,
}

/// r(chosen) − r(rejected) of each pair, `[n]`.
fn margins(model: &RewardModel, pairs: &[&Pair], context: usize, device: &Device) -> Tensor<1> {
    let n = pairs.len();
    let (rows, last) = rows_of(pairs, context);
    let tokens =
        Tensor::<2, Int>::from_data(TensorData::new(rows.tokens, [rows.n, rows.l]), device);
    let r = model.score(tokens, &last);
    r.clone().narrow(0, 0, n) - r.narrow(0, n, n)
}

impl TrainStep for Step {
    fn step(&mut self, ctx: StepContext) -> Result<StepOutput> {
        let c = &self.config;
        let mut rng = step_rng(c.seed, ctx.step, Stream::Tune);
        let batch: Vec<&Pair> = (0..c.batch_size)
            .map(|_| &self.train[rng.random_range(0..self.train.len())])
            .collect();
        let context = self.context;
        // The loss on some pairs and their margins, read back.
        let loss_of = |model: &RewardModel, pairs: &[&Pair], device: &Device| {
            let m = margins(model, pairs, context, device);
            let loss = log_sigmoid(m.clone()).mean().neg();
            (loss, host(m.detach().reshape([1, pairs.len()])))
        };
        let (value, m, grads) = match self.replicas.as_mut() {
            Some(replicas) => {
                let shards = shard_ranges(batch.len(), replicas.len())
                    .into_iter()
                    .map(|r| (batch[r.clone()].to_vec(), r.len()))
                    .collect();
                let out = replicas.grads_with(
                    ctx.step,
                    &self.model,
                    Shard::by_rows(shards),
                    None,
                    |model, pairs: Vec<&Pair>, device, _| loss_of(model, &pairs, device),
                )?;
                let value = out.loss.into_scalar::<f32>() as f64;
                (value, out.aux.concat(), out.grads)
            }
            None => {
                let (loss, m) = loss_of(&self.model, &batch, &self.device);
                let value = loss.clone().into_scalar::<f32>() as f64;
                if !value.is_finite() {
                    return Ok(StepOutput::loss(value, f64::NAN));
                }
                (
                    value,
                    m,
                    GradientsParams::from_grads(loss.backward(), &self.model),
                )
            }
        };
        let accuracy = m.iter().filter(|&&x| x > 0.0).count() as f64 / m.len() as f64;
        let out = tuning::apply(
            &mut self.model,
            &mut self.optim,
            value,
            grads,
            ctx.lr,
            c.grad_clip,
        );
        Ok(StepOutput {
            extra: serde_json::json!({"pair_accuracy": accuracy}),
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
        let mut right = 0;
        for chunk in self.held.chunks(64) {
            let refs: Vec<&Pair> = chunk.iter().collect();
            let m = margins(&model, &refs, self.context, &self.eval_device);
            right += host(m.reshape([1, refs.len()]))
                .iter()
                .filter(|&&x| x > 0.0)
                .count();
        }
        let accuracy = right as f64 / self.held.len().max(1) as f64;
        tracing::info!("step {done}: held-out pairwise accuracy {accuracy:.4}");
        self.evals.push((done, accuracy));
        if let Some(out) = &self.out {
            append_line(
                &out.join("eval.jsonl"),
                &serde_json::json!({"step": done, "held_out": accuracy}),
            )?;
        }
        Ok(())
    }
}

/// The base's language of sums, if it was trained on one.
fn language(config: &ArTrainConfig) -> Option<Arithmetic> {
    (config.data == "arithmetic").then_some(Arithmetic {
        digits: config.digits,
        seed: config.seed,
    })
}

fn with_head(gpt: Gpt, width: usize, device: &Device, seed: u64) -> RewardModel {
    crate::trainer::optim::seeded_init(device, seed, || RewardModel {
        gpt,
        head: LinearConfig::new(width, 1).init(device),
    })
}

/// Trains a reward model on the autoregressive run at `base` as `config` says; `opts.out` gets
/// the run (`model:RUN` reads it).
pub fn rm(base: &Path, config: &RmConfig, opts: &TrainOptions) -> Result<RmReport> {
    config.validate()?;
    opts.parallel.check(&opts.device, config.batch_size)?;
    let ArRun {
        config: base_config,
        model: sampler,
        codec,
    } = tuning::load_base(base, &opts.device)?;
    let lang = language(&base_config);
    let source = PairSource {
        reward: config.reward.clone(),
        prompts: config.prompts,
        samples: config.pairs_from_verifier,
        temperature: config.temperature,
        seed: config.seed,
    };
    let all = pairs::load(&config.pairs, &source, &sampler, &codec, lang, &opts.device)?;
    let (train, pairs) = pairs::split("rm", all, config.val_fraction, config.seed)?;
    let run = trainer::open_run(opts)?;
    let ad = opts.device.clone().autodiff();
    let width = base_config.model.width;
    let model = with_head(load_ar(base, &ad)?.model, width, &ad, config.seed);
    let context = base_config.model.context;
    let mut step = Step {
        config: config.clone(),
        codec,
        train,
        held: pairs,
        device: ad,
        eval_device: opts.device.clone(),
        model,
        optim: FusedAdamW::default().init(),
        context,
        out: run.as_ref().map(|r| r.path().to_path_buf()),
        evals: Vec::new(),
        replicas: Replicas::new(&opts.parallel, None),
    };
    let tuned = RmRunConfig {
        method: "rm".into(),
        base: base.display().to_string(),
        base_config,
        rm: config.clone(),
    };
    let plan = Plan {
        family: FAMILY,
        config: &tuned,
        method: "rm",
        shape: oxgen_models::DataShape::Vector { dim: context },
        seed: config.seed,
        steps: config.steps,
        lr: config.lr,
        rows_per_step: config.batch_size,
        eval_every: config.eval_every,
        title: "reward model loss (Bradley–Terry)",
    };
    let summary = tuning::run(&mut step, plan, run.as_ref(), opts)?;
    if let Some(r) = &run {
        tuning::curves(
            r.path(),
            "reward model",
            "held-out pairwise accuracy",
            vec![],
        )?;
    }
    Ok(RmReport {
        model: step.model.valid(),
        steps: summary.done,
        pairs: (step.train.len(), step.held.len()),
        evals: step.evals,
    })
}

/// A trained reward model as a [`Reward`]: the score of the prompt and completion at the
/// completion's last token (both cut to the context).
pub struct ModelReward {
    name: String,
    model: RewardModel,
    context: usize,
}

impl ModelReward {
    /// Loads the reward model run (or checkpoint) at `path`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let ck = checkpoint::load(path)?;
        if ck.manifest.family != FAMILY {
            return Err(Error::Reward {
                reward: format!("model:{}", path.display()),
                reason: format!(
                    "it is a {} checkpoint, not a reward model (train one with `oxgen tune rm`)",
                    ck.manifest.family
                ),
            });
        }
        let config: RmRunConfig =
            serde_json::from_value(ck.manifest.config.clone()).map_err(|e| Error::Checkpoint {
                path: ck.dir.clone(),
                reason: format!("config unreadable: {e}"),
            })?;
        let m = &config.base_config.model;
        let blank = RewardModel {
            gpt: m.init(device),
            head: LinearConfig::new(m.width, 1).init(device),
        };
        let model = load_weights(blank, ck.file("model.bpk")?, &ck.dir)?;
        Ok(Self {
            name: format!("model:{}", path.display()),
            model,
            context: m.context,
        })
    }
}

impl Reward for ModelReward {
    fn score(&self, s: &Sample<'_>) -> f64 {
        let tokens: Vec<i64> = s
            .prompt
            .iter()
            .chain(s.completion)
            .take(self.context)
            .map(|&t| t as i64)
            .collect();
        let l = tokens.len().max(1);
        let device = self.model.head.weight.val().device();
        let t = Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, l]), &device);
        self.model.score(t, &[l - 1]).into_scalar::<f32>() as f64
    }
    fn name(&self) -> String {
        self.name.clone()
    }
}
