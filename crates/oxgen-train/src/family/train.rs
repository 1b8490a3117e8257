//! The VAE, flow and GAN families' training steps: one model and one Adam minimising a loss
//! (VAE, flow), or two Adams in alternation (GAN). The loop ([`crate::trainer`]) does the rest.

use std::path::Path;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor, TensorData};
use oxgen_models::DataShape;
use oxgen_models::flow::Flow;
use oxgen_models::vae::{DecoderKind, Vae};

use super::gan::GanStep;
use super::report::{FamilyQuality, evaluate_model};
use super::{FamilyConfig, FamilyModel, Trained, pixel_levels};
use crate::checkpoint::{self, Loaded, load_weights, optim_bytes, restore_optim, to_bytes};
use crate::data::{self, Dataset, LoadOptions};
use crate::error::{Error, Result};
use crate::privacy::dpsgd::DpPlan;
use crate::privacy::state::{DpState, Placement};
use crate::trainer::optim::{seeded_init, update, update_with};
use crate::trainer::parallel::{ParallelSummary, Replicas, shard_ranges};
use crate::trainer::rng::{Stream, batch_indices, step_seed};
use crate::trainer::{self, LoopSpec, StepContext, StepOutput, TrainOptions, TrainStep};

/// What [`train_family`] returns.
#[derive(Debug)]
pub struct FamilyReport {
    /// Steps done.
    pub steps: usize,
    /// Mean loss over the first 10 steps of this invocation.
    pub first_loss: f64,
    /// Mean loss over the last 10% of steps of this invocation.
    pub last_loss: f64,
    /// Non-finite steps skipped.
    pub skipped: usize,
    /// Failure modes seen (a collapsed discriminator).
    pub warnings: Vec<String>,
    /// The final report, unless skipped or trained in memory.
    pub quality: Option<FamilyQuality>,
    /// The trained model.
    pub model: Trained,
    /// Wall time of the training loop, seconds.
    pub train_seconds: f64,
    /// A DP run's plan (σ, q and the ε its steps spend).
    pub dp: Option<DpPlan>,
    /// A data-parallel run's throughput and all-reduce time.
    pub parallel: Option<ParallelSummary>,
}

fn load_data(config: &FamilyConfig) -> Result<Dataset> {
    data::load(
        &config.data,
        config.seed,
        &LoadOptions {
            image_size: config.image_size,
            rgb: config.rgb,
        },
    )
}

/// Uniform dequantization noise in ±delta/2 on `x` (images only).
fn dequantize(x: Tensor<2>, delta: f64, seed: u64, rows: Rows) -> Tensor<2> {
    let [b, d] = x.dims();
    let u = oxgen_models::flow::host_uniforms(rows.total * d, seed);
    let u = u[rows.start * d..(rows.start + b) * d].to_vec();
    let u = Tensor::<2>::from_data(TensorData::new(u, [b, d]), &x.device());
    x + u.sub_scalar(0.5).mul_scalar(delta)
}

pub(super) fn adam(config: &FamilyConfig) -> ModuleOptimizer {
    crate::trainer::adamw::FusedAdamW {
        beta_1: config.beta1 as f32,
        weight_decay: 0.0,
        epsilon: 1e-8,
        ..Default::default()
    }
    .init()
}

/// Where a batch's rows sit in the step's whole batch: rows `start..start + n` of `total`. Host
/// noise is drawn for the whole batch and sliced, so a data-parallel shard draws its own rows'
/// noise and the replicas together draw what one device would.
#[derive(Clone, Copy, Debug)]
struct Rows {
    start: usize,
    total: usize,
}

impl Rows {
    /// All `n` rows of a batch.
    fn whole(n: usize) -> Self {
        Self { start: 0, total: n }
    }
}

/// The loss of a VAE or flow on a batch: (model, batch, seed, step, where its rows sit).
type LossFn<'a, M> = Box<dyn Fn(&M, Tensor<2>, u64, usize, Rows) -> Tensor<1> + Sync + 'a>;

