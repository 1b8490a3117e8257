//! The autoregressive trainer: one flat loop (as the diffusion trainer's) over next-token
//! prediction, with AdamW, warmup + cosine learning rate, global-norm clipping, gradient
//! accumulation, periodic validation loss in nats and bits per token, periodic greedy samples in
//! the log, atomic checkpoints that resume exactly, `metrics.jsonl` and `loss.png`.
//!
//! Data: `arithmetic` (the embedded synthetic language of sums; the loss is on the answer) or
//! any text file (character tokenizer built from it, the first 90% for training, the rest for
//! validation; the loss is on every token of random windows).

use std::path::Path;
use std::sync::Arc;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor};
use oxgen_models::Precision;
use oxgen_models::ar::arithmetic::{self, Arithmetic};
use oxgen_models::ar::{DecodeOptions, Gpt, GptConfig, generate};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

mod codec;
mod data;
mod grads;
mod private;

pub use codec::{
    ArRun, Codec, PIXEL_START, PIXEL_VOCAB, PixelGpt, images_nll, is_ar_checkpoint, load_ar,
    nll_of_text, sample_images, write_images,
};
use data::{StepDraws, step_draws};
pub use data::{TextData, load_text};

use crate::Hardware;
use crate::checkpoint::{Loaded, load_weights, optim_bytes, restore_optim, to_bytes};
use crate::config::{check_non_negative, check_positive};
use crate::trainer::optim::{clip_global_norm, clip_global_norm_on_device, seeded_init};
use crate::trainer::prefetch::Prefetch;
use crate::trainer::{self, LoopSpec, Schedule, StepContext, StepOutput, TrainOptions, TrainStep};
use crate::{Error, Result};

fn d_steps() -> usize {
    2000
}
fn d_batch() -> usize {
    64
}
fn d_one() -> usize {
    1
}
fn d_lr() -> f64 {
    1e-3
}
fn d_schedule() -> Schedule {
    Schedule::cosine(100, 0.1)
}
fn d_bad() -> usize {
    20
}
fn d_wd() -> f64 {
    0.1
}
fn d_clip() -> f64 {
    1.0
}
fn d_every() -> usize {
    250
}
fn d_eval_batches() -> usize {
    8
}
fn d_digits() -> u32 {
    2
}

/// The CPU preset of a text file, in words.
pub const CPU_TEXT_PRESET: &str =
    "4 layers × 4 heads × 128, context 128, 2,000 steps of 32 at lr 2e-3";

/// What to train and how. `model.vocab` and, for arithmetic, `model.context` are set from the
/// data. Every field has a default, so a config written before a field existed still loads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArTrainConfig {
    /// The model.
    #[serde(default)]
    pub model: GptConfig,
    /// `arithmetic`, `digits8` or a text file.
    #[serde(default = "d_data")]
    pub data: String,
    /// A text file's tokens: `chars` (its characters, as nanoGPT's shakespeare_char) or
    /// `bytes` (256 byte values: any file, UTF-8 or not).
    #[serde(default = "d_tokenizer")]
    pub tokenizer: String,
    /// Digits per operand of the arithmetic language.
    #[serde(default = "d_digits")]
    pub digits: u32,
    /// Optimizer steps.
    #[serde(default = "d_steps")]
    pub steps: usize,
    /// Sequences per micro-batch.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Micro-batches per step (gradient accumulation).
    #[serde(default = "d_one")]
    pub grad_accum: usize,
    /// Peak learning rate.
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Warmup and decay of the learning rate (cosine to lr / 10 by default).
    #[serde(default = "d_schedule")]
    pub schedule: Schedule,
    /// AdamW weight decay.
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    /// Global gradient-norm clip (0: off).
    #[serde(default = "d_clip")]
    pub grad_clip: f64,
    /// Validation, sample and checkpoint interval, in steps.
    #[serde(default = "d_every")]
    pub eval_every: usize,
    /// Validation batches per evaluation.
    #[serde(default = "d_eval_batches")]
    pub eval_batches: usize,
    /// Seed of initialisation and batches.
    #[serde(default)]
    pub seed: u64,
    /// Share of the digits held out (`digits8` only; the split is the shared seeded one, so
    /// 0.2 holds out the same rows as the other families' default).
    #[serde(default = "d_pixel_val")]
    pub val_fraction: f64,
    /// Non-finite steps in a row before the run stops with an error.
    #[serde(default = "d_bad")]
    pub max_bad_steps: usize,
    /// Differentially private training (DP-SGD) over the training records (problems, images,
    /// or disjoint blocks of `context + 1` tokens of a corpus): per-sample clipping replaces
    /// `grad_clip`, and each step is one sampled batch (`grad_accum` must be 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<crate::privacy::dpsgd::DpConfig>,
    /// Planted duplicates, for memorisation experiments (`digits8` only): `[images, repeats]`,
    /// that many training images (drawn by the seed) each present `repeats` times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<[usize; 2]>,
    /// The activations' precision: `f32`, or `f16` for mixed precision (f32 master weights and
    /// optimizer state, f16 forward and backward, dynamic loss scaling); f16 needs a device
    /// with f16 tensors (a wgpu adapter with shader-f16, or the CPU).
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

