//! Diffusion-DPO (Wallace et al., 2023, "Diffusion Model Alignment Using Direct Preference
//! Optimization") on a class-conditional diffusion run. A diffusion model has no exact
//! likelihood, but its denoising error bounds one, so DPO's log-ratio becomes a difference of
//! denoising errors: for a pair (x_w preferred to x_l) of class c, one timestep t and one noise
//! ε shared by both images,
//!
//! ```text
//! Δ_θ = ‖ε − ε_θ(x_w,t, t, c)‖² − ‖ε − ε_θ(x_l,t, t, c)‖²   (means over pixels)
//! L   = −log σ(−(β/2) · (Δ_θ − Δ_ref))
//! ```
//!
//! as in the authors' training script (β there: 5000 for Stable Diffusion 1.5); with
//! v-prediction the target is v. The reference is the frozen base.
//!
//! The preferences come from the evaluation classifier ([`super::judge`]): `candidates`
//! samples per prompt (a class), the one it is most confident is of the class chosen, the one
//! least confident rejected. Each evaluation samples `eval_per_class` images per class with the
//! same noise and reports class accuracy (the reward's classifier and the check), mean
//! confidence, FD to the held-out split, and the held-out implicit-reward accuracy.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use oxgen_models::diffusion::Diffusion;
use oxgen_models::diffusion::schedule::{NoiseSchedule, Prediction};
use oxgen_models::{DataShape, SampleConfig};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::judge::{ImageScores, Judge};
use super::objective::{PreferenceLoss, preference_loss};
use super::rows::{append_line, read_key};
use super::tuning::{self, Plan};
use crate::checkpoint::{Loaded, load_weights, optim_bytes, restore_optim, to_bytes};
use crate::config::TrainConfig;
use crate::sample::{draw, load_run};
use crate::trainer::adamw::FusedAdamW;
use crate::trainer::optim::{clip_global_norm, update_with};
use crate::trainer::parallel::{ParallelSummary, Replicas, shard_ranges};
use crate::trainer::rng::{Stream, step_rng};
use crate::trainer::{self, StepContext, StepOutput, TrainOptions, TrainStep};
use crate::{Error, Result};

/// How to tune. Every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiffusionDpoConfig {
    /// Prompts (pairs) per class.
    pub prompts_per_class: usize,
    /// Samples per prompt, ranked by the classifier's confidence (≥ 2).
    pub candidates: usize,
    /// β (the loss's slope is β/2 per unit of denoising error).
    pub beta: f64,
    /// Optimizer steps.
    pub steps: usize,
    /// Pairs per step.
    pub batch_size: usize,
    /// Peak learning rate (AdamW, 5 warmup steps, then constant).
    pub lr: f64,
    /// Guidance scale of the pairs' and the evaluations' samples (1: the conditional model
    /// alone, which is what DPO tunes).
    pub guidance: f32,
    /// Evaluate (and checkpoint) every this many steps.
    pub eval_every: usize,
    /// Samples per class at each evaluation.
    pub eval_per_class: usize,
    /// Share of the pairs held out for the implicit-reward accuracy.
    pub val_fraction: f64,
    /// Seed of the pairs, the split, the batches and the noise.
    pub seed: u64,
}

impl Default for DiffusionDpoConfig {
    fn default() -> Self {
        Self {
            prompts_per_class: 100,
            candidates: 4,
            beta: 2000.0,
            steps: 200,
            batch_size: 32,
            lr: 3e-5,
            guidance: 1.0,
            eval_every: 50,
            eval_per_class: 50,
            val_fraction: 0.1,
            seed: 0,
        }
    }
}

impl DiffusionDpoConfig {
    /// The config with the fields of a TOML (or `.json`) file laid over it.
    pub fn merge_file(self, file: &Path) -> Result<Self> {
        crate::config::merge_file(self, file, "diffusion_dpo")
    }

