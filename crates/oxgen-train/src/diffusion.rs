//! The diffusion family's training step: ε- or v-prediction loss on a seeded batch, AdamW,
//! global-norm clipping and EMA weights, or DP-SGD (Poisson batches, per-sample clipping and
//! noise, [`crate::privacy`]). The loop ([`crate::trainer`]) does the rest.

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor, TensorData};
use oxgen_models::diffusion::{BatchEps, Diffusion, DiffusionBatchNoise};
use rand::Rng;
use rand_distr::StandardNormal;
use std::sync::Arc;

use crate::checkpoint::{Loaded, load_weights, optim_bytes, restore_optim, to_bytes};
use crate::config::{NoiseSource, TrainConfig};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::metrics::Quality;
use crate::privacy::dpsgd::DpPlan;
use crate::privacy::state::{DpState, Placement};
use crate::sample::final_report;
use crate::trainer::optim::{ema_update, seeded_init, update, update_with};
use crate::trainer::parallel::{DataParallel, ParallelSummary, Replicas, shard_sizes};
use crate::trainer::prefetch::Prefetch;
use crate::trainer::rng::{Stream, batch_indices, step_rng};
use crate::trainer::{self, LoopSpec, StepContext, StepOutput, TrainOptions, TrainStep};

/// Steps of batches made ahead.
const PREFETCH_DEPTH: usize = 2;

/// What a run returns.
#[derive(Debug)]
pub struct TrainReport {
    /// Steps done.
    pub steps: usize,
    /// Mean loss over the first 10 steps of this invocation.
    pub first_loss: f64,
    /// Mean loss over the last 10% of steps of this invocation.
    pub last_loss: f64,
    /// Non-finite steps skipped.
    pub skipped: usize,
    /// Final quality of EMA samples, unless skipped.
    pub quality: Option<Quality>,
    /// The trained (raw) weights.
    pub model: Diffusion,
    /// The EMA weights.
    pub ema: Diffusion,
    /// A DP run's plan (σ, q and the ε its steps spend).
    pub dp: Option<DpPlan>,
    /// A data-parallel run's throughput and all-reduce time.
    pub parallel: Option<ParallelSummary>,
}

/// Mixed into the run seed for the Philox key of the training noise (ASCII "noising!"), so that
/// it differs from the sampler's streams of the same seed.
const NOISE_KEY: u64 = 0x6e6f_6973_696e_6721;

/// Timesteps, noise and label drops for `b` rows.
fn batch_noise(
    config: &TrainConfig,
    features: usize,
    step: usize,
    b: usize,
) -> DiffusionBatchNoise {
    let mut rng = step_rng(config.seed, step, Stream::Diffusion);
    let t = (0..b)
        .map(|_| rng.random_range(0..config.model.timesteps))
        .collect();
    let eps = match config.noise {
        // Drawn in registers by the noising kernel: key from the run seed, one stream per step.
        NoiseSource::Philox => BatchEps::Philox {
            seed: config.seed ^ NOISE_KEY,
            stream: step as u32,
        },
        NoiseSource::Host => BatchEps::Given(
            (0..b * features)
                .map(|_| rng.sample::<f32, _>(StandardNormal))
                .collect(),
        ),
    };
    DiffusionBatchNoise {
        t,
        eps,
        drop: (0..b)
            .map(|_| rng.random_bool(config.model.cond_drop_prob))
            .collect(),
    }
}

/// The diffusion family's [`TrainStep`].
struct Step<'a> {
    config: &'a TrainConfig,
    train: &'a Dataset,
    device: Device,
    model: Diffusion,
    ema: Diffusion,
    optim: ModuleOptimizer,
    /// Batches and noise, made on a thread a few steps ahead.
    prefetch: Prefetch<HostBatch>,
    /// A DP run's privacy state.
    dp: Option<DpState>,
    /// A data-parallel run's replicas.
    replicas: Option<Replicas>,
}

/// A step's host-side inputs: the batch rows, their labels and the noise.
#[derive(Clone)]
struct HostBatch {
    rows: Vec<f32>,
    labels: Option<Vec<u32>>,
    noise: DiffusionBatchNoise,
    /// The batch's size: `batch_size`, or a DP run's Poisson draw (0: an empty batch, padded
    /// with row 0 at weight 0).
    count: usize,
}

