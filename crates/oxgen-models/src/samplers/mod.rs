//! Diffusion samplers behind one scheduler contract, after diffusers:
//! [`Scheduler::set_timesteps`], [`Scheduler::timesteps`], [`Scheduler::step`] and
//! [`Scheduler::add_noise`]. One sampler per file; none of them imports a model. Each computes
//! the scalars of its update and hands the tensors to [`crate::ops::denoise::denoise_step`].
//!
//! All samplers work in the variance-preserving space x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε and start
//! from x_T ~ N(0, I).

mod ddim;
mod ddpm;
mod dpm_solver;
mod euler_ancestral;

pub use ddim::Ddim;
pub use ddpm::DdpmAncestral;
pub use dpm_solver::DpmSolverPP2M;
pub use euler_ancestral::EulerAncestral;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::diffusion::schedule::{NoiseSchedule, Prediction};
use crate::ops::denoise::{DenoiseInput, Noise, StepCoeffs, denoise_step, dynamic_threshold};

/// The model's output at one step, possibly with an unconditional output for guidance.
#[derive(Clone, Debug)]
pub struct ModelOutput {
    /// The (conditional) prediction, flattened.
    pub out: Tensor<1>,
    /// The unconditional prediction and the guidance scale w: out ← u + w·(c − u).
    pub uncond: Option<(Tensor<1>, f32)>,
    /// Samples in the flattened tensors (per-sample statistics such as dynamic thresholding
    /// need it).
    pub rows: usize,
}

impl From<Tensor<1>> for ModelOutput {
    /// One sample.
    fn from(out: Tensor<1>) -> Self {
        Self {
            out,
            uncond: None,
            rows: 1,
        }
    }
}

/// The scheduler contract every sampler follows.
pub trait Scheduler: Send {
    /// Chooses `n` inference timesteps out of the T training ones (trailing spacing) and resets
    /// any multistep state.
    fn set_timesteps(&mut self, n: usize) {
        let core = self.core_mut();
        core.timesteps = trailing_timesteps(core.schedule.len(), n);
    }
    /// The inference timesteps, from most to least noisy.
    fn timesteps(&self) -> &[usize] {
        &self.core().timesteps
    }
    /// One update from timestep `t` to the next one in [`Scheduler::timesteps`].
    ///
    /// # Shapes
    /// - `sample`, `output.out`: `[n]` (flattened); returns `[n]`.
    fn step(&mut self, output: ModelOutput, t: usize, sample: Tensor<1>, noise: Noise)
    -> Tensor<1>;
    /// Forward process: x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε.
    fn add_noise(&self, x0: Tensor<1>, noise: Tensor<1>, t: usize) -> Tensor<1> {
        let ab = self.core().schedule.alphas_cumprod[t];
        x0.mul_scalar(ab.sqrt()) + noise.mul_scalar((1.0 - ab).sqrt())
    }
    /// Whether `step` draws fresh noise.
    fn is_stochastic(&self) -> bool;
    /// The shared state.
    fn core(&self) -> &SchedulerCore;
    /// The shared state, mutably.
    fn core_mut(&mut self) -> &mut SchedulerCore;
}

/// State shared by every sampler: the schedule, the prediction type and the chosen timesteps.
#[derive(Clone, Debug)]
pub struct SchedulerCore {
    /// The training noise schedule.
    pub schedule: NoiseSchedule,
    /// What the model predicts.
    pub prediction: Prediction,
    /// Clamp x̂₀ to [−clip, clip].
    pub clip: Option<f32>,
    /// Dynamic thresholding of x̂₀ at this percentile of |x̂₀| per sample (Imagen uses 0.995).
    pub dynamic_threshold: Option<f32>,
    /// Inference timesteps, most noisy first.
    pub timesteps: Vec<usize>,
}

impl SchedulerCore {
    /// A core with all T timesteps selected.
    pub fn new(schedule: NoiseSchedule, prediction: Prediction, clip: Option<f32>) -> Self {
        let timesteps = trailing_timesteps(schedule.len(), schedule.len());
        Self {
            schedule,
            prediction,
            clip,
            dynamic_threshold: None,
            timesteps,
        }
    }

    /// The same core with dynamic thresholding at `percentile` (or without, for `None`).
    pub fn with_dynamic_threshold(mut self, percentile: Option<f32>) -> Self {
        self.dynamic_threshold = percentile;
        self
    }

    /// Index of `t` in the timesteps and the timestep after it (`None` after the last).
    pub fn locate(&self, t: usize) -> (usize, Option<usize>) {
        let i = self
            .timesteps
            .iter()
            .position(|&s| s == t)
            .unwrap_or_else(|| {
                panic!(
                    "timestep {t} is not one of the scheduler's timesteps; call set_timesteps first"
                )
            });
        (i, self.timesteps.get(i + 1).copied())
    }

