//! Supervised fine-tuning (SFT) of an autoregressive run on prompt/completion pairs: the loss is
//! the mean negative log-likelihood of the completion tokens only (the prompt conditions, as in
//! TRL's `SFTTrainer` with a completion-only loss), and examples can be packed several to a
//! context window. It runs on the shared loop (`metrics.jsonl`, checkpoints, exact resume) and
//! writes `eval.jsonl` and `curves.png`.
//!
//! Data (`data`): `arithmetic`, the base's own language of sums (training problems and their
//! answers: labelled examples); or a file of JSONL lines `{"prompt": …, "completion": …}` (TRL's
//! prompt-completion format) or of TSV lines `prompt<TAB>completion` (`\n`, `\t` escaped), of
//! which a seeded `val_fraction` is held out.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use oxgen_models::ar::arithmetic::{self, Arithmetic};
use oxgen_models::ar::{Gpt, LoraConfig};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::rows::{Rows, append_line, token_log_probs};
use super::tuning::{self, Plan};
use crate::ar::{ArRun, ArTrainConfig, Codec, load_ar};
use crate::checkpoint::Loaded;
use crate::trainer::adamw::FusedAdamW;
use crate::trainer::optim::seeded_init;
use crate::trainer::parallel::{ParallelSummary, Replicas, Shard, shard_ranges};
use crate::trainer::rng::{Stream, step_rng};
use crate::trainer::{self, StepContext, StepOutput, TrainOptions, TrainStep};
use crate::{Error, Result};

/// How to fine-tune. Every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftConfig {
    /// `arithmetic`, or a JSONL or TSV file of prompt/completion pairs.
    pub data: String,
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate (AdamW, 5 steps of warmup, then constant).
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip (0: none).
    pub grad_clip: f64,
    /// Pack examples several to a context window.
    pub pack: bool,
    /// Evaluate (and checkpoint) every this many steps.
    pub eval_every: usize,
    /// Share of a file's pairs held out for evaluation.
    pub val_fraction: f64,
    /// Seed of the batches, the split and the adapters' initialisation.
    pub seed: u64,
    /// Train LoRA adapters (rank, α, target layers) on a frozen base instead of every weight.
    /// `oxgen tune merge` folds them into a plain checkpoint.
    pub lora: Option<LoraConfig>,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            data: "arithmetic".into(),
            steps: 500,
            batch_size: 64,
            lr: 1e-3,
            weight_decay: 0.0,
            grad_clip: 1.0,
            pack: false,
            eval_every: 50,
            val_fraction: 0.1,
            seed: 0,
            lora: None,
        }
    }
}

impl SftConfig {
    /// The config with the fields of a TOML (or `.json`) file laid over it.
    pub fn merge_file(self, file: &Path) -> Result<Self> {
        crate::config::merge_file(self, file, "sft")
    }

    /// Refuses a config no run can use.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(format!("sft: {what}")));
        if self.steps == 0 || self.batch_size == 0 {
            return bad("steps and batch_size must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr must be positive");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay must be ≥ 0");
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return bad("val_fraction must be in (0, 1)");
        }
        Ok(())
    }
}

/// What an SFT run's manifests hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SftRunConfig {
    /// `sft`.
    pub method: String,
    /// The base run, as given.
    pub base: String,
    /// The base run's config (the model of the tuned run).
    pub base_config: ArTrainConfig,
    /// The method's config.
    pub sft: SftConfig,
}

/// Family name of SFT runs in manifests ([`load_ar`] loads them like `ar` runs).
pub const FAMILY: &str = "ar-sft";

/// What a run returns.
#[derive(Debug)]
pub struct SftReport {
    /// The tuned model.
    pub model: Gpt,
    /// Steps done in total.
    pub steps: usize,
    /// Held-out evaluations: (step, value); step 0 is the base.
    pub evals: Vec<(usize, f64)>,
    /// What the held-out value is.
    pub eval_name: String,
}

type Example = (Vec<u32>, Vec<u32>);

