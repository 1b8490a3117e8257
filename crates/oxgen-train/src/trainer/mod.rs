//! The one training loop. A family supplies only its step ([`TrainStep`]), as a
//! LightningModule or burn-train's `TrainStep` does; the loop owns everything else:
//!
//! - the step RNG and batch order ([`rng`]) and the learning-rate schedule ([`schedule`]);
//! - non-finite losses (the update is skipped; `max_bad_steps` in a row stop the run);
//! - reading losses back: a step may leave its loss and gradient norm on the device
//!   ([`StepOutput::pending`]); the loop reads them together every
//!   [`TrainOptions::sync_every`] steps, so an asynchronous device (a GPU) is not drained
//!   after every step;
//! - the EMA decay, `metrics.jsonl`, the progress bar and `loss.png`;
//! - evaluation hooks, atomic checkpoints through one manifest writer, and exact resume.
//!
//! Clipping and gradient accumulation are [`optim`]'s, which every step calls.

pub mod adamw;
pub mod loss_scale;
pub mod optim;
pub mod parallel;
pub mod prefetch;
pub mod rng;
pub mod schedule;

use std::path::PathBuf;
use std::time::Instant;

use oxgen_models::DataShape;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checkpoint::{self, Loaded};
use crate::error::{Error, Result};
pub use crate::run::StepMetrics;
use crate::run::{Outputs, RunDir};
pub use schedule::{Decay, Schedule};

/// How to run a training job: everything that is not part of the config.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Run folder; `None` trains in memory (no config, metrics, checkpoints or pictures).
    pub out: Option<PathBuf>,
    /// Continue from the run folder's latest checkpoint.
    pub resume: bool,
    /// Device (without autodiff).
    pub device: burn::tensor::Device,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop (after checkpointing) once this many steps are done, as if interrupted.
    pub stop_after: Option<usize>,
    /// Skip the final sampling and quality report.
    pub skip_eval: bool,
    /// Read the losses back every this many steps (at least 1), and at every evaluation,
    /// checkpoint and the end. `None`: 1 on the CPU, where a read costs nothing, and
    /// [`DEFERRED_SYNC_EVERY`] elsewhere. Past 1, steps that support it keep their loss and
    /// gradient norm on the device and clip there, and a non-finite loss stops the run at the
    /// next read (the last checkpoint is intact) instead of being skipped.
    pub sync_every: Option<usize>,
    /// Data parallelism: one replica per device (see [`parallel`]); the default trains on
    /// `device` alone.
    pub parallel: parallel::DataParallel,
}

/// Steps between reads on asynchronous devices, when [`TrainOptions::sync_every`] is `None`.
pub const DEFERRED_SYNC_EVERY: usize = 16;

impl TrainOptions {
    /// [`TrainOptions::sync_every`], resolved for the device.
    pub fn sync_every(&self) -> usize {
        match self.sync_every {
            Some(n) => n.max(1),
            None if oxgen_models::ops::cpu::is_flex(&self.device) => 1,
            None => DEFERRED_SYNC_EVERY,
        }
    }
}

impl Default for TrainOptions {
    /// In memory, on the CPU, no progress bar, with the final report.
    fn default() -> Self {
        Self {
            out: None,
            resume: false,
            device: burn::tensor::Device::flex(),
            progress: false,
            stop_after: None,
            skip_eval: false,
            sync_every: None,
            parallel: Default::default(),
        }
    }
}

impl TrainOptions {
    /// Options that write the run folder `out`.
    pub fn in_folder(out: impl Into<PathBuf>, device: burn::tensor::Device) -> Self {
        Self {
            out: Some(out.into()),
            progress: true,
            device,
            ..Self::default()
        }
    }
}

/// What one step is given.
#[derive(Clone, Copy, Debug)]
pub struct StepContext {
    /// The step index (0-based).
    pub step: usize,
    /// Learning rate from the run's schedule.
    pub lr: f64,
    /// The loop reads losses every few steps: the step may return them on the device
    /// ([`StepOutput::pending`]) and should not read anything back itself.
    pub defer: bool,
}

/// What one step reports.
#[derive(Clone, Debug)]
pub struct StepOutput {
    /// The loss (NaN or infinite: the step made no update).
    pub loss: f64,
    /// Gradient norm before clipping (NaN where not measured).
    pub grad_norm: f64,
    /// More fields for this step's line of `metrics.jsonl` (a JSON object, or null).
    pub extra: serde_json::Value,
    /// The progress bar's message, if not `loss …`.
    pub message: Option<String>,
    /// `[loss, grad_norm]` still on the device, for the loop to read later (`loss` and
    /// `grad_norm` are then placeholders).
    pub pending: Option<burn::tensor::Tensor<1>>,
}

