//! The GAN family's training step: `d_steps` discriminator updates, then one generator update,
//! each with its own Adam.
//!
//! Under DP-SGD only the discriminator reads private rows, so only its gradient on the real
//! batch is noised (Xie et al. 2018, "Differentially Private Generative Adversarial
//! Network"). Its gradient on generated rows is a function of the weights (already private)
//! and of public noise, so it needs no noise; the generator's update sees the data only
//! through the private discriminator, so it is post-processing. Both halves are clipped per
//! row, so that they weigh alike (with the generated half unclipped, the discriminator learns
//! to call everything generated and the generator collapses: measured). With B the expected
//! batch size qN (also the generated batch's size) and ℓ the discriminator's per-row loss:
//!
//! ```text
//! g_D = (Σ_{i ∈ real} clip_C(∇ℓ(xᵢ)) + N(0, σ²C²I) + Σ_{j ∈ fake} clip_C(∇ℓ(G(zⱼ)))) / B
//! ```

use std::cell::Cell;
use std::sync::Mutex;

use burn::optim::ModuleOptimizer;
use burn::tensor::activation::softplus;
use burn::tensor::{Device, Tensor};
use oxgen_models::gan::{Gan, GanConfig, GanLoss};
use oxgen_models::generative::host_normals;

use super::FamilyConfig;
use crate::checkpoint::{Loaded, load_weights, optim_bytes, restore_optim, to_bytes};
use crate::data::Dataset;
use crate::error::Result;
use crate::privacy::dpsgd::clipped_public;
use crate::privacy::state::{DpState, Placement};
use crate::trainer::optim::{clip_global_norm, grads_of, restrict};
use crate::trainer::parallel::{ParallelSummary, Replicas, Shard, shard_ranges};
use crate::trainer::rng::{Stream, batch_indices, step_seed};
use crate::trainer::{StepContext, StepOutput, TrainStep};

/// A GAN's step. Reports a collapsed discriminator.
pub(super) struct GanStep<'a> {
    pub(super) config: &'a FamilyConfig,
    pub(super) gan: &'a GanConfig,
    pub(super) train: &'a Dataset,
    pub(super) device: Device,
    pub(super) model: Gan,
    pub(super) og: ModuleOptimizer,
    pub(super) od: ModuleOptimizer,
    pub(super) collapsed_for: usize,
    pub(super) warnings: Vec<String>,
    pub(super) dp: Option<DpState>,
    /// A data-parallel run's replicas: every discriminator update and the generator's split
    /// their batch over them.
    pub(super) replicas: Option<Replicas>,
    /// Steps taken on the replicas (each is `d_steps + 1` gradient phases).
    pub(super) parallel_steps: usize,
}

/// One discriminator update's numbers: its loss, mean D(real) and mean D(fake), and a DP
/// step's accounting (ε, clipping).
struct DStep {
    loss: f64,
    real: f64,
    fake: f64,
    dp: Option<serde_json::Value>,
    /// On replicas: milliseconds of broadcast and reduce.
    allreduce_ms: f64,
}

