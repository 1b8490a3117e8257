//! A DP run's privacy state inside a training step: the plan, the ledger of steps taken, ε as
//! training goes, and the ledger's place in checkpoints. Shared by every family that trains
//! with DP-SGD.

use std::path::Path;

use crate::checkpoint::Loaded;
use crate::error::{Error, Result};
use crate::trainer::{StepContext, StepOutput};

use super::Ledger;
use std::ops::Range;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use super::dpsgd::{ClippedSum, DpConfig, DpPlan, DpStats, clipped_sum, noised_update};
use crate::trainer::parallel::{Replicas, shard_ranges};

/// The checkpoint file that holds the ledger.
pub(crate) const LEDGER_FILE: &str = "privacy.json";

/// The plan of a DP run (none without `dp`) for `n` training rows, logged and written to
/// `privacy-plan.json` in the run folder `run` (if any), before anything trains.
pub(crate) fn open_plan(
    dp: Option<&DpConfig>,
    n: usize,
    batch: usize,
    steps: usize,
    run: Option<&Path>,
) -> Result<Option<DpPlan>> {
    let Some(dp) = dp else {
        return Ok(None);
    };
    let plan = dp.plan(n, batch, steps)?;
    tracing::info!(
        "DP-SGD: σ = {:.4}, q = {:.5}, C = {}, ε = {:.4} at δ = {:e} after {steps} steps ({:?} accountant, {:?} sampling)",
        plan.sigma,
        plan.q,
        dp.clip,
        plan.planned_epsilon,
        dp.delta,
        dp.accountant,
        dp.sampling
    );
    if let Some(dir) = run {
        super::write_json_atomic(&dir.join("privacy-plan.json"), &plan)?;
    }
    Ok(Some(plan))
}

/// Where a DP step's rows are: the run's device, and a data-parallel run's replicas (each
/// clips its shard's per-sample gradients on its own device).
pub(crate) struct Placement<'a> {
    pub(crate) device: &'a Device,
    pub(crate) replicas: Option<&'a mut Replicas>,
}

/// A DP run's plan and what it has spent.
pub(crate) struct DpState {
    pub(crate) plan: DpPlan,
    pub(crate) ledger: Ledger,
    /// RDP of one step at each of the default orders (the RDP accountant's ε after t steps is
    /// then a minimum over t times these).
    rdp_one: Vec<f64>,
    /// The last ε computed (PRV and GDP: every 100 steps and at the end).
    last_eps: f64,
}

impl DpState {
    pub(crate) fn new(plan: &DpPlan) -> Self {
        let orders = super::rdp::default_orders();
        DpState {
            rdp_one: super::rdp::rdp(plan.q, plan.sigma, 1, &orders),
            plan: plan.clone(),
            ledger: plan.ledger(),
            last_eps: 0.0,
        }
    }

