//! Sampling from and evaluating a trained run (`oxgen sample`, `oxgen eval`).

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use oxgen_models::diffusion;
use oxgen_models::diffusion::vlb::DiffusionModel;
use oxgen_models::generative::{Generative, Nll};
use oxgen_models::{DataShape, Diffusion, SampleConfig};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::checkpoint::load_weights;
use crate::checkpoint::{self, Manifest};
use crate::config::TrainConfig;
use crate::data::Dataset;
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

/// Whether `family` is a diffusion run: `diffusion`, or a tuned one (`diffusion-dpo`) whose
/// manifest config holds the base's config under `base_config`.
pub fn is_diffusion_family(family: &str) -> bool {
    family == "diffusion" || family.starts_with("diffusion-")
}

/// Loads the EMA weights of the checkpoint at `ckpt` (a run folder or a checkpoint folder); of
/// a tuned run, its tuned weights.
pub fn load_run(ckpt: &Path, device: &Device) -> Result<LoadedRun> {
    let ck = checkpoint::load(ckpt)?;
    if !is_diffusion_family(&ck.manifest.family) {
        return Err(Error::Checkpoint {
            path: ck.dir.clone(),
            reason: format!("family `{}` is not diffusion", ck.manifest.family),
        });
    }
    let tuned = ck.manifest.family != "diffusion";
    let config = match tuned {
        false => ck.manifest.config.clone(),
        true => ck.manifest.config["base_config"].clone(),
    };
    let config: TrainConfig = serde_json::from_value(config).map_err(|e| Error::Checkpoint {
        path: ck.dir.clone(),
        reason: format!("config in manifest is invalid: {e}"),
    })?;
    let model = config.model.init(ck.manifest.shape, device);
    let file = if tuned { "model.bpk" } else { "ema.bpk" };
    let ema = load_weights(model, ck.file(file)?, &ck.dir)?;
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
    let data = config.load_data()?;
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

/// Held-out sets A and B (and A's labels) for the quality report of `n` points.
pub fn held_out(
    config: &TrainConfig,
    data: &Dataset,
    val: Option<&Dataset>,
    n: usize,
) -> (Vec<f32>, Vec<f32>, Option<Vec<u32>>) {
    match (data.toy, val) {
        (Some(toy), _) => {
            let a = toy.sample(
                n,
                &mut StdRng::seed_from_u64(config.seed.wrapping_add(1001)),
            );
            let b = toy.sample(
                n,
                &mut StdRng::seed_from_u64(config.seed.wrapping_add(1002)),
            );
            (a, b, None)
        }
        (None, Some(val)) => {
            let half = val.len() / 2;
            let a = val.subset(&(0..half).collect::<Vec<_>>());
            let b = val.subset(&(half..2 * half).collect::<Vec<_>>());
            (a.x, b.x, a.labels)
        }
        (None, None) => (Vec::new(), Vec::new(), None),
    }
}

/// Samples with the EMA weights, measures SWD/MMD against held-out data, and writes
/// `samples.png` and `samples.npy` into `out`.
pub fn final_report(
    config: &TrainConfig,
    data: &Dataset,
    val: Option<&Dataset>,
    ema: &Diffusion,
    device: &Device,
    out: &Path,
) -> Result<Quality> {
    let features = data.shape.numel();
    let n = match data.toy {
        Some(_) => config.eval_samples,
        None => (val.map_or(0, |v| v.len()) / 2).min(config.eval_samples),
    };
    if n < 2 {
        return Err(Error::Config(format!(
            "too few held-out rows ({n}) for a quality report; raise val_fraction"
        )));
    }
    let (a, b, labels) = held_out(config, data, val, n);
    let labels = labels.filter(|_| config.model.num_classes.is_some());
    let samples = draw(
        ema,
        &config.model,
        &config.sample,
        n,
        labels.as_deref(),
        device,
    )?;
    let quality = Quality::measure(&samples, &a, &b, features, config.seed);
    crate::run::write_samples(out, &samples, labels.as_deref(), data.shape, Some(&a))?;
    std::fs::write(
        out.join("quality.json"),
        serde_json::to_vec_pretty(&quality).expect("serializes"),
    )
    .map_err(|e| Error::io("quality report", out, e))?;
    Ok(quality)
}

/// Draws `n` samples to the host, `[n · features]` row-major; a non-finite sample is an error.
pub fn draw(
    model: &Diffusion,
    config: &oxgen_models::DiffusionConfig,
    sample: &oxgen_models::SampleConfig,
    n: usize,
    labels: Option<&[u32]>,
    device: &Device,
) -> Result<Vec<f32>> {
    host_samples(
        diffusion::sample(model, config, sample, n, labels, device),
        "generated samples",
    )
}

/// `x` on the host, row-major; a non-finite value is an error naming `context`.
pub fn host_samples(x: Tensor<2>, context: &str) -> Result<Vec<f32>> {
    let samples: Vec<f32> = x
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Config(format!("reading {context} back: {e:?}")))?;
    match samples.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            context: context.into(),
            index,
        }),
        None => Ok(samples),
    }
}