/// One model, one optimizer (VAE and flow).
struct Single<'a, M> {
    config: &'a FamilyConfig,
    train: &'a Dataset,
    device: Device,
    model: M,
    optim: ModuleOptimizer,
    loss: LossFn<'a, M>,
    dp: Option<DpState>,
    /// A data-parallel run's replicas.
    replicas: Option<Replicas>,
}

impl<M: Module> Single<'_, M> {
    /// A DP-SGD step: Poisson batch, per-sample clipping, noise, the accountant.
    fn dp_step(&mut self, ctx: StepContext) -> Result<StepOutput> {
        let c = self.config;
        // The plan checked the whole run against the budget; `update` also guards a run
        // resumed with more steps than it was planned for.
        let dp = self.dp.as_mut().expect("a DP run");
        let idx = dp.plan.batch(c.seed, ctx.step, c.batch_size);
        let rows = idx.len();
        // An empty Poisson batch still runs (one row at weight 0): the step is noise only.
        let idx = if rows == 0 { vec![0] } else { idx };
        let seed = step_seed(c.seed, ctx.step, Stream::Family(0));
        let (loss, train, total) = (&self.loss, self.train, idx.len());
        let on = Placement {
            device: &self.device,
            replicas: self.replicas.as_mut(),
        };
        let (model, out) = dp.update(
            self.model.clone(),
            &mut self.optim,
            rows,
            on,
            |m: &M, r: std::ops::Range<usize>, device: &Device, _| {
                let n = r.len();
                let x = train.batch(&idx[r.clone()], device);
                let rows = Rows {
                    start: r.start,
                    total,
                };
                loss(m, x, seed, ctx.step, rows).mul_scalar(n as f64)
            },
            &ctx,
            c.seed,
            c.steps,
        )?;
        self.model = model;
        Ok(out)
    }
}

impl<M: Module> TrainStep for Single<'_, M> {
    fn step(&mut self, ctx: StepContext) -> Result<StepOutput> {
        if self.dp.is_some() {
            return self.dp_step(ctx);
        }
        let c = self.config;
        let idx = batch_indices(self.train.len(), c.batch_size, c.seed, ctx.step);
        let seed = step_seed(c.seed, ctx.step, Stream::Family(0));
        if let Some(replicas) = self.replicas.as_mut() {
            let total = idx.len();
            let shards = shard_ranges(total, replicas.len())
                .into_iter()
                .map(|r| {
                    let rows = Rows {
                        start: r.start,
                        total,
                    };
                    ((idx[r.clone()].to_vec(), rows), r.len())
                })
                .collect();
            let (train, loss) = (self.train, &self.loss);
            let g = replicas.grads(
                ctx.step,
                &self.model,
                shards,
                None,
                |m, (idx, rows): (Vec<usize>, Rows), device, _| {
                    loss(m, train.batch(&idx, device), seed, ctx.step, rows)
                },
            )?;
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
        let x = self.train.batch(&idx, &self.device);
        let l = (self.loss)(&self.model, x, seed, ctx.step, Rows::whole(idx.len()));
        let (model, out) = update(
            self.model.clone(),
            &mut self.optim,
            l,
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
            ("optim.bpk", optim_bytes(&self.optim)?),
        ];
        if let Some(dp) = &self.dp {
            files.push(dp.file());
        }
        Ok(files)
    }

    fn restore(&mut self, ck: &Loaded) -> Result<()> {
        self.model = load_weights(self.model.clone(), ck.file("model.bpk")?, &ck.dir)?;
        restore_optim(&mut self.optim, ck, "optim.bpk")?;
        if let Some(dp) = self.dp.as_mut() {
            dp.restore(ck)?;
        }
        Ok(())
    }

    fn parallel(&self) -> Option<ParallelSummary> {
        self.replicas.as_ref().map(|r| r.summary())
    }
}

