//! The denoising-update op: every sampler step in oxgen goes through [`denoise_step`].
//!
//! One update, written with the paper-neutral symbols the samplers share:
//!
//! ```text
//! out   = uncond + w · (cond − uncond)          (classifier-free guidance, optional)
//! x̂₀    = px · x_t + po · out                   (prediction type → x₀)
//! x̂₀    = clamp(x̂₀, −c, c)                      (optional static clipping)
//! x̂₀    = clamp(x̂₀, −s_r, s_r) / s_r            (optional dynamic thresholding, per sample r)
//! x_{t−1} = cx · x_t + c0 · x̂₀ + cp · x̂₀_prev + σ · z
//! ```
//!
//! DDPM ancestral, DDIM(η), Euler ancestral and DPM-Solver++(2M) all reduce to this form; the
//! samplers only compute the scalars. `z` is either given ([`Noise::Explicit`]) or drawn from the
//! counter-based generator in [`crate::rng`] ([`Noise::Seeded`]), which a fused kernel draws in
//! registers instead of reading from memory.
//!
//! The plain-burn reference below runs on any device. A fused kernel registers itself with
//! [`register_fused`]; [`denoise_step`] then sends tensors on devices it accepts there, unless
//! [`set_path`] (shared by every op in [`crate::ops`]) forces the reference.

use std::sync::OnceLock;

pub use super::{OpPath, path, set_path};

use burn::tensor::{Device, Tensor, TensorData};

/// The scalars of one update. See the module docs for the formula.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoeffs {
    /// Guidance scale w, when an unconditional output is given.
    pub guidance: f32,
    /// x̂₀ = px · x_t + po · out.
    pub px: f32,
    /// See `px`.
    pub po: f32,
    /// Clamp x̂₀ to [−clip, clip] when set.
    pub clip: Option<f32>,
    /// Weight of x_t in the update.
    pub cx: f32,
    /// Weight of x̂₀.
    pub c0: f32,
    /// Weight of the previous step's x̂₀ (multistep solvers).
    pub cp: f32,
    /// Standard deviation of the fresh noise.
    pub sigma: f32,
}

/// Where the fresh noise of an update comes from.
#[derive(Clone, Debug)]
pub enum Noise {
    /// No noise (σ must be 0, or the term is dropped).
    None,
    /// An explicit standard-normal tensor of the sample's shape, flattened.
    Explicit(Tensor<1>),
    /// Philox stream `(seed, stream)`: element `i` is [`crate::rng::normals`]`(seed, stream, n)[i]`.
    Seeded {
        /// Generator key.
        seed: u64,
        /// Stream (the sampler uses the step index).
        stream: u32,
    },
}

/// The inputs of one update, all of the same shape, flattened to one dimension.
#[derive(Clone, Debug)]
pub struct DenoiseInput {
    /// x_t.
    pub x: Tensor<1>,
    /// Model output (conditional when guided).
    pub out: Tensor<1>,
    /// Unconditional model output, for guidance.
    pub uncond: Option<Tensor<1>>,
    /// x̂₀ of the previous step, for multistep solvers.
    pub prev_x0: Option<Tensor<1>>,
    /// Whether the caller reads [`DenoiseOutput::x0`]. When false a fused kernel skips writing
    /// it (4 bytes per element) and `x0` is unspecified.
    pub want_x0: bool,
    /// Dynamic thresholding (Saharia et al., 2022): the per-sample bound s_r ≥ 1, `[rows]`, from
    /// [`dynamic_threshold`]. Sample r owns elements `r·n/rows .. (r+1)·n/rows`.
    pub threshold: Option<Tensor<1>>,
}

/// Result of one update.
#[derive(Clone, Debug)]
pub struct DenoiseOutput {
    /// x_{t−1}.
    pub x: Tensor<1>,
    /// x̂₀, after guidance and clipping.
    pub x0: Tensor<1>,
}

/// A fused implementation of the update, provided by a kernel crate.
pub trait FusedDenoise: Send + Sync {
    /// A short name for logs and benchmarks.
    fn name(&self) -> &'static str;
    /// Whether tensors on `device` can take this path.
    fn accepts(&self, device: &Device) -> bool;
    /// Runs the update. Only called when [`FusedDenoise::accepts`] is true.
    fn step(&self, input: DenoiseInput, coeffs: StepCoeffs, noise: Noise) -> DenoiseOutput;
}

