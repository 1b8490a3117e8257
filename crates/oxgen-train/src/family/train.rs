//! The trainer of the VAE, flow and GAN families: the diffusion trainer's flat loop (seeded
//! batches, warmup + cosine learning rate, clipping, non-finite skipping, atomic checkpoints,
//! exact resume), with two optimizers in alternation for a GAN.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use oxgen_models::DataShape;
use oxgen_models::flow::Flow;
use oxgen_models::gan::{Gan, GanLoss};
use oxgen_models::generative::Generative;
use oxgen_models::vae::{DecoderKind, Vae};
use serde::Serialize;

use super::report::{FamilyQuality, evaluate_model};
use super::{FamilyConfig, FamilyModel, pixel_levels};
use crate::checkpoint::{self, Manifest, RngState};
use crate::data::{self, Dataset, LoadOptions};
use crate::diffusion::{StepMetrics, TrainOptions, batch_indices, load_weights, to_bytes};
use crate::error::{Error, Result};
use crate::optim::{clip_global_norm, seeded_init};
use crate::run::{Outputs, RunDir};

/// A trained model of one of the three families (weights without autodiff).
#[derive(Debug)]
pub enum Trained {
    /// See [`Vae`].
    Vae(Vae),
    /// See [`Flow`].
    Flow(Flow),
    /// See [`Gan`].
    Gan(Gan),
}

impl Trained {
    /// The model behind the shared API.
    pub fn generative(&self) -> &dyn Generative {
        match self {
            Trained::Vae(m) => m,
            Trained::Flow(m) => m,
            Trained::Gan(m) => m,
        }
    }
}

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
    /// The final report, unless skipped.
    pub quality: Option<FamilyQuality>,
    /// The trained model.
    pub model: Trained,
    /// The run folder.
    pub out: PathBuf,
    /// Wall time of the training loop, seconds.
    pub train_seconds: f64,
}

