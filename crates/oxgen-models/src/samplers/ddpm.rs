//! DDPM ancestral sampling. Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models" (2020).
//!
//! Symbols → names: ᾱ_t → `ab`, ᾱ_{t'} (next timestep) → `ab_prev`, β'_t = 1 − ᾱ_t/ᾱ_{t'} →
//! `beta`, posterior mean μ̃ = `c0`·x̂₀ + `cx`·x_t, posterior variance β̃ = `sigma`².

use burn::tensor::Tensor;

use super::{ModelOutput, Scheduler, SchedulerCore, run_update};
use crate::ops::denoise::Noise;

/// DDPM ancestral sampler; with fewer inference steps than T it uses the skipped-step posterior.
#[derive(Clone, Debug)]
pub struct DdpmAncestral {
    core: SchedulerCore,
}

impl DdpmAncestral {
    /// A sampler over all of the core's timesteps.
    pub fn new(core: SchedulerCore) -> Self {
        Self { core }
    }
}

impl Scheduler for DdpmAncestral {
    fn step(
        &mut self,
        output: ModelOutput,
        t: usize,
        sample: Tensor<1>,
        noise: Noise,
    ) -> Tensor<1> {
        let (ab, ab_prev) = self.core.alpha_bars(t);
        let beta = 1.0 - ab / ab_prev;
        let c0 = ab_prev.sqrt() * beta / (1.0 - ab);
        let cx = (1.0 - beta).sqrt() * (1.0 - ab_prev) / (1.0 - ab);
        let var = (1.0 - ab_prev) / (1.0 - ab) * beta;
        let coeffs = self.core.coeffs(ab, cx, c0, 0.0, var.max(0.0).sqrt());
        run_update(&self.core, output, sample, None, coeffs, noise, false).0
    }

    fn is_stochastic(&self) -> bool {
        true
    }

    fn core(&self) -> &SchedulerCore {
        &self.core
    }

    fn core_mut(&mut self) -> &mut SchedulerCore {
        &mut self.core
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::schedule::Prediction;
    use crate::samplers::golden::*;

    #[test]
    fn golden_step_epsilon_t500() {
        let mut s = DdpmAncestral::new(core(Prediction::Epsilon));
        let got = s.step(t1(&OUT).into(), 500, t1(&X), Noise::Explicit(t1(&Z)));
        assert_close(got, &GOLDEN_EPS_T500);
    }

    #[test]
    fn golden_step_v_skipped_t999() {
        let mut s = DdpmAncestral::new(core(Prediction::V));
        s.set_timesteps(10);
        let got = s.step(t1(&OUT).into(), 999, t1(&X), Noise::Explicit(t1(&Z)));
        assert_close(got, &GOLDEN_V_T999_N10);
    }

    const GOLDEN_EPS_T500: [f64; 4] = [
        0.531558152106,
        -1.072089060249,
        1.609461331411,
        0.261544275488,
    ];
    const GOLDEN_V_T999_N10: [f64; 4] = [
        0.467155991638,
        -1.02526252475,
        1.579122008666,
        0.148998028139,
    ];
}