static FUSED: OnceLock<Box<dyn FusedDenoise>> = OnceLock::new();

/// Whether a registered fused kernel accepts tensors on `device`.
pub fn accepts(device: &Device) -> bool {
    super::install_kernels();
    FUSED.get().is_some_and(|k| k.accepts(device))
}
/// Registers the fused implementation. The first registration wins; later ones return false.
pub fn register_fused(kernel: Box<dyn FusedDenoise>) -> bool {
    FUSED.set(kernel).is_ok()
}

/// The op's name in [`super::stats`].
pub const OP: &str = "denoise";

/// Name of the implementation the latest [`denoise_step`] on this thread ran: `"reference"` or
/// the fused kernel's name. Lets a test prove which path really ran.
pub fn last_path() -> Option<&'static str> {
    super::stats::last(OP)
}

/// One denoising update. See the module docs.
///
/// # Shapes
/// - every tensor of `input`: `[n]`; the output tensors: `[n]`.
pub fn denoise_step(input: DenoiseInput, coeffs: StepCoeffs, noise: Noise) -> DenoiseOutput {
    let n = input.x.dims()[0];
    for (name, t) in [
        ("out", Some(&input.out)),
        ("uncond", input.uncond.as_ref()),
        ("prev_x0", input.prev_x0.as_ref()),
    ] {
        if let Some(t) = t {
            assert_eq!(
                t.dims()[0],
                n,
                "denoise_step: `{name}` has {} elements, x_t has {n}",
                t.dims()[0]
            );
        }
    }
    if let Some(s) = &input.threshold {
        let rows = s.dims()[0];
        assert!(
            rows > 0 && n % rows == 0,
            "denoise_step: {n} elements do not split into {rows} samples for thresholding"
        );
    }
    if let Noise::Explicit(z) = &noise {
        assert_eq!(
            z.dims()[0],
            n,
            "denoise_step: noise has {} elements, x_t has {n}",
            z.dims()[0]
        );
    }
    let device = input.x.device();
    super::install_kernels();
    let fused = FUSED.get().filter(|k| k.accepts(&device));
    let use_fused = super::take_fused(OP, fused.is_some(), &device);
    match fused.filter(|_| use_fused) {
        Some(kernel) => {
            super::stats::fused(OP, kernel.name());
            kernel.step(input, coeffs, noise)
        }
        None => {
            super::stats::reference(OP, super::reference_reason(fused.is_some(), &device));
            denoise_step_reference(input, coeffs, noise)
        }
    }
}

/// The plain-burn reference: a chain of tensor ops, with the noise as a tensor in memory.
pub fn denoise_step_reference(input: DenoiseInput, c: StepCoeffs, noise: Noise) -> DenoiseOutput {
    let DenoiseInput {
        x,
        out,
        uncond,
        prev_x0,
        threshold,
        ..
    } = input;
    let mut x0 = raw_x0(&x, out, uncond, &c);
    if let Some(s) = threshold {
        let rows = s.dims()[0];
        let n = x0.dims()[0];
        let s = s.reshape([rows, 1]).expand([rows, n / rows]);
        x0 = x0
            .reshape([rows, n / rows])
            .min_pair(s.clone())
            .max_pair(s.clone().neg())
            .div(s)
            .reshape([n]);
    }
    let mut next = x.mul_scalar(c.cx) + x0.clone().mul_scalar(c.c0);
    if let Some(prev) = prev_x0.filter(|_| c.cp != 0.0) {
        next = next + prev.mul_scalar(c.cp);
    }
    if c.sigma != 0.0 {
        let z = match noise {
            Noise::None => None,
            Noise::Explicit(z) => Some(z),
            Noise::Seeded { seed, stream } => {
                Some(seeded_noise(seed, stream, next.dims()[0], &next.device()))
            }
        };
        if let Some(z) = z {
            next = next + z.mul_scalar(c.sigma);
        }
    }
    DenoiseOutput { x: next, x0 }
}

