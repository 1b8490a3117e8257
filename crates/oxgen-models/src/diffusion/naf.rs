//! Sampling from shard diffusion models together (near access-freeness for diffusion): at each
//! step the shard models' predictions are averaged, and the sampler runs on the average.
//!
//! Every prediction oxgen trains (ε, x₀ or v) is affine in the score ∇ log q_t(x) of the noised
//! density at that step, so the average of k predictions is the prediction of the score
//! (1/k) Σᵢ ∇ log qᵢ,t = ∇ log (Πᵢ qᵢ,t)^{1/k}: at every noise level the sampler follows the
//! normalised geometric mean of the shard models' noised densities, CP-Δ's (KL) combination
//! applied step by step (the composition of Du et al., 2023, "Reduce, Reuse, Recycle", with
//! equal weights). What this does *not* give is CP-Δ's certificate: the geometric mean of the
//! noised densities is not the noised geometric mean, so the samples are not drawn from
//! (Πᵢ qᵢ)^{1/k}/Z and no Δ is computed. Diffusion models have no exact likelihood here (only
//! the ELBO), so neither CP-k's nor CP-Δ's bound can be checked per sample; the protection is
//! measured instead (near duplicates of planted images, `oxgen audit extraction --images`).

use burn::tensor::{Device, Int, Tensor};

use super::{DenoiserFn, Diffusion, DiffusionConfig, SampleConfig, sample_from_fn, scheduler_for};
use crate::ops::denoise::seeded_noise;

/// Draws `n` samples from the step-by-step average of the shard `models`, all built by
/// `config` (the same shape, classes, schedule and prediction), as [`super::sample`] draws from
/// one. Errors on fewer than two models and on models of different shapes or classes.
///
/// # Shapes
/// - returns `[n, features]`.
pub fn sample_naf(
    models: &[&Diffusion],
    config: &DiffusionConfig,
    sample: &SampleConfig,
    n: usize,
    labels: Option<&[u32]>,
    device: &Device,
) -> Result<Tensor<2>, String> {
    let first = models
        .first()
        .ok_or("NAF sampling combines at least 2 shard models, got 0")?;
    if models.len() < 2 {
        return Err("NAF sampling combines at least 2 shard models, got 1".into());
    }
    if models
        .iter()
        .any(|m| m.shape != first.shape || m.num_classes != first.num_classes)
    {
        return Err("the shard models' shapes or classes differ".into());
    }
    let k = models.len() as f32;
    let forward = |x: Tensor<2>, t: Tensor<1>, l: Option<Tensor<1, Int>>| {
        let outs = models
            .iter()
            .map(|m| m.forward(x.clone(), t.clone(), l.clone()));
        outs.reduce(|a, b| a + b).expect("two models or more") / k
    };
    let denoiser = DenoiserFn {
        shape: first.shape,
        num_classes: first.num_classes,
        has_null: first.null_class().is_some(),
        forward: &forward,
    };
    let mut scheduler = scheduler_for(config, sample);
    let [c, h, w] = first.shape;
    let noise = seeded_noise(sample.seed, u32::MAX, n * c * h * w, device);
    Ok(sample_from_fn(
        &denoiser,
        scheduler.as_mut(),
        sample,
        noise,
        n,
        labels,
        device,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataShape;
    use crate::diffusion::mlp::MlpDenoiserConfig;
    use crate::diffusion::{DenoiserConfig, sample};
    use burn::tensor::Device;

    fn config() -> DiffusionConfig {
        DiffusionConfig::new(DenoiserConfig::Mlp(
            MlpDenoiserConfig::new().with_hidden(16).with_blocks(1),
        ))
    }

    fn tiny(seed: u64) -> Diffusion {
        let m = config().init(DataShape::Vector { dim: 2 }, &Device::flex());
        crate::testing::seeded(m, seed, 0.5)
    }

    /// Two copies of one model sample exactly as that model does, two different models give
    /// something else, and fewer than two models are refused.
    #[test]
    fn averaging_copies_of_one_model_is_that_model() {
        let device = Device::flex();
        let config = config();
        let (a, b) = (tiny(1), tiny(2));
        let s = SampleConfig {
            steps: 5,
            ..SampleConfig::default()
        };
        let one: Vec<f32> = sample(&a, &config, &s, 4, None, &device)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let two: Vec<f32> = sample_naf(&[&a, &a], &config, &s, 4, None, &device)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (x, y) in one.iter().zip(&two) {
            assert!((x - y).abs() < 1e-5, "{one:?} vs {two:?}");
        }
        let mixed: Vec<f32> = sample_naf(&[&a, &b], &config, &s, 4, None, &device)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(mixed.iter().zip(&one).any(|(x, y)| (x - y).abs() > 1e-3));
        assert!(sample_naf(&[&a], &config, &s, 4, None, &device).is_err());
    }
}
