//! Variational autoencoders (Kingma & Welling, 2014): a Gaussian encoder q(z|x), a decoder
//! p(x|z) and a standard-normal prior, trained on the β-weighted ELBO (Higgins et al., 2017) and
//! scored with the ELBO or the importance-weighted bound (Burda et al., 2016).
//!
//! Decoders: Bernoulli (data binarized at 0), Gaussian (mean and per-feature log-σ), or the
//! discretized logistic of PixelCNN++ (Salimans et al., 2017), whose likelihood is a proper
//! probability of discrete pixels.

use crate::settings::settings;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{log_sigmoid, sigmoid, silu, softplus};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::DataShape;
use crate::generative::{
    Bound, BoundedDensity, Capabilities, Generative, Likelihood, host_normals,
    standard_normal_log_prob,
};

/// The decoder's likelihood p(x | z).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderKind {
    /// Bernoulli on data binarized at 0 (x > 0 is a one).
    Bernoulli,
    /// Diagonal Gaussian with a predicted mean and log-σ.
    Gaussian,
    /// Discretized logistic over pixels at `levels` levels in [−1, 1].
    Logistic,
    /// Diagonal Gaussian with a predicted mean and one learned log-σ per feature, shared by
    /// every z. The decoder cannot give prior regions that no data encodes to a wide σ, so
    /// samples stay sharp on low-dimensional data.
    #[serde(rename = "shared_gaussian")]
    SharedGaussian,
}

impl DecoderKind {
    fn params(self) -> usize {
        match self {
            DecoderKind::Bernoulli | DecoderKind::SharedGaussian => 1,
            DecoderKind::Gaussian | DecoderKind::Logistic => 2,
        }
    }

    fn code(self) -> usize {
        self as usize
    }

    fn from_code(c: usize) -> Self {
        [
            Self::Bernoulli,
            Self::Gaussian,
            Self::Logistic,
            Self::SharedGaussian,
        ][c]
    }

    /// A continuous density (scored on dequantized pixels).
    fn continuous(self) -> bool {
        matches!(self, DecoderKind::Gaussian | DecoderKind::SharedGaussian)
    }
}

/// Encoder and decoder networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaeNet {
    /// Two hidden layers each way.
    Mlp,
    /// Two stride-2 convolutions down, two transposed convolutions up (images only).
    Conv,
}

settings! {
    /// Configuration of a [`Vae`].
    pub struct VaeConfig {
        /// Latent dimensions.
        pub latent: usize = 8, with_latent;
        /// Hidden width (MLP) or base channels (conv).
        pub hidden: usize = 256, with_hidden;
        /// Network kind.
        pub net: VaeNet = VaeNet::Mlp, with_net;
        /// Decoder likelihood.
        pub decoder: DecoderKind = DecoderKind::Gaussian, with_decoder;
        /// Weight of the KL term in the training loss (1: the ELBO; evaluation always uses 1).
        pub beta: f64 = 1.0, with_beta;
        /// Pixel levels of image data (for the discretized logistic and dequantization).
        pub levels: usize = 256, with_levels;
        /// Steps over which the KL weight ramps linearly from 0 to `beta` (KL annealing, Bowman
        /// et al., 2016); 0: no ramp.
        pub kl_warmup: usize = 0, with_kl_warmup;
        /// Importance samples of the training objective: 1 trains on the (β-weighted) ELBO, k > 1
        /// on the IWAE bound (Burda et al., 2016), which fits the density better.
        pub train_k: usize = 1, with_train_k;
    }
}

impl VaeConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
}

impl VaeConfig {
    /// The KL weight at training step `step`.
    pub fn beta_at(&self, step: usize) -> f64 {
        if step >= self.kl_warmup {
            self.beta
        } else {
            self.beta * step as f64 / self.kl_warmup as f64
        }
    }
}

#[derive(Module, Debug)]
enum Encoder {
    Mlp(Vec<Linear>),
    Conv(Down),
}

