//! The variational bound on a diffusion model's negative log-likelihood (Sohl-Dickstein et al.,
//! 2015; Ho et al., 2020, eq. 5), and the model behind the shared [`Generative`] API.
//!
//! −log p(x₀) ≤ L_T + Σ_{t=1}^{T−1} L_t + L_0 with
//! - L_T = KL(q(x_T | x₀) ‖ N(0, I)), in closed form;
//! - L_t = KL(q(x_{t−1} | x_t, x₀) ‖ p(x_{t−1} | x_t)), with the reverse variance fixed to the
//!   posterior's β̃_t, so that L_t = c_t² ‖x₀ − x̂₀(x_t, t)‖² / (2 β̃_t), c_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t);
//! - L_0 = −log p(x₀ | x₁): a Gaussian of variance β₁ around x̂₀ on continuous data, the same
//!   Gaussian discretized to the pixel bins on images (Ho et al., §3.3).
//!
//! The sum over t is estimated by stratified sampling: `strata` equal ranges of t, one t and one
//! noise draw per range, weighted by the range's length. The estimate is unbiased for the bound.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};

use super::{Diffusion, DiffusionConfig, SampleConfig};
use crate::generative::{Bound, Capabilities, Generative, Likelihood, host_normals};

const LOG_2PI: f64 = 1.837_877_066_409_345_5;

/// The bound in nats per row (`[b]`) for data `x0` (`[b, features]`). `levels`: pixels on that
/// many levels in [−1, 1] (images), `None` for continuous data. `clip` clamps x̂₀ as sampling does.
pub fn nll_bound(
    model: &Diffusion,
    config: &DiffusionConfig,
    x0: Tensor<2>,
    levels: Option<usize>,
    clip: Option<f32>,
    strata: usize,
    seed: u64,
) -> Tensor<1> {
    let s = config.noise_schedule();
    let big_t = s.len();
    let [b, d] = x0.dims();
    let device = x0.device();
    let labels = model
        .null_class()
        .map(|c| Tensor::<1, Int>::from_data(TensorData::new(vec![c as i64; b], [b]), &device));
    let predict = |t: usize, draw: u64| {
        let ab = s.alphas_cumprod[t];
        let eps = host_normals(b, d, seed ^ draw.wrapping_mul(0x9e37_79b9), &device);
        let xt = x0.clone().mul_scalar(ab.sqrt()) + eps.mul_scalar((1.0 - ab).sqrt());
        let tt = Tensor::<1>::from_data(TensorData::new(vec![t as f32; b], [b]), &device);
        let out = model.forward(xt.clone(), tt, labels.clone());
        let (px, po) = config.prediction.x0_coeffs(ab);
        let x0_hat = xt.mul_scalar(px) + out.mul_scalar(po);
        match clip {
            Some(c) => x0_hat.clamp(-c, c),
            None => x0_hat,
        }
    };
    let rows = |t: Tensor<2>| t.sum_dim(1).reshape([b]);
    // L_T.
    let ab_t = s.alphas_cumprod[big_t - 1];
    let prior = rows(
        x0.clone()
            .powi_scalar(2)
            .mul_scalar(ab_t)
            .add_scalar(1.0 - ab_t - 1.0 - (1.0 - ab_t).ln())
            .mul_scalar(0.5),
    );
    // L_0.
    let var0 = s.betas[0];
    let mean0 = predict(0, 0);
    let l0 = match levels {
        None => rows(
            (x0.clone() - mean0)
                .powi_scalar(2)
                .div_scalar(2.0 * var0)
                .add_scalar(0.5 * (LOG_2PI + var0.ln())),
        ),
        Some(l) => rows(discretized_gaussian(x0.clone(), mean0, var0.sqrt(), l).neg()),
    };
    // Σ L_t, t = 1 … T−1, stratified.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let k = strata.clamp(1, big_t - 1);
    let mut total = prior + l0;
    for i in 0..k {
        let (lo, hi) = (1 + (big_t - 1) * i / k, 1 + (big_t - 1) * (i + 1) / k);
        let t = rng.random_range(lo..hi);
        let (ab, abp, beta) = (s.alphas_cumprod[t], s.alphas_cumprod[t - 1], s.betas[t]);
        let post_var = beta * (1.0 - abp) / (1.0 - ab);
        let c = abp.sqrt() * beta / (1.0 - ab);
        let kl = rows((x0.clone() - predict(t, 1 + t as u64)).powi_scalar(2))
            .mul_scalar(c * c / (2.0 * post_var));
        total = total + kl.mul_scalar((hi - lo) as f64);
    }
    total
}