    /// Refuses a config no run can use.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(format!("diffusion-dpo: {what}")));
        if self.steps == 0 || self.batch_size == 0 || self.prompts_per_class == 0 {
            return bad("steps, batch_size and prompts_per_class must be at least 1");
        }
        if self.candidates < 2 {
            return bad("candidates must be at least 2 to make a pair");
        }
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return bad("beta must be positive");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr must be positive");
        }
        if !(self.guidance.is_finite() && self.guidance >= 0.0) {
            return bad("guidance must be ≥ 0");
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return bad("val_fraction must be in (0, 1)");
        }
        if self.eval_per_class == 0 {
            return bad("eval_per_class must be at least 1");
        }
        Ok(())
    }
}

/// What a Diffusion-DPO run's manifests hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffusionDpoRunConfig {
    /// `diffusion_dpo`.
    pub method: String,
    /// The base run, as given.
    pub base: String,
    /// The base run's config (the model, its data and its sampler).
    pub base_config: TrainConfig,
    /// The method's config.
    pub diffusion_dpo: DiffusionDpoConfig,
}

/// Family name of Diffusion-DPO runs in manifests (`oxgen sample` reads them as diffusion runs).
pub const FAMILY: &str = "diffusion-dpo";

/// One preference: two samples of one class.
#[derive(Clone, Debug)]
pub struct ImagePair {
    /// The class both were conditioned on.
    pub class: u32,
    /// The sample the classifier was most confident in.
    pub chosen: Vec<f32>,
    /// The one it was least confident in.
    pub rejected: Vec<f32>,
}

/// What a run returns.
#[derive(Debug)]
pub struct DiffusionDpoReport {
    /// The tuned model.
    pub model: Diffusion,
    /// Steps done in total.
    pub steps: usize,
    /// Pairs (train, held out).
    pub pairs: (usize, usize),
    /// Evaluations: (step, sample scores, held-out implicit-reward accuracy); step 0 is the
    /// base.
    pub evals: Vec<(usize, ImageScores, f64)>,
    /// A data-parallel run's throughput and all-reduce time.
    pub parallel: Option<ParallelSummary>,
}

/// Samples `candidates` images of each prompt (a class) from `model` and pairs the one `judge`
/// is most confident is of the class with the one it is least confident in. Candidate j of
/// every prompt comes from one batch seeded `seed + j`; prompts whose candidates tie are
/// dropped.
pub fn classifier_pairs(
    model: &Diffusion,
    base: &TrainConfig,
    sample: &SampleConfig,
    judge: &Judge,
    prompts_per_class: usize,
    candidates: usize,
    device: &Device,
) -> Result<Vec<ImagePair>> {
    let labels: Vec<u32> = (0..judge.classes as u32)
        .flat_map(|c| std::iter::repeat_n(c, prompts_per_class))
        .collect();
    let f = judge.features;
    let mut draws = Vec::with_capacity(candidates);
    for j in 0..candidates {
        let s = SampleConfig {
            seed: sample.seed.wrapping_add(j as u64),
            ..sample.clone()
        };
        let x = draw(model, &base.model, &s, labels.len(), Some(&labels), device)?;
        let conf = judge.confidence(&x, &labels, device);
        draws.push((x, conf));
    }
    let mut pairs = Vec::new();
    for (k, &class) in labels.iter().enumerate() {
        let by = |a: &usize, b: &usize| draws[*a].1[k].total_cmp(&draws[*b].1[k]);
        let best = (0..candidates).max_by(by).expect("candidates ≥ 2");
        let worst = (0..candidates).min_by(by).expect("candidates ≥ 2");
        if draws[best].1[k] - draws[worst].1[k] < 1e-6 {
            continue;
        }
        let row = |j: usize| draws[j].0[k * f..(k + 1) * f].to_vec();
        pairs.push(ImagePair {
            class,
            chosen: row(best),
            rejected: row(worst),
        });
    }
    Ok(pairs)
}

/// The step.
struct Step {
    config: DiffusionDpoConfig,
    base: TrainConfig,
    schedule: NoiseSchedule,
    shape: DataShape,
    train: Vec<ImagePair>,
    held: Vec<ImagePair>,
    judge: Judge,
    device: Device,
    eval_device: Device,
    model: Diffusion,
    reference: Diffusion,
    optim: ModuleOptimizer,
    out: Option<PathBuf>,
    evals: Vec<(usize, ImageScores, f64)>,
    /// A data-parallel run's replicas.
    replicas: Option<Replicas>,
}

