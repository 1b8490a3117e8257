//! DDIM. Song, Meng & Ermon, "Denoising Diffusion Implicit Models" (2021), eq. 12.
//!
//! Symbols → names: ᾱ_t → `ab`, ᾱ_{t−1} → `ab_prev`, σ_t(η) → `sigma`,
//! "direction pointing to x_t" √(1−ᾱ_{t−1}−σ²)·ε̂ → `dir`, with ε̂ = (x_t − √ᾱ_t·x̂₀)/√(1−ᾱ_t).

use burn::tensor::Tensor;

use super::{ModelOutput, Scheduler, SchedulerCore, run_update};
use crate::ops::denoise::Noise;

/// DDIM with stochasticity η (η = 0: deterministic; η = 1: DDPM-like).
#[derive(Clone, Debug)]
pub struct Ddim {
    core: SchedulerCore,
    eta: f64,
}

impl Ddim {
    /// A DDIM sampler with the given η.
    pub fn new(core: SchedulerCore, eta: f64) -> Self {
        Self { core, eta }
    }
}

impl Scheduler for Ddim {
    fn step(
        &mut self,
        output: ModelOutput,
        t: usize,
        sample: Tensor<1>,
        noise: Noise,
    ) -> Tensor<1> {
        let (ab, ab_prev) = self.core.alpha_bars(t);
        let sigma = self.eta
            * ((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
                .max(0.0)
                .sqrt();
        let dir = (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt();
        let cx = dir / (1.0 - ab).sqrt();
        let c0 = ab_prev.sqrt() - cx * ab.sqrt();
        let coeffs = self.core.coeffs(ab, cx, c0, 0.0, sigma);
        run_update(&self.core, output, sample, None, coeffs, noise, false).0
    }

    fn is_stochastic(&self) -> bool {
        self.eta > 0.0
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
    fn golden_step_eta0_n50() {
        let mut s = Ddim::new(core(Prediction::Epsilon), 0.0);
        s.set_timesteps(50);
        let got = s.step(t1(&OUT).into(), 599, t1(&X), Noise::None);
        assert_close(got, &GOLDEN_ETA0_T599_N50);
    }

    #[test]
    fn golden_step_eta1_v_n50() {
        let mut s = Ddim::new(core(Prediction::V), 1.0);
        s.set_timesteps(50);
        let got = s.step(t1(&OUT).into(), 599, t1(&X), Noise::Explicit(t1(&Z)));
        assert_close(got, &GOLDEN_ETA1_V_T599_N50);
    }

    const GOLDEN_ETA0_T599_N50: [f64; 4] = [
        0.550420140867,
        -1.087999518244,
        1.58705660515,
        0.34583426963,
    ];
    const GOLDEN_ETA1_V_T599_N50: [f64; 4] = [
        0.577590225004,
        -1.197167283929,
        1.805065830339,
        0.264326047353,
    ];
}
