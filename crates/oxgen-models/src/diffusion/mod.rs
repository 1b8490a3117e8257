//! Denoising diffusion: Ho et al., "Denoising Diffusion Probabilistic Models" (2020), with
//! v-prediction (Salimans & Ho, 2022) and classifier-free guidance (Ho & Salimans, 2022).
//!
//! The model works on flattened data `[batch, features]`; [`DataShape`] says how an image
//! denoiser folds it back into `[batch, channels, height, width]`.

pub mod embed;
pub mod invert;
pub mod mlp;
pub mod naf;
pub mod schedule;
pub mod unet;
pub mod vlb;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::ops::denoise::{Noise, seeded_noise};
use crate::samplers::{self, ModelOutput, SamplerKind, Scheduler, SchedulerCore};
use crate::settings::settings;
use mlp::{MlpDenoiser, MlpDenoiserConfig};
use schedule::{NoiseSchedule, Prediction, ScheduleKind};
use unet::{UNet, UNetConfig};

/// The shape of one data point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataShape {
    /// A vector of `dim` features (2D points: `dim = 2`).
    Vector {
        /// Number of features.
        dim: usize,
    },
    /// An image, stored channel-major.
    Image {
        /// Channels (1 grayscale, 3 RGB).
        channels: usize,
        /// Height in pixels.
        height: usize,
        /// Width in pixels.
        width: usize,
    },
}

impl DataShape {
    /// Whether it is an image, and its `[channels, height, width]` (vectors: `[dim, 1, 1]`, so
    /// a vector is one pixel of `dim` channels).
    pub fn layout(&self) -> (bool, [usize; 3]) {
        match *self {
            DataShape::Vector { dim } => (false, [dim, 1, 1]),
            DataShape::Image {
                channels,
                height,
                width,
            } => (true, [channels, height, width]),
        }
    }

    /// Number of features of one flattened data point.
    pub fn numel(&self) -> usize {
        match *self {
            DataShape::Vector { dim } => dim,
            DataShape::Image {
                channels,
                height,
                width,
            } => channels * height * width,
        }
    }
}

/// Which denoiser network to use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenoiserConfig {
    /// Residual MLP, for vectors.
    Mlp(MlpDenoiserConfig),
    /// Small UNet, for images.
    UNet(UNetConfig),
}

settings! {
    /// Configuration of a [`Diffusion`] model.
    pub struct DiffusionConfig {
        /// The denoiser network.
        pub denoiser: DenoiserConfig = DenoiserConfig::Mlp(MlpDenoiserConfig::new()), with_denoiser;
        /// Training timesteps T.
        pub timesteps: usize = 1000, with_timesteps;
        /// β schedule.
        pub schedule: ScheduleKind = ScheduleKind::Cosine, with_schedule;
        /// What the network predicts.
        pub prediction: Prediction = Prediction::Epsilon, with_prediction;
        /// Number of classes for conditioning (`None`: unconditional).
        pub num_classes: Option<usize> = None, with_num_classes;
        /// Probability of replacing a label by the null class at train time (for guidance).
        pub cond_drop_prob: f64 = 0.1, with_cond_drop_prob;
    }
}

impl DiffusionConfig {
    /// A config with this denoiser and the other fields at their defaults.
    pub fn new(denoiser: DenoiserConfig) -> Self {
        Self {
            denoiser,
            ..Self::default()
        }
    }
}

/// The denoiser network: one of the families in this folder.
#[derive(Module, Debug)]
pub enum Denoiser {
    /// See [`MlpDenoiser`].
    Mlp(MlpDenoiser),
    /// See [`UNet`].
    UNet(UNet),
}

/// A diffusion model: a denoiser and the data shape it was built for.
#[derive(Module, Debug)]
pub struct Diffusion {
    /// The network.
    pub denoiser: Denoiser,
    shape: [usize; 3],
    num_classes: usize,
}

/// One training batch's randomness, drawn on the host so that runs are reproducible.
#[derive(Clone, Debug)]
pub struct DiffusionBatchNoise {
    /// Timesteps, `[batch]`.
    pub t: Vec<usize>,
    /// The standard-normal noise ε, `[batch · features]`.
    pub eps: BatchEps,
    /// Whether each label is dropped to the null class.
    pub drop: Vec<bool>,
}

