//! Generative adversarial networks (Goodfellow et al., 2014): a generator G(z) and a
//! discriminator D(x) trained in alternation. A GAN samples but has no likelihood, and this
//! module offers none.
//!
//! Losses: the non-saturating loss, or the Wasserstein loss (Arjovsky et al., 2017). Penalties:
//! R1 on real data (Mescheder et al., 2018) or the WGAN-GP penalty at interpolates (Gulrajani et
//! al., 2017). burn 0.22 has no double backward, so both penalties estimate ‖∇ₓD‖² by central
//! finite differences along random directions v ~ N(0, I): E[(vᵀ∇D)²] = ‖∇D‖², and
//! vᵀ∇D ≈ (D(x + εv) − D(x − εv)) / 2ε; the estimate is differentiable in D's weights with first
//! derivatives only. Spectral normalization (Miyato et al., 2018) divides each discriminator
//! weight by its largest singular value, estimated by power iteration.

use crate::settings::settings;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{leaky_relu, softplus};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::DataShape;
use crate::generative::{Capabilities, Generative, Likelihood, host_normals};

/// The adversarial loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GanLoss {
    /// D: −log σ(D(x)) − log(1 − σ(D(G(z)))); G: −log σ(D(G(z))).
    NonSaturating,
    /// D: D(G(z)) − D(x); G: −D(G(z)). Use with a gradient penalty.
    Wasserstein,
}

/// A gradient penalty on the discriminator.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Penalty {
    /// None.
    None,
    /// (γ/2)·E‖∇D(x)‖² on real data.
    R1 {
        /// γ.
        gamma: f64,
    },
    /// λ·E(‖∇D(x̂)‖ − 1)² at random interpolates of real and generated data.
    GradientPenalty {
        /// λ.
        lambda: f64,
    },
}

/// Generator and discriminator networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GanNet {
    /// MLPs with LeakyReLU.
    Mlp,
    /// DCGAN-style: transposed convolutions up, stride-2 convolutions down (images only).
    Dcgan,
}

settings! {
    /// Configuration of a [`Gan`].
    pub struct GanConfig {
        /// Latent dimensions.
        pub latent: usize = 16, with_latent;
        /// Hidden width (MLP) or base channels (DCGAN).
        pub hidden: usize = 128, with_hidden;
        /// Network kind.
        pub net: GanNet = GanNet::Mlp, with_net;
        /// The adversarial loss.
        pub loss: GanLoss = GanLoss::NonSaturating, with_loss;
        /// Gradient penalty.
        pub penalty: Penalty = Penalty::R1 { gamma: 0.1 }, with_penalty;
        /// Spectral normalization of the discriminator's weights.
        pub spectral_norm: bool = false, with_spectral_norm;
        /// Discriminator updates per generator update.
        pub d_steps: usize = 1, with_d_steps;
    }
}

impl GanConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A linear layer whose weight may be spectrally normalized.
#[derive(Module, Debug)]
pub struct DLinear {
    inner: Linear,
}

/// A convolution whose weight may be spectrally normalized.
#[derive(Module, Debug)]
pub struct DConv {
    inner: Conv2d,
}

/// σ_max(w) for `w` as `[rows, cols]`: power iteration on the detached weight, then uᵀ W v with
/// the live weight (u and v are constants, as in Miyato et al.).
fn spectral_norm(w: Tensor<2>) -> Tensor<1> {
    let [r, c] = w.dims();
    let wd = w.clone().detach();
    let mut u = Tensor::<2>::ones([1, r], &w.device()).div_scalar((r as f64).sqrt());
    let mut v = Tensor::<2>::zeros([1, c], &w.device());
    for _ in 0..4 {
        v = u.clone().matmul(wd.clone());
        v = v.clone()
            / v.clone()
                .powi_scalar(2)
                .sum()
                .sqrt()
                .add_scalar(1e-12)
                .reshape([1, 1]);
        u = v.clone().matmul(wd.clone().transpose());
        u = u.clone()
            / u.clone()
                .powi_scalar(2)
                .sum()
                .sqrt()
                .add_scalar(1e-12)
                .reshape([1, 1]);
    }
    (u.matmul(w) * v).sum()
}

impl DLinear {
    fn forward(&self, x: Tensor<2>, sn: bool) -> Tensor<2> {
        let w = self.inner.weight.val();
        let w = if sn {
            let s = spectral_norm(w.clone());
            w / s.reshape([1, 1])
        } else {
            w
        };
        let y = x.clone().matmul(w);
        let y = match &self.inner.bias {
            Some(b) => y + b.val().unsqueeze(),
            None => y,
        };
        // Under DP-SGD: tapped for per-sample gradients (spectral normalization is not
        // affine in the weight, so a normalized layer stays untapped and DP refuses it).
        if sn {
            y
        } else {
            crate::ops::per_sample::tap_affine(&x, y, &self.inner)
        }
    }
}

