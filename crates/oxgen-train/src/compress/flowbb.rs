//! Bits-back coding with a normalizing flow: uniform dequantisation, then local bits-back
//! coding through the flow's Jacobian (Ho, Lohn & Abbeel, "Compression with Flows via Local
//! Bits-Back Coding", NeurIPS 2019), on constriction's ANS stack.
//!
//! A flow has a density p(y) over continuous y; the data are discrete pixels x on a grid of
//! step Δ. Per image the encoder
//!
//! 1. pops the dequantisation noise u (uniform over `2^U_BITS` sub-bins of each pixel's cell)
//!    and forms y = x + u on the fine grid δ_y = Δ / 2^U_BITS (bits back: D · U_BITS);
//! 2. pops z̃ ~ N(f(y), σ² J Jᵀ) on the latent grid δ_z, where J = ∂f/∂y at y (bits back);
//!    the Gaussian is coded one dimension at a time through the Cholesky factor of J Jᵀ;
//! 3. pushes y under N(f⁻¹(z̃), σ² I) on the fine grid; and
//! 4. pushes z̃ under the prior N(0, I).
//!
//! The decoder runs the steps backwards: pops z̃, computes f⁻¹(z̃), pops y, rounds it to x,
//! recomputes f(y) and J at y, and pushes z̃ and u back. Everything the decoder conditions on
//! is a function of symbols it already has, so the round trip is exact whatever the quality of
//! the linearisation; that quality only moves the rate. The net length per image tends to
//! −log p(y) − D log Δ (in bits): the flow's dequantised negative log-likelihood, the bound
//! `oxgen eval` reports.

use burn::tensor::{Device, Tensor, TensorData};
use constriction::stream::model::{
    DefaultUniformModel, LeakilyQuantizedDistribution, LeakyQuantizer,
};
use constriction::stream::stack::DefaultAnsCoder;
use constriction::stream::{Decode, Encode};
use indicatif::ProgressBar;
use oxgen_models::flow::Flow;
use probability::distribution::Gaussian;

use super::bbans::{BitsBack, coder_err, seeded_words};

/// Sub-bins of one pixel cell: the dequantisation noise's resolution.
pub const U_BITS: u32 = 12;
/// The latent grid: δ_z = 2^−Z_BITS.
pub const Z_BITS: u32 = 18;
/// The latent grid spans ±Z_RANGE (the leaky quantizer gives the rest to its end bins).
pub const Z_RANGE: i32 = 16;
/// σ in fine-grid steps: small enough for the linearisation, wide enough to discretise well.
pub const SIGMA_STEPS: f64 = 8.0;
/// A posterior conditional's support, in its standard deviations each side of its mean.
pub const POSTERIOR_SPAN: f64 = 16.0;
/// Words the stack starts from: enough for the first image's pops.
pub const INITIAL_WORDS: usize = 48;

/// 32-bit probabilities: the latent grid has 2²³ bins, each of which needs a non-zero one.
type Quantizer = LeakyQuantizer<f64, i32, u32, 32>;
/// A Gaussian on one of the grids.
type Model = LeakilyQuantizedDistribution<f64, i32, u32, Gaussian, 32>;

/// The fixed words the stack starts from.
pub fn initial_words() -> Vec<u32> {
    seeded_words(0xD1B5_4A32_D192_ED03, INITIAL_WORDS)
}

/// The grids, for pixels of `levels` levels in [−1, 1].
struct Grids {
    /// Fine-grid bins per pixel cell.
    sub: i32,
    /// The fine grid's step δ_y.
    dy: f64,
    /// The latent grid's step δ_z.
    dz: f64,
    /// σ of the Gaussians, in data units.
    sigma: f64,
    y_q: Quantizer,
    z_q: Quantizer,
}

