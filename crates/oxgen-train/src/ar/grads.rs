//! The autoregressive step's gradients: the micro-batches' losses and summed gradients, and the
//! update of an f16 run (unscale, overflow check, clip, step; see
//! [`crate::trainer::loss_scale`]).

use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use super::Step;
use super::data::TokenRows;
use crate::Result;
use crate::trainer::optim::{accumulate, clip_global_norm, device_rng_lock, scale_grads};
use crate::trainer::parallel::shard_sizes;
use crate::trainer::rng::replica_seed;
use crate::trainer::{StepContext, StepOutput};

impl Step<'_> {
    /// The gradients of the step's loss, summed over `batches` (each micro-batch's loss divided
    /// by their number), and the loss on the device (`[1]`). With `scale`, each loss is
    /// multiplied by it before the backward (the gradients come back scaled; the loss does
    /// not). A data-parallel run splits each micro-batch over its replicas and also returns
    /// the metrics fields of the last micro-batch ([`Replicas::grads`]).
    pub(super) fn micro_batches(
        &mut self,
        step: usize,
        batches: Vec<TokenRows>,
        dropout_seed: u64,
        scale: Option<f64>,
    ) -> Result<(GradientsParams, Tensor<1>, serde_json::Value)> {
        let c = self.config;
        let dropout = c.model.dropout > 0.0;
        // Dropout draws from the device's generator: seeded per step (and held for the step),
        // so a resumed run draws the same masks as a straight one. Replicas seed their own
        // stream each (below).
        let _rng_guard = (dropout && self.replicas.is_none()).then(|| {
            let guard = device_rng_lock();
            self.eval_device.seed(dropout_seed);
            guard
        });
        let mut grads = GradientsParams::new();
        // The loss summed over micro-batches, on the device (read only when not deferred).
        let mut loss_sum: Option<Tensor<1>> = None;
        let mut extra = serde_json::Value::Null;
        for rows in batches {
            let (g, value) = match self.replicas.as_mut() {
                Some(replicas) => {
                    let sizes = shard_sizes(rows.rows, replicas.len());
                    let shards = rows.split(&sizes);
                    let data = self.data;
                    let out = replicas.grads(
                        step,
                        &self.model,
                        shards,
                        scale,
                        |m, rows, device, i| {
                            // Each replica's dropout stream: from the step's seed and its index,
                            // drawn while the forward is built (the lock is not held through
                            // the backward).
                            let _guard = dropout.then(|| {
                                let guard = device_rng_lock();
                                device.seed(replica_seed(dropout_seed, i));
                                guard
                            });
                            data.loss_of(m, rows, device)
                                .div_scalar(c.grad_accum as f64)
                        },
                    )?;
                    extra = out.extra;
                    (out.grads, out.loss)
                }
                None => {
                    let loss = self
                        .data
                        .loss_of(&self.model, rows, &self.device)
                        .div_scalar(c.grad_accum as f64);
                    let value = loss.clone().detach().reshape([1]);
                    let loss = match scale {
                        Some(s) => loss.mul_scalar(s),
                        None => loss,
                    };
                    (
                        GradientsParams::from_grads(loss.backward(), &self.model),
                        value,
                    )
                }
            };
            loss_sum = Some(loss_sum.map_or(value.clone(), |s| s + value));
            grads = accumulate(&self.model, grads, g);
        }
        Ok((grads, loss_sum.expect("grad_accum is at least 1"), extra))
    }

    /// An f16 run's update from gradients scaled by `scale`: unscaled, their norm read back, no
    /// update when it is not finite (the scaler halves), else clipped and applied. The metrics
    /// line gets `loss_scale` and, on a skipped update, `overflow: true`.
    pub(super) fn half_update(
        &mut self,
        ctx: StepContext,
        mut grads: GradientsParams,
        loss_sum: Tensor<1>,
        scale: f64,
    ) -> Result<StepOutput> {
        let loss = loss_sum.into_scalar::<f32>() as f64;
        if !loss.is_finite() {
            return Ok(StepOutput::loss(loss, f64::NAN));
        }
        scale_grads(&self.model, &mut grads, 1.0 / scale);
        let norm = clip_global_norm(&self.model, &mut grads, self.config.grad_clip);
        let scaler = self.scaler.as_mut().expect("an f16 run has a scaler");
        let mut out = StepOutput::loss(loss, norm);
        if scaler.update(norm) {
            self.model = self.optim.step(ctx.lr, self.model.clone(), grads);
            out.extra = serde_json::json!({ "loss_scale": scale });
        } else {
            out.extra = serde_json::json!({ "loss_scale": scale, "overflow": true });
            out.message = Some(format!(
                "loss {loss:.4} (gradients overflowed at loss scale {scale}: update skipped)"
            ));
        }
        Ok(out)
    }
}