/// One line of a GAN's `metrics.jsonl`: the usual fields (loss = the generator's) and D's.
#[derive(Serialize)]
struct GanLine {
    #[serde(flatten)]
    base: StepMetrics,
    d_loss: f64,
    d_real: f64,
    d_fake: f64,
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

/// Train rows and, for file or image data, the validation rows.
pub(super) fn split(config: &FamilyConfig, data: &Dataset) -> (Dataset, Option<Dataset>) {
    match data.toy {
        Some(_) => (data.clone(), None),
        None => {
            let (t, v) = data.split(config.val_fraction, config.seed);
            (t, Some(v))
        }
    }
}

fn step_seed(seed: u64, step: usize, k: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((step as u64) << 8 | k)
}

fn batch(train: &Dataset, config: &FamilyConfig, step: usize, device: &Device) -> Tensor<2> {
    let f = train.shape.numel();
    let idx = batch_indices(train.len(), config.batch_size, config.seed, step);
    let mut rows = Vec::with_capacity(idx.len() * f);
    for &i in &idx {
        rows.extend_from_slice(train.row(i));
    }
    Tensor::from_data(TensorData::new(rows, [idx.len(), f]), device)
}

/// Uniform dequantization noise in ±delta/2 on `x` (images only).
fn dequantize(x: Tensor<2>, delta: f64, seed: u64) -> Tensor<2> {
    let [b, d] = x.dims();
    let u = oxgen_models::flow::host_uniforms(b * d, seed);
    let u = Tensor::<2>::from_data(TensorData::new(u, [b, d]), &x.device());
    x + u.sub_scalar(0.5).mul_scalar(delta)
}

/// Trains a VAE, flow or GAN as `config` says, then (unless skipped) samples, scores held-out
/// data and writes the report. See [`TrainOptions`].
pub fn train_family(config: &FamilyConfig, opts: &TrainOptions) -> Result<FamilyReport> {
    let data = load_data(config)?;
    config.validate(data.shape)?;
    let run = RunDir::create(&opts.out, opts.resume)?;
    let (train, val) = split(config, &data);
    let ad = opts.device.clone().autodiff();
    let shape = data.shape;
    let f = shape.numel() as f64;
    let image = matches!(shape, DataShape::Image { .. });
    let delta = 2.0 / (pixel_levels(&data) as f64 - 1.0);
    let loop_ = Loop {
        config,
        opts,
        run: &run,
        train: &train,
        shape,
    };
    let (model, summary) = match &config.model {
        FamilyModel::Flow(c) => {
            let m = seeded_init(&opts.device, config.seed, || c.init(shape, &ad));
            let init = |m: Flow, x: Tensor<2>| m.data_init(x);
            let (m, s) = loop_.single(m, init, |m: &Flow, x, seed, _| {
                let x = if image { dequantize(x, delta, seed) } else { x };
                use oxgen_models::generative::ExactDensity;
                m.log_prob(x).mean().neg().div_scalar(f)
            })?;
            (Trained::Flow(m.valid()), s)
        }
        FamilyModel::Vae(c) => {
            let m = seeded_init(&opts.device, config.seed, || c.init(shape, &ad));
            let deq = image
                && matches!(
                    c.decoder,
                    DecoderKind::Gaussian | DecoderKind::SharedGaussian
                );
            let (m, s) = loop_.single(
                m,
                |m, _| m,
                |m: &Vae, x, seed, step| {
                    let x = if deq {
                        dequantize(x, delta, seed ^ 1)
                    } else {
                        x
                    };
                    m.loss(x, c.beta_at(step), c.train_k, seed).div_scalar(f)
                },
            )?;
            (Trained::Vae(m.valid()), s)
        }
        FamilyModel::Gan(c) => {
            let m = seeded_init(&opts.device, config.seed, || c.init(shape, &ad));
            let (m, s) = loop_.gan(m, c)?;
            (Trained::Gan(m.valid()), s)
        }
    };
    let quality = if opts.skip_eval || summary.done < config.steps {
        None
    } else {
        Some(evaluate_model(
            &model,
            config,
            &data,
            val.as_ref(),
            &opts.device,
            run.path(),
            summary.seconds,
            &summary.warnings,
        )?)
    };
    let tenth = (summary.losses.len() / 10).max(1);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    Ok(FamilyReport {
        steps: summary.done,
        first_loss: mean(&summary.losses[..summary.losses.len().min(10)]),
        last_loss: mean(&summary.losses[summary.losses.len().saturating_sub(tenth)..]),
        skipped: summary.skipped,
        warnings: summary.warnings,
        quality,
        model,
        out: run.path().to_path_buf(),
        train_seconds: summary.seconds,
    })
}

struct Summary {
    done: usize,
    losses: Vec<f64>,
    skipped: usize,
    warnings: Vec<String>,
    seconds: f64,
}

struct Loop<'a> {
    config: &'a FamilyConfig,
    opts: &'a TrainOptions,
    run: &'a RunDir,
    train: &'a Dataset,
    shape: DataShape,
}

fn adam(config: &FamilyConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_1(config.beta1 as f32)
        .with_weight_decay(0.0)
        .with_epsilon(1e-8)
        .init()
}

fn optim_from(optim: ModuleOptimizer, bytes: &[u8], dir: &Path) -> Result<ModuleOptimizer> {
    optim
        .from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| Error::Checkpoint {
            path: dir.into(),
            reason: format!("optimizer state unreadable: {e}"),
        })
}

fn optim_bytes(optim: &ModuleOptimizer) -> Result<Vec<u8>> {
    Ok(optim
        .into_bytes()
        .map_err(|e| Error::Config(format!("serializing optimizer: {e}")))?
        .to_vec())
}