#[derive(Module, Debug)]
struct Down {
    convs: Vec<Conv2d>,
    head: Linear,
}

#[derive(Module, Debug)]
struct Up {
    head: Linear,
    ups: Vec<ConvTranspose2d>,
}

#[derive(Module, Debug)]
enum DecoderNet {
    Mlp(Vec<Linear>),
    Conv(Up),
}

/// A VAE over flattened data `[batch, features]`.
#[derive(Module, Debug)]
pub struct Vae {
    encoder: Encoder,
    decoder: DecoderNet,
    log_sigma: Option<Param<Tensor<1>>>,
    data: [usize; 3],
    image: bool,
    latent: usize,
    hidden: usize,
    kind: usize,
    levels: usize,
}

impl VaeConfig {
    /// Checks that the config fits data of `shape`.
    pub fn check(&self, shape: DataShape) -> Result<(), String> {
        if self.latent == 0 || self.hidden == 0 {
            return Err("latent and hidden must be positive".into());
        }
        match (self.net, shape) {
            (VaeNet::Conv, DataShape::Vector { .. }) => {
                Err("the conv VAE needs image data; use net = \"mlp\"".into())
            }
            (VaeNet::Conv, DataShape::Image { height, width, .. })
                if height % 4 != 0 || width % 4 != 0 =>
            {
                Err(format!(
                    "the conv VAE needs sides divisible by 4, got {height}×{width}"
                ))
            }
            (_, DataShape::Vector { .. }) if self.decoder == DecoderKind::Logistic => {
                Err("the discretized logistic decoder is for pixels; use gaussian".into())
            }
            _ => Ok(()),
        }
    }