impl StepOutput {
    /// A plain loss and gradient norm.
    pub fn loss(loss: f64, grad_norm: f64) -> Self {
        Self {
            loss,
            grad_norm,
            extra: serde_json::Value::Null,
            message: None,
            pending: None,
        }
    }

    /// A loss and gradient norm not yet read: `values` is `[loss, grad_norm]` on the device.
    pub fn pending(values: burn::tensor::Tensor<1>) -> Self {
        Self {
            pending: Some(values),
            ..Self::loss(f64::NAN, f64::NAN)
        }
    }
}

/// Adds the fields of `extra` (a JSON object, or null) to `out`'s metrics fields.
pub fn merge_extra(out: &mut StepOutput, extra: serde_json::Value) {
    match (out.extra.as_object_mut(), extra) {
        (_, serde_json::Value::Null) => {}
        (Some(m), serde_json::Value::Object(e)) => m.extend(e),
        (None, e) => out.extra = e,
        (Some(_), _) => {}
    }
}

/// One family's part of training.
pub trait TrainStep {
    /// One optimizer step (for a GAN, the discriminator's updates and the generator's). A step
    /// whose loss is not finite must leave the weights as they were.
    fn step(&mut self, ctx: StepContext) -> Result<StepOutput>;
    /// The files of a checkpoint: weights and optimizer state, by name.
    fn state(&self) -> Result<Vec<(&'static str, Vec<u8>)>>;
    /// Loads what [`TrainStep::state`] wrote.
    fn restore(&mut self, checkpoint: &Loaded) -> Result<()>;
    /// Moves EMA weights towards the current ones with `decay` (families with EMA weights).
    fn update_ema(&mut self, _decay: f64) {}
    /// Runs at every evaluation interval and at the last step (validation in the log).
    fn evaluate(&mut self, _done: usize) -> Result<()> {
        Ok(())
    }
    /// A data-parallel step's throughput and all-reduce time so far.
    fn parallel(&self) -> Option<parallel::ParallelSummary> {
        None
    }
}

/// What the loop is told about a run.
#[derive(Debug)]
pub struct LoopSpec<'a, C> {
    /// Family name in manifests.
    pub family: &'a str,
    /// The run's config, written into `config.json` and every manifest.
    pub config: &'a C,
    /// Top-level config keys that a resumed run must share with its checkpoint.
    pub must_match: &'a [&'a str],
    /// Shape of one data point.
    pub shape: DataShape,
    /// Run seed.
    pub seed: u64,
    /// Steps of the whole run.
    pub steps: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// The schedule.
    pub schedule: &'a Schedule,
    /// Rows consumed per step (for the manifest's data position).
    pub rows_per_step: usize,
    /// Checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
    /// Call [`TrainStep::evaluate`] every this many steps (0: only at the end).
    pub eval_every: usize,
    /// Non-finite steps in a row before [`Error::Diverged`].
    pub max_bad_steps: usize,
    /// EMA decay (with warmup: min(decay, (1 + s)/(10 + s))), if the family keeps EMA weights.
    pub ema_decay: Option<f64>,
    /// Title of `loss.png`.
    pub title: String,
    /// What to try when the run is projected to take more than an hour (a smaller preset).
    pub smaller: Option<String>,
}

/// Runs projected to take longer than this get a warning after their first steps.
pub const LONG_RUN_SECONDS: f64 = 3600.0;