impl GanStep<'_> {
    /// The `k`-th discriminator update of step `step`, at rate `lr_d`.
    fn d_step(&mut self, step: usize, k: usize, lr_d: f64) -> Result<DStep> {
        let (c, gc) = (self.config, self.gan);
        if self.dp.is_some() {
            return self.dp_d_step(step, k, lr_d);
        }
        let idx = batch_indices(
            self.train.len(),
            c.batch_size,
            c.seed,
            step * gc.d_steps + k,
        );
        let seed = step_seed(c.seed, step, Stream::Family(1 + k as u64));
        if self.replicas.is_some() {
            return self.parallel_d_step(step, &idx, seed, lr_d);
        }
        let real = self.train.batch(&idx, &self.device);
        let b = real.dims()[0];
        let fake = self
            .model
            .generate(host_normals(b, self.model.latent(), seed, &self.device));
        let (loss, r, f) = self.model.d_loss(gc, real, fake, seed ^ 0x77);
        let out = DStep {
            loss: loss.clone().into_scalar::<f32>() as f64,
            real: r.into_scalar::<f32>() as f64,
            fake: f.into_scalar::<f32>() as f64,
            dp: None,
            allreduce_ms: 0.0,
        };
        if out.loss.is_finite() {
            let (grads, _) = grads_of(loss, &self.model.discriminator, 0.0);
            self.model = self.od.step(lr_d, self.model.clone(), grads);
        }
        Ok(out)
    }

    /// A discriminator update on the replicas: each takes its rows of the real batch, of the
    /// latent draws and of the penalty's random draws (the whole batch's, sliced), so the
    /// summed gradient is the one-device update's.
    fn parallel_d_step(
        &mut self,
        step: usize,
        idx: &[usize],
        seed: u64,
        lr_d: f64,
    ) -> Result<DStep> {
        let gc = self.gan;
        let replicas = self.replicas.as_mut().expect("a data-parallel run");
        let total = idx.len();
        let ranges = shard_ranges(total, replicas.len());
        let weights: Vec<f64> = ranges
            .iter()
            .map(|r| r.len() as f64 / total as f64)
            .collect();
        let shards = Shard::by_rows(
            ranges
                .into_iter()
                .map(|r| ((idx[r.clone()].to_vec(), r.clone()), r.len()))
                .collect(),
        );
        let (train, latent) = (self.train, self.model.latent());
        let g = replicas.grads_with(
            step,
            &self.model,
            shards,
            None,
            |m: &Gan, (idx, r): (Vec<usize>, std::ops::Range<usize>), device, _| {
                let real = train.batch(&idx, device);
                let fake = m.generate(host_normals(total, latent, seed, device).slice([r.clone()]));
                let (loss, dr, df) = m.d_loss_rows(gc, real, fake, seed ^ 0x77, r.start, total);
                let read = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
                (loss, (read(dr), read(df)))
            },
        )?;
        let mean = |pick: fn(&(f64, f64)) -> f64| -> f64 {
            g.aux.iter().zip(&weights).map(|(a, w)| w * pick(a)).sum()
        };
        let out = DStep {
            loss: g.loss.clone().into_scalar::<f32>() as f64,
            real: mean(|a| a.0),
            fake: mean(|a| a.1),
            dp: None,
            allreduce_ms: g.extra["allreduce_ms"].as_f64().unwrap_or(0.0),
        };
        if out.loss.is_finite() {
            let grads = restrict(&self.model.discriminator, g.grads);
            self.model = self.od.step(lr_d, self.model.clone(), grads);
        }
        Ok(out)
    }

    /// The generator's update on the replicas, each on its rows of the latent draws. Returns
    /// its loss, gradient norm and the step's metrics fields; a non-finite loss updates nothing.
    fn parallel_g_step(
        &mut self,
        step: usize,
        lr: f64,
        d_allreduce_ms: f64,
    ) -> Result<(f64, f64, serde_json::Value)> {
        let (c, gc) = (self.config, self.gan);
        let replicas = self.replicas.as_mut().expect("a data-parallel run");
        let (b, latent) = (c.batch_size, self.model.latent());
        let seed = step_seed(c.seed, step, Stream::Family(0));
        let shards = shard_ranges(b, replicas.len())
            .into_iter()
            .map(|r| (r.clone(), r.len()))
            .collect();
        let g = replicas.grads(step, &self.model, shards, None, |m: &Gan, r, device, _| {
            m.g_loss_on(gc, host_normals(b, latent, seed, device).slice([r]))
        })?;
        let mut extra = g.extra;
        if let Some(m) = extra.as_object_mut() {
            let ms = m
                .get("allreduce_ms")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0);
            m.insert("allreduce_ms".into(), (ms + d_allreduce_ms).into());
        }
        self.parallel_steps += 1;
        let loss = g.loss.into_scalar::<f32>() as f64;
        if !loss.is_finite() {
            return Ok((loss, f64::NAN, extra));
        }
        let generator = &self.model.generator;
        let mut grads = restrict(generator, g.grads);
        let norm = clip_global_norm(generator, &mut grads, c.grad_clip);
        self.model = self.og.step(lr, self.model.clone(), grads);
        Ok((loss, norm, extra))
    }

    /// A DP-SGD discriminator update: a Poisson batch of real rows, each row's gradient
    /// clipped, noise once, and the generated batch's gradient added as it is (module docs).
    fn dp_d_step(&mut self, step: usize, k: usize, lr_d: f64) -> Result<DStep> {
        let (c, gc, train) = (self.config, self.gan, self.train);
        let dp = self.dp.as_mut().expect("a DP run");
        // The accountant's step: every discriminator update reads a private batch.
        let t = step * gc.d_steps + k;
        let idx = dp.plan.batch(c.seed, t, c.batch_size);
        let rows = idx.len();
        // An empty Poisson batch still runs (one row at weight 0): the private part is noise.
        let idx = if rows == 0 { vec![0] } else { idx };
        let seed = step_seed(c.seed, step, Stream::Family(1 + k as u64));
        let latent = self.model.latent();
        let fake = self
            .model
            .generate(host_normals(c.batch_size, latent, seed, &self.device))
            .detach();
        let kind = gc.loss;
        let row_losses = move |d: Tensor<1>, real: bool| match (kind, real) {
            (GanLoss::NonSaturating, true) => softplus(d.neg(), 1.0).sum(),
            (GanLoss::NonSaturating, false) => softplus(d, 1.0).sum(),
            (GanLoss::Wasserstein, true) => d.neg().sum(),
            (GanLoss::Wasserstein, false) => d.sum(),
        };
        // The generated rows' gradient, clipped per row as the real rows' are (no noise).
        let fake_mean = Cell::new(0.0);
        let expected = dp.plan.q * dp.plan.n as f64;
        let (public, fake_sum) = clipped_public(
            &self.model,
            |m: &Gan| {
                let d = m.discriminate(fake);
                fake_mean.set(d.clone().detach().mean().into_scalar::<f32>() as f64);
                row_losses(d, false)
            },
            dp.plan.config.clip,
            expected,
        );
        let fake_value = fake_sum / c.batch_size as f64;
        // Σ D(real) over the rows, from each replica's shard.
        let real_sum = Mutex::new(0.0);
        let ctx = StepContext {
            step: t,
            lr: lr_d,
            defer: false,
        };
        let (model, out) = dp.update_with_public(
            self.model.clone(),
            &mut self.od,
            rows,
            Placement {
                device: &self.device,
                replicas: self.replicas.as_mut(),
            },
            |m: &Gan, r: std::ops::Range<usize>, device: &Device, _| {
                let d = m.discriminate(train.batch(&idx[r], device));
                let sum = d.clone().detach().sum().into_scalar::<f32>() as f64;
                *real_sum.lock().expect("not poisoned") += sum;
                row_losses(d, true)
            },
            Some(public),
            &ctx,
            c.seed,
            c.dp_steps(),
        )?;
        self.model = model;
        let real = match rows {
            0 => 0.0,
            n => real_sum.into_inner().expect("not poisoned") / n as f64,
        };
        Ok(DStep {
            loss: out.loss + fake_value,
            real,
            fake: fake_mean.get(),
            allreduce_ms: out.extra["allreduce_ms"].as_f64().unwrap_or(0.0),
            dp: Some(out.extra),
        })
    }
}