impl HostBatch {
    /// Consecutive shards of `sizes` rows, with their row counts (see [`HostBatch::rows_in`]).
    fn split(self, sizes: &[usize], features: usize) -> Vec<(HostBatch, usize)> {
        let mut start = 0;
        sizes
            .iter()
            .map(|&k| {
                start += k;
                (self.rows_in(start - k..start, features), k)
            })
            .collect()
    }

    /// Rows `r` of the batch (rows, labels, timesteps, label drops and noise alike); all of
    /// them: the batch as it is. Philox noise becomes its values, drawn here on the host as the
    /// kernel's reference draws them ([`oxgen_models::rng::normals`]), so that a shard gets
    /// its own rows' noise.
    fn rows_in(&self, r: std::ops::Range<usize>, features: usize) -> HostBatch {
        let n = self.rows.len() / features;
        if r == (0..n) {
            return self.clone();
        }
        let f = r.start * features..r.end * features;
        let eps = match &self.noise.eps {
            BatchEps::Given(v) => v[f.clone()].to_vec(),
            BatchEps::Philox { seed, stream } => {
                oxgen_models::rng::normals(*seed, *stream, n * features)[f.clone()].to_vec()
            }
        };
        HostBatch {
            rows: self.rows[f].to_vec(),
            labels: self.labels.as_ref().map(|l| l[r.clone()].to_vec()),
            noise: DiffusionBatchNoise {
                t: self.noise.t[r.clone()].to_vec(),
                eps: BatchEps::Given(eps),
                drop: self.noise.drop[r.clone()].to_vec(),
            },
            count: r.len(),
        }
    }
}

/// What step `step` trains on: a pure function of the config, the data and the step.
fn host_batch(c: &TrainConfig, train: &Dataset, plan: Option<&DpPlan>, step: usize) -> HostBatch {
    let (idx, count) = match plan {
        Some(plan) => {
            let idx = plan.batch(c.seed, step, c.batch_size);
            let count = idx.len();
            (if count == 0 { vec![0] } else { idx }, count)
        }
        None => (
            batch_indices(train.len(), c.batch_size, c.seed, step),
            c.batch_size,
        ),
    };
    HostBatch {
        count,
        rows: train.rows(&idx),
        labels: train
            .labels
            .as_ref()
            .filter(|_| c.model.num_classes.is_some())
            .map(|l| idx.iter().map(|&i| l[i]).collect()),
        noise: batch_noise(c, train.shape.numel(), step, idx.len()),
    }
}

impl Step<'_> {
    /// A DP-SGD step: Poisson batch, per-sample clipping, noise, the accountant.
    fn dp_step(&mut self, ctx: StepContext) -> Result<StepOutput> {
        let c = self.config;
        let dp = self.dp.as_mut().expect("a DP run");
        let batch = self.prefetch.get(ctx.step);
        let count = batch.count;
        let features = self.train.shape.numel();
        let schedule = c.model.noise_schedule();
        let on = Placement {
            device: &self.device,
            replicas: self.replicas.as_mut(),
        };
        // The loss is a mean over rows and features; times the rows, a sum of per-row means.
        let (model, out) = dp.update(
            self.model.clone(),
            &mut self.optim,
            count,
            on,
            |m: &Diffusion, r, device, _| {
                let b = batch.rows_in(r, features);
                let n = b.rows.len() / features;
                let x0 = Tensor::from_data(TensorData::new(b.rows, [n, features]), device);
                m.loss(&c.model, &schedule, x0, b.labels.as_deref(), &b.noise)
                    .mul_scalar(n as f64)
            },
            &ctx,
            c.seed,
            c.steps,
        )?;
        self.model = model;
        Ok(out)
    }
}