impl Loop<'_> {
    /// Loads the run's latest checkpoint into `model` and the optimizers named in `optims`.
    fn resume<M: Module>(
        &self,
        model: M,
        optims: &mut [(&str, &mut ModuleOptimizer)],
    ) -> Result<(M, usize)> {
        let ck = checkpoint::load(&self.opts.out)?;
        let want = serde_json::to_value(&self.config.model).expect("config serializes");
        if ck.manifest.family != self.config.model.name() || ck.manifest.config["model"] != want {
            return Err(Error::Checkpoint {
                path: ck.dir.clone(),
                reason: format!(
                    "it was written for another model ({}: {})",
                    ck.manifest.family, ck.manifest.config["model"]
                ),
            });
        }
        let model = load_weights(model, ck.file("model.bpk")?, &ck.dir)?;
        for (name, o) in optims.iter_mut() {
            let taken = std::mem::replace(&mut **o, adam(self.config));
            **o = optim_from(taken, ck.file(name)?, &ck.dir)?;
        }
        tracing::info!(
            "resumed from {} at step {}",
            ck.dir.display(),
            ck.manifest.step
        );
        Ok((model, ck.manifest.step))
    }

    fn save<M: Module>(
        &self,
        step: usize,
        model: &M,
        optims: &[(&str, &ModuleOptimizer)],
    ) -> Result<()> {
        let manifest = Manifest {
            format: checkpoint::FORMAT,
            family: self.config.model.name().into(),
            step,
            shape: self.shape,
            config: serde_json::to_value(self.config).expect("config serializes"),
            rng: RngState {
                seed: self.config.seed,
                next_step: step,
            },
            data_position: (step * self.config.batch_size) as u64,
            files: Default::default(),
            oxgen_version: env!("CARGO_PKG_VERSION").into(),
        };
        let mut files = vec![("model.bpk", to_bytes(model)?)];
        for (name, o) in optims {
            files.push((name, optim_bytes(o)?));
        }
        checkpoint::save(self.run.path(), manifest, &files)?;
        Ok(())
    }

    fn checkpoint_due(&self, done: usize, end: usize) -> bool {
        let every = self.config.checkpoint_every;
        (every > 0 && done % every == 0) || done == end
    }

    /// One model, one optimizer, minimising `loss(model, batch, seed, step)`. `init` runs on the
    /// first batch of a fresh run (a flow's data-dependent ActNorm).
    fn single<M: Module>(
        &self,
        model: M,
        init: impl FnOnce(M, Tensor<2>) -> M,
        loss: impl Fn(&M, Tensor<2>, u64, usize) -> Tensor<1>,
    ) -> Result<(M, Summary)> {
        let c = self.config;
        let ad = self.opts.device.clone().autodiff();
        let mut optim = adam(c);
        let (mut model, start) = if self.opts.resume {
            self.resume(model, &mut [("optim.bpk", &mut optim)])?
        } else {
            (init(model, batch(self.train, c, 0, &ad)), 0)
        };
        self.run.write_config(c)?;
        let mut out = Outputs::open(self.run, start)?;
        let end = self.opts.stop_after.map_or(c.steps, |s| s.min(c.steps));
        let bar = crate::run::progress(self.opts.progress, start, c.steps);
        let (mut bad, mut skipped, mut losses) = (0usize, 0usize, Vec::new());
        let t0 = Instant::now();
        for step in start..end {
            let x = batch(self.train, c, step, &ad);
            let l = loss(&model, x, step_seed(c.seed, step, 0), step);
            let value = l.clone().into_scalar::<f32>() as f64;
            let lr = c.learning_rate(c.lr, step);
            let mut line = StepMetrics {
                step,
                loss: value,
                lr,
                grad_norm: f64::NAN,
                skipped: !value.is_finite(),
            };
            if !value.is_finite() {
                (bad, skipped) = (bad + 1, skipped + 1);
                tracing::warn!("step {step}: non-finite loss; update skipped");
                out.log(&line)?;
                if bad >= c.max_bad_steps {
                    return Err(Error::Diverged { count: bad, step });
                }
                continue;
            }
            bad = 0;
            let mut grads = GradientsParams::from_grads(l.backward(), &model);
            line.grad_norm = clip_global_norm(&model, &mut grads, c.grad_clip);
            model = optim.step(lr, model, grads);
            losses.push(value);
            out.log(&line)?;
            bar.set_position(step as u64 + 1);
            bar.set_message(format!("loss {value:.4}"));
            if self.checkpoint_due(step + 1, end) {
                self.save(step + 1, &model, &[("optim.bpk", &optim)])?;
            }
        }
        bar.finish_and_clear();
        let seconds = t0.elapsed().as_secs_f64();
        out.plot_loss(&format!("{} on {} (nats/dim)", c.model.name(), c.data))?;
        Ok((
            model,
            Summary {
                done: end,
                losses,
                skipped,
                warnings: Vec::new(),
                seconds,
            },
        ))
    }

    /// Alternating updates: `d_steps` discriminator steps, then one generator step, each with
    /// its own Adam. Reports a collapsed discriminator; stops on non-finite losses.
    fn gan(&self, model: Gan, gc: &oxgen_models::gan::GanConfig) -> Result<(Gan, Summary)> {
        let c = self.config;
        let ad = self.opts.device.clone().autodiff();
        let (mut og, mut od) = (adam(c), adam(c));
        let (mut model, start) = if self.opts.resume {
            self.resume(
                model,
                &mut [("optim.bpk", &mut og), ("optim_d.bpk", &mut od)],
            )?
        } else {
            (model, 0)
        };
        self.run.write_config(c)?;
        let mut out = Outputs::open(self.run, start)?;
        let end = self.opts.stop_after.map_or(c.steps, |s| s.min(c.steps));
        let bar = crate::run::progress(self.opts.progress, start, c.steps);
        let (mut bad, mut skipped, mut losses) = (0usize, 0usize, Vec::new());
        let (mut collapsed_for, mut warnings) = (0usize, Vec::new());
        let t0 = Instant::now();
        for step in start..end {
            let (lr_g, lr_d) = (c.learning_rate(c.lr, step), c.learning_rate(c.lr_d, step));
            let (mut dl, mut dr, mut df) = (0.0, 0.0, 0.0);
            for k in 0..gc.d_steps {
                let real = batch(self.train, c, step * gc.d_steps + k, &ad);
                let b = real.dims()[0];
                let seed = step_seed(c.seed, step, 1 + k as u64);
                let fake = model.generate(oxgen_models::generative::host_normals(
                    b,
                    model.latent(),
                    seed,
                    &ad,
                ));
                let (loss, r, f) = model.d_loss(gc, real, fake, seed ^ 0x77);
                dl = loss.clone().into_scalar::<f32>() as f64;
                dr = r.into_scalar::<f32>() as f64;
                df = f.into_scalar::<f32>() as f64;
                if !dl.is_finite() {
                    break;
                }
                let grads = GradientsParams::from_grads(loss.backward(), &model.discriminator);
                model = od.step(lr_d, model, grads);
            }
            let gl = model.g_loss(gc, c.batch_size, step_seed(c.seed, step, 0), &ad);
            let g = gl.clone().into_scalar::<f32>() as f64;
            let finite = g.is_finite() && dl.is_finite();
            let mut line = GanLine {
                base: StepMetrics {
                    step,
                    loss: g,
                    lr: lr_g,
                    grad_norm: f64::NAN,
                    skipped: !finite,
                },
                d_loss: dl,
                d_real: dr,
                d_fake: df,
            };
            if !finite {
                (bad, skipped) = (bad + 1, skipped + 1);
                tracing::warn!("step {step}: non-finite GAN loss (G {g}, D {dl}); update skipped");
                out.log_line(step, g, &line)?;
                if bad >= c.max_bad_steps {
                    return Err(Error::Diverged { count: bad, step });
                }
                continue;
            }
            bad = 0;
            let mut grads = GradientsParams::from_grads(gl.backward(), &model.generator);
            line.base.grad_norm = clip_global_norm(&model.generator, &mut grads, c.grad_clip);
            model = og.step(lr_g, model, grads);
            // A discriminator that separates perfectly (σ(D) > 0.99 on real, < 0.01 on fake,
            // for 200 steps) leaves the generator no gradient: report it.
            let separated = gc.loss == GanLoss::NonSaturating && dr > 4.6 && df < -4.6;
            collapsed_for = if separated { collapsed_for + 1 } else { 0 };
            if collapsed_for == 200 {
                let w = format!(
                    "discriminator collapse: D separated real from generated data for 200 \
                     steps (to step {step}); the generator gets no gradient"
                );
                tracing::warn!("{w}");
                warnings.push(w);
            }
            losses.push(g);
            out.log_line(step, g, &line)?;
            bar.set_position(step as u64 + 1);
            bar.set_message(format!("G {g:.3} D {dl:.3}"));
            if self.checkpoint_due(step + 1, end) {
                self.save(
                    step + 1,
                    &model,
                    &[("optim.bpk", &og), ("optim_d.bpk", &od)],
                )?;
            }
        }
        bar.finish_and_clear();
        let seconds = t0.elapsed().as_secs_f64();
        out.plot_loss(&format!("GAN generator loss on {}", c.data))?;
        Ok((
            model,
            Summary {
                done: end,
                losses,
                skipped,
                warnings,
                seconds,
            },
        ))
    }
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
