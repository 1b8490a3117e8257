//! What every tuner shares: its checkpoint files, its place on the shared loop (a constant
//! rate after 5 warmup steps, an evaluation of the base at step 0), and its `curves.png`.

use std::path::Path;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::rows::read_evals;
use crate::ar::{ArRun, Codec, load_ar};
use crate::checkpoint::{Loaded, load_weights, optim_bytes, restore_optim, to_bytes};
use crate::run::RunDir;
use crate::trainer::{self, LoopSpec, Schedule, StepOutput, Summary, TrainOptions, TrainStep};
use crate::{Error, Result};

/// A tuned run's checkpoint files: the weights, the optimizer and the base's codec.
pub(crate) fn state<M: Module>(
    model: &M,
    optim: &ModuleOptimizer,
    codec: &Codec,
) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let codec = serde_json::to_vec(codec).expect("codec serializes");
    Ok(vec![
        ("model.bpk", to_bytes(model)?),
        ("optim.bpk", optim_bytes(optim)?),
        ("codec.json", codec),
    ])
}

/// Loads what [`state`] wrote: returns the weights, restores the optimizer.
pub(crate) fn restore<M: Module>(model: M, optim: &mut ModuleOptimizer, ck: &Loaded) -> Result<M> {
    let model = load_weights(model, ck.file("model.bpk")?, &ck.dir)?;
    restore_optim(optim, ck, "optim.bpk")?;
    Ok(model)
}

/// The base run of a tuner: any autoregressive run, but not one with unmerged LoRA adapters
/// (its tuned run would have to carry them too).
pub(crate) fn load_base(base: &Path, device: &Device) -> Result<ArRun> {
    let run = load_ar(base, device)?;
    if run.model.adapters() > 0 {
        return Err(Error::Config(format!(
            "{} has unmerged LoRA adapters; `oxgen tune merge --run {} --out DIR` makes a \
             plain run of it to tune",
            base.display(),
            base.display()
        )));
    }
    Ok(run)
}

/// A tuning run's place on the loop.
pub(crate) struct Plan<'a, C> {
    /// Family name in manifests.
    pub(crate) family: &'a str,
    /// The run's config (method, base, base_config and the method's fields).
    pub(crate) config: &'a C,
    /// The method's key in `config` (it and `base_config` must match on resume).
    pub(crate) method: &'a str,
    /// What one row is (an AR run: `Vector { dim: context }`).
    pub(crate) shape: oxgen_models::DataShape,
    pub(crate) seed: u64,
    pub(crate) steps: usize,
    pub(crate) lr: f64,
    pub(crate) rows_per_step: usize,
    /// Evaluate and checkpoint every this many steps.
    pub(crate) eval_every: usize,
    /// Title of `loss.png`.
    pub(crate) title: &'a str,
}

/// Evaluates the base (step 0, unless resuming), then runs the loop.
/// The end of a tuning step from the loss's value and its gradients: a non-finite loss makes
/// no update, else the gradients are clipped to `clip` and `model` takes one optimiser step.
/// Returns the output (loss, gradient norm).
pub(crate) fn apply<M: Module>(
    model: &mut M,
    optim: &mut burn::optim::ModuleOptimizer,
    value: f64,
    mut grads: burn::optim::GradientsParams,
    lr: f64,
    clip: f64,
) -> StepOutput {
    if !value.is_finite() {
        return StepOutput::loss(value, f64::NAN);
    }
    let norm = crate::trainer::optim::clip_global_norm(model, &mut grads, clip);
    *model = optim.step(lr, model.clone(), grads);
    StepOutput::loss(value, norm)
}

pub(crate) fn run<C: Serialize + DeserializeOwned>(
    step: &mut dyn TrainStep,
    plan: Plan<'_, C>,
    run: Option<&RunDir>,
    opts: &TrainOptions,
) -> Result<Summary> {
    let schedule = Schedule {
        decay: trainer::Decay::Constant,
        warmup_steps: 5.min(plan.steps),
        min_lr_ratio: 1.0,
    };
    let must_match = [plan.method, "base_config"];
    let spec = LoopSpec {
        family: plan.family,
        config: plan.config,
        must_match: &must_match,
        shape: plan.shape,
        seed: plan.seed,
        steps: plan.steps,
        lr: plan.lr,
        schedule: &schedule,
        rows_per_step: plan.rows_per_step,
        checkpoint_every: plan.eval_every,
        eval_every: plan.eval_every,
        max_bad_steps: 5,
        ema_decay: None,
        title: plan.title.into(),
        smaller: None,
    };
    if !opts.resume {
        step.evaluate(0)?;
    }
    trainer::run(step, &spec, run, opts)
}

/// A named curve of `curves.png`: (step, value) points.
pub(crate) type Panel<'a> = (&'a str, Vec<(f64, f64)>);

/// The held-out evaluations of the run in `dir` (its `eval.jsonl`), drawn as `curves.png`
/// titled `title`, with `more` panels below.
pub(crate) fn curves(
    dir: &Path,
    title: &str,
    name: &str,
    more: Vec<Panel<'_>>,
) -> Result<Vec<(usize, f64)>> {
    let evals = read_evals(&dir.join("eval.jsonl"))?;
    let held: Vec<(f64, f64)> = evals.iter().map(|&(s, v)| (s as f64, v)).collect();
    let mut panels = vec![(name, held)];
    panels.extend(more);
    crate::plot::panels(&dir.join("curves.png"), title, &panels)?;
    Ok(evals)
}