fn d_data() -> String {
    "arithmetic".into()
}

fn d_tokenizer() -> String {
    "chars".into()
}

impl Default for ArTrainConfig {
    /// [`ArTrainConfig::defaults`] of the arithmetic language.
    fn default() -> Self {
        Self::defaults("arithmetic")
    }
}

fn d_pixel_val() -> f64 {
    0.1
}

impl ArTrainConfig {
    /// A config for `data` with the given model.
    pub fn new(model: GptConfig, data: &str) -> Self {
        serde_json::from_value(serde_json::json!({ "model": model, "data": data }))
            .expect("defaults fill the rest")
    }

    /// The defaults for `data`: a 2-layer, 4-head, 64-wide model for `arithmetic` (1,500 steps,
    /// lr 3e-3), 3 layers × 3 heads × 96 for `digits8` (500 steps of 32, lr 2e-3), nanoGPT's
    /// shakespeare_char model and schedule for a text file.
    pub fn defaults(data: &str) -> Self {
        if data == "arithmetic" {
            let model = GptConfig::new(arithmetic::VOCAB)
                .with_layers(2)
                .with_heads(4)
                .with_width(64);
            let mut c = Self::new(model, data);
            c.steps = 1500;
            c.lr = 3e-3;
            c.weight_decay = 0.01;
            c.schedule.warmup_steps = 50;
            c
        } else if data == "digits8" {
            let model = GptConfig::new(PIXEL_VOCAB)
                .with_layers(3)
                .with_heads(3)
                .with_width(96);
            let mut c = Self::new(model, data);
            // 1,617 training images: a 4 × 4 × 128 model at batch 64 reached its lowest
            // validation NLL near step 500 (1.33 nats/pixel) and 1.73 by step 1,000, memorising.
            c.steps = 500;
            c.batch_size = 32;
            c.lr = 2e-3;
            c.schedule.warmup_steps = 50;
            c.eval_every = 250;
            c
        } else {
            let mut c = Self::new(GptConfig::new(65).with_dropout(0.2), data);
            c.steps = 5000;
            c.schedule.warmup_steps = 100;
            c
        }
    }

