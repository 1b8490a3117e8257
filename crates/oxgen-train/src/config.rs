//! The run config of `oxgen train diffusion`: one serde struct, written into the run folder
//! before step 0 and into every checkpoint. A config file (TOML or JSON) may give any subset of
//! the fields; the rest keep the defaults for the dataset.

use std::path::Path;

use oxgen_models::diffusion::DenoiserConfig;
use oxgen_models::diffusion::mlp::MlpDenoiserConfig;
use oxgen_models::diffusion::schedule::{Prediction, ScheduleKind};
use oxgen_models::diffusion::unet::UNetConfig;
use oxgen_models::samplers::SamplerKind;
use oxgen_models::{DataShape, DiffusionConfig, SampleConfig};
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, LoadOptions};
use crate::error::{Error, Result};
use crate::trainer::Schedule;

/// Everything a diffusion training run needs. Every field has a default (those of
/// [`TrainConfig::default`], a 2D run), so a config written before a field existed still loads.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Dataset name or path.
    pub data: String,
    /// Seed of every random draw (init, data order, noise).
    pub seed: u64,
    /// Optimizer steps.
    pub steps: usize,
    /// Rows per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warmup and decay of the learning rate.
    pub schedule: Schedule,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip (0: off).
    pub grad_clip: f64,
    /// EMA decay of the sampling weights.
    pub ema_decay: f64,
    /// Fraction of rows held out for validation (image and file datasets).
    pub val_fraction: f64,
    /// Save a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
    /// Stop after this many non-finite losses in a row.
    pub max_bad_steps: usize,
    /// Samples drawn for the final SWD/MMD report (cut to the held-out size for images).
    pub eval_samples: usize,
    /// Resize images to (height, width).
    pub image_size: Option<(usize, usize)>,
    /// Keep RGB when loading PNG folders.
    pub rgb: bool,
    /// The model.
    pub model: DiffusionConfig,
    /// How samples are drawn at the end of training and by default in `oxgen sample`.
    pub sample: SampleConfig,
    /// Differentially private training (DP-SGD): per-sample clipping replaces `grad_clip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dp: Option<crate::privacy::dpsgd::DpConfig>,
    /// Planted duplicates, for memorisation experiments: `[images, repeats]`, that many
    /// training rows (drawn by the seed) each present `repeats` times.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<[usize; 2]>,
    /// Where the training noise ε comes from: `philox` (new runs: the Philox stream that the
    /// noising kernel draws in registers on wgpu) or `host` (the host RNG). A config written
    /// before this field existed has `host`, so old runs resume exactly as they were trained.
    #[serde(default = "NoiseSource::legacy")]
    pub noise: NoiseSource,
}

/// Where a diffusion run's training noise comes from (see [`TrainConfig::noise`]).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NoiseSource {
    /// The counter-based Philox stream (seed ^ "noising!", step): the fused noising kernel.
    #[default]
    Philox,
    /// The run's host RNG, drawn between the timesteps and the label drops (runs written
    /// before 2026-12-05).
    Host,
}

impl NoiseSource {
    /// What a config without the field means: it was written before the field existed.
    fn legacy() -> Self {
        Self::Host
    }
}

impl Default for TrainConfig {
    /// The defaults for 2D data (`moons`).
    fn default() -> Self {
        Self::defaults("moons", DataShape::Vector { dim: 2 }, None)
    }
}

impl TrainConfig {
    /// Loads the dataset the config names.
    pub fn load_data(&self) -> Result<Dataset> {
        crate::data::load(
            &self.data,
            self.seed,
            &LoadOptions {
                image_size: self.image_size,
                rgb: self.rgb,
            },
        )
    }