/// Where a training batch's noise ε comes from.
#[derive(Clone, Debug)]
pub enum BatchEps {
    /// Given values, `[batch · features]`.
    Given(Vec<f32>),
    /// The Philox stream `(seed, stream)` of [`crate::rng`]: drawn in registers by the fused
    /// noising kernel ([`crate::ops::noising`]), on the host by its reference.
    Philox {
        /// Generator key.
        seed: u64,
        /// Stream (the trainer uses the step).
        stream: u32,
    },
}

impl DiffusionConfig {
    /// Builds the model for data of `shape`.
    pub fn init(&self, shape: DataShape, device: &Device) -> Diffusion {
        let denoiser = match (&self.denoiser, shape) {
            (DenoiserConfig::Mlp(c), s) => {
                Denoiser::Mlp(c.init(s.numel(), self.num_classes, device))
            }
            (DenoiserConfig::UNet(c), DataShape::Image { channels, .. }) => {
                Denoiser::UNet(c.init(channels, self.num_classes, device))
            }
            (DenoiserConfig::UNet(_), DataShape::Vector { dim }) => {
                panic!(
                    "a UNet denoiser needs image data, got vectors of {dim} features; use the MLP"
                )
            }
        };
        let shape = match shape {
            DataShape::Vector { dim } => [1, 1, dim],
            DataShape::Image {
                channels,
                height,
                width,
            } => [channels, height, width],
        };
        Diffusion {
            denoiser,
            shape,
            num_classes: self.num_classes.unwrap_or(0),
        }
    }

    /// The noise schedule this config trains with.
    pub fn noise_schedule(&self) -> NoiseSchedule {
        NoiseSchedule::new(self.schedule, self.timesteps)
    }
}

impl Diffusion {
    /// The null class index (used for unconditional outputs), if conditional.
    pub fn null_class(&self) -> Option<usize> {
        (self.num_classes > 0).then_some(self.num_classes)
    }

    /// Predicts ε or v.
    ///
    /// # Shapes
    /// - `x`: `[batch, features]`, `t`: `[batch]`, `labels`: `[batch]`; returns `[batch, features]`.
    pub fn forward(&self, x: Tensor<2>, t: Tensor<1>, labels: Option<Tensor<1, Int>>) -> Tensor<2> {
        let [b, n] = x.dims();
        let [c, h, w] = self.shape;
        assert_eq!(
            n,
            c * h * w,
            "Diffusion::forward: expected {} features, got {n}",
            c * h * w
        );
        match &self.denoiser {
            Denoiser::Mlp(m) => m.forward(x, t, labels),
            Denoiser::UNet(u) => u
                .forward(x.reshape([b, c, h, w]), t, labels)
                .reshape([b, n]),
        }
    }

    /// The denoising loss ‖target − prediction‖² averaged over the batch, for `x0` `[batch, n]`.
    pub fn loss(
        &self,
        config: &DiffusionConfig,
        schedule: &NoiseSchedule,
        x0: Tensor<2>,
        labels: Option<&[u32]>,
        noise: &DiffusionBatchNoise,
    ) -> Tensor<1> {
        let (pred, target) = self.prediction_and_target(config, schedule, x0, labels, noise);
        (pred - target).powi_scalar(2).mean()
    }

    /// Each row's denoising loss, averaged over its features, `[batch]` (a membership
    /// audit's score).
    pub fn loss_per_row(
        &self,
        config: &DiffusionConfig,
        schedule: &NoiseSchedule,
        x0: Tensor<2>,
        labels: Option<&[u32]>,
        noise: &DiffusionBatchNoise,
    ) -> Tensor<1> {
        let b = x0.dims()[0];
        let (pred, target) = self.prediction_and_target(config, schedule, x0, labels, noise);
        (pred - target).powi_scalar(2).mean_dim(1).reshape([b])
    }