    /// The defaults for `data` sized to `hardware`: on the CPU a text file gets a 4-layer,
    /// 4-head, 128-wide model with a context of 128 ([`CPU_TEXT_PRESET`]), which trains in
    /// minutes there; everything else is [`ArTrainConfig::defaults`]. The second value says
    /// which preset this is and why, for the log.
    pub fn defaults_on(data: &str, hardware: Hardware) -> (Self, String) {
        let mut c = Self::defaults(data);
        if data == "arithmetic" || data == "digits8" {
            return (
                c,
                format!("preset: the {data} defaults (small enough for any device)"),
            );
        }
        match hardware {
            Hardware::Gpu => (
                c,
                "preset: gpu (nanoGPT's shakespeare_char: 6 × 6 × 384, context 256, 5,000 steps of 64)"
                    .into(),
            ),
            Hardware::Cpu => {
                c.model = c
                    .model
                    .with_layers(4)
                    .with_heads(4)
                    .with_width(128)
                    .with_context(128)
                    .with_dropout(0.0);
                (c.batch_size, c.steps, c.lr) = (32, 2000, 2e-3);
                c.eval_every = 500;
                (
                    c,
                    format!(
                        "preset: cpu ({CPU_TEXT_PRESET}), since the device is the CPU; the GPU preset (nanoGPT's 6 × 6 × 384) would take days here. Give --config to choose"
                    ),
                )
            }
        }
    }

    /// The config with the fields of a TOML (or `.json`) file laid over it.
    pub fn merge_file(self, file: &Path) -> Result<Self> {
        crate::config::merge_file(self, file, "ar")
    }

    /// Refuses values no run can use (the model's own checks included).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.steps == 0 || self.batch_size == 0 || self.grad_accum == 0 {
            return bad(format!(
                "steps, batch_size and grad_accum must be at least 1 (got {}, {}, {})",
                self.steps, self.batch_size, self.grad_accum
            ));
        }
        check_positive("lr", self.lr)?;
        check_non_negative("weight_decay", self.weight_decay, "")?;
        check_non_negative("grad_clip", self.grad_clip, " (0: off)")?;
        if self.eval_every == 0 || self.eval_batches == 0 || self.max_bad_steps == 0 {
            return bad("eval_every, eval_batches and max_bad_steps must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(format!(
                "val_fraction must be in [0, 1), got {}",
                self.val_fraction
            ));
        }
        if self.data == "digits8" && self.val_fraction <= 0.0 {
            return bad("digits8 needs a validation split: val_fraction must be above 0".into());
        }
        self.schedule.validate()?;
        if self.dp.is_some() && !self.precision.is_f32() {
            return bad("DP-SGD runs in f32: per-sample gradients are not kept in f16".into());
        }
        if self.dp.is_some() && self.grad_accum != 1 {
            return bad(format!(
                "DP-SGD takes one sampled batch per step: grad_accum must be 1, got {}",
                self.grad_accum
            ));
        }
        // vocab and context come from the data; check the rest with placeholders.
        let mut m = self.model.clone();
        (m.vocab, m.context) = (m.vocab.max(1), m.context.max(1));
        m.validate()
            .map_err(|e| Error::Config(format!("model: {e}")))
    }
}

/// What a run returns.
#[derive(Debug)]
pub struct ArReport {
    /// The trained model (on the training device, without autodiff).
    pub model: Gpt,
    /// Steps done in total.
    pub steps: usize,
    /// Training loss of the first and last step of this call.
    pub first_loss: f64,
    /// See `first_loss`.
    pub last_loss: f64,
    /// Validation loss (nats per token) at each evaluation: (step, loss).
    pub val: Vec<(usize, f64)>,
    /// Held-out exact match for arithmetic, after training.
    pub exact_match: Option<f64>,
    /// A DP run's plan (σ, q and the ε it spends).
    pub dp: Option<crate::privacy::dpsgd::DpPlan>,
    /// The device allocator's high-water mark in bytes (reserved; `None` on the CPU).
    pub memory_peak: Option<u64>,
    /// An f16 run's loss scaler at the end.
    pub loss_scale: Option<crate::trainer::loss_scale::LossScale>,
    /// A data-parallel run's throughput and all-reduce time.
    pub parallel: Option<crate::trainer::parallel::ParallelSummary>,
}