/// The training and held-out pairs of `config.data`, encoded with the base's codec.
fn examples(
    config: &SftConfig,
    codec: &Codec,
    lang: Option<Arithmetic>,
) -> Result<(Vec<Example>, Vec<Example>)> {
    if config.data == "arithmetic" {
        let lang = lang.ok_or_else(|| {
            Error::Config(
                "sft: data arithmetic needs a base trained on the arithmetic language".into(),
            )
        })?;
        let pairs = |held| {
            lang.problems(held)
                .into_iter()
                .map(|(a, b)| (lang.prompt(a, b), lang.answer(a, b)))
                .collect()
        };
        return Ok((pairs(false), pairs(true)));
    }
    let path = Path::new(&config.data);
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("SFT data", path, e))?;
    let jsonl = path
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "json");
    let unescape = |s: &str| s.replace("\\n", "\n").replace("\\t", "\t");
    let mut all = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| Error::Parse {
            path: path.to_path_buf(),
            reason: format!("line {}: {why}", i + 1),
        };
        let (prompt, completion) = if jsonl {
            #[derive(Deserialize)]
            struct Pair {
                prompt: String,
                completion: String,
            }
            let p: Pair = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            (p.prompt, p.completion)
        } else {
            let (p, c) = line
                .split_once('\t')
                .ok_or_else(|| bad("no tab between prompt and completion".into()))?;
            (unescape(p), unescape(c))
        };
        if prompt.is_empty() || completion.is_empty() {
            return Err(bad("an empty prompt or completion".into()));
        }
        let encode = |s: &str| codec.encode(s).map_err(|e| bad(format!("{e}")));
        all.push((encode(&prompt)?, encode(&completion)?));
    }
    let held = ((all.len() as f64) * config.val_fraction).round() as usize;
    if all.len() < 2 || held == 0 || held == all.len() {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            reason: format!(
                "{} prompt/completion pairs: too few to hold out {} of them",
                all.len(),
                config.val_fraction
            ),
        });
    }
    all.shuffle(&mut StdRng::seed_from_u64(config.seed ^ 0x5F7));
    let train = all.split_off(held);
    Ok((train, all))
}

/// The SFT step.
struct Step {
    config: SftConfig,
    codec: Codec,
    lang: Option<Arithmetic>,
    train: Vec<Example>,
    held: Vec<Example>,
    device: Device,
    eval_device: Device,
    model: Gpt,
    optim: ModuleOptimizer,
    context: usize,
    out: Option<PathBuf>,
    evals: Vec<(usize, f64)>,
    /// A data-parallel run's replicas.
    replicas: Option<Replicas>,
}

impl Step {
    fn rows(&self, pairs: &[&Example]) -> Rows {
        let refs: Vec<(&[u32], &[u32])> = pairs
            .iter()
            .map(|(p, c)| (p.as_slice(), c.as_slice()))
            .collect();
        if self.config.pack {
            Rows::packed(&refs, self.context + 1)
        } else {
            Rows::one_per_row(&refs, self.context + 1)
        }
    }

    /// Mean negative log-likelihood of the completion tokens of `rows` under `model`, `[1]`.
    fn loss(model: &Gpt, rows: &Rows, device: &Device) -> Tensor<1> {
        let tokens = Tensor::<2, Int>::from_data(
            TensorData::new(rows.tokens.clone(), [rows.n, rows.l]),
            device,
        );
        let mask = Tensor::<2>::from_data(
            TensorData::new(rows.mask.clone(), [rows.n, rows.l - 1]),
            device,
        );
        let (logp, _) = token_log_probs(model, tokens);
        let count = rows.mask.iter().sum::<f32>().max(1.0) as f64;
        (logp * mask).sum().neg().div_scalar(count)
    }

    /// Held-out exact match of greedy answers (sums), else the held-out completion NLL.
    fn held_out(&self) -> f64 {
        let model = self.model.valid();
        if let Some(lang) = self.lang.filter(|_| self.config.data == "arithmetic") {
            return arithmetic::exact_match(&model, &lang, &lang.problems(true), &self.eval_device);
        }
        let (mut nats, mut tokens) = (0.0, 0.0);
        for chunk in self.held.chunks(64) {
            let refs: Vec<&Example> = chunk.iter().collect();
            let rows = self.rows(&refs);
            let count = rows.mask.iter().sum::<f32>() as f64;
            nats +=
                Self::loss(&model, &rows, &self.eval_device).into_scalar::<f32>() as f64 * count;
            tokens += count;
        }
        nats / tokens.max(1.0)
    }
}