    /// Builds the VAE for data of `shape`. Panics where [`VaeConfig::check`] fails.
    pub fn init(&self, shape: DataShape, device: &Device) -> Vae {
        self.check(shape).expect("VAE config fits the data");
        let (image, data) = shape.layout();
        let f: usize = data.iter().product();
        let (h, l, p) = (self.hidden, self.latent, self.decoder.params());
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        let (encoder, decoder) = match self.net {
            VaeNet::Mlp => (
                Encoder::Mlp(vec![lin(f, h), lin(h, h), lin(h, 2 * l)]),
                DecoderNet::Mlp(vec![lin(l, h), lin(h, h), lin(h, f * p)]),
            ),
            VaeNet::Conv => {
                let [c, hh, ww] = data;
                let small = (hh / 4) * (ww / 4);
                let conv = |i, o| {
                    Conv2dConfig::new([i, o], [3, 3])
                        .with_stride([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(device)
                };
                let up = |i, o| {
                    ConvTranspose2dConfig::new([i, o], [4, 4])
                        .with_stride([2, 2])
                        .with_padding([1, 1])
                        .init(device)
                };
                (
                    Encoder::Conv(Down {
                        convs: vec![conv(c, h / 2), conv(h / 2, h)],
                        head: lin(h * small, 2 * l),
                    }),
                    DecoderNet::Conv(Up {
                        head: lin(l, h * small),
                        ups: vec![up(h, h / 2), up(h / 2, c * p)],
                    }),
                )
            }
        };
        Vae {
            encoder,
            decoder,
            log_sigma: (self.decoder == DecoderKind::SharedGaussian)
                .then(|| Param::from_tensor(Tensor::zeros([f], device))),
            data,
            image,
            latent: l,
            hidden: h,
            kind: self.decoder.code(),
            levels: self.levels,
        }
    }
}

fn mlp(layers: &[Linear], x: Tensor<2>) -> Tensor<2> {
    let mut y = x;
    for (i, l) in layers.iter().enumerate() {
        y = crate::ops::per_sample::burn_affine(y, l);
        if i + 1 < layers.len() {
            y = silu(y);
        }
    }
    y
}

const HALF_LOG_2PI: f64 = 0.918_938_533_204_672_7;

impl Vae {
    /// The decoder's likelihood.
    pub fn decoder_kind(&self) -> DecoderKind {
        DecoderKind::from_code(self.kind)
    }

    fn shared_log_sigma(&self) -> Tensor<1> {
        self.log_sigma
            .as_ref()
            .expect("a shared-σ decoder has its log-σ")
            .val()
            .clamp(-7.0, 3.0)
    }

    /// Latent dimensions.
    pub fn latent(&self) -> usize {
        self.latent
    }

    /// Levels of the discretized logistic decoder (pixel values k / (levels − 1) · 2 − 1).
    pub fn levels(&self) -> usize {
        self.levels
    }

    /// Features per data point.
    pub fn features(&self) -> usize {
        self.data.iter().product()
    }

    /// q(z | x) as (mean, log-variance).
    ///
    /// # Shapes
    /// - `x`: `[b, features]`; returns (`[b, latent]`, `[b, latent]`).
    pub fn encode(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let [b, _] = x.dims();
        let out = match &self.encoder {
            Encoder::Mlp(layers) => mlp(layers, x),
            Encoder::Conv(Down { convs, head }) => {
                let [c, h, w] = self.data;
                let mut y = x.reshape([b, c, h, w]);
                for conv in convs {
                    y = silu(crate::ops::per_sample::burn_conv(y, conv));
                }
                let n = y.dims()[1..].iter().product::<usize>();
                crate::ops::per_sample::burn_affine(y.reshape([b, n]), head)
            }
        };
        let l = self.latent;
        let mean = out.clone().slice([0..b, 0..l]);
        let logvar = out.slice([0..b, l..2 * l]).clamp(-12.0, 8.0);
        (mean, logvar)
    }

    /// The decoder's parameters, `[b, params, features]` (params: 1 logit, or mean and log-scale).
    pub fn decode(&self, z: Tensor<2>) -> Tensor<3> {
        let [b, _] = z.dims();
        let p = self.decoder_kind().params();
        let f = self.features();
        match &self.decoder {
            DecoderNet::Mlp(layers) => mlp(layers, z).reshape([b, f, p]).swap_dims(1, 2),
            DecoderNet::Conv(Up { head, ups }) => {
                let [c, h, w] = self.data;
                let y = silu(crate::ops::per_sample::burn_affine(z, head)).reshape([
                    b,
                    self.hidden,
                    h / 4,
                    w / 4,
                ]);
                let y = silu(crate::ops::per_sample::burn_conv_transpose(y, &ups[0]));
                // [b, c·p, h, w] → [b, c, p, h, w] → [b, p, c·h·w]
                crate::ops::per_sample::burn_conv_transpose(y, &ups[1])
                    .reshape([b, c, p, h, w])
                    .swap_dims(1, 2)
                    .reshape([b, p, f])
            }
        }
    }

    /// log p(x | z) per row, `[b]`, from decoder parameters `[b, params, features]`.
    pub fn log_likelihood(&self, x: Tensor<2>, params: Tensor<3>) -> Tensor<1> {
        let [b, _, f] = params.dims();
        let first = params.clone().slice([0..b, 0..1, 0..f]).reshape([b, f]);
        let per = match self.decoder_kind() {
            DecoderKind::Bernoulli => {
                let t = x.greater_elem(0.0).float();
                t * first.clone() - softplus(first, 1.0)
            }
            DecoderKind::Gaussian => {
                let log_s = params
                    .slice([0..b, 1..2, 0..f])
                    .reshape([b, f])
                    .clamp(-7.0, 3.0);
                let z = (x - first) * log_s.clone().neg().exp();
                z.powi_scalar(2).mul_scalar(-0.5) - log_s - HALF_LOG_2PI
            }
            DecoderKind::Logistic => {
                let log_s = params
                    .slice([0..b, 1..2, 0..f])
                    .reshape([b, f])
                    .clamp(-7.0, 3.0);
                discretized_logistic(x, first, log_s, self.levels)
            }
            DecoderKind::SharedGaussian => {
                let log_s = self.shared_log_sigma().reshape([1, f]).expand([b, f]);
                let z = (x - first) * log_s.clone().neg().exp();
                z.powi_scalar(2).mul_scalar(-0.5) - log_s - HALF_LOG_2PI
            }
        };
        per.sum_dim(1).reshape([b])
    }

    /// One reparameterized draw: returns (log p(x|z), log p(z), log q(z|x), KL(q‖p)), each `[b]`.
    fn terms(&self, x: Tensor<2>, eps: Tensor<2>) -> [Tensor<1>; 4] {
        let [b, _] = x.dims();
        let (mean, logvar) = self.encode(x.clone());
        let std = logvar.clone().mul_scalar(0.5).exp();
        let z = mean.clone() + std * eps.clone();
        let rec = self.log_likelihood(x, self.decode(z.clone()));
        let log_pz = standard_normal_log_prob(z);
        let log_qz =
            standard_normal_log_prob(eps) - logvar.clone().mul_scalar(0.5).sum_dim(1).reshape([b]);
        let kl = (mean.powi_scalar(2) + logvar.clone().exp() - logvar - 1.0)
            .mul_scalar(0.5)
            .sum_dim(1)
            .reshape([b]);
        [rec, log_pz, log_qz, kl]
    }

    /// The training loss: mean over rows of −(log p(x|z) − β·KL) with one draw, or with
    /// `k > 1` of −IWAE(k) (β is then 1), with the noise drawn from `seed`.
    pub fn loss(&self, x: Tensor<2>, beta: f64, k: usize, seed: u64) -> Tensor<1> {
        if k > 1 {
            return self.iwae_bound(x, k, seed).mean().neg();
        }
        let [b, _] = x.dims();
        let eps = host_normals(b, self.latent, seed, &x.device());
        self.loss_with(x, beta, eps)
    }

    /// The one-draw (k = 1) loss of [`Vae::loss`] with the reparameterization noise given
    /// (a data-parallel shard's rows of the whole batch's draw, say).
    ///
    /// # Shapes
    /// - `x`: `[batch, features]`; `eps`: `[batch, latent]`; returns `[1]`.
    pub fn loss_with(&self, x: Tensor<2>, beta: f64, eps: Tensor<2>) -> Tensor<1> {
        let [rec, _, _, kl] = self.terms(x, eps);
        (kl.mul_scalar(beta) - rec).mean()
    }
}

/// log P(x) per element under a logistic discretized to `levels` bins on [−1, 1] (PixelCNN++):
/// the mass of the bin around x, with the edge bins taking the tails.
pub fn discretized_logistic(
    x: Tensor<2>,
    mean: Tensor<2>,
    log_s: Tensor<2>,
    levels: usize,
) -> Tensor<2> {
    let half = 1.0 / (levels as f64 - 1.0);
    let centered = x.clone() - mean;
    let inv_s = log_s.clone().neg().exp();
    let plus = (centered.clone().add_scalar(half)) * inv_s.clone();
    let minus = (centered.clone().sub_scalar(half)) * inv_s.clone();
    let log_cdf_plus = log_sigmoid(plus.clone());
    let log_one_minus_cdf_minus = log_sigmoid(minus.clone().neg());
    let delta = sigmoid(plus) - sigmoid(minus);
    // Far in a tail the difference of two sigmoids underflows; use the density at the centre.
    let mid = centered * inv_s;
    let log_pdf_mid = mid.clone() - log_s - softplus(mid, 1.0).mul_scalar(2.0);
    let approx = log_pdf_mid.add_scalar((2.0 * half).ln());
    let inner = delta
        .clone()
        .clamp_min(1e-12)
        .log()
        .mask_where(delta.lower_elem(1e-5), approx);
    let lo = x.clone().lower_elem(-1.0 + half);
    let hi = x.greater_elem(1.0 - half);
    inner
        .mask_where(lo, log_cdf_plus)
        .mask_where(hi, log_one_minus_cdf_minus)
}

impl BoundedDensity for Vae {
    fn elbo(&self, x: Tensor<2>, seed: u64) -> Tensor<1> {
        let [b, _] = x.dims();
        let eps = host_normals(b, self.latent, seed, &x.device());
        let [rec, _, _, kl] = self.terms(x, eps);
        rec - kl
    }

    fn iwae_bound(&self, x: Tensor<2>, k: usize, seed: u64) -> Tensor<1> {
        let b = x.dims()[0];
        let eps = host_normals(b * k, self.latent, seed, &x.device());
        self.iwae_bound_with(x, k, eps)
    }
}

impl Vae {
    /// The IWAE(k) bound per row with the draws given: row `i·k + j` of `eps` is draw `j` of
    /// row `i` (a data-parallel shard's rows of the whole batch's draws, say).
    ///
    /// # Shapes
    /// - `x`: `[batch, features]`; `eps`: `[batch · k, latent]`; returns `[batch]`.
    pub fn iwae_bound_with(&self, x: Tensor<2>, k: usize, eps: Tensor<2>) -> Tensor<1> {
        let [b, f] = x.dims();
        // Rows repeated k times: [b·k, f], row i·k + j is draw j of row i.
        let xr = x.reshape([b, 1, f]).expand([b, k, f]).reshape([b * k, f]);
        let [rec, log_pz, log_qz, _] = self.terms(xr, eps);
        let log_w = (rec + log_pz - log_qz).reshape([b, k]);
        let max = log_w.clone().max_dim(1);
        let lse = (log_w - max.clone()).exp().sum_dim(1).log() + max;
        lse.reshape([b]).sub_scalar((k as f64).ln())
    }
}

impl Vae {
    /// The per-row NLL bound in nats on this VAE's data: −ELBO, dequantized where a Gaussian
    /// decoder scores discrete pixels. `k > 1` uses the IWAE bound instead.
    pub fn nll_bound(&self, x: Tensor<2>, k: usize, seed: u64) -> Tensor<1> {
        let [b, d] = x.dims();
        let dequantize = self.image && self.decoder_kind().continuous();
        let (x, shift) = if dequantize {
            let delta = 2.0 / (self.levels as f64 - 1.0);
            let u = crate::flow::host_uniforms(b * d, seed ^ 0xde0);
            let u = Tensor::<2>::from_data(burn::tensor::TensorData::new(u, [b, d]), &x.device())
                .sub_scalar(0.5)
                .mul_scalar(delta);
            (x + u, -(d as f64) * delta.ln())
        } else {
            (x, 0.0)
        };
        let bound = if k > 1 {
            self.iwae_bound(x, k, seed)
        } else {
            self.elbo(x, seed)
        };
        bound.neg().add_scalar(shift)
    }

    /// What [`Vae::nll_bound`] with `k` samples is.
    pub fn bound_kind(&self, k: usize) -> Bound {
        match (
            self.image && self.decoder_kind() == DecoderKind::Gaussian,
            k > 1,
        ) {
            (_, true) => Bound::Iwae { k },
            (true, false) => Bound::DequantizedElbo,
            (false, false) => Bound::Elbo,
        }
    }
}

impl Generative for Vae {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            family: "vae",
            sample: true,
            conditional: false,
            likelihood: Likelihood::Bound {
                bound: self.bound_kind(1),
            },
        }
    }