/// x̂₀ after guidance and static clipping, before dynamic thresholding.
fn raw_x0(x: &Tensor<1>, out: Tensor<1>, uncond: Option<Tensor<1>>, c: &StepCoeffs) -> Tensor<1> {
    let out = match uncond {
        Some(u) => u.clone() + (out - u).mul_scalar(c.guidance),
        None => out,
    };
    let x0 = x.clone().mul_scalar(c.px) + out.mul_scalar(c.po);
    match c.clip {
        Some(clip) => x0.clamp(-clip, clip),
        None => x0,
    }
}

/// The per-sample bound of dynamic thresholding (Imagen; Saharia et al., 2022): the
/// `percentile` quantile of |x̂₀| over each of `rows` samples (linear interpolation between order
/// statistics, as NumPy's default), raised to at least 1. The update then clamps x̂₀ to ±s and
/// divides by s. A quantile needs the whole sample, so this runs before the fused pass (as burn
/// ops: one sort per sample); the clamp and rescale run inside it.
///
/// # Shapes
/// - the tensors of `input`: `[n]` with `n` divisible by `rows`; output: `[rows]`.
pub fn dynamic_threshold(
    input: &DenoiseInput,
    c: &StepCoeffs,
    rows: usize,
    percentile: f32,
) -> Tensor<1> {
    let n = input.x.dims()[0];
    assert!(
        rows > 0 && n % rows == 0,
        "dynamic_threshold: {n} elements do not split into {rows} samples"
    );
    assert!(
        (0.0..=1.0).contains(&percentile),
        "dynamic_threshold: the percentile must be in [0, 1], got {percentile}"
    );
    let len = n / rows;
    let x0 = raw_x0(&input.x, input.out.clone(), input.uncond.clone(), c);
    let sorted = x0.abs().reshape([rows, len]).sort(1);
    let pos = percentile as f64 * (len - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let frac = (pos - lo as f64) as f32;
    let at = |k: usize| sorted.clone().slice([0..rows, k..k + 1]).reshape([rows]);
    let s = if hi == lo {
        at(lo)
    } else {
        at(lo).mul_scalar(1.0 - frac) + at(hi).mul_scalar(frac)
    };
    s.clamp_min(1.0)
}

/// The Philox noise of `(seed, stream)` as a tensor of `n` elements on `device`.
pub fn seeded_noise(seed: u64, stream: u32, n: usize, device: &Device) -> Tensor<1> {
    Tensor::from_data(
        TensorData::new(crate::rng::normals(seed, stream, n), [n]),
        device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Device::flex())
    }

    fn host(t: Tensor<1>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    /// Per-sample percentiles as NumPy computes them (`np.percentile(|x|, 90)` of
    /// [0.2, 0.5, 1, 2, 3] is 2.6), raised to 1, then clamp and rescale.
    #[test]
    fn dynamic_thresholding_by_hand() {
        let x = [0.5, -3.0, 2.0, 1.0, -0.2, 0.1, 0.2, -0.3, 0.4, 0.5];
        let c = StepCoeffs {
            guidance: 1.0,
            px: 1.0,
            po: 0.0,
            clip: None,
            cx: 0.0,
            c0: 1.0,
            cp: 0.0,
            sigma: 0.0,
        };
        let mut input = DenoiseInput {
            x: t(&x),
            out: t(&[0.0; 10]),
            uncond: None,
            prev_x0: None,
            want_x0: true,
            threshold: None,
        };
        let s = host(dynamic_threshold(&input, &c, 2, 0.9));
        assert!((s[0] - 2.6).abs() < 1e-6 && s[1] == 1.0, "{s:?}");
        let s75 = host(dynamic_threshold(&input, &c, 2, 0.75));
        assert!((s75[0] - 2.0).abs() < 1e-6, "{s75:?}");
        input.threshold = Some(t(&s));
        let out = host(denoise_step_reference(input, c, Noise::None).x);
        let want: Vec<f32> = x[..5]
            .iter()
            .map(|v| v.clamp(-2.6, 2.6) / 2.6)
            .chain(x[5..].iter().copied())
            .collect();
        for (g, w) in out.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{out:?} vs {want:?}");
        }
    }
}