    /// ᾱ at `t` and at the next timestep (1 after the last).
    pub fn alpha_bars(&self, t: usize) -> (f64, f64) {
        let (_, prev) = self.locate(t);
        (
            self.schedule.alphas_cumprod[t],
            self.schedule.alpha_bar(prev),
        )
    }

    /// The step coefficients with the x̂₀ conversion of this core filled in.
    pub fn coeffs(&self, alpha_bar: f64, cx: f64, c0: f64, cp: f64, sigma: f64) -> StepCoeffs {
        let (px, po) = self.prediction.x0_coeffs(alpha_bar);
        StepCoeffs {
            guidance: 1.0,
            px: px as f32,
            po: po as f32,
            clip: self.clip,
            cx: cx as f32,
            c0: c0 as f32,
            cp: cp as f32,
            sigma: sigma as f32,
        }
    }
}

/// `n` timesteps out of `t_max`, evenly spaced and ending at the least noisy step:
/// t_i = round(T − i·T/n) − 1 (the "trailing" spacing of Lin et al., 2023).
pub fn trailing_timesteps(t_max: usize, n: usize) -> Vec<usize> {
    assert!(
        n >= 1 && n <= t_max,
        "inference steps must be in 1..={t_max}, got {n}"
    );
    let stride = t_max as f64 / n as f64;
    (0..n)
        .map(|i| ((t_max as f64 - i as f64 * stride).round() as usize).saturating_sub(1))
        .collect()
}

/// Runs the update through the op, threading guidance into the coefficients.
pub(crate) fn run_update(
    core: &SchedulerCore,
    output: ModelOutput,
    sample: Tensor<1>,
    prev_x0: Option<Tensor<1>>,
    mut coeffs: StepCoeffs,
    noise: Noise,
    want_x0: bool,
) -> (Tensor<1>, Tensor<1>) {
    let uncond = output.uncond.map(|(u, w)| {
        coeffs.guidance = w;
        u
    });
    let noise = if coeffs.sigma == 0.0 {
        Noise::None
    } else {
        noise
    };
    let mut input = DenoiseInput {
        x: sample,
        out: output.out,
        uncond,
        prev_x0,
        want_x0,
        threshold: None,
    };
    if let Some(p) = core.dynamic_threshold {
        input.threshold = Some(dynamic_threshold(&input, &coeffs, output.rows, p));
    }
    let r = denoise_step(input, coeffs, noise);
    (r.x, r.x0)
}

/// The sampler a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// DDPM ancestral sampling (Ho et al., 2020).
    Ddpm,
    /// DDIM with η (Song et al., 2021).
    Ddim,
    /// Euler ancestral (Karras et al., 2022; k-diffusion).
    EulerAncestral,
    /// DPM-Solver++(2M) (Lu et al., 2022).
    DpmSolverPP2M,
}

impl std::str::FromStr for SamplerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ddpm" => Ok(Self::Ddpm),
            "ddim" => Ok(Self::Ddim),
            "euler_ancestral" | "euler-a" => Ok(Self::EulerAncestral),
            "dpm_solver_pp2m" | "dpm++2m" | "dpmpp2m" => Ok(Self::DpmSolverPP2M),
            other => Err(format!(
                "unknown sampler `{other}`; expected ddpm, ddim, euler_ancestral or dpm_solver_pp2m"
            )),
        }
    }
}

/// Builds a boxed sampler of `kind` (η is used by DDIM only).
pub fn build(kind: SamplerKind, core: SchedulerCore, eta: f64) -> Box<dyn Scheduler> {
    match kind {
        SamplerKind::Ddpm => Box::new(DdpmAncestral::new(core)),
        SamplerKind::Ddim => Box::new(Ddim::new(core, eta)),
        SamplerKind::EulerAncestral => Box::new(EulerAncestral::new(core)),
        SamplerKind::DpmSolverPP2M => Box::new(DpmSolverPP2M::new(core)),
    }
}

#[cfg(test)]
pub(crate) mod golden {
    //! Fixed inputs shared by the golden-number tests of every sampler. The expected values in
    //! each sampler's test were computed independently, in f64 Python, from the papers'
    //! formulas as diffusers writes them.
    use super::*;
    use crate::diffusion::schedule::ScheduleKind;
    use burn::tensor::{Device, TensorData};

    pub fn core(prediction: Prediction) -> SchedulerCore {
        SchedulerCore::new(
            NoiseSchedule::new(ScheduleKind::Linear, 1000),
            prediction,
            None,
        )
    }

    pub fn t1(v: &[f32]) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Device::flex())
    }

    pub const X: [f32; 4] = [0.5, -1.0, 1.5, 0.25];
    pub const OUT: [f32; 4] = [0.1, -0.3, 0.8, -0.5];
    pub const Z: [f32; 4] = [0.3, -0.7, 1.1, 0.05];

    pub fn assert_close(got: Tensor<1>, want: &[f64]) {
        let got = got.into_data().try_to_vec::<f32>().unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "got {got:?}, want {want:?}"
            );
        }
    }
}
