//! The autoregressive trainer's DP-SGD step: one sampled batch of training records, the sum of
//! their per-record mean token losses, per-record clipping through the GPT's taps (its tied
//! head and embedding summed per record) and the accountant.

use oxgen_models::ar::Gpt;

use super::Step;
use super::data::TokenRows;
use crate::Result;
use crate::trainer::optim::device_rng_lock;
use crate::trainer::{StepContext, StepOutput};

impl Step<'_> {
    /// A DP-SGD step on `batches` (one batch of `rows` records; padded to one row at weight 0
    /// when the draw was empty).
    pub(super) fn dp_step(
        &mut self,
        ctx: StepContext,
        dropout_seed: u64,
        batches: Vec<TokenRows>,
        rows: usize,
    ) -> Result<StepOutput> {
        let c = self.config;
        let dp = self.dp.as_mut().expect("a DP run");
        let _rng_guard = (c.model.dropout > 0.0).then(|| {
            let guard = device_rng_lock();
            self.eval_device.seed(dropout_seed);
            guard
        });
        let batch = batches
            .into_iter()
            .next()
            .expect("a DP step draws one batch");
        let (data, device) = (self.data, self.device.clone());
        // The loss is a mean over the batch's records; times their number, a sum of per-record
        // means.
        let per_row = batch.rows as f64;
        let (model, out) = dp.update(
            self.model.clone(),
            &mut self.optim,
            rows,
            |m: &Gpt| data.loss_of(m, batch, &device).mul_scalar(per_row),
            &ctx,
            c.seed,
            c.steps,
        )?;
        self.model = model;
        Ok(out)
    }
}