    /// The prediction at the noised x0 and its target, `[batch, n]` each.
    fn prediction_and_target(
        &self,
        config: &DiffusionConfig,
        schedule: &NoiseSchedule,
        x0: Tensor<2>,
        labels: Option<&[u32]>,
        noise: &DiffusionBatchNoise,
    ) -> (Tensor<2>, Tensor<2>) {
        let device = x0.device();
        let [b, n] = x0.dims();
        let ab: Vec<f64> = noise
            .t
            .iter()
            .map(|&t| schedule.alphas_cumprod[t])
            .collect();
        let col = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [b, 1]), &device);
        let signal: Vec<f32> = ab.iter().map(|a| a.sqrt() as f32).collect();
        let noise_scale: Vec<f32> = ab.iter().map(|a| (1.0 - a).sqrt() as f32).collect();
        let (sa, so) = (col(&signal), col(&noise_scale));
        let (xt, eps) = match &noise.eps {
            BatchEps::Given(v) => {
                let eps = Tensor::<2>::from_data(TensorData::new(v.clone(), [b, n]), &device);
                (x0.clone() * sa.clone() + eps.clone() * so.clone(), eps)
            }
            &BatchEps::Philox { seed, stream } => crate::ops::noising::noising(
                x0.clone(),
                &crate::ops::noising::NoisingPlan {
                    signal,
                    noise: noise_scale,
                    seed,
                    stream,
                },
            ),
        };
        let target = match config.prediction {
            Prediction::Epsilon => eps,
            Prediction::V => eps * sa - x0 * so,
        };
        let labels = labels.map(|l| {
            let null = self.num_classes as i64;
            let v: Vec<i64> = l
                .iter()
                .zip(&noise.drop)
                .map(|(&y, &d)| if d { null } else { y as i64 })
                .collect();
            Tensor::<1, Int>::from_data(TensorData::new(v, [b]), &device)
        });
        let t = Tensor::<1>::from_data(
            TensorData::new(noise.t.iter().map(|&t| t as f32).collect::<Vec<_>>(), [b]),
            &device,
        );
        (self.forward(xt, t, labels), target)
    }
}

/// How to sample. Every field has a default (see `Default`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SampleConfig {
    /// Which sampler.
    pub sampler: SamplerKind,
    /// Inference steps.
    pub steps: usize,
    /// DDIM η.
    pub eta: f64,
    /// Guidance scale w (1: no guidance; only used with labels).
    pub guidance: f32,
    /// Clamp x̂₀ to [−clip, clip].
    pub clip: Option<f32>,
    /// Dynamic thresholding of x̂₀ at this percentile of |x̂₀| per sample (Imagen: 0.995).
    pub dynamic_threshold: Option<f32>,
    /// Noise seed.
    pub seed: u64,
    /// Take the last step, from x at the last timestep t₀ to x̂₀ (the default). `false` stops
    /// before it and returns x_{t₀}, which keeps √(1 − ᾱ_{t₀}) of noise (0.042 after 50 DDIM
    /// steps of a 1,000-step cosine schedule) but can be inverted: on saturated images (MNIST's
    /// black background) the denoiser's last x̂₀ is flat, and no inversion gets the noise back
    /// through it (docs/detection.md, Tree-Ring).
    pub final_denoise: bool,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            sampler: SamplerKind::Ddim,
            steps: 50,
            eta: 0.0,
            guidance: 3.0,
            clip: None,
            dynamic_threshold: None,
            seed: 0,
            final_denoise: true,
        }
    }
}

/// Draws `n` samples; with `labels`, class-conditional with guidance scale `sample.guidance`.
///
/// # Shapes
/// - returns `[n, features]`.
pub fn sample(
    model: &Diffusion,
    config: &DiffusionConfig,
    sample: &SampleConfig,
    n: usize,
    labels: Option<&[u32]>,
    device: &Device,
) -> Tensor<2> {
    let mut scheduler = scheduler_for(config, sample);
    sample_with(model, scheduler.as_mut(), sample, n, labels, device)
}

/// The scheduler `sample` asks for (sampler, clip, thresholding, η), over `config`'s noise
/// schedule and prediction, its timesteps set.
pub fn scheduler_for(config: &DiffusionConfig, sample: &SampleConfig) -> Box<dyn Scheduler> {
    let core = SchedulerCore::new(config.noise_schedule(), config.prediction, sample.clip)
        .with_dynamic_threshold(sample.dynamic_threshold);
    let mut scheduler = samplers::build(sample.sampler, core, sample.eta);
    scheduler.set_timesteps(sample.steps);
    scheduler
}