impl TrainStep for GanStep<'_> {
    fn step(&mut self, ctx: StepContext) -> Result<StepOutput> {
        let (c, gc) = (self.config, self.gan);
        let step = ctx.step;
        // The discriminator's rate follows the same schedule from its own peak.
        let lr_d = c.schedule.at(c.lr_d, step, c.steps);
        let mut d = DStep {
            loss: 0.0,
            real: 0.0,
            fake: 0.0,
            dp: None,
            allreduce_ms: 0.0,
        };
        let mut d_allreduce_ms = 0.0;
        for k in 0..gc.d_steps {
            d = self.d_step(step, k, lr_d)?;
            d_allreduce_ms += d.allreduce_ms;
            if !d.loss.is_finite() {
                break;
            }
        }
        let dl = d.loss;
        // The generator's update, unless the discriminator's loss was not finite.
        let (g, grad_norm, parallel) = if !dl.is_finite() {
            (f64::NAN, f64::NAN, serde_json::Value::Null)
        } else if self.replicas.is_some() {
            self.parallel_g_step(step, ctx.lr, d_allreduce_ms)?
        } else {
            let seed = step_seed(c.seed, step, Stream::Family(0));
            let gl = self.model.g_loss(gc, c.batch_size, seed, &self.device);
            let g = gl.clone().into_scalar::<f32>() as f64;
            if g.is_finite() {
                let (grads, norm) = grads_of(gl, &self.model.generator, c.grad_clip);
                self.model = self.og.step(ctx.lr, self.model.clone(), grads);
                (g, norm, serde_json::Value::Null)
            } else {
                (g, f64::NAN, serde_json::Value::Null)
            }
        };
        let mut extra = serde_json::json!({"d_loss": dl, "d_real": d.real, "d_fake": d.fake});
        let mut message = format!("G {g:.3} D {dl:.3}");
        if let Some(serde_json::Value::Object(dp)) = d.dp {
            if let Some(eps) = dp.get("epsilon").and_then(|e| e.as_f64()) {
                message.push_str(&format!("  ε {eps:.3}"));
            }
            if let serde_json::Value::Object(e) = &mut extra {
                e.extend(dp);
            }
        }
        if let (Some(e), serde_json::Value::Object(p)) = (extra.as_object_mut(), parallel) {
            e.extend(p);
        }
        let message = Some(message);
        if !(g.is_finite() && dl.is_finite()) {
            // A non-finite loss on either side skips the generator's update.
            return Ok(StepOutput {
                loss: f64::NAN,
                grad_norm: f64::NAN,
                extra,
                message,
                pending: None,
            });
        }
        // A discriminator that separates perfectly (σ(D) > 0.99 on real, < 0.01 on fake, for
        // 200 steps) leaves the generator no gradient: report it.
        let separated = gc.loss == GanLoss::NonSaturating && d.real > 4.6 && d.fake < -4.6;
        self.collapsed_for = if separated { self.collapsed_for + 1 } else { 0 };
        if self.collapsed_for == 200 {
            let w = format!(
                "discriminator collapse: D separated real from generated data for 200 steps \
                 (to step {step}); the generator gets no gradient"
            );
            tracing::warn!("{w}");
            self.warnings.push(w);
        }
        Ok(StepOutput {
            loss: g,
            grad_norm,
            extra,
            message,
            pending: None,
        })
    }

    fn state(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let mut files = vec![
            ("model.bpk", to_bytes(&self.model)?),
            ("optim.bpk", optim_bytes(&self.og)?),
            ("optim_d.bpk", optim_bytes(&self.od)?),
        ];
        if let Some(dp) = &self.dp {
            files.push(dp.file());
        }
        Ok(files)
    }

    fn parallel(&self) -> Option<ParallelSummary> {
        let r = self.replicas.as_ref()?;
        Some(r.summary_for(self.parallel_steps))
    }

    fn restore(&mut self, ck: &Loaded) -> Result<()> {
        self.model = load_weights(self.model.clone(), ck.file("model.bpk")?, &ck.dir)?;
        restore_optim(&mut self.og, ck, "optim.bpk")?;
        restore_optim(&mut self.od, ck, "optim_d.bpk")?;
        if let Some(dp) = self.dp.as_mut() {
            dp.restore(ck)?;
        }
        Ok(())
    }
}