/// The autoregressive family's [`TrainStep`].
struct Step<'a> {
    config: &'a ArTrainConfig,
    data: &'a TextData,
    device: Device,
    eval_device: Device,
    model: Gpt,
    optim: ModuleOptimizer,
    /// Validation loss (nats per token) at each evaluation: (step, loss).
    val: Vec<(usize, f64)>,
    /// Each step's batches, drawn on a thread a few steps ahead.
    prefetch: Prefetch<StepDraws>,
    /// A DP run's privacy state.
    dp: Option<crate::privacy::state::DpState>,
    /// An f16 run's loss scaler.
    scaler: Option<crate::trainer::loss_scale::LossScale>,
    /// A data-parallel run's replicas.
    replicas: Option<crate::trainer::parallel::Replicas>,
}

impl TrainStep for Step<'_> {
    fn step(&mut self, ctx: StepContext) -> Result<StepOutput> {
        let c = self.config;
        let StepDraws {
            dropout_seed,
            batches,
            dp_rows,
        } = self.prefetch.get(ctx.step);
        if let Some(rows) = dp_rows {
            return self.dp_step(ctx, dropout_seed, batches, rows);
        }
        let scale = self.scaler.as_ref().map(|s| s.scale);
        let (mut grads, loss_sum, extra) =
            self.micro_batches(ctx.step, batches, dropout_seed, scale)?;
        let mut out = match scale {
            Some(scale) => self.half_update(ctx, grads, loss_sum, scale)?,
            None if ctx.defer => {
                let norm =
                    clip_global_norm_on_device(&self.model, &mut grads, c.grad_clip, &self.device);
                self.model = self.optim.step(ctx.lr, self.model.clone(), grads);
                StepOutput::pending(Tensor::cat(vec![loss_sum, norm], 0))
            }
            None => {
                let loss_sum = loss_sum.into_scalar::<f32>() as f64;
                if !loss_sum.is_finite() {
                    return Ok(StepOutput::loss(loss_sum, f64::NAN));
                }
                let grad_norm = clip_global_norm(&self.model, &mut grads, c.grad_clip);
                self.model = self.optim.step(ctx.lr, self.model.clone(), grads);
                StepOutput::loss(loss_sum, grad_norm)
            }
        };
        crate::trainer::merge_extra(&mut out, extra);
        Ok(out)
    }

    fn state(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let codec = serde_json::to_vec(&Codec::of(self.data)).expect("codec serializes");
        let mut files = vec![
            ("model.bpk", to_bytes(&self.model)?),
            ("optim.bpk", optim_bytes(&self.optim)?),
            ("codec.json", codec),
        ];
        files.extend(self.dp.as_ref().map(|dp| dp.file()));
        files.extend(self.scaler.as_ref().map(|s| s.file()));
        Ok(files)
    }

    fn restore(&mut self, ck: &Loaded) -> Result<()> {
        self.model = load_weights(self.model.clone(), ck.file("model.bpk")?, &ck.dir)?;
        restore_optim(&mut self.optim, ck, "optim.bpk")?;
        if let Some(dp) = self.dp.as_mut() {
            dp.restore(ck)?;
        }
        if self.scaler.is_some() {
            self.scaler = Some(crate::trainer::loss_scale::LossScale::restore(ck)?);
        }
        Ok(())
    }

    fn parallel(&self) -> Option<crate::trainer::parallel::ParallelSummary> {
        self.replicas.as_ref().map(|r| r.summary())
    }

    fn evaluate(&mut self, done: usize) -> Result<()> {
        let model = self.model.valid();
        let v = validation_loss(self.config, self.data, &model, &self.eval_device);
        self.val.push((done, v));
        tracing::info!(
            "step {done}: val {v:.4} nats/token ({:.4} bits)",
            v / std::f64::consts::LN_2
        );
        tracing::info!(
            "sample: {:?}",
            sample_text(self.data, &model, &self.eval_device)
        );
        Ok(())
    }
}

fn adamw(config: &ArTrainConfig) -> ModuleOptimizer {
    crate::trainer::adamw::FusedAdamW {
        weight_decay: config.weight_decay as f32,
        ..Default::default()
    }
    .init()
}

/// Trains a GPT as `config` says.
pub fn train_ar(config: &ArTrainConfig, opts: &TrainOptions) -> Result<ArReport> {
    config.validate()?;
    train_ar_on(config, &load_text(config)?, opts)
}