impl DConv {
    fn forward(&self, x: Tensor<4>, sn: bool) -> Tensor<4> {
        let w = self.inner.weight.val();
        let w = if sn {
            let [o, i, kh, kw] = w.dims();
            let s = spectral_norm(w.clone().reshape([o, i * kh * kw]));
            w / s.reshape([1, 1, 1, 1])
        } else {
            w
        };
        let y = conv2d(
            x.clone(),
            w,
            self.inner.bias.as_ref().map(|b| b.val()),
            ConvOptions::new([2, 2], [1, 1], [1, 1], 1),
        );
        // `inner` was built with this stride and padding, which its tap reads.
        if sn {
            y
        } else {
            crate::ops::per_sample::tap_conv(&x, y, &self.inner)
        }
    }
}

/// The generator.
#[derive(Module, Debug)]
pub enum Generator {
    /// z → Linear → LeakyReLU → … → Linear (tanh for images).
    Mlp(Vec<Linear>),
    /// z → Linear → reshape → ConvTranspose ×2 → tanh.
    Dcgan(UpStack),
}

/// A linear head to the smallest feature map, then upsampling layers.
#[derive(Module, Debug)]
pub struct UpStack {
    head: Linear,
    ups: Vec<ConvTranspose2d>,
}

/// Downsampling layers, then a linear head.
#[derive(Module, Debug)]
pub struct DownStack {
    convs: Vec<DConv>,
    head: DLinear,
}

/// The discriminator (a critic for the Wasserstein loss): one logit per row.
#[derive(Module, Debug)]
pub enum Discriminator {
    /// MLP.
    Mlp(Vec<DLinear>),
    /// Two stride-2 convolutions and a linear head.
    Dcgan(DownStack),
}

/// A GAN over flattened data `[batch, features]`.
#[derive(Module, Debug)]
pub struct Gan {
    /// G.
    pub generator: Generator,
    /// D.
    pub discriminator: Discriminator,
    data: [usize; 3],
    image: bool,
    latent: usize,
    hidden: usize,
    spectral_norm: bool,
}

impl GanConfig {
    /// Checks that the config fits data of `shape`.
    pub fn check(&self, shape: DataShape) -> Result<(), String> {
        if self.latent == 0 || self.hidden < 2 || self.d_steps == 0 {
            return Err("latent, hidden and d_steps must be positive".into());
        }
        match (self.net, shape) {
            (GanNet::Dcgan, DataShape::Vector { .. }) => {
                Err("the DCGAN needs image data; use net = \"mlp\"".into())
            }
            (GanNet::Dcgan, DataShape::Image { height, width, .. })
                if height % 4 != 0 || width % 4 != 0 =>
            {
                Err(format!(
                    "the DCGAN needs sides divisible by 4, got {height}×{width}"
                ))
            }
            _ => Ok(()),
        }
    }

