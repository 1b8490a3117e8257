//! Data parallelism on one machine: one replica of the model per device, each on a disjoint
//! shard of every global batch, in the shape of burn-train's `MultiDevice` strategy.
//!
//! Each step, every replica is forked from the weights on the first device (the broadcast),
//! runs forward and backward on its shard on its own thread, and its gradients are moved to the
//! first device with burn's `GradientsParams::to_device` and summed there, each weighted by its
//! shard's share of the batch (the reduce). One optimiser step then runs on the first device,
//! which also holds the optimiser state and writes the checkpoints: a checkpoint does not depend
//! on the number of devices, so a run resumes on any number of them.
//!
//! burn 0.22.1's own collective (`DistributedOps::all_reduce`) runs only on CUDA devices (NCCL)
//! and its remote backend; on wgpu and on the CPU it panics (see `docs/scaling.md`). This
//! module is what runs on the others, with the same arithmetic: the mean of the per-shard
//! gradients weighted by shard size is the full batch's gradient, whatever the split.
//!
//! Losses must be means over rows of equal weight (every family's is), so an uneven split is
//! exact: shard `i` of `n_i` rows out of `B` weighs `n_i / B`.

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use serde::Serialize;

use super::optim::accumulate;
use crate::{Error, Result};

/// The devices of a data-parallel run (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct DataParallel {
    /// One replica per entry, without autodiff; the first holds the weights and must be
    /// [`super::TrainOptions::device`]. Empty or one entry: no data parallelism. An entry may
    /// repeat a device (the CPU has one: `cpu:0,cpu:1` are two replicas on it, on threads).
    pub devices: Vec<Device>,
    /// Names for logs and errors, one per device (`wgpu:1`); empty: `device 1` and so on.
    pub names: Vec<String>,
    /// Testing only: replica `.1` fails as a lost device would at step `.0`.
    #[doc(hidden)]
    pub lose_at: Option<(usize, usize)>,
}

impl DataParallel {
    /// Replicas on `devices`, the first holding the weights.
    pub fn on(devices: Vec<Device>) -> Self {
        Self {
            devices,
            ..Self::default()
        }
    }

    /// Whether more than one replica trains.
    pub fn is_parallel(&self) -> bool {
        self.devices.len() > 1
    }

    fn name(&self, i: usize) -> String {
        self.names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("device {i}"))
    }

    /// Checks the devices against the run, before anything is written: the first is
    /// `device`, and a global batch of `batch` rows leaves every replica at least one.
    pub fn check(&self, device: &Device, batch: usize) -> Result<()> {
        if !self.is_parallel() {
            return Ok(());
        }
        if self.devices[0] != *device {
            return Err(Error::Config(
                "the first data-parallel device must be the run's device (TrainOptions::device)"
                    .into(),
            ));
        }
        if batch < self.devices.len() {
            return Err(Error::Config(format!(
                "a global batch of {batch} cannot be split over {} devices: each needs at least one row",
                self.devices.len()
            )));
        }
        Ok(())
    }
}

/// Sizes of `parts` contiguous shards of `n` rows: as even as can be (the first `n % parts`
/// get one more).
pub fn shard_sizes(n: usize, parts: usize) -> Vec<usize> {
    (0..parts)
        .map(|i| n / parts + usize::from(i < n % parts))
        .collect()
}

/// The row ranges of [`shard_sizes`], the empty ones left out (a batch of fewer rows than
/// replicas uses fewer replicas).
pub fn shard_ranges(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let mut start = 0;
    shard_sizes(n, parts)
        .into_iter()
        .filter(|&k| k > 0)
        .map(|k| {
            start += k;
            start - k..start
        })
        .collect()
}