/// Trains a GPT on `data`: the embedded languages or the program's own tokens
/// ([`TextData::Corpus`]).
pub fn train_ar_on(
    config: &ArTrainConfig,
    data: &TextData,
    opts: &TrainOptions,
) -> Result<ArReport> {
    let config = complete(config, data)?;
    opts.parallel.check(&opts.device, config.batch_size)?;
    let run = trainer::open_run(opts)?;
    let plan = crate::privacy::state::open_plan(
        config.dp.as_ref(),
        data.records(config.model.context),
        config.batch_size,
        config.steps,
        run.as_ref().map(|r| r.path()),
    )?;
    let mut step = new_step(&config, data, plan.clone(), &opts.device, &opts.parallel)?;
    let spec = LoopSpec {
        family: "ar",
        config: &config,
        must_match: &["model", "data"],
        shape: oxgen_models::DataShape::Vector {
            dim: config.model.context,
        },
        seed: config.seed,
        steps: config.steps,
        lr: config.lr,
        schedule: &config.schedule,
        rows_per_step: config.batch_size * config.grad_accum,
        checkpoint_every: config.eval_every,
        eval_every: config.eval_every,
        max_bad_steps: config.max_bad_steps,
        ema_decay: None,
        title: "GPT training loss (nats/token)".into(),
        smaller: matches!(data, TextData::Corpus { .. }).then(|| CPU_TEXT_PRESET.to_string()),
    };
    let summary = trainer::run(&mut step, &spec, run.as_ref(), opts)?;
    let model = step.model.valid();
    if let (TextData::Pixels { val, .. }, Some(r)) = (data, run.as_ref())
        && !opts.skip_eval
    {
        let images = sample_images(&model, 100, config.seed, &opts.device);
        write_images(r.path(), &images)?;
        let nats = images_nll(&model, val, &opts.device);
        tracing::info!(
            "held-out digits: {nats:.2} nats per image ({:.4} bits/dim, exact)",
            nats / 64.0 / std::f64::consts::LN_2
        );
    }
    let exact_match = match data {
        TextData::Arithmetic(lang) if !opts.skip_eval => Some(arithmetic::exact_match(
            &model,
            lang,
            &lang.problems(true),
            &opts.device,
        )),
        _ => None,
    };
    Ok(ArReport {
        model,
        steps: summary.done,
        first_loss: summary.losses.first().copied().unwrap_or(f64::NAN),
        last_loss: summary.losses.last().copied().unwrap_or(f64::NAN),
        val: step.val,
        exact_match,
        dp: plan,
        memory_peak: summary.memory_peak,
        loss_scale: step.scaler,
        parallel: summary.parallel,
    })
}

/// `config` with the model's vocabulary and (for the embedded languages) context set from
/// `data`, checked.
fn complete(config: &ArTrainConfig, data: &TextData) -> Result<ArTrainConfig> {
    config.validate()?;
    let mut config = config.clone();
    config.model.vocab = data.vocab();
    match data {
        TextData::Arithmetic(lang) => config.model.context = lang.line_len(),
        TextData::Pixels { .. } => config.model.context = 65,
        TextData::Corpus { train, val, .. } => {
            let need = config.model.context + 2;
            if train.len() < need || val.len() < need {
                return Err(Error::Config(format!(
                    "the corpus has {} training and {} validation tokens: too few for a context of {}",
                    train.len(),
                    val.len(),
                    config.model.context
                )));
            }
        }
    }
    config.model.validate().map_err(Error::Config)?;
    Ok(config)
}