    /// Decodes prior draws. Vectors get the decoder's noise (a true sample of p(x)); images
    /// show the decoder's mean (Bernoulli: 2p − 1), as is usual for pictures.
    fn sample(&self, n: usize, _labels: Option<&[u32]>, seed: u64, device: &Device) -> Tensor<2> {
        let z = host_normals(n, self.latent, seed, device);
        let p = self.decode(z);
        let f = self.features();
        let first = p.clone().slice([0..n, 0..1, 0..f]).reshape([n, f]);
        match self.decoder_kind() {
            DecoderKind::Bernoulli => sigmoid(first).mul_scalar(2.0).sub_scalar(1.0),
            DecoderKind::Logistic => first.clamp(-1.0, 1.0),
            DecoderKind::Gaussian | DecoderKind::SharedGaussian if self.image => first,
            DecoderKind::SharedGaussian => {
                let s = self.shared_log_sigma().exp().reshape([1, f]).expand([n, f]);
                first + s * host_normals(n, f, seed ^ 0x5a5a, device)
            }
            DecoderKind::Gaussian => {
                let log_s = p.slice([0..n, 1..2, 0..f]).reshape([n, f]).clamp(-7.0, 3.0);
                first + log_s.exp() * host_normals(n, f, seed ^ 0x5a5a, device)
            }
        }
    }