impl Grids {
    fn new(levels: usize) -> Self {
        let sub = 1i32 << U_BITS;
        let bins = levels as i32 * sub;
        let cell = 2.0 / (levels as f64 - 1.0);
        let dy = cell / f64::from(sub);
        let k = Z_RANGE << Z_BITS;
        Self {
            sub,
            dy,
            dz: 1.0 / f64::from(1u32 << Z_BITS),
            sigma: SIGMA_STEPS * dy,
            y_q: Quantizer::new(0..=bins - 1),
            z_q: Quantizer::new(-k..=k),
        }
    }

    /// The value of fine-grid bin `b`: cell centres sit at −1 + level · Δ.
    fn y(&self, b: i32) -> f32 {
        let cell = self.dy * f64::from(self.sub);
        (-1.0 - cell / 2.0 + (f64::from(b) + 0.5) * self.dy) as f32
    }

    fn z(&self, k: i32) -> f32 {
        (f64::from(k) * self.dz) as f32
    }

    /// N(mean, σ²) over the fine grid, for a decoded mean (non-finite means read as 0).
    fn y_model(&self, mean: f32) -> Model {
        let m = if mean.is_finite() {
            f64::from(mean).clamp(-4.0, 4.0)
        } else {
            0.0
        };
        let cell = self.dy * f64::from(self.sub);
        let at = (m + 1.0 + cell / 2.0) / self.dy - 0.5;
        self.y_q.quantize(Gaussian::new(at, SIGMA_STEPS))
    }

    /// The prior N(0, 1) over the whole latent grid.
    fn prior(&self) -> Model {
        self.z_q.quantize(Gaussian::new(0.0, 1.0 / self.dz))
    }

    /// A posterior conditional N(mean, std²) (data units) over the latent bins within
    /// [`POSTERIOR_SPAN`] standard deviations of its mean. The narrow support matters: every
    /// bin of a leaky quantizer's support gets a non-zero probability, and an encoder that
    /// pops a bin from that leak reads back bits that a low-probability push wrote, which
    /// pops low-probability symbols again, image after image.
    fn posterior(&self, mean: f64, std: f64) -> Model {
        let k = f64::from(Z_RANGE << Z_BITS);
        let (m, s) = (mean / self.dz, (std / self.dz).max(1e-3));
        let lo = (m - POSTERIOR_SPAN * s).floor().clamp(-k, k - 1.0);
        let hi = (m + POSTERIOR_SPAN * s).ceil().clamp(lo + 1.0, k);
        Quantizer::new(lo as i32..=hi as i32).quantize(Gaussian::new(m, s))
    }
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32")
}

/// f(y) for one image.
fn forward(flow: &Flow, y: &[f32], device: &Device) -> Vec<f32> {
    let t = Tensor::<2>::from_data(TensorData::new(y.to_vec(), [1, y.len()]), device);
    host(flow.forward(t).0)
}

/// f⁻¹(z) for one image.
fn inverse(flow: &Flow, z: &[f32], device: &Device) -> Vec<f32> {
    let t = Tensor::<2>::from_data(TensorData::new(z.to_vec(), [1, z.len()]), device);
    host(flow.inverse(t))
}

/// J = ∂f/∂y at `y`, row-major `[d][d]` (row i: the gradient of z_i), by one backward pass
/// through `d` copies of `y` (`device` must be an autodiff device).
pub fn jacobian(flow: &Flow, y: &[f32], device: &Device) -> Vec<f64> {
    let d = y.len();
    let copies: Vec<f32> = (0..d).flat_map(|_| y.iter().copied()).collect();
    let x = Tensor::<2>::from_data(TensorData::new(copies, [d, d]), device).require_grad();
    let (z, _) = flow.forward(x.clone());
    let eye: Vec<f32> = (0..d * d)
        .map(|i| if i / d == i % d { 1.0 } else { 0.0 })
        .collect();
    let eye = Tensor::<2>::from_data(TensorData::new(eye, [d, d]), device);
    let grads = (z * eye).sum().backward();
    let g = x.grad(&grads).expect("the input has a gradient");
    host(g).into_iter().map(f64::from).collect()
}

