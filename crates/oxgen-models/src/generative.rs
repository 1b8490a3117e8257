//! The one API every family sits behind, and what it may honestly say about likelihood.
//!
//! Generation and density estimation are separate capabilities. Every family samples; only some
//! give a likelihood, and of those only flows and autoregressive models give it exactly:
//!
//! | family       | sample | likelihood                                   |
//! |--------------|--------|----------------------------------------------|
//! | flow         | yes    | exact (a bound after dequantizing pixels)     |
//! | autoregressive | yes  | exact                                        |
//! | VAE          | yes    | bound: ELBO, IWAE(k)                         |
//! | diffusion    | yes    | bound: variational bound                     |
//! | GAN          | yes    | none                                         |
//!
//! The type system says the same: [`ExactDensity`] and [`BoundedDensity`] are separate traits,
//! and a GAN implements neither. [`Generative::nll`] is the dynamic form, used by the CLI and the
//! evaluation; it returns `None` rather than ever inventing a number.

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// The kind of bound a likelihood is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The evidence lower bound of a VAE.
    Elbo,
    /// The importance-weighted bound of Burda et al. (2016) with `k` samples.
    Iwae {
        /// Importance samples.
        k: usize,
    },
    /// A diffusion model's variational bound.
    DiffusionVlb,
    /// An exact continuous density evaluated on uniformly dequantized discrete data: a bound on
    /// the discrete likelihood (Theis et al., 2016), itself a one-sample estimate.
    Dequantized,
    /// A lower bound (ELBO) evaluated on dequantized discrete data.
    DequantizedElbo,
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Elbo => write!(f, "elbo"),
            Bound::Iwae { k } => write!(f, "iwae, k = {k}"),
            Bound::DiffusionVlb => write!(f, "diffusion variational bound"),
            Bound::Dequantized => write!(f, "dequantization"),
            Bound::DequantizedElbo => write!(f, "elbo + dequantization"),
        }
    }
}

/// What a model can say about the likelihood of data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Likelihood {
    /// log p(x) itself.
    Exact,
    /// A lower bound on log p(x) (so an upper bound on the NLL).
    Bound {
        /// Which one.
        bound: Bound,
    },
    /// No likelihood at all (GANs).
    None,
}

/// What a family offers; see the table in the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Family name: `flow`, `vae`, `gan`, `diffusion` or `ar`.
    pub family: &'static str,
    /// Whether it samples (all families do).
    pub sample: bool,
    /// Whether sampling can be conditioned on a class.
    pub conditional: bool,
    /// Its likelihood.
    pub likelihood: Likelihood,
}

/// A negative log-likelihood, labelled with what it is. Values are per data point, in nats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Nll {
    /// Mean NLL in nats per data point (an upper bound when `likelihood` is a bound);
    /// `None` when the model has no likelihood.
    pub nats: Option<f64>,
    /// Features per data point (for bits per dimension).
    pub dims: usize,
    /// Exact, bound or none.
    pub likelihood: Likelihood,
}

impl Nll {
    /// Bits per dimension: nats / (dims · ln 2).
    pub fn bits_per_dim(&self) -> Option<f64> {
        self.nats
            .map(|n| n / (self.dims as f64 * std::f64::consts::LN_2))
    }
}

impl std::fmt::Display for Nll {
    /// `nll: 1.234 nats (exact)`, `nll: ≤ 1.300 nats (bound: elbo)` or
    /// `nll: none (this family has no likelihood)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bpd = |f: &mut std::fmt::Formatter<'_>| match self.bits_per_dim() {
            Some(b) if self.dims > 1 => write!(f, ", {b:.4} bits/dim"),
            _ => Ok(()),
        };
        match (self.nats, self.likelihood) {
            (Some(n), Likelihood::Exact) => {
                write!(f, "nll: {n:.4} nats (exact)")?;
                bpd(f)
            }
            (Some(n), Likelihood::Bound { bound }) => {
                write!(f, "nll: ≤ {n:.4} nats (bound: {bound})")?;
                bpd(f)
            }
            _ => write!(f, "nll: none (this family has no likelihood)"),
        }
    }
}

