//! What the membership audit retrains and attacks: a VAE, flow or GAN recipe, or a diffusion
//! one. Each trains on rows the audit chooses (so that it knows who is a member) and scores
//! rows, higher for a likelier member.
//!
//! Scores: −NLL for the VAE (its IWAE bound, 8 draws) and the flow (exact; dequantized on
//! discrete pixels); a GAN's discriminator logit (LOGAN, Hayes et al. 2019); for diffusion, the
//! negated denoising loss averaged over 8 timesteps in the first half of the schedule at a
//! fixed noise per row (Carlini et al. 2023, "Extracting Training Data from Diffusion Models",
//! attack the loss at small and middle timesteps). The noise is drawn from the row's own bytes,
//! so that a row is scored alike by the target and by every reference model.

use burn::tensor::{Device, Tensor, TensorData};
use oxgen_models::diffusion::{BatchEps, Diffusion, DiffusionBatchNoise, DiffusionConfig};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

use super::dpsgd::DpConfig;
use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::error::Result;
use crate::family::{FamilyConfig, FamilyModel, Trained, train_family_on};
use crate::trainer::TrainOptions;

/// A recipe to audit.
#[derive(Clone, Debug)]
pub enum AuditRecipe {
    /// A VAE, flow or GAN run's config.
    Family(FamilyConfig),
    /// A diffusion run's config (trained unconditionally: the audit's rows carry no labels).
    Diffusion(TrainConfig),
}

/// A model the audit trained.
pub(crate) enum Target {
    Family(Trained),
    Diffusion(Box<Diffusion>, DiffusionConfig),
}

/// Timesteps each diffusion row is scored at.
const DIFFUSION_TIMESTEPS: usize = 8;

impl AuditRecipe {
    /// `vae`, `flow`, `gan` or `diffusion`.
    pub fn family(&self) -> &'static str {
        match self {
            AuditRecipe::Family(c) => c.model.name(),
            AuditRecipe::Diffusion(_) => "diffusion",
        }
    }

    /// The recipe with its steps and DP settings replaced where given.
    pub fn with_overrides(self, steps: Option<usize>, dp: Option<DpConfig>) -> Self {
        match self {
            AuditRecipe::Family(mut c) => {
                c.steps = steps.unwrap_or(c.steps);
                c.dp = dp.or(c.dp);
                AuditRecipe::Family(c)
            }
            AuditRecipe::Diffusion(mut c) => {
                c.steps = steps.unwrap_or(c.steps);
                c.dp = dp.or(c.dp);
                AuditRecipe::Diffusion(c)
            }
        }
    }

    /// What the threshold attack thresholds: `loss`, or a GAN's `discriminator`.
    pub(crate) fn score_name(&self) -> &'static str {
        match self {
            AuditRecipe::Family(FamilyConfig {
                model: FamilyModel::Gan(_),
                ..
            }) => "discriminator",
            _ => "loss",
        }
    }

    /// The recipe's dataset.
    pub(crate) fn data(&self) -> Result<Dataset> {
        match self {
            AuditRecipe::Family(c) => crate::data::load(&c.data, c.seed, &Default::default()),
            AuditRecipe::Diffusion(c) => c.load_data(),
        }
    }

    pub(crate) fn seed(&self) -> u64 {
        match self {
            AuditRecipe::Family(c) => c.seed,
            AuditRecipe::Diffusion(c) => c.seed,
        }
    }

    pub(crate) fn val_fraction(&self) -> f64 {
        match self {
            AuditRecipe::Family(c) => c.val_fraction,
            AuditRecipe::Diffusion(c) => c.val_fraction,
        }
    }

    pub(crate) fn dp(&self) -> Option<&DpConfig> {
        match self {
            AuditRecipe::Family(c) => c.dp.as_ref(),
            AuditRecipe::Diffusion(c) => c.dp.as_ref(),
        }
    }

    pub(crate) fn batch_size(&self) -> usize {
        match self {
            AuditRecipe::Family(c) => c.batch_size,
            AuditRecipe::Diffusion(c) => c.batch_size,
        }
    }

    /// Steps that read a private batch (a GAN's every discriminator update).
    pub(crate) fn dp_steps(&self) -> usize {
        match self {
            AuditRecipe::Family(c) => c.dp_steps(),
            AuditRecipe::Diffusion(c) => c.steps,
        }
    }

    /// The same recipe with another seed (a reference model).
    pub(crate) fn reseeded(&self, seed: u64) -> Self {
        match self {
            AuditRecipe::Family(c) => AuditRecipe::Family(FamilyConfig { seed, ..c.clone() }),
            AuditRecipe::Diffusion(c) => AuditRecipe::Diffusion(TrainConfig { seed, ..c.clone() }),
        }
    }

    /// Trains the recipe on the rows `x` (in `data`'s layout) in memory.
    pub(crate) fn train_on(
        &self,
        data: &Dataset,
        x: Vec<f32>,
        opts: &TrainOptions,
    ) -> Result<Target> {
        let set = Dataset {
            x,
            labels: None,
            num_classes: None,
            ..data.clone()
        };
        let o = TrainOptions {
            out: None,
            resume: false,
            skip_eval: true,
            ..opts.clone()
        };
        match self {
            AuditRecipe::Family(c) => {
                let c = FamilyConfig {
                    val_fraction: 0.0,
                    ..c.clone()
                };
                Ok(Target::Family(train_family_on(&c, &set, &o)?.model))
            }
            AuditRecipe::Diffusion(c) => {
                let mut c = TrainConfig {
                    val_fraction: 0.0,
                    ..c.clone()
                };
                c.model.num_classes = None;
                let r = crate::diffusion::train_on(&c, &set, &o)?;
                Ok(Target::Diffusion(Box::new(r.ema), c.model))
            }
        }
    }
}