/// The lower Cholesky factor of J Jᵀ (row-major), with a deterministic jitter where a pivot
/// is not positive.
fn cholesky_of_jjt(j: &[f64], d: usize) -> Vec<f64> {
    let mut m = vec![0f64; d * d];
    for a in 0..d {
        for b in 0..=a {
            let s: f64 = (0..d).map(|k| j[a * d + k] * j[b * d + k]).sum();
            m[a * d + b] = s;
            m[b * d + a] = s;
        }
    }
    let floor = 1e-12 * (0..d).map(|i| m[i * d + i]).sum::<f64>() / d as f64;
    let mut l = vec![0f64; d * d];
    for i in 0..d {
        for k in 0..=i {
            let s: f64 = (0..k).map(|c| l[i * d + c] * l[k * d + c]).sum();
            if i == k {
                l[i * d + i] = (m[i * d + i] - s).max(floor.max(f64::MIN_POSITIVE)).sqrt();
            } else {
                l[i * d + k] = (m[i * d + k] - s) / l[k * d + k];
            }
        }
    }
    l
}

/// The posterior N(z, σ² L Lᵀ) one dimension at a time: conditionals of dimension i given the
/// coded `zt[..i]`, as (mean, std) in data units. `next` gives dimension i's conditional,
/// `push` records the coded value so that the next one can condition on it.
struct Posterior<'a> {
    z: &'a [f32],
    l: Vec<f64>,
    eta: Vec<f64>,
    sigma: f64,
}

impl<'a> Posterior<'a> {
    fn new(z: &'a [f32], jac: &[f64], sigma: f64) -> Self {
        let d = z.len();
        Self {
            z,
            l: cholesky_of_jjt(jac, d),
            eta: Vec::with_capacity(d),
            sigma,
        }
    }

    fn next(&self) -> (f64, f64) {
        let (d, i) = (self.z.len(), self.eta.len());
        let shift: f64 = (0..i).map(|j| self.l[i * d + j] * self.eta[j]).sum();
        (
            f64::from(self.z[i]) + self.sigma * shift,
            self.sigma * self.l[i * d + i],
        )
    }

    fn push(&mut self, coded: f32) {
        let (mean, std) = self.next();
        self.eta.push((f64::from(coded) - mean) / std);
    }
}

/// Codes images of pixel levels (`[n][features]`, each level in 0..levels) with `flow`, loaded
/// on the autodiff `device`.
pub fn encode(
    flow: &Flow,
    images: &[Vec<u32>],
    bar: &ProgressBar,
    device: &Device,
) -> Result<BitsBack, String> {
    let g = Grids::new(flow.levels());
    let init = initial_words();
    let mut ans = DefaultAnsCoder::from_binary(init).map_err(coder_err)?;
    let start = ans.num_bits();
    let uniform = DefaultUniformModel::new(g.sub as usize);
    // Reverse order, so that the decoder pops image 0 first.
    for img in images.iter().rev() {
        let mut b = Vec::with_capacity(img.len());
        for &level in img {
            let u = ans.decode_symbol(uniform).map_err(coder_err)? as i32;
            b.push(level as i32 * g.sub + u);
        }
        let y: Vec<f32> = b.iter().map(|&b| g.y(b)).collect();
        let z = forward(flow, &y, device);
        let mut post = Posterior::new(&z, &jacobian(flow, &y, device), g.sigma);
        let mut zt = Vec::with_capacity(z.len());
        for _ in 0..z.len() {
            let (m, s) = post.next();
            let k = ans.decode_symbol(g.posterior(m, s)).map_err(coder_err)?;
            post.push(g.z(k));
            zt.push(k);
        }
        let zv: Vec<f32> = zt.iter().map(|&k| g.z(k)).collect();
        let xt = inverse(flow, &zv, device);
        for (bi, m) in b.iter().zip(&xt).rev() {
            ans.encode_symbol(*bi, g.y_model(*m)).map_err(coder_err)?;
        }
        let prior = g.prior();
        for &k in zt.iter().rev() {
            ans.encode_symbol(k, prior).map_err(coder_err)?;
        }
        bar.inc(1);
    }
    let net_bits = ans.num_bits() as f64 - start as f64;
    Ok(BitsBack {
        words: ans.into_compressed().map_err(coder_err)?,
        net_bits,
    })
}