fn new_step<'a>(
    config: &'a ArTrainConfig,
    data: &'a TextData,
    plan: Option<crate::privacy::dpsgd::DpPlan>,
    device: &Device,
    parallel: &crate::trainer::parallel::DataParallel,
) -> Result<Step<'a>> {
    if !config.precision.supported_on(device) {
        return Err(Error::Config(format!(
            "precision {} needs a device with {0} tensors, and this one has none (a wgpu adapter needs shader-f16); use --precision f32",
            config.precision
        )));
    }
    let ad = device.clone().autodiff();
    let model = seeded_init(device, config.seed, || config.model.init(&ad))
        .with_precision(config.precision);
    let (c, shared, context) = (config.clone(), Arc::new(data.clone()), model.context());
    let dp = plan.as_ref().map(crate::privacy::state::DpState::new);
    let scaler = (!config.precision.is_f32()).then(Default::default);
    Ok(Step {
        config,
        data,
        device: ad,
        eval_device: device.clone(),
        model,
        optim: adamw(config),
        val: Vec::new(),
        prefetch: Prefetch::new(
            move |s| step_draws(&c, &shared, context, plan.as_ref(), s),
            2,
        ),
        dp,
        scaler,
        replicas: crate::trainer::parallel::Replicas::new(parallel, Some(context)),
    })
}

/// The autoregressive step alone, on freshly initialised weights (for `oxgen bench train`):
/// what [`train_ar_on`] runs each step, without the loop around it. `config` must already fit
/// `data` (vocabulary and context), as [`ArTrainConfig::fitted`] makes it. With `parallel`,
/// the step is split over its devices (the first must be `device`).
pub fn stepper<'a>(
    config: &'a ArTrainConfig,
    data: &'a TextData,
    device: &Device,
    parallel: &crate::trainer::parallel::DataParallel,
) -> Result<impl TrainStep + 'a> {
    parallel.check(device, config.batch_size)?;
    if complete(config, data)? != *config {
        return Err(Error::Config(
            "the config does not fit the data: use ArTrainConfig::fitted".into(),
        ));
    }
    let plan = crate::privacy::state::open_plan(
        config.dp.as_ref(),
        data.records(config.model.context),
        config.batch_size,
        config.steps,
        None,
    )?;
    new_step(config, data, plan, device, parallel)
}

impl ArTrainConfig {
    /// This config with the model's vocabulary and context set from `data`, checked.
    pub fn fitted(&self, data: &TextData) -> Result<Self> {
        complete(self, data)
    }
}

/// Mean validation loss in nats per scored token, on fixed batches.
pub fn validation_loss(
    config: &ArTrainConfig,
    data: &TextData,
    model: &Gpt,
    device: &Device,
) -> f64 {
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5eed);
    let total: f64 = (0..config.eval_batches)
        .map(|_| {
            data.loss(model, config.batch_size, true, &mut rng, device)
                .into_scalar::<f32>() as f64
        })
        .sum();
    total / config.eval_batches as f64
}

fn sample_text(data: &TextData, model: &Gpt, device: &Device) -> String {
    let greedy = DecodeOptions {
        temperature: 0.0,
        max_new_tokens: 0,
        ..DecodeOptions::default()
    };
    match data {
        TextData::Arithmetic(lang) => {
            let (a, b) = lang.problems(true)[0];
            let prompt = lang.prompt(a, b);
            let opts = DecodeOptions {
                max_new_tokens: lang.digits as usize + 1,
                ..greedy
            };
            let answer = generate(model, &prompt, &opts, true, device, |_| {});
            Arithmetic::render(&[prompt, answer].concat())
                .trim()
                .to_string()
        }
        TextData::Pixels { .. } => {
            let opts = DecodeOptions {
                max_new_tokens: 64,
                ..greedy
            };
            let img = generate(model, &[PIXEL_START], &opts, true, device, |_| {});
            img.chunks(8)
                .map(|r| {
                    r.iter()
                        .map(|&v| [' ', '.', ':', '#'][(v as usize / 5).min(3)])
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join("|")
        }
        TextData::Corpus { tokenizer, val, .. } => {
            let opts = DecodeOptions {
                max_new_tokens: 80.min(model.context() - 1),
                ..greedy
            };
            let out = generate(model, &val[..1], &opts, true, device, |_| {});
            tokenizer.decode(&[&val[..1], &out[..]].concat())
        }
    }
}