/// Throughput and communication of a data-parallel run, averaged over its steps.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ParallelSummary {
    /// Replicas.
    pub devices: usize,
    /// Steps measured.
    pub steps: usize,
    /// Per device: rows per second of its own forward and backward.
    pub samples_per_s: Vec<f64>,
    /// Per device: tokens per second (sequence models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<Vec<f64>>,
    /// All replicas together: global-batch rows per second of the step's gradient phase
    /// (broadcast, forward and backward, reduce).
    pub total_samples_per_s: f64,
    /// All replicas together, tokens per second (sequence models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_tokens_per_s: Option<f64>,
    /// Mean milliseconds per step moving weights out and gradients back and summing them.
    pub allreduce_ms: f64,
    /// Bytes of the model's float parameters (f32): what one all-reduce of its gradients
    /// carries. Here each step moves them twice per replica past the first (weights out,
    /// gradients back); a ring all-reduce moves 2·(n − 1)/n of them over each device's link.
    pub param_bytes: u64,
    /// Σ per-replica compute time / (devices × gradient-phase time): 1 when every replica
    /// computes for the whole step and communication is free. It estimates the one-device time
    /// by the sum of the replicas' (exact when compute is linear in the batch); `oxgen bench`
    /// measures the ratio to a real one-device run.
    pub efficiency: f64,
}

impl ParallelSummary {
    /// One line for the end of a run.
    pub fn line(&self) -> String {
        let per: Vec<String> = self
            .samples_per_s
            .iter()
            .map(|s| format!("{s:.0}"))
            .collect();
        format!(
            "{} devices: {:.0} samples/s overall{} ({} per device), all-reduce of {:.2} MiB {:.2} ms/step, efficiency {:.0}%",
            self.devices,
            self.total_samples_per_s,
            self.total_tokens_per_s
                .map_or(String::new(), |t| format!(", {t:.0} tokens/s")),
            per.join(" / "),
            self.param_bytes as f64 / (1 << 20) as f64,
            self.allreduce_ms,
            100.0 * self.efficiency
        )
    }
}

/// The replicas of a step (see the module docs), and what they measured.
pub struct Replicas {
    plan: DataParallel,
    /// The devices with autodiff.
    devices: Vec<Device>,
    tokens_per_row: Option<usize>,
    param_bytes: u64,
    rows: Vec<usize>,
    compute_s: Vec<f64>,
    comm_s: f64,
    wall_s: f64,
    steps: usize,
}

/// What one replica hands back: its gradients, its weighted loss and what its loss function
/// handed back besides the loss.
type Part<A> = (GradientsParams, Tensor<1>, A);

/// One replica's share of a step: its data, its rows (for the throughput) and its weight in the
/// step's loss (the shards' weights sum to 1).
pub struct Shard<S> {
    /// What the replica's loss function gets.
    pub data: S,
    /// Rows (samples) in it.
    pub rows: usize,
    /// Its weight: its rows' share of the batch when the loss is a mean over rows, its tokens'
    /// share when it is a mean over tokens.
    pub weight: f64,
}

impl<S> Shard<S> {
    /// Shards weighted by their share of the rows.
    pub fn by_rows(shards: Vec<(S, usize)>) -> Vec<Self> {
        let total: usize = shards.iter().map(|s| s.1).sum();
        shards
            .into_iter()
            .map(|(data, rows)| Shard {
                data,
                rows,
                weight: rows as f64 / total.max(1) as f64,
            })
            .collect()
    }
}

/// What [`Replicas::grads_with`] returns.
pub struct StepGrads<A> {
    /// The gradients of the whole batch's loss, summed on the first device.
    pub grads: GradientsParams,
    /// The whole batch's loss, `[1]`, on the first device (unscaled).
    pub loss: Tensor<1>,
    /// The step's metrics fields.
    pub extra: serde_json::Value,
    /// What each replica's loss function handed back besides the loss, in replica order.
    pub aux: Vec<A>,
}

impl Replicas {
    /// Replicas for `plan` (`None` unless it is parallel). Sequence models give their tokens
    /// per row, for tokens/s.
    pub fn new(plan: &DataParallel, tokens_per_row: Option<usize>) -> Option<Self> {
        let n = plan.devices.len();
        plan.is_parallel().then(|| Self {
            plan: plan.clone(),
            devices: plan.devices.iter().map(|d| d.clone().autodiff()).collect(),
            tokens_per_row,
            param_bytes: 0,
            rows: vec![0; n],
            compute_s: vec![0.0; n],
            comm_s: 0.0,
            wall_s: 0.0,
            steps: 0,
        })
    }