/// Samples with any [`Scheduler`], built-in or the program's own, whose timesteps are already
/// set; `sample`'s sampler, steps, clip and η are the scheduler's business, its seed and
/// guidance are used here.
///
/// # Shapes
/// - returns `[n, features]`.
pub fn sample_with(
    model: &Diffusion,
    scheduler: &mut dyn Scheduler,
    sample: &SampleConfig,
    n: usize,
    labels: Option<&[u32]>,
    device: &Device,
) -> Tensor<2> {
    let [c, h, w] = model.shape;
    let noise = seeded_noise(sample.seed, u32::MAX, n * c * h * w, device);
    sample_from(model, scheduler, sample, noise, n, labels, device)
}

/// [`sample_with`] from the initial noise `noise` (a watermarked one, say) instead of the
/// seeded draw; the seed still drives any noise the sampler adds along the way.
///
/// # Shapes
/// - `noise`: `[n · features]`; returns `[n, features]`.
pub fn sample_from(
    model: &Diffusion,
    scheduler: &mut dyn Scheduler,
    sample: &SampleConfig,
    noise: Tensor<1>,
    n: usize,
    labels: Option<&[u32]>,
    device: &Device,
) -> Tensor<2> {
    let denoiser = DenoiserFn {
        shape: model.shape,
        num_classes: model.num_classes,
        has_null: model.null_class().is_some(),
        forward: &|x, t, l| model.forward(x, t, l),
    };
    sample_from_fn(&denoiser, scheduler, sample, noise, n, labels, device)
}

/// A denoiser as the sampling loop sees it: the output of a [`Diffusion`] (or a combination of
/// several) for rows `[b, features]`, timesteps `[b]` and optional labels `[b]`.
pub struct DenoiserFn<'a> {
    /// `[channels, height, width]` of a row.
    pub shape: [usize; 3],
    /// Classes (the null class, if any, is `num_classes`).
    pub num_classes: usize,
    /// Whether it was trained with a null class (classifier-free guidance).
    pub has_null: bool,
    /// The prediction.
    #[allow(clippy::type_complexity)]
    pub forward: &'a dyn Fn(Tensor<2>, Tensor<1>, Option<Tensor<1, Int>>) -> Tensor<2>,
}

/// [`sample_from`] for any [`DenoiserFn`].
///
/// # Shapes
/// - `noise`: `[n · features]`; returns `[n, features]`.
pub fn sample_from_fn(
    model: &DenoiserFn,
    scheduler: &mut dyn Scheduler,
    sample: &SampleConfig,
    noise: Tensor<1>,
    n: usize,
    labels: Option<&[u32]>,
    device: &Device,
) -> Tensor<2> {
    let [c, h, w] = model.shape;
    let features = c * h * w;
    let mut x = noise;
    let guided = labels.is_some() && model.has_null && sample.guidance != 1.0;
    let labels = labels.map(|l| {
        assert_eq!(l.len(), n, "sample: {} labels for {n} samples", l.len());
        let mut v: Vec<i64> = l.iter().map(|&y| y as i64).collect();
        if guided {
            v.extend(std::iter::repeat_n(model.num_classes as i64, n));
        }
        let len = v.len();
        Tensor::<1, Int>::from_data(TensorData::new(v, [len]), device)
    });
    let mut timesteps = scheduler.timesteps().to_vec();
    if !sample.final_denoise {
        timesteps.pop();
    }
    for (i, &t) in timesteps.iter().enumerate() {
        let xb = x.clone().reshape([n, features]);
        let rows = if guided { 2 * n } else { n };
        let tt = Tensor::<1>::from_data(TensorData::new(vec![t as f32; rows], [rows]), device);
        let output = if guided {
            let out = (model.forward)(Tensor::cat(vec![xb.clone(), xb], 0), tt, labels.clone());
            let cond = out.clone().slice([0..n]).reshape([n * features]);
            let uncond = out.slice([n..2 * n]).reshape([n * features]);
            ModelOutput {
                out: cond,
                uncond: Some((uncond, sample.guidance)),
                rows: n,
            }
        } else {
            ModelOutput {
                out: (model.forward)(xb, tt, labels.clone()).reshape([n * features]),
                uncond: None,
                rows: n,
            }
        };
        x = scheduler.step(
            output,
            t,
            x,
            Noise::Seeded {
                seed: sample.seed,
                stream: i as u32,
            },
        );
    }
    x.reshape([n, features])
}