/// Human-readable duration: `2h05m`, `14m30s`, `42s`.
pub fn duration_text(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// What the loop returns.
#[derive(Debug)]
pub struct Summary {
    /// Steps done in total.
    pub done: usize,
    /// Finite losses of this invocation, in order.
    pub losses: Vec<f64>,
    /// Non-finite steps skipped.
    pub skipped: usize,
    /// Wall time of the loop, seconds.
    pub seconds: f64,
    /// The device allocator's high-water mark (bytes reserved), read at the loop's sync points
    /// (`None` on a device that does not report one, such as the CPU).
    pub memory_peak: Option<u64>,
    /// A data-parallel run's throughput and all-reduce time.
    pub parallel: Option<parallel::ParallelSummary>,
}

impl Summary {
    /// Mean loss over the first 10 steps of this invocation.
    pub fn first_loss(&self) -> f64 {
        mean(&self.losses[..self.losses.len().min(10)])
    }
    /// Mean loss over the last 10% of steps of this invocation.
    pub fn last_loss(&self) -> f64 {
        let tenth = (self.losses.len() / 10).max(1);
        mean(&self.losses[self.losses.len().saturating_sub(tenth)..])
    }
}

fn mean(s: &[f64]) -> f64 {
    s.iter().sum::<f64>() / s.len().max(1) as f64
}

/// Opens (or creates) the run folder of `opts`, refusing to overwrite a run.
pub fn open_run(opts: &TrainOptions) -> Result<Option<RunDir>> {
    match &opts.out {
        Some(out) => RunDir::create(out, opts.resume).map(Some),
        None if opts.resume => Err(Error::Config(
            "resume needs a run folder (TrainOptions::out)".into(),
        )),
        None => Ok(None),
    }
}

/// Checks that the checkpoint of a resumed run was written for `spec`'s family and config.
fn check_resumable<C: Serialize + DeserializeOwned>(
    spec: &LoopSpec<'_, C>,
    ck: &Loaded,
) -> Result<()> {
    let refuse = |reason: String| Error::Checkpoint {
        path: ck.dir.clone(),
        reason,
    };
    if ck.manifest.family != spec.family {
        return Err(refuse(format!(
            "it was written for another model: a {} run, not {}",
            ck.manifest.family, spec.family
        )));
    }
    // Both sides go through the typed config, so fields added since (with their defaults)
    // compare equal.
    let saved: C = serde_json::from_value(ck.manifest.config.clone())
        .map_err(|e| refuse(format!("config unreadable: {e}")))?;
    let (saved, want) = (to_json(&saved), to_json(spec.config));
    for key in spec.must_match {
        if saved.get(*key) != want.get(*key) {
            return Err(refuse(format!(
                "it was written for another {key} config: {}",
                saved.get(*key).unwrap_or(&serde_json::Value::Null)
            )));
        }
    }
    Ok(())
}

fn to_json<C: Serialize>(c: &C) -> serde_json::Value {
    serde_json::to_value(c).expect("configs serialize")
}

/// What the loop keeps of the steps: the metrics file, the bar, the losses, and the steps whose
/// values are still on the device.
struct Recorder {
    out: Outputs,
    bar: indicatif::ProgressBar,
    max_bad: usize,
    bad: usize,
    skipped: usize,
    losses: Vec<f64>,
    queue: Vec<(usize, f64, StepOutput)>,
}

impl Recorder {
    /// Reads every queued step's loss and gradient norm in one transfer and records them.
    fn flush(&mut self) -> Result<()> {
        if self.queue.is_empty() {
            return Ok(());
        }
        let queue = std::mem::take(&mut self.queue);
        let parts = queue
            .iter()
            .filter_map(|(_, _, o)| o.pending.clone())
            .collect();
        let values: Vec<f32> = burn::tensor::Tensor::cat(parts, 0)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| Error::Config(format!("reading the losses back: {e:?}")))?;
        for ((s, lr, mut o), v) in queue.into_iter().zip(values.chunks(2)) {
            (o.loss, o.grad_norm, o.pending) = (v[0] as f64, v[1] as f64, None);
            self.record(s, lr, o, true)?;
        }
        Ok(())
    }

    /// Writes step `s`'s metrics line and updates the bar; returns whether its loss was
    /// finite. A non-finite loss is a skipped step, or, when it was `deferred` (its update was
    /// made before anyone looked), the end of the run.
    fn record(&mut self, s: usize, lr: f64, o: StepOutput, deferred: bool) -> Result<bool> {
        let finite = o.loss.is_finite();
        let line = StepMetrics {
            step: s,
            loss: o.loss,
            lr,
            grad_norm: o.grad_norm,
            skipped: !finite,
        };
        if o.extra.is_null() {
            self.out.log_line(s, o.loss, &line)?;
        } else {
            let mut v = to_json(&line);
            if let (Some(m), Some(e)) = (v.as_object_mut(), o.extra.as_object()) {
                m.extend(e.clone());
            }
            self.out.log_line(s, o.loss, &v)?;
        }
        if !finite {
            (self.bad, self.skipped) = (self.bad + 1, self.skipped + 1);
            if deferred || self.bad >= self.max_bad {
                return Err(Error::Diverged {
                    count: self.bad,
                    step: s,
                });
            }
            self.bar
                .suspend(|| tracing::warn!("step {s}: non-finite loss; update skipped"));
            return Ok(false);
        }
        self.bad = 0;
        self.losses.push(o.loss);
        self.bar
            .set_message(o.message.unwrap_or_else(|| format!("loss {:.4}", o.loss)));
        Ok(true)
    }
}