/// Each row's score (higher: likelier a member), `f` features per row.
pub(crate) fn scores(target: &Target, rows: &[f32], f: usize, device: &Device) -> Vec<f64> {
    const SEED: u64 = 0xa0d1;
    let mut out = Vec::with_capacity(rows.len() / f);
    for chunk in rows.chunks(256 * f) {
        let m = chunk.len() / f;
        let x = Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [m, f]), device);
        let s = match target {
            Target::Family(Trained::Vae(v)) => v.nll_bound(x, 8, SEED).neg(),
            Target::Family(Trained::Gan(g)) => g.discriminate(x),
            Target::Family(other) => other
                .generative()
                .nll(x, SEED)
                .expect("a flow has a likelihood")
                .neg(),
            Target::Diffusion(model, config) => diffusion_scores(model, config, chunk, f, device),
        };
        let v: Vec<f32> = s
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap_or_default();
        out.extend(v.into_iter().map(f64::from));
    }
    out
}

/// −(denoising loss) of each row of `chunk`, averaged over [`DIFFUSION_TIMESTEPS`] timesteps
/// T·(k + 1)/16 with noise drawn from the row's bytes, `[rows]`.
fn diffusion_scores(
    model: &Diffusion,
    config: &DiffusionConfig,
    chunk: &[f32],
    f: usize,
    device: &Device,
) -> Tensor<1> {
    let m = chunk.len() / f;
    let k = DIFFUSION_TIMESTEPS;
    let (mut t, mut eps) = (Vec::with_capacity(m * k), Vec::with_capacity(m * k * f));
    let mut x0 = Vec::with_capacity(m * k * f);
    for row in chunk.chunks(f) {
        // FNV-1a over the row's bits: the same row gets the same noise in every model.
        let seed = row.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
            (h ^ u64::from(v.to_bits())).wrapping_mul(0x100_0000_01b3)
        });
        let mut rng = StdRng::seed_from_u64(seed);
        for j in 0..k {
            t.push(config.timesteps * (j + 1) / (2 * k));
            eps.extend((0..f).map(|_| -> f32 { StandardNormal.sample(&mut rng) }));
            x0.extend_from_slice(row);
        }
    }
    let noise = DiffusionBatchNoise {
        t,
        eps: BatchEps::Given(eps),
        drop: vec![false; m * k],
    };
    let x0 = Tensor::<2>::from_data(TensorData::new(x0, [m * k, f]), device);
    let schedule = config.noise_schedule();
    model
        .loss_per_row(config, &schedule, x0, None, &noise)
        .reshape([m, k])
        .mean_dim(1)
        .reshape([m])
        .neg()
}