/// What the loss needs of the run: the base's features per image, its noise schedule's ᾱ and
/// prediction target, and β (shared with the replicas of a data-parallel run).
struct Objective<'a> {
    features: usize,
    alphas: &'a [f64],
    prediction: Prediction,
    beta: f64,
}

/// Per-pair denoising errors of `model` on the chosen and the rejected images, `[b]` each, at
/// timesteps `t` with noise `eps` (`[b · features]`) shared within each pair.
fn errors(
    objective: &Objective<'_>,
    model: &Diffusion,
    pairs: &[&ImagePair],
    t: &[usize],
    eps: &[f32],
    device: &Device,
) -> (Tensor<1>, Tensor<1>) {
    let b = pairs.len();
    let f = objective.features;
    let mut x0 = Vec::with_capacity(2 * b * f);
    for p in pairs {
        x0.extend_from_slice(&p.chosen);
    }
    for p in pairs {
        x0.extend_from_slice(&p.rejected);
    }
    let col = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [2 * b, 1]), device);
    let ab: Vec<f64> = t.iter().chain(t).map(|&s| objective.alphas[s]).collect();
    let sa = col(ab.iter().map(|a| a.sqrt() as f32).collect());
    let so = col(ab.iter().map(|a| (1.0 - a).sqrt() as f32).collect());
    let x0 = Tensor::<2>::from_data(TensorData::new(x0, [2 * b, f]), device);
    let eps = Tensor::<2>::from_data(TensorData::new([eps, eps].concat(), [2 * b, f]), device);
    let xt = x0.clone() * sa.clone() + eps.clone() * so.clone();
    let target = match objective.prediction {
        Prediction::Epsilon => eps,
        Prediction::V => eps * sa - x0 * so,
    };
    let tt: Vec<f32> = t.iter().chain(t).map(|&s| s as f32).collect();
    let tt = Tensor::<1>::from_data(TensorData::new(tt, [2 * b]), device);
    let labels: Vec<i64> = pairs
        .iter()
        .chain(pairs)
        .map(|p| i64::from(p.class))
        .collect();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [2 * b]), device);
    let mse = (model.forward(xt, tt, Some(labels)) - target)
        .powi_scalar(2)
        .mean_dim(1)
        .reshape([2 * b]);
    (mse.clone().slice([0..b]), mse.slice([b..2 * b]))
}

/// The DPO loss of `pairs` and each pair's h (positive: the policy prefers the chosen one more
/// than the reference does), the reference's errors on the chosen and the rejected images given
/// (constants, `[b]` each).
fn policy_loss(
    objective: &Objective<'_>,
    model: &Diffusion,
    pairs: &[&ImagePair],
    t: &[usize],
    eps: &[f32],
    (rw, rl): (&[f32], &[f32]),
    device: &Device,
) -> (Tensor<1>, Tensor<1>) {
    let (w, l) = errors(objective, model, pairs, t, eps, device);
    let v = |x: &[f32]| Tensor::<1>::from_data(TensorData::new(x.to_vec(), [x.len()]), device);
    // −error plays log-likelihood: h = −(Δ_θ − Δ_ref); β/2 as in Wallace et al.'s script.
    preference_loss(
        w.neg(),
        l.neg(),
        v(rw).neg(),
        v(rl).neg(),
        objective.beta / 2.0,
        PreferenceLoss::Sigmoid,
    )
}