    /// Defaults for a dataset of `shape` with `num_classes` classes.
    pub fn defaults(data: &str, shape: DataShape, num_classes: Option<usize>) -> Self {
        let image = matches!(shape, DataShape::Image { .. });
        // Images: UNet, ε-prediction with x̂₀ clipped to the data range [−1, 1].
        // Vectors: MLP, v-prediction, which stays well conditioned where ᾱ → 0 at the end of the
        // cosine schedule (ε-prediction divides by √ᾱ there and, unclipped, blows up).
        let (denoiser, prediction) = if image {
            (DenoiserConfig::UNet(UNetConfig::new()), Prediction::Epsilon)
        } else {
            (
                DenoiserConfig::Mlp(MlpDenoiserConfig::new().with_hidden(128)),
                Prediction::V,
            )
        };
        let model = DiffusionConfig::new(denoiser)
            .with_num_classes(num_classes)
            .with_schedule(ScheduleKind::Cosine)
            .with_prediction(prediction);
        Self {
            data: data.into(),
            seed: 0,
            steps: if image { 1500 } else { 3000 },
            batch_size: if image { 64 } else { 256 },
            lr: 2e-3,
            schedule: Schedule::cosine(100, 0.05),
            weight_decay: 1e-4,
            grad_clip: 1.0,
            ema_decay: 0.995,
            val_fraction: 0.2,
            checkpoint_every: 1000,
            max_bad_steps: 20,
            eval_samples: 2000,
            image_size: None,
            rgb: false,
            model,
            // Images: deterministic DDIM, 50 steps. 2D: Euler ancestral, 100 steps; its fresh
            // noise corrects the small errors that show as stray points between the modes.
            sample: SampleConfig {
                sampler: if image {
                    SamplerKind::Ddim
                } else {
                    SamplerKind::EulerAncestral
                },
                steps: if image { 50 } else { 100 },
                eta: 0.0,
                guidance: 2.0,
                clip: image.then_some(1.0),
                dynamic_threshold: None,
                seed: 0,
                final_denoise: true,
            },
            dp: None,
            duplicates: None,
            noise: NoiseSource::Philox,
        }
    }

    /// Overrides the fields given in `file` (TOML, or JSON by extension).
    pub fn merge_file(self, file: &Path) -> Result<Self> {
        merge_file(self, file, "diffusion")
    }

    /// Checks the values a run cannot start with.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.steps == 0 {
            return bad("steps must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
        }
        check_positive("lr", self.lr)?;
        self.schedule.validate()?;
        check_non_negative("weight_decay", self.weight_decay, "")?;
        check_non_negative("grad_clip", self.grad_clip, " (0: off)")?;
        if self.max_bad_steps == 0 {
            return bad("max_bad_steps must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad(format!(
                "ema_decay must be in [0, 1), got {}",
                self.ema_decay
            ));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(format!(
                "val_fraction must be in [0, 1), got {}",
                self.val_fraction
            ));
        }
        if self.sample.steps == 0 || self.sample.steps > self.model.timesteps {
            return bad(format!(
                "sample.steps must be in 1..={}, got {}",
                self.model.timesteps, self.sample.steps
            ));
        }
        Ok(())
    }
}

/// Refuses `v` unless it is a positive number.
pub(crate) fn check_positive(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{name} must be a positive number, got {v}"
        )))
    }
}

/// Refuses `v` unless it is a non-negative number; `note` follows the rule in the message.
pub(crate) fn check_non_negative(name: &str, v: f64, note: &str) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{name} must be a non-negative number{note}, got {v}"
        )))
    }
}

/// `config` with the fields of a TOML (or `.json`) file laid over it. Keys of older run formats
/// (`warmup_steps`, …) are moved to their place first ([`crate::run::migrate`]).
pub(crate) fn merge_file<C: Serialize + serde::de::DeserializeOwned>(
    config: C,
    file: &Path,
    family: &str,
) -> Result<C> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io("config file", file, e))?;
    let patch: serde_json::Value = if file.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| Error::Parse {
            path: file.into(),
            reason: e.to_string(),
        })?
    } else {
        let v: toml::Value = toml::from_str(&text).map_err(|e| Error::Parse {
            path: file.into(),
            reason: e.to_string(),
        })?;
        serde_json::to_value(v).expect("TOML converts to JSON")
    };
    let mut patch = patch;
    crate::run::migrate::config_v1_to_v2(family, &mut patch);
    let mut base = serde_json::to_value(&config).expect("config serializes");
    merge(&mut base, patch);
    serde_json::from_value(base).map_err(|e| Error::Config(format!("{}: {e}", file.display())))
}

fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}