    /// Replicas.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The gradients of the global batch's loss, on the first device: replica `i` computes
    /// `loss(model_i, shard_i, device_i, i)` (a mean over the shard's `rows` rows), weighted by
    /// `rows / total`; with `scale`, the backward is of the loss times `scale` (a loss scaler's).
    /// Returns the summed gradients, the global loss (`[1]`, unscaled) and the step's metrics
    /// fields (`allreduce_ms`, `compute_ms` and `samples_per_s` per device): a [`StepGrads`].
    ///
    /// # Errors
    /// [`Error::DeviceLost`] when a replica fails (its thread panics or its device reports an
    /// error): nothing was updated.
    pub fn grads<M, S, F>(
        &mut self,
        step: usize,
        model: &M,
        shards: Vec<(S, usize)>,
        scale: Option<f64>,
        loss: F,
    ) -> Result<StepGrads<()>>
    where
        M: Module,
        S: Send,
        F: Fn(&M, S, &Device, usize) -> Tensor<1> + Sync,
    {
        let shards = Shard::by_rows(shards);
        self.grads_with(step, model, shards, scale, |m, s, d, i| {
            (loss(m, s, d, i), ())
        })
    }

    /// As [`Replicas::grads`], for losses whose shards weigh other than by rows (a mean over
    /// tokens, say: each shard's weight is its share of the tokens), and that hand back
    /// something of their own besides the loss (`aux`, one per replica in order: per-row values
    /// read back for the metrics, say).
    pub fn grads_with<M, S, A, F>(
        &mut self,
        step: usize,
        model: &M,
        shards: Vec<Shard<S>>,
        scale: Option<f64>,
        loss: F,
    ) -> Result<StepGrads<A>>
    where
        M: Module,
        S: Send,
        A: Send,
        F: Fn(&M, S, &Device, usize) -> (Tensor<1>, A) + Sync,
    {
        let shards = shards
            .into_iter()
            .map(|s| ((s.data, s.weight), s.rows))
            .collect();
        let work = |replica: M, (data, weight): (S, f64), device: &Device, i: usize| {
            let (l, aux) = loss(&replica, data, device, i);
            let l = l.mul_scalar(weight);
            let value = l.clone().detach().reshape([1]);
            let l = scale.map_or(l.clone(), |s| l.mul_scalar(s));
            let grads = GradientsParams::from_grads(l.backward(), &replica);
            Ok((grads, value, aux))
        };
        // The reduce: every replica's gradients to the first device, summed there.
        let reduce = |parts: Vec<Part<A>>, main: &Device| {
            let mut grads = GradientsParams::new();
            let mut value: Option<Tensor<1>> = None;
            let mut aux = Vec::with_capacity(parts.len());
            for (i, (g, v, a)) in parts.into_iter().enumerate() {
                let (g, v) = match i {
                    0 => (g, v),
                    _ => (g.to_device(main, model), v.to_device(main)),
                };
                grads = accumulate(model, grads, g);
                value = Some(value.map_or(v.clone(), |s| s + v));
                aux.push(a);
            }
            (grads, value.expect("at least one replica"), aux)
        };
        let ((grads, loss, aux), extra) = self.run(step, model, shards, work, reduce)?;
        Ok(StepGrads {
            grads,
            loss,
            extra,
            aux,
        })
    }