impl Step {
    /// This run's [`Objective`].
    fn objective(&self) -> Objective<'_> {
        Objective {
            features: self.judge.features,
            alphas: &self.schedule.alphas_cumprod,
            prediction: self.base.model.prediction,
            beta: self.config.beta,
        }
    }

    /// The frozen reference's errors on the chosen and the rejected images of `pairs`, on the
    /// host.
    fn reference_errors(&self, pairs: &[&ImagePair], t: &[usize], eps: &[f32]) -> [Vec<f32>; 2] {
        let host = |x: Tensor<1>| {
            let v = x.into_data().convert::<f32>().try_into_vec::<f32>();
            v.expect("f32")
        };
        let (rw, rl) = self.errors(&self.reference, pairs, t, eps, &self.eval_device);
        [host(rw), host(rl)]
    }

    /// [`errors`] with this run's base.
    fn errors(
        &self,
        model: &Diffusion,
        pairs: &[&ImagePair],
        t: &[usize],
        eps: &[f32],
        device: &Device,
    ) -> (Tensor<1>, Tensor<1>) {
        errors(&self.objective(), model, pairs, t, eps, device)
    }

    /// A step split over the replicas: the reference's errors on the whole batch here (they are
    /// constants), then each replica's pairs with their timesteps, noise and reference errors
    /// (the loss is a mean over pairs).
    fn parallel_step(
        &mut self,
        ctx: StepContext,
        batch: &[&ImagePair],
        t: &[usize],
        eps: &[f32],
    ) -> Result<StepOutput> {
        let (n, f) = (batch.len(), self.judge.features);
        let [rw, rl] = self.reference_errors(batch, t, eps);
        let objective = Objective {
            features: f,
            alphas: &self.schedule.alphas_cumprod,
            prediction: self.base.model.prediction,
            beta: self.config.beta,
        };
        let replicas = self.replicas.as_mut().expect("a parallel run");
        let shards = shard_ranges(n, replicas.len())
            .into_iter()
            .map(|r| {
                let shard = (
                    batch[r.clone()].to_vec(),
                    t[r.clone()].to_vec(),
                    eps[r.start * f..r.end * f].to_vec(),
                    rw[r.clone()].to_vec(),
                    rl[r.clone()].to_vec(),
                );
                (shard, r.len())
            })
            .collect();
        type PairShard<'p> = (Vec<&'p ImagePair>, Vec<usize>, Vec<f32>, Vec<f32>, Vec<f32>);
        let g = replicas.grads(
            ctx.step,
            &self.model,
            shards,
            None,
            |model, (pairs, t, eps, rw, rl): PairShard<'_>, device, _| {
                let reference = (rw.as_slice(), rl.as_slice());
                policy_loss(&objective, model, &pairs, &t, &eps, reference, device).0
            },
        )?;
        Ok(update_with(
            &mut self.model,
            &mut self.optim,
            g,
            ctx.lr,
            1.0,
            false,
        ))
    }

    /// Timesteps and noise for `b` pairs from `rng`.
    fn noise(&self, b: usize, rng: &mut impl Rng) -> (Vec<usize>, Vec<f32>) {
        let t = (0..b)
            .map(|_| rng.random_range(0..self.base.model.timesteps))
            .collect();
        let eps = (0..b * self.judge.features)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect();
        (t, eps)
    }

    /// [`policy_loss`], with the reference's errors computed here.
    fn loss(
        &self,
        model: &Diffusion,
        pairs: &[&ImagePair],
        t: &[usize],
        eps: &[f32],
        device: &Device,
    ) -> (Tensor<1>, Tensor<1>) {
        let [rw, rl] = self.reference_errors(pairs, t, eps);
        policy_loss(&self.objective(), model, pairs, t, eps, (&rw, &rl), device)
    }

    /// Held-out implicit-reward accuracy: the share of held-out pairs whose h, averaged over
    /// four fixed (t, ε) draws, is positive (a zero counts half).
    fn held_out_accuracy(&self, model: &Diffusion) -> f64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.config.seed ^ 0xD1FF);
        let refs: Vec<&ImagePair> = self.held.iter().collect();
        let mut right = 0.0;
        for chunk in refs.chunks(64) {
            let mut h = vec![0.0f64; chunk.len()];
            for _ in 0..4 {
                let (t, eps) = self.noise(chunk.len(), &mut rng);
                let (_, hs) = self.loss(model, chunk, &t, &eps, &self.eval_device);
                let hs = hs.into_data().convert::<f32>().try_into_vec::<f32>();
                for (a, v) in h.iter_mut().zip(hs.expect("f32")) {
                    *a += f64::from(v);
                }
            }
            // A tie (the base against itself) counts half: chance.
            right += h
                .iter()
                .map(|&v| match v.partial_cmp(&0.0) {
                    Some(std::cmp::Ordering::Greater) => 1.0,
                    Some(std::cmp::Ordering::Equal) => 0.5,
                    _ => 0.0,
                })
                .sum::<f64>();
        }
        right / self.held.len().max(1) as f64
    }

    /// The evaluation samples: `eval_per_class` per class, the same noise every time.
    fn eval_samples(&self, model: &Diffusion) -> Result<(Vec<f32>, Vec<u32>)> {
        let labels: Vec<u32> = (0..self.judge.classes as u32)
            .flat_map(|c| std::iter::repeat_n(c, self.config.eval_per_class))
            .collect();
        let s = SampleConfig {
            guidance: self.config.guidance,
            seed: self.config.seed ^ 0xE7A1,
            ..self.base.sample.clone()
        };
        let x = draw(
            model,
            &self.base.model,
            &s,
            labels.len(),
            Some(&labels),
            &self.eval_device,
        )?;
        Ok((x, labels))
    }
}