/// Trains a VAE, flow or GAN on the dataset `config.data` names, then (unless skipped) samples,
/// scores held-out data and writes the report. See [`TrainOptions`].
pub fn train_family(config: &FamilyConfig, opts: &TrainOptions) -> Result<FamilyReport> {
    train_family_on(config, &load_data(config)?, opts)
}

/// Trains a VAE, flow or GAN on `data` (a built-in set, a file, or the program's own rows).
pub fn train_family_on(
    config: &FamilyConfig,
    data: &Dataset,
    opts: &TrainOptions,
) -> Result<FamilyReport> {
    config.validate(data.shape)?;
    if !opts.skip_eval && opts.out.is_some() {
        data.check_val_split(config.val_fraction, 4)?;
    }
    check_devices(config, opts)?;
    let run = trainer::open_run(opts)?;
    let (train, val) = data.train_val(config.val_fraction, config.seed);
    let dp_plan = crate::privacy::state::open_plan(
        config.dp.as_ref(),
        train.len(),
        config.batch_size,
        config.dp_steps(),
        run.as_ref().map(|r| r.path()),
    )?;
    let ad = opts.device.clone().autodiff();
    let shape = data.shape;
    let f = shape.numel() as f64;
    let image = matches!(shape, DataShape::Image { .. });
    let delta = 2.0 / (pixel_levels(data) as f64 - 1.0);
    let spec = LoopSpec {
        family: config.model.name(),
        config,
        must_match: &["model"],
        shape,
        seed: config.seed,
        steps: config.steps,
        lr: config.lr,
        schedule: &config.schedule,
        rows_per_step: config.batch_size,
        checkpoint_every: config.checkpoint_every,
        eval_every: 0,
        max_bad_steps: config.max_bad_steps,
        ema_decay: None,
        title: match &config.model {
            FamilyModel::Gan(_) => format!("GAN generator loss on {}", config.data),
            m => format!("{} on {} (nats/dim)", m.name(), config.data),
        },
        smaller: None,
    };
    let (model, summary, warnings) = match &config.model {
        FamilyModel::Flow(c) => {
            let mut m = seeded_init(&opts.device, config.seed, || c.init(shape, &ad));
            // Under DP-SGD the ActNorms start as the identity: a data-dependent start would
            // read the private rows outside the accountant.
            if !opts.resume && dp_plan.is_none() {
                // Data-dependent ActNorm initialisation on the first batch.
                let idx = batch_indices(train.len(), config.batch_size, config.seed, 0);
                m = m.data_init(train.batch(&idx, &ad));
            }
            let mut s = Single {
                config,
                train: &train,
                device: ad,
                model: m,
                optim: adam(config),
                loss: Box::new(move |m: &Flow, x, seed, _, rows| {
                    let x = if image {
                        dequantize(x, delta, seed, rows)
                    } else {
                        x
                    };
                    use oxgen_models::generative::ExactDensity;
                    m.log_prob(x).mean().neg().div_scalar(f)
                }),
                dp: dp_plan.as_ref().map(DpState::new),
                replicas: Replicas::new(&opts.parallel, None),
            };
            let summary = trainer::run(&mut s, &spec, run.as_ref(), opts)?;
            (Trained::Flow(s.model.valid()), summary, Vec::new())
        }
        FamilyModel::Vae(c) => {
            let m = seeded_init(&opts.device, config.seed, || c.init(shape, &ad));
            let deq = image
                && matches!(
                    c.decoder,
                    DecoderKind::Gaussian | DecoderKind::SharedGaussian
                );
            let mut s = Single {
                config,
                train: &train,
                device: ad,
                model: m,
                optim: adam(config),
                loss: Box::new(move |m: &Vae, x, seed, step, rows| {
                    let x = if deq {
                        dequantize(x, delta, seed ^ 1, rows)
                    } else {
                        x
                    };
                    // The whole batch's ε (k draws per row for IWAE), this batch's rows of it.
                    let (b, k) = (x.dims()[0], c.train_k.max(1));
                    let eps = oxgen_models::generative::host_normals(
                        rows.total * k,
                        c.latent,
                        seed,
                        &x.device(),
                    )
                    .slice([rows.start * k..(rows.start + b) * k]);
                    let loss = match k {
                        1 => m.loss_with(x, c.beta_at(step), eps),
                        k => m.iwae_bound_with(x, k, eps).mean().neg(),
                    };
                    loss.div_scalar(f)
                }),
                dp: dp_plan.as_ref().map(DpState::new),
                replicas: Replicas::new(&opts.parallel, None),
            };
            let summary = trainer::run(&mut s, &spec, run.as_ref(), opts)?;
            (Trained::Vae(s.model.valid()), summary, Vec::new())
        }
        FamilyModel::Gan(gc) => {
            let m = seeded_init(&opts.device, config.seed, || gc.init(shape, &ad));
            let mut s = GanStep {
                config,
                gan: gc,
                train: &train,
                device: ad,
                model: m,
                og: adam(config),
                od: adam(config),
                collapsed_for: 0,
                warnings: Vec::new(),
                dp: dp_plan.as_ref().map(DpState::new),
                replicas: Replicas::new(&opts.parallel, None),
                parallel_steps: 0,
            };
            let summary = trainer::run(&mut s, &spec, run.as_ref(), opts)?;
            (Trained::Gan(s.model.valid()), summary, s.warnings)
        }
    };
    let quality = match run.as_ref() {
        Some(r) if !opts.skip_eval && summary.done == config.steps => Some(evaluate_model(
            &model,
            config,
            data,
            val.as_ref(),
            &opts.device,
            r.path(),
            summary.seconds,
            &warnings,
        )?),
        _ => None,
    };
    Ok(FamilyReport {
        steps: summary.done,
        first_loss: summary.first_loss(),
        last_loss: summary.last_loss(),
        skipped: summary.skipped,
        warnings,
        quality,
        model,
        train_seconds: summary.seconds,
        dp: dp_plan,
        parallel: summary.parallel,
    })
}