    /// One DP-SGD step of a run of `steps` steps with seed `seed`, the whole of a family's DP
    /// step once its batch is drawn: the budget check, the clipped per-sample gradients of the
    /// `rows` rows (checked against the plain gradient every 500 steps), noise and the update
    /// ([`dp_update`](super::dpsgd::dp_update)), and the ledger.
    ///
    /// `loss_sum(model, range, device, replica)` is the sum of the losses of the batch's rows
    /// `range` on `device`: all of them on the run's device (replica 0), or one data-parallel
    /// replica's shard on its own device (the replicas' clipped sums are added on the first
    /// device, where the noise is drawn once). An empty batch runs on its first row (`0..1`)
    /// at weight 0. Returns the updated model and the step's output.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update<M: Module>(
        &mut self,
        model: M,
        optim: &mut ModuleOptimizer,
        rows: usize,
        on: Placement<'_>,
        loss_sum: impl Fn(&M, Range<usize>, &Device, usize) -> Tensor<1> + Sync,
        ctx: &StepContext,
        seed: u64,
        steps: usize,
    ) -> Result<(M, StepOutput)> {
        self.update_with_public(model, optim, rows, on, loss_sum, None, ctx, seed, steps)
    }

    /// [`DpState::update`] with the gradient of a loss that reads no private row added on the
    /// first device after the private part is clipped and noised (see
    /// [`dp_update`](super::dpsgd::dp_update)).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update_with_public<M: Module>(
        &mut self,
        model: M,
        optim: &mut ModuleOptimizer,
        rows: usize,
        on: Placement<'_>,
        loss_sum: impl Fn(&M, Range<usize>, &Device, usize) -> Tensor<1> + Sync,
        public: Option<GradientsParams>,
        ctx: &StepContext,
        seed: u64,
        steps: usize,
    ) -> Result<(M, StepOutput)> {
        self.check_budget(steps)?;
        let (clip, verify) = (self.plan.config.clip, ctx.step.is_multiple_of(500));
        let (sum, parallel) = match on.replicas {
            Some(replicas) if rows > 1 => {
                let shards = shard_ranges(rows, replicas.len())
                    .into_iter()
                    .map(|r| (r.clone(), r.len()))
                    .collect();
                let loss_sum = &loss_sum;
                let work = |m: M, r: Range<usize>, device: &Device, i: usize| {
                    Ok(clipped_sum(
                        &m,
                        |m| loss_sum(m, r, device, i),
                        clip,
                        false,
                        verify,
                    ))
                };
                let merge = |parts: Vec<Result<ClippedSum>>, main: &Device| {
                    parts
                        .into_iter()
                        .collect::<Result<Vec<_>>>()
                        .map(|p| ClippedSum::merge(p, main))
                };
                let (sum, extra) = replicas.run(ctx.step, &model, shards, work, merge)?;
                (sum?, extra)
            }
            _ => {
                let sum = clipped_sum(
                    &model,
                    |m| loss_sum(m, 0..rows.max(1), on.device, 0),
                    clip,
                    rows == 0,
                    verify,
                )?;
                (sum, serde_json::Value::Null)
            }
        };
        let (model, mut out, stats) = noised_update(
            model, optim, &self.plan, sum, rows, public, ctx.lr, seed, ctx.step,
        );
        self.stepped(&mut out, &stats, ctx.step + 1 == steps)?;
        crate::trainer::merge_extra(&mut out, parallel);
        Ok((model, out))
    }

    /// Refuses a step beyond the `steps` the plan covers (a run resumed with more steps than it
    /// was planned for).
    pub(crate) fn check_budget(&self, steps: usize) -> Result<()> {
        if self.ledger.steps() >= steps as u64 {
            return Err(Error::Privacy {
                parameter: "steps",
                reason: format!(
                    "the privacy plan covers {steps} steps and they are spent; a longer run needs a new plan"
                ),
            });
        }
        Ok(())
    }

    /// ε after the steps recorded so far (the ledger is one phase of the plan's σ and q).
    fn epsilon(&mut self, last: bool) -> Result<f64> {
        let t = self.ledger.steps();
        if self.plan.config.accountant == super::AccountantKind::Rdp {
            let orders = super::rdp::default_orders();
            let total: Vec<f64> = self.rdp_one.iter().map(|r| r * t as f64).collect();
            self.last_eps = super::rdp::epsilon_from_rdp(&orders, &total, self.plan.config.delta).0;
        } else if last || t % 100 == 0 {
            self.last_eps = self.ledger.epsilon()?;
        }
        Ok(self.last_eps)
    }

    /// Records one step taken and writes ε and the clipping statistics into `out` (logged to
    /// `metrics.jsonl` and the progress bar).
    pub(crate) fn stepped(
        &mut self,
        out: &mut StepOutput,
        stats: &DpStats,
        last: bool,
    ) -> Result<()> {
        self.ledger.step(self.plan.sigma, self.plan.q);
        let eps = self.epsilon(last)?;
        out.extra = serde_json::json!({
            "epsilon": eps,
            "dp_rows": stats.batch,
            "clipped": stats.clipped,
            "mean_norm": stats.mean_norm,
        });
        out.message = Some(format!("loss {:.4}  ε {eps:.3}", out.loss));
        Ok(())
    }

    /// The ledger as a checkpoint file.
    pub(crate) fn file(&self) -> (&'static str, Vec<u8>) {
        (
            LEDGER_FILE,
            serde_json::to_vec_pretty(&self.ledger).expect("a ledger serialises"),
        )
    }

    /// Restores the ledger from a checkpoint, refusing one whose steps used another σ or q.
    pub(crate) fn restore(&mut self, ck: &Loaded) -> Result<()> {
        let bytes = ck.file(LEDGER_FILE)?;
        let ledger: Ledger = serde_json::from_slice(bytes).map_err(|e| Error::Checkpoint {
            path: ck.dir.clone(),
            reason: format!("{LEDGER_FILE} unreadable: {e}"),
        })?;
        if ledger
            .history
            .iter()
            .any(|p| p.sigma != self.plan.sigma || p.q != self.plan.q)
        {
            return Err(Error::Privacy {
                parameter: "steps",
                reason: format!(
                    "the checkpoint's DP steps used σ and q {:?}, this run's plan σ = {} and q = {}; resume with the run's own steps, batch size and budget",
                    ledger.history, self.plan.sigma, self.plan.q
                ),
            });
        }
        self.ledger = ledger;
        Ok(())
    }
}
