//! The diffusion trainer: one flat loop with AdamW, warmup + cosine learning rate, global-norm
//! clipping, EMA weights, non-finite-loss skipping, checkpoints and exact resume.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use oxgen_models::diffusion::{self, Diffusion, DiffusionBatchNoise};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Manifest, RngState};
use crate::config::{TrainConfig, learning_rate};
use crate::data::{self, Dataset, LoadOptions};
use crate::error::{Error, Result};
use crate::metrics::Quality;
use crate::optim::{clip_global_norm, ema_update, seeded_init};
use crate::run::{Outputs, RunDir};

/// How to run a training job (everything that is not part of the config).
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Run folder.
    pub out: PathBuf,
    /// Continue from the run folder's latest checkpoint.
    pub resume: bool,
    /// Device (without autodiff).
    pub device: Device,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop (after checkpointing) once this many steps are done, as if interrupted.
    pub stop_after: Option<usize>,
    /// Skip the final sampling and quality report.
    pub skip_eval: bool,
}

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
    /// The run folder.
    pub out: PathBuf,
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Step index.
    pub step: usize,
    /// Training loss (NaN lines mark skipped steps).
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Whether the step was skipped for a non-finite loss.
    pub skipped: bool,
}

/// Loads the dataset of a config.
pub fn load_data(config: &TrainConfig) -> Result<Dataset> {
    data::load(
        &config.data,
        config.seed,
        &LoadOptions {
            image_size: config.image_size,
            rgb: config.rgb,
        },
    )
}

/// The rows for step `step`: position `step · batch` in the endless sequence of per-epoch
/// shuffles of the training rows, each shuffle seeded by `(seed, epoch)`.
pub fn batch_indices(n: usize, batch: usize, seed: u64, step: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(batch);
    let mut pos = step * batch;
    let mut perm: Option<(usize, Vec<usize>)> = None;
    while out.len() < batch {
        let epoch = pos / n;
        if perm.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut p: Vec<usize> = (0..n).collect();
            p.shuffle(&mut StdRng::seed_from_u64(
                seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ));
            perm = Some((epoch, p));
        }
        out.push(perm.as_ref().unwrap().1[pos % n]);
        pos += 1;
    }
    out
}

fn step_rng(seed: u64, step: usize) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ (step as u64 + 1))
}

fn batch_noise(config: &TrainConfig, features: usize, step: usize) -> DiffusionBatchNoise {
    let mut rng = step_rng(config.seed, step);
    let b = config.batch_size;
    DiffusionBatchNoise {
        t: (0..b)
            .map(|_| rng.random_range(0..config.model.timesteps))
            .collect(),
        eps: (0..b * features)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect(),
        drop: (0..b)
            .map(|_| rng.random_bool(config.model.cond_drop_prob))
            .collect(),
    }
}

/// A module's weights as burnpack bytes.
pub(crate) fn to_bytes<M: Module>(m: &M) -> Result<Vec<u8>> {
    m.clone()
        .into_record()
        .into_bytes()
        .map(|b| b.to_vec())
        .map_err(|e| Error::Config(format!("serializing weights: {e}")))
}

/// Loads burnpack weights into `model`, refusing any mismatch.
pub fn load_weights<M: Module>(model: M, bytes: &[u8], dir: &Path) -> Result<M> {
    let refuse = |e: String| Error::Checkpoint {
        path: dir.into(),
        reason: e,
    };
    let rec = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| refuse(format!("weights unreadable: {e}")))?;
    model
        .try_load_record(rec)
        .map_err(|e| refuse(format!("weights do not fit this model: {e}")))
}