impl TrainStep for Step<'_> {
    fn step(&mut self, ctx: StepContext) -> Result<StepOutput> {
        if self.dp.is_some() {
            return self.dp_step(ctx);
        }
        let c = self.config;
        let batch = self.prefetch.get(ctx.step);
        let features = self.train.shape.numel();
        if let Some(replicas) = self.replicas.as_mut() {
            let schedule = c.model.noise_schedule();
            let sizes = shard_sizes(batch.count, replicas.len());
            let shards = batch.split(&sizes, features);
            let g = replicas.grads(ctx.step, &self.model, shards, None, |m, b, device, _| {
                let x0 = Tensor::from_data(TensorData::new(b.rows, [b.count, features]), device);
                m.loss(&c.model, &schedule, x0, b.labels.as_deref(), &b.noise)
            })?;
            let (lr, clip) = (ctx.lr, c.grad_clip);
            return Ok(update_with(
                &mut self.model,
                &mut self.optim,
                g,
                lr,
                clip,
                ctx.defer,
            ));
        }
        let HostBatch {
            rows,
            labels,
            noise,
            ..
        } = batch;
        let shape = [rows.len() / features, features];
        let x0 = Tensor::from_data(TensorData::new(rows, shape), &self.device);
        let schedule = c.model.noise_schedule();
        let loss = self
            .model
            .loss(&c.model, &schedule, x0, labels.as_deref(), &noise);
        let (model, out) = update(
            self.model.clone(),
            &mut self.optim,
            loss,
            ctx.lr,
            c.grad_clip,
            ctx.defer,
        );
        self.model = model;
        Ok(out)
    }

    fn state(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let mut files = vec![
            ("model.bpk", to_bytes(&self.model)?),
            ("ema.bpk", to_bytes(&self.ema)?),
            ("optim.bpk", optim_bytes(&self.optim)?),
        ];
        if let Some(dp) = &self.dp {
            files.push(dp.file());
        }
        Ok(files)
    }

    fn restore(&mut self, ck: &Loaded) -> Result<()> {
        self.model = load_weights(self.model.clone(), ck.file("model.bpk")?, &ck.dir)?;
        self.ema = load_weights(self.ema.clone(), ck.file("ema.bpk")?, &ck.dir)?;
        restore_optim(&mut self.optim, ck, "optim.bpk")?;
        if let Some(dp) = self.dp.as_mut() {
            dp.restore(ck)?;
        }
        Ok(())
    }

    fn update_ema(&mut self, decay: f64) {
        self.ema = ema_update(self.ema.clone(), &self.model, decay);
    }

    fn parallel(&self) -> Option<ParallelSummary> {
        self.replicas.as_ref().map(|r| r.summary())
    }
}

fn adamw(config: &TrainConfig) -> ModuleOptimizer {
    crate::trainer::adamw::FusedAdamW {
        weight_decay: config.weight_decay as f32,
        epsilon: 1e-8,
        ..Default::default()
    }
    .init()
}

/// Trains a diffusion model on the dataset `config.data` names. See [`TrainOptions`].
pub fn train(config: &TrainConfig, opts: &TrainOptions) -> Result<TrainReport> {
    config.validate()?;
    train_on(config, &config.load_data()?, opts)
}

/// Trains a diffusion model on `data` (a built-in set, a file, or the program's own rows; see
/// [`Dataset::from_rows`]). See [`TrainOptions`].
pub fn train_on(config: &TrainConfig, data: &Dataset, opts: &TrainOptions) -> Result<TrainReport> {
    config.validate()?;
    check_fits(config, data)?;
    if !opts.skip_eval && opts.out.is_some() {
        data.check_val_split(config.val_fraction, 4)?;
    }
    opts.parallel.check(&opts.device, config.batch_size)?;
    let run = trainer::open_run(opts)?;
    let (train_set, val_set) = data.train_val(config.val_fraction, config.seed);
    let train_set = match config.duplicates {
        Some([k, r]) => crate::copyright::duplicates::plant_dataset(&train_set, k, r, config.seed)?,
        None => train_set,
    };
    let plan = crate::privacy::state::open_plan(
        config.dp.as_ref(),
        train_set.len(),
        config.batch_size,
        config.steps,
        run.as_ref().map(|r| r.path()),
    )?;
    let mut step = new_step(
        config,
        &train_set,
        plan.as_ref(),
        &opts.device,
        &opts.parallel,
    )?;
    let spec = LoopSpec {
        family: "diffusion",
        config,
        must_match: &["model"],
        shape: data.shape,
        seed: config.seed,
        steps: config.steps,
        lr: config.lr,
        schedule: &config.schedule,
        rows_per_step: config.batch_size,
        checkpoint_every: config.checkpoint_every,
        eval_every: 0,
        max_bad_steps: config.max_bad_steps,
        ema_decay: Some(config.ema_decay),
        title: format!("diffusion on {}", config.data),
        smaller: None,
    };
    let summary = trainer::run(&mut step, &spec, run.as_ref(), opts)?;
    let quality = match run.as_ref() {
        Some(r) if !opts.skip_eval && summary.done == config.steps => Some(final_report(
            config,
            data,
            val_set.as_ref(),
            &step.ema.valid(),
            &opts.device,
            r.path(),
        )?),
        _ => None,
    };
    Ok(TrainReport {
        steps: summary.done,
        first_loss: summary.first_loss(),
        last_loss: summary.last_loss(),
        skipped: summary.skipped,
        quality,
        model: step.model.valid(),
        ema: step.ema.valid(),
        dp: plan,
        parallel: summary.parallel,
    })
}