/// log P(x) per element of a N(mean, σ²) discretized to `levels` bins on [−1, 1], the edge bins
/// taking the tails.
pub fn discretized_gaussian(x: Tensor<2>, mean: Tensor<2>, sigma: f64, levels: usize) -> Tensor<2> {
    let half = 1.0 / (levels as f64 - 1.0);
    let phi = |z: Tensor<2>| {
        z.div_scalar(std::f64::consts::SQRT_2)
            .erf()
            .add_scalar(1.0)
            .mul_scalar(0.5)
    };
    let c = x.clone() - mean;
    let upper = phi(c.clone().add_scalar(half).div_scalar(sigma));
    let lower = phi(c.sub_scalar(half).div_scalar(sigma));
    let one = upper.ones_like();
    let zero = lower.zeros_like();
    let upper = upper.mask_where(x.clone().greater_elem(1.0 - half), one);
    let lower = lower.mask_where(x.lower_elem(-1.0 + half), zero);
    (upper - lower).clamp_min(1e-12).log()
}

/// A diffusion model with its config, behind the shared API.
#[derive(Debug)]
pub struct DiffusionModel<'a> {
    /// The weights (usually the EMA).
    pub model: &'a Diffusion,
    /// Its config.
    pub config: &'a DiffusionConfig,
    /// How to sample.
    pub sample: SampleConfig,
    /// Pixel levels of image data, `None` for continuous data.
    pub levels: Option<usize>,
    /// Strata of the bound's Monte Carlo sum over t.
    pub strata: usize,
}

impl Generative for DiffusionModel<'_> {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            family: "diffusion",
            sample: true,
            conditional: self.model.null_class().is_some(),
            likelihood: Likelihood::Bound {
                bound: Bound::DiffusionVlb,
            },
        }
    }

    fn sample(&self, n: usize, labels: Option<&[u32]>, seed: u64, device: &Device) -> Tensor<2> {
        let mut s = self.sample.clone();
        s.seed = seed;
        super::sample(self.model, self.config, &s, n, labels, device)
    }

    fn nll(&self, x: Tensor<2>, seed: u64) -> Option<Tensor<1>> {
        Some(nll_bound(
            self.model,
            self.config,
            x,
            self.levels,
            self.sample.clip,
            self.strata,
            seed,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(t: Tensor<1>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// The discretized Gaussian is a distribution over the levels.
    #[test]
    fn discretized_gaussian_sums_to_one() {
        let device = Device::flex();
        let levels = 17;
        let xs: Vec<f32> = (0..levels).map(|v| 2.0 * v as f32 / 16.0 - 1.0).collect();
        for (mean, sigma) in [(0.0f32, 0.3f64), (0.93, 0.01), (-1.4, 0.5)] {
            let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [1, levels]), &device);
            let m = Tensor::<2>::full([1, levels], mean, &device);
            let p = discretized_gaussian(x, m, sigma, levels).exp().sum();
            let total = host(p)[0];
            assert!(
                (total - 1.0).abs() < 1e-3,
                "mean {mean}, σ {sigma}: {total}"
            );
        }
    }

    /// One stratum per timestep: the bound is a fixed function of (x, seed), positive and
    /// finite, and the shared API returns the same numbers.
    #[test]
    fn bound_is_seeded_finite_and_served_by_the_api() {
        use crate::diffusion::DenoiserConfig;
        use crate::diffusion::mlp::MlpDenoiserConfig;
        let device = Device::flex();
        device.seed(2);
        let config = DiffusionConfig::new(DenoiserConfig::Mlp(
            MlpDenoiserConfig::new().with_hidden(16),
        ))
        .with_timesteps(20);
        let model = config.init(crate::DataShape::Vector { dim: 2 }, &device);
        let x = host_normals(8, 2, 1, &device);
        let a = host(nll_bound(&model, &config, x.clone(), None, None, 19, 5));
        let b = host(nll_bound(&model, &config, x.clone(), None, None, 19, 5));
        assert_eq!(a, b);
        assert!(a.iter().all(|v| v.is_finite() && *v > 0.0));
        let g = DiffusionModel {
            model: &model,
            config: &config,
            sample: SampleConfig::default(),
            levels: None,
            strata: 19,
        };
        assert_eq!(host(g.nll(x, 5).unwrap()), a);
        assert!(matches!(
            g.capabilities().likelihood,
            Likelihood::Bound { .. }
        ));
    }
}