/// Runs `step` from the start (or the run's latest checkpoint) to the end of the run, or to
/// `opts.stop_after`.
pub fn run<C: Serialize + DeserializeOwned>(
    step: &mut dyn TrainStep,
    spec: &LoopSpec<'_, C>,
    run: Option<&RunDir>,
    opts: &TrainOptions,
) -> Result<Summary> {
    spec.schedule.validate()?;
    let mut start = 0;
    if opts.resume {
        let dir = run.ok_or_else(|| Error::Config("resume needs a run folder".into()))?;
        let ck = checkpoint::load(dir.path())?;
        check_resumable(spec, &ck)?;
        step.restore(&ck)?;
        start = ck.manifest.step;
        tracing::info!("resumed from {} at step {start}", ck.dir.display());
    }
    if let Some(r) = run {
        r.write_config(spec.config)?;
    }
    let out = Outputs::open(run, start)?;
    let end = opts.stop_after.map_or(spec.steps, |s| s.min(spec.steps));
    let bar = crate::run::progress(opts.progress, start, spec.steps);
    let mut rec = Recorder {
        out,
        bar,
        max_bad: spec.max_bad_steps,
        bad: 0,
        skipped: 0,
        losses: Vec::new(),
        queue: Vec::new(),
    };
    let (sync_every, due) = (opts.sync_every(), |every: usize, done: usize| {
        (every > 0 && done.is_multiple_of(every)) || done == end
    });
    let t0 = Instant::now();
    let mut projected = false;
    let mut first_step: Option<f64> = None;
    let mut memory_peak = None;
    for s in start..end {
        let lr = spec.schedule.at(spec.lr, s, spec.steps);
        let o = step.step(StepContext {
            step: s,
            lr,
            defer: sync_every > 1,
        })?;
        let finite = match o.pending.is_some() {
            true => {
                rec.queue.push((s, lr, o));
                true
            }
            false => {
                rec.flush()?;
                rec.record(s, lr, o, false)?
            }
        };
        if !finite {
            continue;
        }
        // After a few steps (or seconds) past the first, project the run's length once and warn
        // when long. The first step is left out: on a GPU it compiles (and autotunes) every
        // kernel, which took 97 s of a 566 s run on lavapipe, and made the projection 40 hours.
        let first = *first_step.get_or_insert_with(|| t0.elapsed().as_secs_f64());
        let timed = s - start;
        let elapsed = t0.elapsed().as_secs_f64() - first;
        if !projected && timed > 0 && (timed >= 5 || elapsed > 10.0) && s + 1 < end {
            projected = true;
            let eta = elapsed / timed as f64 * (end - s - 1) as f64;
            if eta > LONG_RUN_SECONDS {
                let hint = spec
                    .smaller
                    .as_deref()
                    .unwrap_or("fewer steps or a smaller model");
                rec.bar.suspend(|| {
                    tracing::warn!(
                        "projected {} more for {} steps on this device ({:.2} s/step); for a shorter run, try {hint}",
                        duration_text(eta),
                        end - s - 1,
                        elapsed / timed as f64
                    )
                });
            }
        }
        if let Some(d) = spec.ema_decay {
            // EMA warmup (as diffusers' EMAModel): the decay ramps up, so early weights fade.
            step.update_ema(d.min((1.0 + s as f64) / (10.0 + s as f64)));
        }
        rec.bar.set_position(s as u64 + 1);
        let done = s + 1;
        let evaluate = due(spec.eval_every, done);
        let checkpoint = run.is_some() && due(spec.checkpoint_every, done);
        if evaluate || checkpoint || due(sync_every, done) {
            rec.flush()?;
            memory_peak = memory_peak.max(reserved_bytes(&opts.device));
        }
        if evaluate {
            rec.bar.suspend(|| step.evaluate(done))?;
        }
        if let Some(r) = run
            && checkpoint
        {
            let manifest = checkpoint::Manifest::new(
                spec.family,
                done,
                spec.shape,
                to_json(spec.config),
                spec.seed,
                (done * spec.rows_per_step) as u64,
            );
            checkpoint::save(r.path(), manifest, &step.state()?)?;
        }
    }
    rec.flush()?;
    memory_peak = memory_peak.max(reserved_bytes(&opts.device));
    let Recorder {
        out,
        bar,
        losses,
        skipped,
        ..
    } = rec;
    bar.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    tracing::info!(
        "{} steps in {seconds:.1}s ({:.1} it/s){}",
        end - start,
        (end - start) as f64 / seconds.max(1e-9),
        memory_peak.map_or(String::new(), |b| format!(
            "; device memory high-water mark {:.1} MiB",
            b as f64 / (1 << 20) as f64
        ))
    );
    let parallel = step.parallel();
    if let Some(p) = &parallel {
        tracing::info!("{}", p.line());
    }
    out.plot_loss(&spec.title)?;
    Ok(Summary {
        done: end,
        losses,
        skipped,
        seconds,
        memory_peak,
        parallel,
    })
}

/// Bytes the device's allocator holds (in use and pooled): its high-water mark so far, since
/// burn's pools keep their pages. `None` on the CPU. Drains the device's queue (call it where
/// the loop syncs anyway).
fn reserved_bytes(device: &burn::tensor::Device) -> Option<u64> {
    if oxgen_models::ops::cpu::is_flex(device) {
        return None;
    }
    device.memory_pool_usage().map(|u| u.bytes_reserved)
}