/// Refuses devices the run cannot split over, before anything is written: see
/// [`crate::trainer::parallel::DataParallel::check`].
fn check_devices(config: &FamilyConfig, opts: &TrainOptions) -> Result<()> {
    opts.parallel.check(&opts.device, config.batch_size)
}

/// Loads a VAE, flow or GAN run (or checkpoint folder): its config and weights.
pub fn load_family(ckpt: &Path, device: &Device) -> Result<(FamilyConfig, Trained)> {
    let ck = checkpoint::load(ckpt)?;
    let config: FamilyConfig =
        serde_json::from_value(ck.manifest.config.clone()).map_err(|e| Error::Checkpoint {
            path: ck.dir.clone(),
            reason: format!("config unreadable: {e}"),
        })?;
    let shape = ck.manifest.shape;
    let weights = ck.file("model.bpk")?;
    let model = match &config.model {
        FamilyModel::Vae(c) => Trained::Vae(load_weights(c.init(shape, device), weights, &ck.dir)?),
        FamilyModel::Flow(c) => {
            Trained::Flow(load_weights(c.init(shape, device), weights, &ck.dir)?)
        }
        FamilyModel::Gan(c) => Trained::Gan(load_weights(c.init(shape, device), weights, &ck.dir)?),
    };
    Ok((config, model))
}

/// Whether `ckpt` holds a VAE, flow or GAN checkpoint.
pub fn is_family_checkpoint(ckpt: &Path) -> bool {
    checkpoint::load(ckpt)
        .map(|ck| super::FAMILIES.contains(&ck.manifest.family.as_str()))
        .unwrap_or(false)
}
