//! Sampling from and evaluating a trained run (`oxgen sample`, `oxgen eval`).

use std::path::Path;

use burn::tensor::Device;
use oxgen_models::{Diffusion, SampleConfig};

use crate::checkpoint::{self, Manifest};
use crate::config::TrainConfig;
use crate::diffusion::{draw, final_report, load_data, load_weights};
use crate::error::{Error, Result};
use crate::metrics::Quality;

/// A trained run, ready to sample: its config and EMA weights.
#[derive(Debug)]
pub struct LoadedRun {
    /// The run's config.
    pub config: TrainConfig,
    /// The checkpoint manifest.
    pub manifest: Manifest,
    /// EMA weights on the chosen device.
    pub ema: Diffusion,
}

/// Loads the EMA weights of the checkpoint at `ckpt` (a run folder or a checkpoint folder).
pub fn load_run(ckpt: &Path, device: &Device) -> Result<LoadedRun> {
    let ck = checkpoint::load(ckpt)?;
    if ck.manifest.family != "diffusion" {
        return Err(Error::Checkpoint {
            path: ck.dir.clone(),
            reason: format!("family `{}` is not diffusion", ck.manifest.family),
        });
    }
    let config: TrainConfig =
        serde_json::from_value(ck.manifest.config.clone()).map_err(|e| Error::Checkpoint {
            path: ck.dir.clone(),
            reason: format!("config in manifest is invalid: {e}"),
        })?;
    let model = config.model.init(ck.manifest.shape, device);
    let ema = load_weights(model, ck.file("ema.bpk")?, &ck.dir)?;
    Ok(LoadedRun {
        config,
        manifest: ck.manifest,
        ema,
    })
}

/// Draws `n` samples (of `class` for every row, or classes 0, 1, 2, … in turn for a conditional
/// model) and writes `samples.png` and `samples.npy` into `out`.
pub fn sample_to(
    run: &LoadedRun,
    n: usize,
    class: Option<u32>,
    sample: &SampleConfig,
    device: &Device,
    out: &Path,
) -> Result<Vec<f32>> {
    let labels: Option<Vec<u32>> = match (run.config.model.num_classes, class) {
        (Some(k), Some(c)) if (c as usize) < k => Some(vec![c; n]),
        (Some(k), Some(c)) => {
            return Err(Error::Config(format!(
                "class {c} is out of range: the model has {k} classes"
            )));
        }
        (None, Some(_)) => {
            return Err(Error::Config(
                "--class given, but the model is unconditional".into(),
            ));
        }
        (Some(k), None) => Some((0..n).map(|i| (i % k) as u32).collect()),
        (None, None) => None,
    };
    let samples = draw(
        &run.ema,
        &run.config.model,
        sample,
        n,
        labels.as_deref(),
        device,
    )?;
    crate::run::write_samples(out, &samples, labels.as_deref(), run.manifest.shape, None)?;
    Ok(samples)
}

/// SWD and MMD of the run's samples against held-out data, with floors; writes the samples and
/// `quality.json` into `out`.
pub fn evaluate(run: &LoadedRun, n: Option<usize>, device: &Device, out: &Path) -> Result<Quality> {
    let mut config = run.config.clone();
    if let Some(n) = n {
        config.eval_samples = n;
    }
    let data = load_data(&config)?;
    let val = match data.toy {
        Some(_) => None,
        None => Some(data.split(config.val_fraction, config.seed).1),
    };
    std::fs::create_dir_all(out).map_err(|e| Error::io("output folder", out, e))?;
    final_report(&config, &data, val.as_ref(), &run.ema, device, out)
}