/// Decodes `n` images as [`encode`] coded them; checks that the stack ends as it began.
pub fn decode(
    flow: &Flow,
    words: Vec<u32>,
    n: usize,
    bar: &ProgressBar,
    device: &Device,
) -> Result<Vec<Vec<u32>>, String> {
    let g = Grids::new(flow.levels());
    let d = flow.features();
    let uniform = DefaultUniformModel::new(g.sub as usize);
    let prior = g.prior();
    let mut ans = DefaultAnsCoder::from_compressed(words)
        .map_err(|_| "the body ends in a zero word: corrupt".to_string())?;
    let mut images = Vec::with_capacity(n);
    for _ in 0..n {
        let mut zt = Vec::with_capacity(d);
        for _ in 0..d {
            zt.push(ans.decode_symbol(prior).map_err(coder_err)?);
        }
        let zv: Vec<f32> = zt.iter().map(|&k| g.z(k)).collect();
        let xt = inverse(flow, &zv, device);
        let mut b = Vec::with_capacity(d);
        for m in &xt {
            b.push(ans.decode_symbol(g.y_model(*m)).map_err(coder_err)?);
        }
        let y: Vec<f32> = b.iter().map(|&b| g.y(b)).collect();
        let z = forward(flow, &y, device);
        let mut post = Posterior::new(&z, &jacobian(flow, &y, device), g.sigma);
        let mut models = Vec::with_capacity(d);
        for &k in &zt {
            let (m, s) = post.next();
            models.push(g.posterior(m, s));
            post.push(g.z(k));
        }
        for (&k, model) in zt.iter().zip(&models).rev() {
            ans.encode_symbol(k, *model).map_err(coder_err)?;
        }
        for &bi in b.iter().rev() {
            ans.encode_symbol((bi % g.sub) as usize, uniform)
                .map_err(coder_err)?;
        }
        images.push(b.iter().map(|&bi| (bi / g.sub) as u32).collect());
        bar.inc(1);
    }
    let rest = ans
        .into_binary()
        .map_err(|_| "the stack does not end where it began: corrupt body".to_string())?;
    if rest != initial_words() {
        return Err("the stack does not end where it began: corrupt body".into());
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cholesky_factor_reproduces_j_jt() {
        let d = 5;
        let j: Vec<f64> = (0..d * d)
            .map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.0 + if i % (d + 1) == 0 { 4.0 } else { 0.0 })
            .collect();
        let l = cholesky_of_jjt(&j, d);
        for a in 0..d {
            for b in 0..d {
                let want: f64 = (0..d).map(|k| j[a * d + k] * j[b * d + k]).sum();
                let got: f64 = (0..d).map(|k| l[a * d + k] * l[b * d + k]).sum();
                assert!((want - got).abs() < 1e-9 * (1.0 + want.abs()), "{a},{b}");
                if b > a {
                    assert_eq!(l[a * d + b], 0.0);
                }
            }
        }
    }

    #[test]
    fn the_fine_grid_centres_each_level_on_its_value() {
        let g = Grids::new(17);
        // The middle of level v's cell is v/8 − 1; the cell is [v/8 − 1 − 1/16, v/8 − 1 + 1/16).
        for v in [0, 5, 16] {
            let lo = g.y(v * g.sub);
            let hi = g.y(v * g.sub + g.sub - 1);
            let want = v as f32 / 8.0 - 1.0;
            assert!((f64::from(lo + hi) / 2.0 - f64::from(want)).abs() < 1e-6);
            assert!((hi - lo) as f64 > 0.124 && ((hi - lo) as f64) < 0.125);
        }
    }
}