    /// Builds G and D for data of `shape`. Panics where [`GanConfig::check`] fails.
    pub fn init(&self, shape: DataShape, device: &Device) -> Gan {
        self.check(shape).expect("GAN config fits the data");
        let (image, data) = shape.layout();
        let f: usize = data.iter().product();
        let (h, l) = (self.hidden, self.latent);
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        let dlin = |i, o| DLinear { inner: lin(i, o) };
        let (generator, discriminator) = match self.net {
            GanNet::Mlp => (
                Generator::Mlp(vec![lin(l, h), lin(h, h), lin(h, h), lin(h, f)]),
                Discriminator::Mlp(vec![dlin(f, h), dlin(h, h), dlin(h, h), dlin(h, 1)]),
            ),
            GanNet::Dcgan => {
                let [c, hh, ww] = data;
                let small = (hh / 4) * (ww / 4);
                let up = |i, o| {
                    ConvTranspose2dConfig::new([i, o], [4, 4])
                        .with_stride([2, 2])
                        .with_padding([1, 1])
                        .init(device)
                };
                let down = |i, o| DConv {
                    inner: Conv2dConfig::new([i, o], [3, 3])
                        .with_stride([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(device),
                };
                (
                    Generator::Dcgan(UpStack {
                        head: lin(l, 2 * h * small),
                        ups: vec![up(2 * h, h), up(h, c)],
                    }),
                    Discriminator::Dcgan(DownStack {
                        convs: vec![down(c, h), down(h, 2 * h)],
                        head: dlin(2 * h * small, 1),
                    }),
                )
            }
        };
        Gan {
            generator,
            discriminator,
            data,
            image,
            latent: l,
            hidden: h,
            spectral_norm: self.spectral_norm,
        }
    }
}

impl Gan {
    /// Latent dimensions.
    pub fn latent(&self) -> usize {
        self.latent
    }

    /// Features per data point.
    pub fn features(&self) -> usize {
        self.data.iter().product()
    }

    /// G(z).
    ///
    /// # Shapes
    /// - `z`: `[b, latent]`; returns `[b, features]`.
    pub fn generate(&self, z: Tensor<2>) -> Tensor<2> {
        let [b, _] = z.dims();
        match &self.generator {
            Generator::Mlp(layers) => {
                let mut y = z;
                for (i, l) in layers.iter().enumerate() {
                    y = l.forward(y);
                    if i + 1 < layers.len() {
                        y = leaky_relu(y, 0.2);
                    }
                }
                if self.image { y.tanh() } else { y }
            }
            Generator::Dcgan(UpStack { head, ups }) => {
                let [_, h, w] = self.data;
                let y =
                    leaky_relu(head.forward(z), 0.2).reshape([b, 2 * self.hidden, h / 4, w / 4]);
                let y = leaky_relu(ups[0].forward(y), 0.2);
                let y = ups[1].forward(y).tanh();
                y.reshape([b, self.features()])
            }
        }
    }

    /// D(x), one logit (or critic value) per row.
    ///
    /// # Shapes
    /// - `x`: `[b, features]`; returns `[b]`.
    pub fn discriminate(&self, x: Tensor<2>) -> Tensor<1> {
        let [b, _] = x.dims();
        let sn = self.spectral_norm;
        let out = match &self.discriminator {
            Discriminator::Mlp(layers) => {
                let mut y = x;
                for (i, l) in layers.iter().enumerate() {
                    y = l.forward(y, sn);
                    if i + 1 < layers.len() {
                        y = leaky_relu(y, 0.2);
                    }
                }
                y
            }
            Discriminator::Dcgan(DownStack { convs, head }) => {
                let [c, h, w] = self.data;
                let mut y = x.reshape([b, c, h, w]);
                for conv in convs {
                    y = leaky_relu(conv.forward(y, sn), 0.2);
                }
                let n = y.dims()[1..].iter().product::<usize>();
                head.forward(y.reshape([b, n]), sn)
            }
        };
        out.reshape([b])
    }

    /// ‖∇ₓD(x)‖² per row, estimated from `dirs` random directions drawn from `seed` by central
    /// differences of step `eps` (see the module docs), `[b]`.
    pub fn grad_norm_sq(&self, x: Tensor<2>, dirs: usize, eps: f64, seed: u64) -> Tensor<1> {
        let b = x.dims()[0];
        self.grad_norm_sq_rows(x, dirs, eps, seed, 0, b)
    }

    /// [`Gan::grad_norm_sq`] for rows `start..start + b` of a batch of `total`: the directions
    /// are the whole batch's, sliced, so that shards of a batch draw what the batch would.
    pub fn grad_norm_sq_rows(
        &self,
        x: Tensor<2>,
        dirs: usize,
        eps: f64,
        seed: u64,
        start: usize,
        total: usize,
    ) -> Tensor<1> {
        let [b, f] = x.dims();
        let xr = x
            .reshape([b, 1, f])
            .expand([b, dirs, f])
            .reshape([b * dirs, f]);
        let v = host_normals(total * dirs, f, seed, &xr.device())
            .slice([start * dirs..(start + b) * dirs]);
        let both = Tensor::cat(
            vec![
                xr.clone() + v.clone().mul_scalar(eps),
                xr - v.mul_scalar(eps),
            ],
            0,
        );
        let d = self.discriminate(both);
        let n = b * dirs;
        let dd = (d.clone().slice([0..n]) - d.slice([n..2 * n])).div_scalar(2.0 * eps);
        dd.powi_scalar(2)
            .reshape([b, dirs])
            .mean_dim(1)
            .reshape([b])
    }

    /// The discriminator's loss on a real batch and a generated one (detached), with the
    /// penalty of `config`; returns (loss, mean D(real), mean D(fake)).
    pub fn d_loss(
        &self,
        config: &GanConfig,
        real: Tensor<2>,
        fake: Tensor<2>,
        seed: u64,
    ) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
        let b = real.dims()[0];
        self.d_loss_rows(config, real, fake, seed, 0, b)
    }

    /// [`Gan::d_loss`] on rows `start..start + b` of a batch of `total` (a data-parallel
    /// shard): the penalty's random draws are the whole batch's, sliced, so the shards' losses
    /// weighted by their rows add up to the whole batch's.
    pub fn d_loss_rows(
        &self,
        config: &GanConfig,
        real: Tensor<2>,
        fake: Tensor<2>,
        seed: u64,
        start: usize,
        total: usize,
    ) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
        let [b, f] = real.dims();
        let fake = fake.detach();
        let dr = self.discriminate(real.clone());
        let df = self.discriminate(fake.clone());
        let loss = match config.loss {
            GanLoss::NonSaturating => {
                softplus(dr.clone().neg(), 1.0).mean() + softplus(df.clone(), 1.0).mean()
            }
            GanLoss::Wasserstein => df.clone().mean() - dr.clone().mean(),
        };
        const EPS: f64 = 1e-2;
        let loss = match config.penalty {
            Penalty::None => loss,
            Penalty::R1 { gamma } => {
                loss + self
                    .grad_norm_sq_rows(real, 1, EPS, seed, start, total)
                    .mean()
                    .mul_scalar(gamma / 2.0)
            }
            Penalty::GradientPenalty { lambda } => {
                let a = crate::flow::host_uniforms(total, seed ^ 0x6a6a)[start..start + b].to_vec();
                let a =
                    Tensor::<1>::from_data(burn::tensor::TensorData::new(a, [b]), &real.device())
                        .reshape([b, 1])
                        .expand([b, f]);
                let mix = real.clone() * a.clone() + fake * a.neg().add_scalar(1.0);
                let norm = self
                    .grad_norm_sq_rows(mix, 4, EPS, seed, start, total)
                    .add_scalar(1e-12)
                    .sqrt();
                loss + norm
                    .sub_scalar(1.0)
                    .powi_scalar(2)
                    .mean()
                    .mul_scalar(lambda)
            }
        };
        (loss, dr.mean(), df.mean())
    }