impl TrainStep for Step {
    fn step(&mut self, ctx: StepContext) -> Result<StepOutput> {
        let mut rng = step_rng(self.config.seed, ctx.step, Stream::Tune);
        let batch: Vec<&ImagePair> = (0..self.config.batch_size)
            .map(|_| &self.train[rng.random_range(0..self.train.len())])
            .collect();
        let (t, eps) = self.noise(batch.len(), &mut rng);
        if self.replicas.is_some() {
            // Owned copies (a few KiB): the step borrows `self` mutably.
            let owned: Vec<ImagePair> = batch.into_iter().cloned().collect();
            return self.parallel_step(ctx, &owned.iter().collect::<Vec<_>>(), &t, &eps);
        }
        let (loss, _) = self.loss(&self.model, &batch, &t, &eps, &self.device);
        let value = loss.clone().into_scalar::<f32>() as f64;
        if !value.is_finite() {
            return Ok(StepOutput::loss(value, f64::NAN));
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let norm = clip_global_norm(&self.model, &mut grads, 1.0);
        self.model = self.optim.step(ctx.lr, self.model.clone(), grads);
        Ok(StepOutput::loss(value, norm))
    }

    fn parallel(&self) -> Option<ParallelSummary> {
        self.replicas.as_ref().map(|r| r.summary())
    }

    fn state(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        Ok(vec![
            ("model.bpk", to_bytes(&self.model)?),
            ("optim.bpk", optim_bytes(&self.optim)?),
        ])
    }

    fn restore(&mut self, ck: &Loaded) -> Result<()> {
        self.model = load_weights(self.model.clone(), ck.file("model.bpk")?, &ck.dir)?;
        restore_optim(&mut self.optim, ck, "optim.bpk")
    }

    fn evaluate(&mut self, done: usize) -> Result<()> {
        let model = self.model.valid();
        let (x, labels) = self.eval_samples(&model)?;
        let scores = self.judge.measure(&x, &labels, &self.eval_device);
        let pref = self.held_out_accuracy(&model);
        tracing::info!(
            "step {done}: class accuracy {:.2}% (check {:.2}%), confidence {:.3}, FD {:.3}, \
             held-out preference accuracy {:.2}%",
            100.0 * scores.accuracy,
            100.0 * scores.check_accuracy,
            scores.confidence,
            scores.fd,
            100.0 * pref
        );
        self.evals.push((done, scores, pref));
        if let Some(out) = &self.out {
            let line = serde_json::json!({
                "step": done, "held_out": scores.accuracy,
                "check_accuracy": scores.check_accuracy, "confidence": scores.confidence,
                "fd": scores.fd, "pref_accuracy": pref,
            });
            append_line(&out.join("eval.jsonl"), &line)?;
            let dir = if done == 0 {
                out.join("base")
            } else {
                out.clone()
            };
            crate::run::write_samples(&dir, &x, Some(&labels), self.shape, None)?;
        }
        Ok(())
    }
}

/// Tunes the class-conditional diffusion run at `base` with Diffusion-DPO on pairs the
/// evaluation classifier ranks; `opts.out` gets the tuned run (which `oxgen sample` reads like
/// a diffusion run), `eval.jsonl`, `curves.png`, and `base/samples.png` beside `samples.png`.
pub fn diffusion_dpo(
    base: &Path,
    config: &DiffusionDpoConfig,
    opts: &TrainOptions,
) -> Result<DiffusionDpoReport> {
    config.validate()?;
    opts.parallel.check(&opts.device, config.batch_size)?;
    let run = load_run(base, &opts.device)?;
    if run.config.model.num_classes.is_none() {
        return Err(Error::Config(format!(
            "diffusion-dpo: {} is unconditional; the preferences are about classes",
            base.display()
        )));
    }
    let dir = trainer::open_run(opts)?;
    let cache = match &dir {
        Some(d) => d.path().to_path_buf(),
        None => std::env::temp_dir().join(format!("oxgen-judge-{}", std::process::id())),
    };
    let judge = Judge::new(&run.config, &cache, &opts.device)?;
    let sample = SampleConfig {
        guidance: config.guidance,
        seed: config.seed.wrapping_mul(1_000_003),
        ..run.config.sample.clone()
    };
    tracing::info!(
        "sampling {} candidates for each of {} prompts",
        config.candidates,
        config.prompts_per_class * judge.classes
    );
    let mut all = classifier_pairs(
        &run.ema,
        &run.config,
        &sample,
        &judge,
        config.prompts_per_class,
        config.candidates,
        &opts.device,
    )?;
    all.shuffle(&mut rand::rngs::StdRng::seed_from_u64(config.seed ^ 0x9A1));
    let held_n = ((all.len() as f64) * config.val_fraction).round() as usize;
    if held_n == 0 || held_n >= all.len() {
        return Err(Error::Config(format!(
            "diffusion-dpo: {} pairs, too few to hold out {}",
            all.len(),
            config.val_fraction
        )));
    }
    let train = all.split_off(held_n);
    let ad = opts.device.clone().autodiff();
    let model = load_run(base, &ad)?.ema;
    let shape = run.manifest.shape;
    let mut step = Step {
        config: config.clone(),
        schedule: run.config.model.noise_schedule(),
        base: run.config.clone(),
        shape,
        train,
        held: all,
        judge,
        device: ad,
        eval_device: opts.device.clone(),
        model,
        reference: run.ema,
        optim: FusedAdamW {
            weight_decay: 0.0,
            ..Default::default()
        }
        .init(),
        out: dir.as_ref().map(|r| r.path().to_path_buf()),
        evals: Vec::new(),
        replicas: Replicas::new(&opts.parallel, None),
    };
    let tuned = DiffusionDpoRunConfig {
        method: "diffusion_dpo".into(),
        base: base.display().to_string(),
        base_config: run.config,
        diffusion_dpo: config.clone(),
    };
    let plan = Plan {
        family: FAMILY,
        config: &tuned,
        method: "diffusion_dpo",
        shape,
        seed: config.seed,
        steps: config.steps,
        lr: config.lr,
        rows_per_step: config.batch_size,
        eval_every: config.eval_every,
        title: "Diffusion-DPO loss",
    };
    let summary = tuning::run(&mut step, plan, dir.as_ref(), opts)?;
    if let Some(d) = &dir {
        let log = d.path().join("eval.jsonl");
        let series = |key: &str| -> Result<Vec<(f64, f64)>> {
            Ok(read_key(&log, key)?
                .into_iter()
                .map(|(s, v)| (s as f64, v))
                .collect())
        };
        tuning::curves(
            d.path(),
            "Diffusion-DPO",
            "class accuracy (evaluation classifier)",
            vec![
                (
                    "class accuracy (check classifier)",
                    series("check_accuracy")?,
                ),
                ("FD to held-out digits", series("fd")?),
                ("held-out preference accuracy", series("pref_accuracy")?),
            ],
        )?;
    } else {
        let _ = std::fs::remove_dir_all(&cache);
    }
    Ok(DiffusionDpoReport {
        model: step.model.valid(),
        steps: summary.done,
        pairs: (step.train.len(), step.held.len()),
        evals: step.evals,
        parallel: summary.parallel,
    })
}
