//! Euler ancestral sampling, as in k-diffusion (Karras et al., "Elucidating the Design Space of
//! Diffusion-Based Generative Models", 2022), mapped into the variance-preserving space.
//!
//! Symbols → names: σ = √((1−ᾱ)/ᾱ) → `s` (now) and `s_next`; σ_up, σ_down → `s_up`, `s_down`.
//! In k-space x_k = x_t/√ᾱ the step is x_k' = x_k + (x_k − x̂₀)/σ·(σ_down − σ) + σ_up·z; we
//! multiply by √ᾱ_next to return to x_t space.

use burn::tensor::Tensor;

use super::{ModelOutput, Scheduler, SchedulerCore, run_update};
use crate::ops::denoise::Noise;

/// Euler ancestral sampler (η = 1).
#[derive(Clone, Debug)]
pub struct EulerAncestral {
    core: SchedulerCore,
}

impl EulerAncestral {
    /// An Euler ancestral sampler.
    pub fn new(core: SchedulerCore) -> Self {
        Self { core }
    }
}

impl Scheduler for EulerAncestral {
    fn step(
        &mut self,
        output: ModelOutput,
        t: usize,
        sample: Tensor<1>,
        noise: Noise,
    ) -> Tensor<1> {
        let (ab, ab_next) = self.core.alpha_bars(t);
        let s = ((1.0 - ab) / ab).sqrt();
        let s_next = ((1.0 - ab_next) / ab_next).sqrt();
        let s_up = (s_next * s_next * (s * s - s_next * s_next) / (s * s))
            .max(0.0)
            .sqrt()
            .min(s_next);
        let s_down = (s_next * s_next - s_up * s_up).max(0.0).sqrt();
        let scale = ab_next.sqrt();
        let cx = scale / ab.sqrt() * (s_down / s);
        let c0 = scale * (1.0 - s_down / s);
        let coeffs = self.core.coeffs(ab, cx, c0, 0.0, scale * s_up);
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
    fn golden_step_n20() {
        let mut s = EulerAncestral::new(core(Prediction::Epsilon));
        s.set_timesteps(20);
        let got = s.step(t1(&OUT).into(), 749, t1(&X), Noise::Explicit(t1(&Z)));
        assert_close(got, &GOLDEN_T749_N20);
    }

    const GOLDEN_T749_N20: [f64; 4] = [
        0.86172656157,
        -1.720401748344,
        2.354185785345,
        0.771251380241,
    ];
}