impl TrainStep for Step {
    fn step(&mut self, ctx: StepContext) -> Result<StepOutput> {
        let c = &self.config;
        let mut rng = step_rng(c.seed, ctx.step, Stream::Tune);
        let batch: Vec<&Example> = (0..c.batch_size)
            .map(|_| &self.train[rng.random_range(0..self.train.len())])
            .collect();
        let rows = self.rows(&batch);
        let (value, grads) = match self.replicas.as_mut() {
            // The rows split over the replicas, each weighted by its share of the completion
            // tokens (the loss is a mean over them).
            Some(replicas) => {
                let total: f32 = rows.mask.iter().sum();
                let shards = rows
                    .split(&shard_ranges(rows.n, replicas.len()))
                    .into_iter()
                    .map(|r| Shard {
                        rows: r.n,
                        weight: match total > 0.0 {
                            true => (r.mask.iter().sum::<f32>() / total) as f64,
                            false => r.n as f64 / rows.n as f64,
                        },
                        data: r,
                    })
                    .collect();
                let out =
                    replicas.grads_with(ctx.step, &self.model, shards, None, |m, r, d, _| {
                        (Self::loss(m, &r, d), ())
                    })?;
                (out.loss.into_scalar::<f32>() as f64, out.grads)
            }
            None => {
                let loss = Self::loss(&self.model, &rows, &self.device);
                let value = loss.clone().into_scalar::<f32>() as f64;
                if !value.is_finite() {
                    return Ok(StepOutput::loss(value, f64::NAN));
                }
                (
                    value,
                    GradientsParams::from_grads(loss.backward(), &self.model),
                )
            }
        };
        let out = tuning::apply(
            &mut self.model,
            &mut self.optim,
            value,
            grads,
            ctx.lr,
            c.grad_clip,
        );
        Ok(out)
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
        let v = self.held_out();
        tracing::info!("step {done}: held-out {v:.4}");
        self.evals.push((done, v));
        if let Some(out) = &self.out {
            append_line(
                &out.join("eval.jsonl"),
                &serde_json::json!({"step": done, "held_out": v}),
            )?;
        }
        Ok(())
    }
}

/// Fine-tunes the autoregressive run at `base` on `config.data`; `opts.out` gets the tuned run
/// (a run folder that `oxgen sample` and [`load_ar`] read like an `ar` run). The held-out value
/// is evaluated on the base first (step 0), every `eval_every` steps and at the end.
pub fn sft(base: &Path, config: &SftConfig, opts: &TrainOptions) -> Result<SftReport> {
    config.validate()?;
    opts.parallel.check(&opts.device, config.batch_size)?;
    let ArRun {
        config: base_config,
        codec,
        ..
    } = tuning::load_base(base, &opts.device)?;
    let lang = (base_config.data == "arithmetic").then_some(Arithmetic {
        digits: base_config.digits,
        seed: base_config.seed,
    });
    if let Some(lora) = &config.lora {
        lora.validate(&base_config.model)
            .map_err(|e| Error::Config(format!("sft: {e}")))?;
    }
    let (train, held) = examples(config, &codec, lang)?;
    let run = trainer::open_run(opts)?;
    let ad = opts.device.clone().autodiff();
    let mut model = load_ar(base, &ad)?.model;
    if let Some(lora) = &config.lora {
        model = seeded_init(&ad, config.seed, || model.with_lora(lora));
        tracing::info!(
            "LoRA rank {} on {}: {} trainable parameters of {}",
            lora.rank,
            lora.targets.join(", "),
            model.trainable_params(),
            model.num_params()
        );
    }
    let context = base_config.model.context;
    let mut step = Step {
        config: config.clone(),
        codec,
        lang,
        train,
        held,
        device: ad,
        eval_device: opts.device.clone(),
        model,
        optim: FusedAdamW {
            weight_decay: config.weight_decay as f32,
            ..Default::default()
        }
        .init(),
        context,
        out: run.as_ref().map(|r| r.path().to_path_buf()),
        evals: Vec::new(),
        replicas: Replicas::new(&opts.parallel, None),
    };
    let tuned = SftRunConfig {
        method: "sft".into(),
        base: base.display().to_string(),
        base_config,
        sft: config.clone(),
    };
    let plan = Plan {
        family: FAMILY,
        config: &tuned,
        method: "sft",
        shape: oxgen_models::DataShape::Vector { dim: context },
        seed: config.seed,
        steps: config.steps,
        lr: config.lr,
        rows_per_step: config.batch_size,
        eval_every: config.eval_every,
        title: "SFT loss (completion nats/token)",
    };
    let summary = tuning::run(&mut step, plan, run.as_ref(), opts)?;
    let eval_name = if step.lang.is_some() && config.data == "arithmetic" {
        "held-out exact match"
    } else {
        "held-out completion NLL (nats/token)"
    };
    let evals = match &run {
        Some(r) => tuning::curves(r.path(), "SFT", eval_name, vec![])?,
        None => step.evals.clone(),
    };
    Ok(SftReport {
        model: step.model.valid(),
        steps: summary.done,
        evals,
        eval_name: eval_name.into(),
    })
}
