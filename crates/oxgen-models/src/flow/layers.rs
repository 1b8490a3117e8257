//! The invertible layers of a Glow step (Kingma & Dhariwal, 2018): ActNorm, the invertible
//! 1×1 convolution in its LU form, and the squeeze that trades space for channels.
//!
//! Every layer maps `[batch, channels, height, width]` to the same shape and returns its
//! log-determinant per row; vectors are `[batch, features, 1, 1]`.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::ops::per_sample;
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// Per-channel affine map y = (x + b) · exp(s), initialised from the first batch so that its
/// output has zero mean and unit variance per channel.
#[derive(Module, Debug)]
pub struct ActNorm {
    log_scale: Param<Tensor<1>>,
    bias: Param<Tensor<1>>,
}

impl ActNorm {
    /// The identity map for `channels` channels.
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            log_scale: Param::from_tensor(Tensor::zeros([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
        }
    }

    /// Sets the parameters from the statistics of `x` (data-dependent initialisation).
    pub fn init_from(&mut self, x: &Tensor<4>) {
        let [b, c, h, w] = x.dims();
        let flat = x.clone().detach().swap_dims(0, 1).reshape([c, b * h * w]);
        let mean = flat.clone().mean_dim(1);
        let var = (flat - mean.clone()).powi_scalar(2).mean_dim(1);
        let device = x.device();
        let mean = Tensor::<1>::from_data(mean.reshape([c]).into_data(), &device);
        let var = Tensor::<1>::from_data(var.reshape([c]).into_data(), &device);
        self.bias = Param::from_tensor(mean.neg());
        self.log_scale = Param::from_tensor(var.add_scalar(1e-6).log().mul_scalar(-0.5));
    }

    fn per_channel(t: Tensor<1>) -> Tensor<4> {
        let [c] = t.dims();
        t.reshape([1, c, 1, 1])
    }

    /// # Shapes
    /// - `x`: `[b, c, h, w]`; returns (`[b, c, h, w]`, `[b]`).
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<1>) {
        let [b, _, h, w] = x.dims();
        let s = self.log_scale.val();
        let y = (x + Self::per_channel(self.bias.val())) * Self::per_channel(s.clone().exp());
        let ld = s.clone().sum().mul_scalar((h * w) as f64).expand([b]);
        if !per_sample::live(&y) {
            return (y, ld);
        }
        // Per sample i (DP-SGD): ∇bᵢ = Σ_pixels gᵢ·eˢ, ∇sᵢ = Σ_pixels gᵢ·yᵢ + h·w·∂L/∂ldᵢ.
        let (s_id, b_id) = (self.log_scale.id, self.bias.id);
        let scale = Self::per_channel(s.inner().exp());
        let out = y.clone().inner();
        let hw = (h * w) as f64;
        per_sample::tap_custom(y, ld, vec![s_id, b_id], move |gy, gld| {
            let [b, c, _, _] = gy.dims();
            let db = (gy.clone() * scale.clone())
                .sum_dim(3)
                .sum_dim(2)
                .reshape([b, c]);
            let ds = (gy * out.clone()).sum_dim(3).sum_dim(2).reshape([b, c])
                + gld.reshape([b, 1]).mul_scalar(hw);
            vec![(s_id, ds), (b_id, db)]
        })
    }

    /// The inverse of [`ActNorm::forward`].
    pub fn inverse(&self, y: Tensor<4>) -> Tensor<4> {
        y * Self::per_channel(self.log_scale.val().neg().exp()) - Self::per_channel(self.bias.val())
    }
}

/// The invertible 1×1 convolution W = P · L · (U + diag(exp s)), with P a fixed permutation, L
/// unit lower-triangular and U strictly upper-triangular, so log |det W| = Σ s per pixel.
/// On vectors it is an invertible linear map of the features.
#[derive(Module, Debug)]
pub struct InvConv {
    lower: Param<Tensor<2>>,
    upper: Param<Tensor<2>>,
    log_s: Param<Tensor<1>>,
    perm: Tensor<2>,
    lower_mask: Tensor<2>,
    upper_mask: Tensor<2>,
}

impl InvConv {
    /// Starts as the permutation drawn from `seed` (a fixed function of the layer's place, so
    /// a rebuilt model has the same P).
    pub fn new(channels: usize, seed: u64, device: &Device) -> Self {
        let c = channels;
        let mut order: Vec<usize> = (0..c).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let mut p = vec![0f32; c * c];
        for (row, &col) in order.iter().enumerate() {
            p[row * c + col] = 1.0;
        }
        let mask = |keep: fn(usize, usize) -> bool| {
            let v: Vec<f32> = (0..c * c)
                .map(|i| keep(i / c, i % c) as u8 as f32)
                .collect();
            Tensor::<2>::from_data(TensorData::new(v, [c, c]), device)
        };
        Self {
            lower: Param::from_tensor(Tensor::zeros([c, c], device)),
            upper: Param::from_tensor(Tensor::zeros([c, c], device)),
            log_s: Param::from_tensor(Tensor::zeros([c], device)),
            perm: Tensor::from_data(TensorData::new(p, [c, c]), device),
            lower_mask: mask(|r, k| k < r),
            upper_mask: mask(|r, k| k > r),
        }
    }

    /// The matrix W, `[c, c]`.
    pub fn weight(&self) -> Tensor<2> {
        let [c, _] = self.perm.dims();
        let device = self.perm.device();
        let eye = Tensor::<2>::eye(c, &device);
        let l = self.lower.val() * self.lower_mask.clone() + eye.clone();
        let diag = eye * self.log_s.val().exp().reshape([1, c]);
        let u = self.upper.val() * self.upper_mask.clone() + diag;
        self.perm.clone().matmul(l).matmul(u)
    }