/// Trains a diffusion model as `config` says. See [`TrainOptions`].
pub fn train(config: &TrainConfig, opts: &TrainOptions) -> Result<TrainReport> {
    config.validate()?;
    let data = load_data(config)?;
    check_fits(config, &data)?;
    let run = RunDir::create(&opts.out, opts.resume)?;
    let (train_set, val_set) = match data.toy {
        Some(_) => (data.clone(), None),
        None => {
            let (t, v) = data.split(config.val_fraction, config.seed);
            (t, Some(v))
        }
    };
    let features = data.shape.numel();
    let ad = opts.device.clone().autodiff();
    let mut model = seeded_init(&opts.device, config.seed, || {
        config.model.init(data.shape, &ad)
    });
    let mut optim: ModuleOptimizer = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .with_epsilon(1e-8)
        .init();
    let mut ema = model.valid();
    let mut start = 0;
    if opts.resume {
        let ck = checkpoint::load(&opts.out)?;
        let saved_model = &ck.manifest.config["model"];
        if *saved_model != serde_json::to_value(&config.model).expect("config serializes") {
            return Err(Error::Checkpoint {
                path: ck.dir.clone(),
                reason: format!("it was written for another model config: {saved_model}"),
            });
        }
        model = load_weights(model, ck.file("model.bpk")?, &ck.dir)?;
        ema = load_weights(ema, ck.file("ema.bpk")?, &ck.dir)?;
        optim = optim
            .from_bytes(Bytes::from_bytes_vec(ck.file("optim.bpk")?.to_vec()))
            .map_err(|e| Error::Checkpoint {
                path: ck.dir.clone(),
                reason: format!("optimizer state unreadable: {e}"),
            })?;
        start = ck.manifest.step;
        tracing::info!("resumed from {} at step {start}", ck.dir.display());
    }
    run.write_config(config)?;
    let mut outputs = Outputs::open(&run, start)?;
    let schedule = config.model.noise_schedule();
    let end = opts
        .stop_after
        .map_or(config.steps, |s| s.min(config.steps));
    let bar = crate::run::progress(opts.progress, start, config.steps);
    let (mut bad_run, mut skipped, mut losses) = (0usize, 0usize, Vec::new());
    let t0 = Instant::now();
    for step in start..end {
        let idx = batch_indices(train_set.len(), config.batch_size, config.seed, step);
        let mut rows = Vec::with_capacity(idx.len() * features);
        for &i in &idx {
            rows.extend_from_slice(train_set.row(i));
        }
        let x0 = Tensor::<2>::from_data(TensorData::new(rows, [idx.len(), features]), &ad);
        let labels: Option<Vec<u32>> = train_set
            .labels
            .as_ref()
            .map(|l| idx.iter().map(|&i| l[i]).collect());
        let labels = labels.filter(|_| config.model.num_classes.is_some());
        let noise = batch_noise(config, features, step);
        let loss = model.loss(&config.model, &schedule, x0, labels.as_deref(), &noise);
        let loss_value = loss.clone().into_scalar::<f32>() as f64;
        let lr = learning_rate(config, step);
        if !loss_value.is_finite() {
            bad_run += 1;
            skipped += 1;
            tracing::warn!("step {step}: non-finite loss ({loss_value}); update skipped");
            outputs.log(&StepMetrics {
                step,
                loss: loss_value,
                lr,
                grad_norm: f64::NAN,
                skipped: true,
            })?;
            if bad_run >= config.max_bad_steps {
                return Err(Error::Diverged {
                    count: bad_run,
                    step,
                });
            }
            continue;
        }
        bad_run = 0;
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let grad_norm = clip_global_norm(&model, &mut grads, config.grad_clip);
        model = optim.step(lr, model, grads);
        // EMA warmup (as in diffusers' EMAModel): the decay ramps up, so early weights fade fast.
        let decay = config
            .ema_decay
            .min((1.0 + step as f64) / (10.0 + step as f64));
        ema = ema_update(ema, &model, decay);
        losses.push(loss_value);
        outputs.log(&StepMetrics {
            step,
            loss: loss_value,
            lr,
            grad_norm,
            skipped: false,
        })?;
        bar.set_position(step as u64 + 1);
        bar.set_message(format!("loss {loss_value:.4}"));
        let done = step + 1;
        if (config.checkpoint_every > 0 && done % config.checkpoint_every == 0) || done == end {
            save_checkpoint(
                &run,
                config,
                done,
                &model,
                &ema,
                &optim,
                train_set.len(),
                data.shape,
            )?;
        }
    }
    bar.finish_and_clear();
    let elapsed = t0.elapsed().as_secs_f64();
    let done = end;
    tracing::info!(
        "{} steps in {elapsed:.1}s ({:.1} it/s)",
        done - start,
        (done - start) as f64 / elapsed.max(1e-9)
    );
    outputs.plot_loss(&format!("diffusion on {}", config.data))?;
    let tenth = (losses.len() / 10).max(1);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    let first = &losses[..losses.len().min(10)];
    let quality = if opts.skip_eval || done < config.steps {
        None
    } else {
        Some(final_report(
            config,
            &data,
            val_set.as_ref(),
            &ema,
            &opts.device,
            run.path(),
        )?)
    };
    Ok(TrainReport {
        steps: done,
        first_loss: mean(first),
        last_loss: mean(&losses[losses.len().saturating_sub(tenth)..]),
        skipped,
        quality,
        model,
        ema,
        out: run.path().to_path_buf(),
    })
}