/// A trained run of any family, loaded for sampling and scoring.
#[derive(Debug)]
pub enum Loaded {
    /// A diffusion run (EMA weights).
    Diffusion(LoadedRun),
    /// A VAE, flow or GAN run.
    Family(
        crate::family::FamilyConfig,
        crate::family::Trained,
        Manifest,
    ),
    /// An autoregressive run.
    Ar(crate::ar::ArRun, Manifest),
}

impl Loaded {
    /// The checkpoint's manifest (family, step, data shape, config).
    pub fn manifest(&self) -> &Manifest {
        match self {
            Loaded::Diffusion(r) => &r.manifest,
            Loaded::Family(_, _, m) | Loaded::Ar(_, m) => m,
        }
    }

    /// The model behind the shared API: every family but a text GPT, whose samples are tokens
    /// (see `oxgen_models::ar::generate`).
    pub fn generative(&self) -> Option<Box<dyn Generative + '_>> {
        match self {
            Loaded::Diffusion(r) => {
                let image = matches!(r.manifest.shape, DataShape::Image { .. });
                Some(Box::new(DiffusionModel {
                    model: &r.ema,
                    config: &r.config.model,
                    sample: r.config.sample.clone(),
                    levels: image.then(|| if r.config.data == "digits8" { 17 } else { 256 }),
                    strata: 100,
                }))
            }
            Loaded::Family(_, t, _) => Some(Box::new(FamilyModelRef(t))),
            Loaded::Ar(run, _) => matches!(run.codec, crate::ar::Codec::Pixels)
                .then(|| Box::new(crate::ar::PixelGpt(&run.model)) as Box<dyn Generative + '_>),
        }
    }
}

/// A trained VAE, flow or GAN behind [`Generative`].
struct FamilyModelRef<'a>(&'a crate::family::Trained);

impl Generative for FamilyModelRef<'_> {
    fn capabilities(&self) -> oxgen_models::generative::Capabilities {
        self.0.generative().capabilities()
    }
    fn sample(&self, n: usize, labels: Option<&[u32]>, seed: u64, device: &Device) -> Tensor<2> {
        self.0.generative().sample(n, labels, seed, device)
    }
    fn nll(&self, x: Tensor<2>, seed: u64) -> Option<Tensor<1>> {
        self.0.generative().nll(x, seed)
    }
}

/// Loads the run (or checkpoint folder) at `path`, whatever its family.
pub fn load_any(path: &Path, device: &Device) -> Result<Loaded> {
    let ck = checkpoint::load(path)?;
    match ck.manifest.family.as_str() {
        f if is_diffusion_family(f) => Ok(Loaded::Diffusion(load_run(path, device)?)),
        f if f == "ar" || f.starts_with("ar-") => {
            Ok(Loaded::Ar(crate::ar::load_ar(path, device)?, ck.manifest))
        }
        f if crate::family::FAMILIES.contains(&f) => {
            let (config, model) = crate::family::load_family(path, device)?;
            Ok(Loaded::Family(config, model, ck.manifest))
        }
        other => Err(Error::Checkpoint {
            path: ck.dir,
            reason: format!("unknown family `{other}`"),
        }),
    }
}