/// Every family: declares its capabilities, samples, and scores data where it can.
///
/// Data are flattened rows `[batch, features]`, as in [`crate::DataShape`]. Randomness comes
/// from `seed` and is drawn on the host, so a seed gives the same samples on every device.
pub trait Generative {
    /// What this model offers.
    fn capabilities(&self) -> Capabilities;

    /// `n` samples, `[n, features]`, optionally of one class each.
    fn sample(&self, n: usize, labels: Option<&[u32]>, seed: u64, device: &Device) -> Tensor<2>;

    /// Per-row NLL in nats (`[batch]`): exact or an upper bound as
    /// [`Capabilities::likelihood`] says, `None` where the family has none.
    fn nll(&self, x: Tensor<2>, seed: u64) -> Option<Tensor<1>>;
}

/// Families with an exact density: normalizing flows and autoregressive models.
pub trait ExactDensity {
    /// log p(x) per row, `[batch]`.
    fn log_prob(&self, x: Tensor<2>) -> Tensor<1>;
}

/// Families with a lower bound on the density: VAEs and diffusion models.
pub trait BoundedDensity {
    /// The evidence lower bound per row, `[batch]`.
    fn elbo(&self, x: Tensor<2>, seed: u64) -> Tensor<1>;
    /// The importance-weighted bound with `k` samples per row, `[batch]` (k = 1 is the ELBO;
    /// it tightens as k grows).
    fn iwae_bound(&self, x: Tensor<2>, k: usize, seed: u64) -> Tensor<1>;
}

/// Standard normals `[rows, cols]` drawn on the host from `seed`.
pub fn host_normals(rows: usize, cols: usize, seed: u64, device: &Device) -> Tensor<2> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    Tensor::from_data(burn::tensor::TensorData::new(v, [rows, cols]), device)
}

/// log N(x; 0, I) summed over the last axis of `[batch, features]`, `[batch]`.
pub fn standard_normal_log_prob(x: Tensor<2>) -> Tensor<1> {
    let [b, d] = x.dims();
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    x.powi_scalar(2)
        .sum_dim(1)
        .reshape([b])
        .mul_scalar(-0.5)
        .sub_scalar(half_log_2pi * d as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_say_what_a_number_is() {
        let exact = Nll {
            nats: Some(1.2345),
            dims: 2,
            likelihood: Likelihood::Exact,
        };
        assert!(exact.to_string().starts_with("nll: 1.2345 nats (exact)"));
        let bound = Nll {
            nats: Some(1.3),
            dims: 1,
            likelihood: Likelihood::Bound { bound: Bound::Elbo },
        };
        assert_eq!(bound.to_string(), "nll: ≤ 1.3000 nats (bound: elbo)");
        let none = Nll {
            nats: None,
            dims: 2,
            likelihood: Likelihood::None,
        };
        assert!(none.to_string().contains("none"));
        assert_eq!(none.bits_per_dim(), None);
        // 64 dims, 64·ln 2 nats = 1 bit per dim.
        let b = Nll {
            nats: Some(64.0 * std::f64::consts::LN_2),
            dims: 64,
            likelihood: Likelihood::Exact,
        };
        assert!((b.bits_per_dim().unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn standard_normal_density_is_the_closed_form() {
        let device = Device::flex();
        let x = Tensor::<2>::from_data([[0.0f32, 0.0], [1.0, -2.0]], &device);
        let got: Vec<f32> = standard_normal_log_prob(x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let c = -(2.0 * std::f64::consts::PI).ln();
        assert!((got[0] as f64 - c).abs() < 1e-5);
        assert!((got[1] as f64 - (c - 2.5)).abs() < 1e-5);
    }
}
