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
use crate::privacy::state::DpState;
use crate::trainer::optim::grads_of;
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
}

/// One discriminator update's numbers: its loss, mean D(real) and mean D(fake), and a DP
/// step's accounting (ε, clipping).
struct DStep {
    loss: f64,
    real: f64,
    fake: f64,
    dp: Option<serde_json::Value>,
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
        let real = self.train.batch(&idx, &self.device);
        let b = real.dims()[0];
        let seed = step_seed(c.seed, step, Stream::Family(1 + k as u64));
        let fake = self
            .model
            .generate(host_normals(b, self.model.latent(), seed, &self.device));
        let (loss, r, f) = self.model.d_loss(gc, real, fake, seed ^ 0x77);
        let out = DStep {
            loss: loss.clone().into_scalar::<f32>() as f64,
            real: r.into_scalar::<f32>() as f64,
            fake: f.into_scalar::<f32>() as f64,
            dp: None,
        };
        if out.loss.is_finite() {
            let (grads, _) = grads_of(loss, &self.model.discriminator, 0.0);
            self.model = self.od.step(lr_d, self.model.clone(), grads);
        }
        Ok(out)
    }

    /// A DP-SGD discriminator update: a Poisson batch of real rows, each row's gradient
    /// clipped, noise once, and the generated batch's gradient added as it is (module docs).
    fn dp_d_step(&mut self, step: usize, k: usize, lr_d: f64) -> Result<DStep> {
        let (c, gc) = (self.config, self.gan);
        let dp = self.dp.as_mut().expect("a DP run");
        // The accountant's step: every discriminator update reads a private batch.
        let t = step * gc.d_steps + k;
        let idx = dp.plan.batch(c.seed, t, c.batch_size);
        let rows = idx.len();
        // An empty Poisson batch still runs (one row at weight 0): the private part is noise.
        let real = self
            .train
            .batch(if rows == 0 { &[0] } else { &idx }, &self.device);
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
        let real_mean = Cell::new(0.0);
        let ctx = StepContext {
            step: t,
            lr: lr_d,
            defer: false,
        };
        let (model, out) = dp.update_with_public(
            self.model.clone(),
            &mut self.od,
            rows,
            |m: &Gan| {
                let d = m.discriminate(real);
                if rows > 0 {
                    real_mean.set(d.clone().detach().mean().into_scalar::<f32>() as f64);
                }
                row_losses(d, true)
            },
            Some(public),
            &ctx,
            c.seed,
            c.dp_steps(),
        )?;
        self.model = model;
        Ok(DStep {
            loss: out.loss + fake_value,
            real: real_mean.get(),
            fake: fake_mean.get(),
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
        };
        for k in 0..gc.d_steps {
            d = self.d_step(step, k, lr_d)?;
            if !d.loss.is_finite() {
                break;
            }
        }
        let gl = self.model.g_loss(
            gc,
            c.batch_size,
            step_seed(c.seed, step, Stream::Family(0)),
            &self.device,
        );
        let g = gl.clone().into_scalar::<f32>() as f64;
        let dl = d.loss;
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
        let (grads, grad_norm) = grads_of(gl, &self.model.generator, c.grad_clip);
        self.model = self.og.step(ctx.lr, self.model.clone(), grads);
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
