//! The denoising-update op: every sampler step in oxgen goes through [`denoise_step`].
//!
//! One update, written with the paper-neutral symbols the samplers share:
//!
//! ```text
//! out   = uncond + w · (cond − uncond)          (classifier-free guidance, optional)
//! x̂₀    = px · x_t + po · out                   (prediction type → x₀)
//! x̂₀    = clamp(x̂₀, −c, c)                      (optional)
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

use std::sync::{Mutex, OnceLock};

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
static LAST: Mutex<Option<&'static str>> = Mutex::new(None);

/// Registers the fused implementation. The first registration wins; later ones return false.
pub fn register_fused(kernel: Box<dyn FusedDenoise>) -> bool {
    FUSED.set(kernel).is_ok()
}

/// Name of the implementation the most recent [`denoise_step`] ran: `"reference"` or the fused
/// kernel's name. Lets a test prove which path really ran.
pub fn last_path() -> Option<&'static str> {
    *LAST.lock().expect("op path lock")
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
    if let Noise::Explicit(z) = &noise {
        assert_eq!(
            z.dims()[0],
            n,
            "denoise_step: noise has {} elements, x_t has {n}",
            z.dims()[0]
        );
    }
    let device = input.x.device();
    let fused = FUSED.get().filter(|k| k.accepts(&device));
    let use_fused = super::take_fused("denoise_step", fused.is_some(), &device);
    match fused.filter(|_| use_fused) {
        Some(kernel) => {
            *LAST.lock().expect("op path lock") = Some(kernel.name());
            kernel.step(input, coeffs, noise)
        }
        None => {
            *LAST.lock().expect("op path lock") = Some("reference");
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
        ..
    } = input;
    let out = match uncond {
        Some(u) => u.clone() + (out - u).mul_scalar(c.guidance),
        None => out,
    };
    let mut x0 = x.clone().mul_scalar(c.px) + out.mul_scalar(c.po);
    if let Some(clip) = c.clip {
        x0 = x0.clamp(-clip, clip);
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

/// The Philox noise of `(seed, stream)` as a tensor of `n` elements on `device`.
pub fn seeded_noise(seed: u64, stream: u32, n: usize, device: &Device) -> Tensor<1> {
    Tensor::from_data(
        TensorData::new(crate::rng::normals(seed, stream, n), [n]),
        device,
    )
}