/// The diffusion step alone, on freshly initialised weights (for `oxgen bench train`): what
/// [`train_on`] runs each step, without the loop around it (a DP config's plan included).
/// `train` is the training split. With `parallel`, the step is split over its devices (the
/// first must be `device`).
pub fn stepper<'a>(
    config: &'a TrainConfig,
    train: &'a Dataset,
    device: &Device,
    parallel: &DataParallel,
) -> Result<impl TrainStep + 'a> {
    config.validate()?;
    parallel.check(device, config.batch_size)?;
    check_fits(config, train)?;
    let plan = crate::privacy::state::open_plan(
        config.dp.as_ref(),
        train.len(),
        config.batch_size,
        config.steps,
        None,
    )?;
    new_step(config, train, plan.as_ref(), device, parallel)
}

fn new_step<'a>(
    config: &'a TrainConfig,
    train: &'a Dataset,
    plan: Option<&DpPlan>,
    device: &Device,
    parallel: &DataParallel,
) -> Result<Step<'a>> {
    let ad = device.clone().autodiff();
    let model = seeded_init(device, config.seed, || config.model.init(train.shape, &ad));
    let (c, data, p) = (config.clone(), Arc::new(train.clone()), plan.cloned());
    Ok(Step {
        config,
        train,
        device: ad,
        ema: model.valid(),
        model,
        optim: adamw(config),
        prefetch: Prefetch::new(
            move |s| host_batch(&c, &data, p.as_ref(), s),
            PREFETCH_DEPTH,
        ),
        dp: plan.map(DpState::new),
        replicas: Replicas::new(parallel, None),
    })
}

/// Refuses a config that cannot train on `data`, before anything is written.
pub fn check_fits(config: &TrainConfig, data: &Dataset) -> Result<()> {
    use oxgen_models::diffusion::DenoiserConfig;
    if let (DenoiserConfig::UNet(_), oxgen_models::DataShape::Vector { dim }) =
        (&config.model.denoiser, data.shape)
    {
        return Err(Error::Config(format!(
            "a UNet denoiser needs image data, but `{}` has vectors of {dim} features; use the MLP",
            data.name
        )));
    }
    if let (DenoiserConfig::UNet(u), oxgen_models::DataShape::Image { height, width, .. }) =
        (&config.model.denoiser, data.shape)
    {
        if height % 2 != 0 || width % 2 != 0 {
            return Err(Error::Config(format!(
                "the UNet needs even image sides, `{}` has {height}×{width}; set image_size",
                data.name
            )));
        }
        if u.channels % u.groups != 0 || (2 * u.channels) % u.heads != 0 {
            return Err(Error::Config(format!(
                "UNet channels {} must be divisible by groups {} and 2·channels by heads {}",
                u.channels, u.groups, u.heads
            )));
        }
    }
    match (config.model.num_classes, data.num_classes) {
        (Some(k), Some(n)) if n > k => Err(Error::Config(format!(
            "the data has {n} classes, the model {k}"
        ))),
        (Some(_), None) => Err(Error::Config(format!(
            "the model is class-conditional but `{}` has no labels",
            data.name
        ))),
        _ => Ok(()),
    }
}