    fn apply(x: Tensor<4>, w: Tensor<2>) -> Tensor<4> {
        let [b, c, h, wd] = x.dims();
        // y[:, i] = Σ_j W[i, j] x[:, j] at every pixel.
        let rows = x.permute([0, 2, 3, 1]).reshape([b * h * wd, c]);
        rows.matmul(w.transpose())
            .reshape([b, h, wd, c])
            .permute([0, 3, 1, 2])
    }

    /// # Shapes
    /// - `x`: `[b, c, h, w]`; returns (`[b, c, h, w]`, `[b]`).
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<1>) {
        let [b, c, h, w] = x.dims();
        let ld = self
            .log_s
            .val()
            .sum()
            .mul_scalar((h * w) as f64)
            .expand([b]);
        let y = Self::apply(x.clone(), self.weight());
        if !per_sample::live(&y) {
            return (y, ld);
        }
        // Per sample i (DP-SGD): Gᵢ = ∂Lᵢ/∂W = Σ_pixels gᵢ xᵢᵀ, then through W = P·L'·U':
        // ∇L = (Pᵀ Gᵢ U'ᵀ) below the diagonal, ∇U = (L'ᵀ Pᵀ Gᵢ) above it, and
        // ∇s = diag(L'ᵀ Pᵀ Gᵢ)·eˢ + h·w·∂L/∂ldᵢ.
        let ids = (self.lower.id, self.upper.id, self.log_s.id);
        let xin = x.inner().reshape([b, c, h * w]).swap_dims(1, 2);
        let device = xin.device();
        let eye = Tensor::<2>::eye(c, &device);
        let (mask_l, mask_u) = (
            self.lower_mask.clone().inner(),
            self.upper_mask.clone().inner(),
        );
        let es = self.log_s.val().inner().exp();
        let l = self.lower.val().inner() * mask_l.clone() + eye.clone();
        let u =
            self.upper.val().inner() * mask_u.clone() + eye.clone() * es.clone().reshape([1, c]);
        let pt = self.perm.clone().inner().transpose();
        let batch = |m: Tensor<2>| m.reshape([1, c, c]).expand([b, c, c]);
        let (pt_b, ut_b) = (batch(pt.clone()), batch(u.transpose()));
        let plt_b = batch(l.transpose().matmul(pt));
        let hw = (h * w) as f64;
        per_sample::tap_custom(y, ld, vec![ids.0, ids.1, ids.2], move |gy, gld| {
            let g = gy.reshape([b, c, h * w]).matmul(xin.clone()); // [b, c, c]
            let dl = pt_b.clone().matmul(g.clone()).matmul(ut_b.clone())
                * mask_l.clone().reshape([1, c, c]);
            let du_full = plt_b.clone().matmul(g);
            let diag = (du_full.clone() * eye.clone().reshape([1, c, c]))
                .sum_dim(2)
                .reshape([b, c]);
            let ds = diag * es.clone().reshape([1, c]) + gld.reshape([b, 1]).mul_scalar(hw);
            let du = du_full * mask_u.clone().reshape([1, c, c]);
            vec![
                (ids.0, dl.reshape([b, c * c])),
                (ids.1, du.reshape([b, c * c])),
                (ids.2, ds),
            ]
        })
    }

    /// The inverse of [`InvConv::forward`] (W⁻¹ is formed on the host in `f64`).
    pub fn inverse(&self, y: Tensor<4>) -> Tensor<4> {
        let w = self.weight();
        let [c, _] = w.dims();
        let host: Vec<f32> = w
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32 weights");
        let inv = invert(&host.iter().map(|&v| v as f64).collect::<Vec<_>>(), c);
        let inv: Vec<f32> = inv.iter().map(|&v| v as f32).collect();
        Self::apply(
            y.clone(),
            Tensor::from_data(TensorData::new(inv, [c, c]), &y.device()),
        )
    }
}

/// Inverse of a row-major `n × n` matrix by Gauss–Jordan elimination with partial pivoting.
pub fn invert(a: &[f64], n: usize) -> Vec<f64> {
    let mut m = a.to_vec();
    let mut inv: Vec<f64> = (0..n * n).map(|i| (i / n == i % n) as u8 as f64).collect();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| m[i * n + col].abs().total_cmp(&m[j * n + col].abs()))
            .expect("n > 0");
        for k in 0..n {
            m.swap(col * n + k, pivot * n + k);
            inv.swap(col * n + k, pivot * n + k);
        }
        let d = m[col * n + col];
        for k in 0..n {
            m[col * n + k] /= d;
            inv[col * n + k] /= d;
        }
        for row in 0..n {
            if row != col {
                let f = m[row * n + col];
                for k in 0..n {
                    m[row * n + k] -= f * m[col * n + k];
                    inv[row * n + k] -= f * inv[col * n + k];
                }
            }
        }
    }
    inv
}

/// `[b, c, h, w]` → `[b, 4c, h/2, w/2]`: each 2×2 block of pixels becomes four channels.
pub fn squeeze(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h / 2, 2, w / 2, 2])
        .permute([0, 1, 3, 5, 2, 4])
        .reshape([b, 4 * c, h / 2, w / 2])
}

/// The inverse of [`squeeze`].
pub fn unsqueeze(x: Tensor<4>) -> Tensor<4> {
    let [b, c4, h, w] = x.dims();
    let c = c4 / 4;
    x.reshape([b, c, 2, 2, h, w])
        .permute([0, 1, 4, 2, 5, 3])
        .reshape([b, c, 2 * h, 2 * w])
}