    /// The generator's loss for `b` draws from `seed`.
    pub fn g_loss(&self, config: &GanConfig, b: usize, seed: u64, device: &Device) -> Tensor<1> {
        self.g_loss_on(config, host_normals(b, self.latent, seed, device))
    }

    /// The generator's loss for the latent draws `z`.
    ///
    /// # Shapes
    /// - `z`: `[b, latent]`.
    pub fn g_loss_on(&self, config: &GanConfig, z: Tensor<2>) -> Tensor<1> {
        let fake = self.generate(z);
        let df = self.discriminate(fake);
        match config.loss {
            GanLoss::NonSaturating => softplus(df.neg(), 1.0).mean(),
            GanLoss::Wasserstein => df.mean().neg(),
        }
    }
}

impl Generative for Gan {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            family: "gan",
            sample: true,
            conditional: false,
            likelihood: Likelihood::None,
        }
    }

    fn sample(&self, n: usize, _labels: Option<&[u32]>, seed: u64, device: &Device) -> Tensor<2> {
        self.generate(host_normals(n, self.latent, seed, device))
    }

    /// Always `None`: a GAN defines no density.
    fn nll(&self, _x: Tensor<2>, _seed: u64) -> Option<Tensor<1>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(t: Tensor<1>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// The finite-difference estimate of ‖∇D‖² agrees with autodiff's gradient.
    #[test]
    fn penalty_estimate_matches_the_autodiff_gradient() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let gan = GanConfig::new()
            .with_hidden(16)
            .init(DataShape::Vector { dim: 3 }, &device);
        let x = host_normals(4, 3, 2, &device).detach().require_grad();
        let grads = gan.discriminate(x.clone()).sum().backward();
        let g = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        let want: Vec<f32> = g.chunks(3).map(|r| r.iter().map(|v| v * v).sum()).collect();
        // Many directions: the Monte Carlo estimate converges to ‖∇D‖².
        let got = host(gan.grad_norm_sq(x.detach(), 4000, 1e-2, 3));
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (a - b).abs() < 0.1 * b + 1e-4,
                "estimate {a} vs autodiff {b}"
            );
        }
    }

    #[test]
    fn spectral_norm_is_the_largest_singular_value() {
        let device = Device::flex();
        // diag(3, 1) rotated has singular values 3 and 1.
        let w = Tensor::<2>::from_data([[3.0f32, 0.0], [0.0, 1.0], [0.0, 0.0]], &device);
        let s = host(spectral_norm(w))[0];
        assert!((s - 3.0).abs() < 1e-3, "{s}");
    }

    #[test]
    fn a_gan_has_no_likelihood() {
        let device = Device::flex();
        let gan = GanConfig::new().init(DataShape::Vector { dim: 2 }, &device);
        assert_eq!(gan.capabilities().likelihood, Likelihood::None);
        assert!(gan.nll(host_normals(3, 2, 0, &device), 0).is_none());
        assert_eq!(gan.sample(5, None, 1, &device).dims(), [5, 2]);
    }
}
