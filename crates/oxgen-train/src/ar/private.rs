//! The autoregressive trainer's DP-SGD step: one sampled batch of training records, the sum of
//! their per-record mean token losses, per-record clipping through the GPT's taps (its tied
//! head and embedding summed per record) and the accountant.

use burn::tensor::Device;
use oxgen_models::ar::Gpt;

use super::Step;
use super::data::TokenRows;
use crate::Result;
use crate::privacy::state::Placement;
use crate::trainer::optim::device_rng_lock;
use crate::trainer::rng::replica_seed;
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
        let dropout = c.model.dropout > 0.0;
        // One device: the device's generator seeded for the step and held. Replicas seed their
        // own streams from the step's seed and their index (below).
        let _rng_guard = (dropout && self.replicas.is_none()).then(|| {
            let guard = device_rng_lock();
            self.eval_device.seed(dropout_seed);
            guard
        });
        let batch = batches
            .into_iter()
            .next()
            .expect("a DP step draws one batch");
        let data = self.data;
        let parallel = self.replicas.is_some();
        let on = Placement {
            device: &self.device,
            replicas: self.replicas.as_mut(),
        };
        // The loss is a mean over the batch's records; times their number, a sum of per-record
        // means.
        let (model, out) = dp.update(
            self.model.clone(),
            &mut self.optim,
            rows,
            on,
            |m: &Gpt, r: std::ops::Range<usize>, device: &Device, i| {
                let n = r.len();
                let shard = batch.rows_in(r);
                let _guard = (dropout && parallel).then(|| {
                    let guard = device_rng_lock();
                    device.seed(replica_seed(dropout_seed, i));
                    guard
                });
                data.loss_of(m, shard, device).mul_scalar(n as f64)
            },
            &ctx,
            c.seed,
            c.steps,
        )?;
        self.model = model;
        Ok(out)
    }
}