/// Refuses a config that cannot train on `data`, before anything is written.
pub fn check_fits(config: &TrainConfig, data: &Dataset) -> Result<()> {
    use oxgen_models::diffusion::DenoiserConfig;
    if let (DenoiserConfig::UNet(_), data::DataShape::Vector { dim }) =
        (&config.model.denoiser, data.shape)
    {
        return Err(Error::Config(format!(
            "a UNet denoiser needs image data, but `{}` has vectors of {dim} features; use the MLP",
            data.name
        )));
    }
    if let (DenoiserConfig::UNet(u), data::DataShape::Image { height, width, .. }) =
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

fn save_checkpoint(
    run: &RunDir,
    config: &TrainConfig,
    step: usize,
    model: &Diffusion,
    ema: &Diffusion,
    optim: &ModuleOptimizer,
    train_rows: usize,
    shape: oxgen_models::DataShape,
) -> Result<()> {
    let optim_bytes = optim
        .into_bytes()
        .map_err(|e| Error::Config(format!("serializing optimizer: {e}")))?
        .to_vec();
    let manifest = Manifest {
        format: checkpoint::FORMAT,
        family: "diffusion".into(),
        step,
        shape,
        config: serde_json::to_value(config).expect("config serializes"),
        rng: RngState {
            seed: config.seed,
            next_step: step,
        },
        data_position: (step * config.batch_size) as u64,
        files: Default::default(),
        oxgen_version: env!("CARGO_PKG_VERSION").into(),
    };
    let dir = checkpoint::save(
        run.path(),
        manifest,
        &[
            ("model.bpk", to_bytes(model)?),
            ("ema.bpk", to_bytes(ema)?),
            ("optim.bpk", optim_bytes),
        ],
    )?;
    tracing::debug!(
        "checkpoint {} (epoch {})",
        dir.display(),
        step * config.batch_size / train_rows.max(1)
    );
    Ok(())
}

/// Held-out sets A and B (and A's labels) for the quality report of `n` points.
pub fn held_out(
    config: &TrainConfig,
    data: &Dataset,
    val: Option<&Dataset>,
    n: usize,
) -> (Vec<f32>, Vec<f32>, Option<Vec<u32>>) {
    match (data.toy, val) {
        (Some(toy), _) => {
            let a = toy.sample(
                n,
                &mut StdRng::seed_from_u64(config.seed.wrapping_add(1001)),
            );
            let b = toy.sample(
                n,
                &mut StdRng::seed_from_u64(config.seed.wrapping_add(1002)),
            );
            (a, b, None)
        }
        (None, Some(val)) => {
            let half = val.len() / 2;
            let a = val.subset(&(0..half).collect::<Vec<_>>());
            let b = val.subset(&(half..2 * half).collect::<Vec<_>>());
            (a.x, b.x, a.labels)
        }
        (None, None) => panic!("held_out: a file dataset needs a validation split"),
    }
}

/// Samples with the EMA weights, measures SWD/MMD against held-out data, and writes
/// `samples.png` and `samples.npy` into `out`.
pub fn final_report(
    config: &TrainConfig,
    data: &Dataset,
    val: Option<&Dataset>,
    ema: &Diffusion,
    device: &Device,
    out: &Path,
) -> Result<Quality> {
    let features = data.shape.numel();
    let n = match data.toy {
        Some(_) => config.eval_samples,
        None => (val.map_or(0, |v| v.len()) / 2).min(config.eval_samples),
    };
    if n < 2 {
        return Err(Error::Config(format!(
            "too few held-out rows ({n}) for a quality report; raise val_fraction"
        )));
    }
    let (a, b, labels) = held_out(config, data, val, n);
    let labels = labels.filter(|_| config.model.num_classes.is_some());
    let samples = draw(
        ema,
        &config.model,
        &config.sample,
        n,
        labels.as_deref(),
        device,
    )?;
    let quality = Quality::measure(&samples, &a, &b, features, config.seed);
    crate::run::write_samples(out, &samples, labels.as_deref(), data.shape, Some(&a))?;
    std::fs::write(
        out.join("quality.json"),
        serde_json::to_vec_pretty(&quality).expect("serializes"),
    )
    .map_err(|e| Error::io("quality report", out, e))?;
    Ok(quality)
}

/// Draws `n` samples to the host, `[n · features]` row-major; a non-finite sample is an error.
pub fn draw(
    model: &Diffusion,
    config: &oxgen_models::DiffusionConfig,
    sample: &oxgen_models::SampleConfig,
    n: usize,
    labels: Option<&[u32]>,
    device: &Device,
) -> Result<Vec<f32>> {
    let x = diffusion::sample(model, config, sample, n, labels, device);
    let samples: Vec<f32> = x
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Config(format!("reading samples back: {e:?}")))?;
    match samples.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            context: "generated samples".into(),
            index,
        }),
        None => Ok(samples),
    }
}
