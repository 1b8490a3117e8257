//! DPM-Solver++(2M). Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
//! Probabilistic Models" (2022), Algorithm 2, data-prediction form.
//!
//! Symbols → names: α_t = √ᾱ_t, σ_t = √(1−ᾱ_t), λ_t = ln(α_t/σ_t) → `lambda`,
//! h = λ_{t_next} − λ_t → `h`, r = h_prev/h → `r`, D = (1 + 1/2r)·x̂₀ − (1/2r)·x̂₀_prev.
//! x_{t_next} = (σ_next/σ)·x_t + α_next·(1 − e^{−h})·D. The first step, and the final step to
//! ᾱ = 1, are first order.

use burn::tensor::Tensor;

use super::{ModelOutput, Scheduler, SchedulerCore, run_update, trailing_timesteps};
use crate::ops::denoise::Noise;

/// DPM-Solver++(2M), deterministic multistep.
#[derive(Clone, Debug)]
pub struct DpmSolverPP2M {
    core: SchedulerCore,
    /// x̂₀ and h of the previous step.
    prev: Option<(Tensor<1>, f64)>,
}

impl DpmSolverPP2M {
    /// A fresh solver.
    pub fn new(core: SchedulerCore) -> Self {
        Self { core, prev: None }
    }
}

fn lambda(ab: f64) -> f64 {
    0.5 * (ab / (1.0 - ab)).ln()
}

impl Scheduler for DpmSolverPP2M {
    fn set_timesteps(&mut self, n: usize) {
        self.core.timesteps = trailing_timesteps(self.core.schedule.len(), n);
        self.prev = None;
    }

    fn step(
        &mut self,
        output: ModelOutput,
        t: usize,
        sample: Tensor<1>,
        _noise: Noise,
    ) -> Tensor<1> {
        let (i, next) = self.core.locate(t);
        if i == 0 {
            self.prev = None;
        }
        let (ab, ab_next) = self.core.alpha_bars(t);
        let (next_x, x0, h) = match next {
            None => {
                // Final step to ᾱ = 1: x = D = x̂₀.
                let coeffs = self.core.coeffs(ab, 0.0, 1.0, 0.0, 0.0);
                let (x, x0) =
                    run_update(&self.core, output, sample, None, coeffs, Noise::None, true);
                (x, x0, f64::INFINITY)
            }
            Some(_) => {
                let h = lambda(ab_next) - lambda(ab);
                let cx = ((1.0 - ab_next) / (1.0 - ab)).sqrt();
                let cd = ab_next.sqrt() * (1.0 - (-h).exp());
                let (c0, cp, prev_x0) = match self.prev.take() {
                    Some((prev_x0, h_prev)) => {
                        let r = h_prev / h;
                        (cd * (1.0 + 0.5 / r), -cd * 0.5 / r, Some(prev_x0))
                    }
                    None => (cd, 0.0, None),
                };
                let coeffs = self.core.coeffs(ab, cx, c0, cp, 0.0);
                let (x, x0) = run_update(
                    &self.core,
                    output,
                    sample,
                    prev_x0,
                    coeffs,
                    Noise::None,
                    true,
                );
                (x, x0, h)
            }
        };
        self.prev = Some((x0, h));
        next_x
    }

    fn is_stochastic(&self) -> bool {
        false
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

    /// Two steps: the first-order start, then the second-order multistep update.
    #[test]
    fn golden_two_steps_n10() {
        let mut s = DpmSolverPP2M::new(core(Prediction::Epsilon));
        s.set_timesteps(10);
        let ts = s.timesteps().to_vec();
        let x1 = s.step(t1(&OUT).into(), ts[0], t1(&X), Noise::None);
        assert_close(x1.clone(), &GOLDEN_STEP1_N10);
        let x2 = s.step(t1(&Z).into(), ts[1], x1, Noise::None);
        assert_close(x2, &GOLDEN_STEP2_N10);
    }

    const GOLDEN_STEP1_N10: [f64; 4] = [
        1.144525196387,
        -2.127908479004,
        2.627866020309,
        1.458543123933,
    ];
    const GOLDEN_STEP2_N10: [f64; 4] = [
        2.170798786943,
        -3.825398691459,
        4.521915558023,
        3.038722832826,
    ];
}