    fn nll(&self, x: Tensor<2>, seed: u64) -> Option<Tensor<1>> {
        Some(self.nll_bound(x, 1, seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn host(t: Tensor<1>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// The discretized logistic is a distribution over the levels: the masses sum to 1.
    #[test]
    fn discretized_logistic_sums_to_one() {
        let device = Device::flex();
        let levels = 17;
        let xs: Vec<f32> = (0..levels)
            .map(|v| 2.0 * v as f32 / (levels - 1) as f32 - 1.0)
            .collect();
        for (mean, log_s) in [(0.0f32, -1.0f32), (0.7, -3.0), (-1.2, 0.5), (0.0, -6.0)] {
            let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [1, levels]), &device);
            let m = Tensor::<2>::full([1, levels], mean, &device);
            let s = Tensor::<2>::full([1, levels], log_s, &device);
            let lp = discretized_logistic(x, m, s, levels).exp().sum();
            let total = host(lp)[0];
            assert!(
                (total - 1.0).abs() < 2e-3,
                "mean {mean}, log s {log_s}: Σ P = {total}"
            );
        }
    }

    /// IWAE(k) ≥ ELBO on average, the log-likelihood is bounded above by both, and k = 1 is
    /// the ELBO's estimator.
    #[test]
    fn iwae_tightens_the_elbo() {
        let device = Device::flex();
        device.seed(7);
        for (net, decoder, shape) in [
            (
                VaeNet::Mlp,
                DecoderKind::Gaussian,
                DataShape::Vector { dim: 3 },
            ),
            (
                VaeNet::Conv,
                DecoderKind::Logistic,
                DataShape::Image {
                    channels: 1,
                    height: 8,
                    width: 8,
                },
            ),
            (
                VaeNet::Mlp,
                DecoderKind::Bernoulli,
                DataShape::Vector { dim: 5 },
            ),
        ] {
            let vae = VaeConfig::new()
                .with_latent(2)
                .with_hidden(16)
                .with_net(net)
                .with_decoder(decoder)
                .with_levels(17)
                .init(shape, &device);
            let x = host_normals(32, shape.numel(), 3, &device).clamp(-1.0, 1.0);
            let elbo = host(vae.elbo(x.clone(), 5).mean())[0];
            let iwae = host(vae.iwae_bound(x.clone(), 64, 5).mean())[0];
            assert!(elbo.is_finite() && iwae.is_finite());
            assert!(iwae > elbo, "{decoder:?}: IWAE {iwae} ≤ ELBO {elbo}");
            let one = host(vae.iwae_bound(x.clone(), 1, 5).mean())[0];
            assert!(
                (one - elbo).abs() < 0.5 * elbo.abs().max(1.0),
                "k = 1: {one} vs {elbo}"
            );
            assert_eq!(vae.sample(4, None, 1, &device).dims(), [4, shape.numel()]);
        }
    }
}