    /// One step's work on the replicas, for a step whose reduce is not a sum of
    /// [`GradientsParams`] (DP-SGD's clipped per-sample sums): the weights are broadcast,
    /// replica `i` runs `work(model_i, shard_i, device_i, i)` (the first on this thread, the
    /// others on their own), then `reduce` gets every replica's output in order and the first
    /// device, and its time counts as communication. Returns what `reduce` made and the step's
    /// metrics fields (`allreduce_ms`, `compute_ms` and `samples_per_s` per device, ...). Each
    /// shard comes with its rows, for the throughput.
    ///
    /// # Errors
    /// [`Error::DeviceLost`] when a replica fails: its thread panics, `work` returns an error
    /// message, or its device reports one.
    pub fn run<M, S, R, T, F, G>(
        &mut self,
        step: usize,
        model: &M,
        shards: Vec<(S, usize)>,
        work: F,
        reduce: G,
    ) -> Result<(T, serde_json::Value)>
    where
        M: Module,
        S: Send,
        R: Send,
        F: Fn(M, S, &Device, usize) -> std::result::Result<R, String> + Sync,
        G: FnOnce(Vec<R>, &Device) -> T,
    {
        let t0 = Instant::now();
        if self.param_bytes == 0 {
            self.param_bytes = 4 * model.num_params() as u64;
        }
        let rows: Vec<usize> = shards.iter().map(|s| s.1).collect();
        let (devices, lose_at) = (&self.devices, self.plan.lose_at);
        // The broadcast, from this thread: each replica past the first gets its own copy of the
        // weights on its device. (Forking from the replicas' threads raced with the first
        // replica's work on the weights' device: burn's wgpu streams are per thread, and two
        // lavapipe devices drifted apart after a few steps.)
        let t = Instant::now();
        let replicas: Vec<M> = devices
            .iter()
            .take(shards.len())
            .enumerate()
            .map(|(i, d)| match i {
                0 => model.clone(),
                _ => model.clone().fork(d),
            })
            .collect();
        for (i, d) in devices.iter().enumerate().take(shards.len()).skip(1) {
            d.sync().map_err(|e| self.lost(i, step, format!("{e:?}")))?;
        }
        let broadcast = t.elapsed().as_secs_f64();
        // Forward and backward: replica 0 on this thread (the weights' device is used from
        // this thread only), the others on their own.
        let timed = |i: usize, replica: M, shard: S| -> std::result::Result<(R, f64), String> {
            if lose_at == Some((step, i)) {
                panic!("device lost (injected for a test)");
            }
            let device = &devices[i];
            let t = Instant::now();
            let out = work(replica, shard, device, i)?;
            device.sync().map_err(|e| format!("{e:?}"))?;
            Ok((out, t.elapsed().as_secs_f64()))
        };
        type Outcome<R> = std::thread::Result<std::result::Result<(R, f64), String>>;
        let results: Vec<Outcome<R>> = std::thread::scope(|scope| {
            let mut jobs = replicas
                .into_iter()
                .zip(shards.into_iter().map(|s| s.0))
                .enumerate();
            let (_, (first, shard0)) = jobs.next().expect("at least one shard");
            let timed = &timed;
            let handles: Vec<_> = jobs
                .map(|(i, (replica, shard))| scope.spawn(move || timed(i, replica, shard)))
                .collect();
            let mine =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| timed(0, first, shard0)));
            std::iter::once(mine)
                .chain(handles.into_iter().map(|h| h.join()))
                .collect()
        });
        let mut outs = Vec::with_capacity(results.len());
        let mut compute = Vec::with_capacity(results.len());
        for (i, r) in results.into_iter().enumerate() {
            let reason = match r {
                Ok(Ok((out, secs))) => {
                    outs.push(out);
                    compute.push(secs);
                    continue;
                }
                Ok(Err(e)) => e,
                Err(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "its thread panicked".into()),
            };
            return Err(self.lost(i, step, reason));
        }
        let t = Instant::now();
        let main = self.devices[0].clone();
        let reduced = reduce(outs, &main);
        main.sync()
            .map_err(|e| self.lost(0, step, format!("{e:?}")))?;
        let comm = broadcast + t.elapsed().as_secs_f64();
        let extra = self.record(&rows, &compute, comm, t0.elapsed().as_secs_f64());
        Ok((reduced, extra))
    }

    /// [`Error::DeviceLost`] for replica `i` at `step`.
    fn lost(&self, i: usize, step: usize, reason: String) -> Error {
        Error::DeviceLost {
            device: self.plan.name(i),
            step,
            reason,
        }
    }

    /// Adds a step's rows, compute seconds per replica, communication and wall seconds to the
    /// run's totals; returns the step's metrics fields.
    fn record(
        &mut self,
        rows: &[usize],
        compute: &[f64],
        comm: f64,
        wall: f64,
    ) -> serde_json::Value {
        self.steps += 1;
        (self.comm_s, self.wall_s) = (self.comm_s + comm, self.wall_s + wall);
        // A step may use fewer replicas than there are (a packed batch of fewer rows).
        for i in 0..rows.len() {
            self.rows[i] += rows[i];
            self.compute_s[i] += compute[i];
        }
        let total: usize = rows.iter().sum();
        let per_device: Vec<f64> = rows
            .iter()
            .zip(compute)
            .map(|(&n, &c)| n as f64 / c.max(1e-9))
            .collect();
        let total_per_s = total as f64 / wall.max(1e-9);
        let mut extra = serde_json::json!({
            "devices": rows.len(),
            "allreduce_ms": 1e3 * comm,
            "compute_ms": compute.iter().map(|c| 1e3 * c).collect::<Vec<_>>(),
            "samples_per_s": per_device,
            "total_samples_per_s": total_per_s,
            "efficiency": compute.iter().sum::<f64>() / (rows.len() as f64 * wall.max(1e-9)),
        });
        if let (Some(t), Some(m)) = (self.tokens_per_row, extra.as_object_mut()) {
            let tokens = |s: f64| s * t as f64;
            m.insert(
                "tokens_per_s".into(),
                per_device.iter().map(|&s| tokens(s)).collect(),
            );
            m.insert("total_tokens_per_s".into(), tokens(total_per_s).into());
        }
        extra
    }

    /// Averages over the steps so far.
    pub fn summary(&self) -> ParallelSummary {
        self.summary_for(self.steps)
    }

    /// Averages over `steps` training steps, for a step that splits several gradient phases
    /// over the replicas (a GAN's discriminator and generator updates): the all-reduce time
    /// is per training step.
    pub fn summary_for(&self, steps: usize) -> ParallelSummary {
        let n = self.len();
        let per: Vec<f64> = (0..n)
            .map(|i| self.rows[i] as f64 / self.compute_s[i].max(1e-9))
            .collect();
        let total_rows: usize = self.rows.iter().sum();
        let total = total_rows as f64 / self.wall_s.max(1e-9);
        ParallelSummary {
            devices: n,
            steps,
            tokens_per_s: self
                .tokens_per_row
                .map(|t| per.iter().map(|s| s * t as f64).collect()),
            total_tokens_per_s: self.tokens_per_row.map(|t| total * t as f64),
            samples_per_s: per,
            total_samples_per_s: total,
            allreduce_ms: 1e3 * self.comm_s / steps.max(1) as f64,
            param_bytes: self.param_bytes,
            efficiency: self.compute_s.iter().sum::<f64>() / (n as f64 * self.wall_s.max(1e-9)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_as_even_as_can_be() {
        assert_eq!(shard_sizes(64, 2), vec![32, 32]);
        assert_eq!(shard_sizes(7, 3), vec![3, 2, 2]);
        assert_eq!(shard_sizes(2, 2), vec![1, 1]);
        assert_eq!(shard_ranges(7, 3), vec![0..3, 3..5, 5..7]);
        assert_eq!(shard_ranges(2, 3), vec![0..1, 1..2]);
        for (n, p) in [(5, 2), (100, 7), (3, 3)] {
            let s = shard_sizes(n, p);
            assert_eq!(s.iter().sum::<usize>(), n);
            assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn a_batch_smaller_than_the_devices_is_refused() {
        let cpu = Device::flex();
        let plan = DataParallel::on(vec![cpu.clone(), cpu.clone(), cpu.clone()]);
        assert!(matches!(plan.check(&cpu, 2), Err(Error::Config(_))));
        assert!(plan.check(&cpu, 3).is_ok());
    }
}
