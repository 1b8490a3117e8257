//! Sampling from and evaluating a trained run (`oxgen sample`, `oxgen eval`).

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use oxgen_models::diffusion::vlb::DiffusionModel;
use oxgen_models::generative::{Generative, Nll};
use oxgen_models::{DataShape, Diffusion, SampleConfig};

use crate::checkpoint::{self, Manifest};
use crate::config::TrainConfig;
use crate::diffusion::{draw, final_report, held_out, load_data, load_weights};
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

/// SWD and MMD of the run's samples against held-out data, with floors, and the variational
/// bound on the held-out NLL (100 strata over t); writes the samples, `quality.json` and
/// `nll.json` into `out`.
pub fn evaluate(
    run: &LoadedRun,
    n: Option<usize>,
    device: &Device,
    out: &Path,
) -> Result<(Quality, Nll)> {
    let mut config = run.config.clone();
    if let Some(n) = n {
        config.eval_samples = n;
    }
    let data = load_data(&config)?;
    if data.shape != run.manifest.shape {
        return Err(Error::Shape {
            context: format!("dataset `{}`", config.data),
            expected: format!("{:?}, as the model was trained on", run.manifest.shape),
            got: format!("{:?}", data.shape),
        });
    }
    let val = match data.toy {
        Some(_) => None,
        None => Some(data.split(config.val_fraction, config.seed).1),
    };
    std::fs::create_dir_all(out).map_err(|e| Error::io("output folder", out, e))?;
    let quality = final_report(&config, &data, val.as_ref(), &run.ema, device, out)?;
    let image = matches!(data.shape, DataShape::Image { .. });
    let g = DiffusionModel {
        model: &run.ema,
        config: &config.model,
        sample: config.sample.clone(),
        levels: image.then(|| crate::family::pixel_levels(&data)),
        strata: 100,
    };
    let f = data.shape.numel();
    let (_, held, _) = held_out(&config, &data, val.as_ref(), quality.n);
    let mut total = 0.0;
    for (i, c) in held.chunks(500 * f).enumerate() {
        let x = Tensor::<2>::from_data(TensorData::new(c.to_vec(), [c.len() / f, f]), device);
        let v: Vec<f32> = g
            .nll(x, config.seed ^ i as u64)
            .expect("diffusion has a bound")
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Config(format!("reading the bound back: {e:?}")))?;
        if let Some(index) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFinite {
                context: "held-out variational bound".into(),
                index,
            });
        }
        total += v.iter().map(|&x| x as f64).sum::<f64>();
    }
    let nll = Nll {
        nats: Some(total / (held.len() / f).max(1) as f64),
        dims: f,
        likelihood: g.capabilities().likelihood,
    };
    std::fs::write(
        out.join("nll.json"),
        serde_json::to_vec_pretty(&nll).expect("serializes"),
    )
    .map_err(|e| Error::io("nll.json", out, e))?;
    Ok((quality, nll))
}
