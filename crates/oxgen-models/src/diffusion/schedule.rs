//! Noise schedules for DDPM-style diffusion.
//!
//! Linear: Ho et al., "Denoising Diffusion Probabilistic Models" (2020), β from 1e-4 to 0.02.
//! Cosine: Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models" (2021).
//!
//! Everything here is host-side `f64`: the schedule is a table of scalars, not a tensor.

use serde::{Deserialize, Serialize};

/// Which β schedule to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// β linear from `1e-4 · 1000/T` to `0.02 · 1000/T`.
    Linear,
    /// ᾱ(t) = cos²(((t/T + s)/(1 + s)) · π/2), s = 0.008, β clipped at 0.999.
    Cosine,
}

/// The discrete schedule: `alphas_cumprod[t]` = ᾱ_t for t in 0..T.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseSchedule {
    /// β_t.
    pub betas: Vec<f64>,
    /// ᾱ_t = Π_{s ≤ t} (1 − β_s).
    pub alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    /// Builds the schedule of `kind` with `steps` training timesteps.
    pub fn new(kind: ScheduleKind, steps: usize) -> Self {
        assert!(
            steps >= 2,
            "a schedule needs at least 2 timesteps, got {steps}"
        );
        let betas: Vec<f64> = match kind {
            ScheduleKind::Linear => {
                let scale = 1000.0 / steps as f64;
                let (lo, hi) = (scale * 1e-4, scale * 0.02);
                (0..steps)
                    .map(|i| lo + (hi - lo) * i as f64 / (steps - 1) as f64)
                    .collect()
            }
            ScheduleKind::Cosine => {
                let s = 0.008;
                let f = |t: f64| {
                    (((t / steps as f64 + s) / (1.0 + s)) * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (0..steps)
                    .map(|i| (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(0.999))
                    .collect()
            }
        };
        let mut alphas_cumprod = Vec::with_capacity(steps);
        let mut prod = 1.0;
        for b in &betas {
            prod *= 1.0 - b;
            alphas_cumprod.push(prod);
        }
        Self {
            betas,
            alphas_cumprod,
        }
    }

    /// Number of training timesteps T.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    /// Always false: a schedule has at least two steps.
    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// ᾱ at timestep `t`, with ᾱ_{-1} = 1 for `t = None`.
    pub fn alpha_bar(&self, t: Option<usize>) -> f64 {
        t.map_or(1.0, |t| self.alphas_cumprod[t])
    }
}

/// What the denoiser predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prediction {
    /// ε, the noise that was added.
    Epsilon,
    /// v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho, 2022).
    V,
}

impl Prediction {
    /// Coefficients `(px, po)` with x̂₀ = px·x_t + po·output at ᾱ = `alpha_bar`.
    pub fn x0_coeffs(self, alpha_bar: f64) -> (f64, f64) {
        let (a, s) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
        match self {
            Prediction::Epsilon => (1.0 / a, -s / a),
            Prediction::V => (a, -s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_matches_ho_et_al() {
        let s = NoiseSchedule::new(ScheduleKind::Linear, 1000);
        assert!((s.betas[0] - 1e-4).abs() < 1e-12);
        assert!((s.betas[999] - 0.02).abs() < 1e-12);
        // ᾱ_T of the DDPM linear schedule is about 4.04e-5.
        assert!(
            (s.alphas_cumprod[999] - 4.036e-5).abs() < 1e-7,
            "{}",
            s.alphas_cumprod[999]
        );
    }

    #[test]
    fn cosine_is_monotone_and_ends_near_zero() {
        let s = NoiseSchedule::new(ScheduleKind::Cosine, 1000);
        assert!(s.alphas_cumprod.windows(2).all(|w| w[1] < w[0]));
        assert!(s.alphas_cumprod[999] < 1e-6);
        assert!((s.alphas_cumprod[0] - 0.99996).abs() < 1e-4);
    }

    #[test]
    fn v_prediction_inverts() {
        // x_t = √ᾱ x0 + √(1−ᾱ) ε, v = √ᾱ ε − √(1−ᾱ) x0.
        let (ab, x0, eps) = (0.3f64, 0.7f64, -1.2f64);
        let xt = ab.sqrt() * x0 + (1.0 - ab).sqrt() * eps;
        let v = ab.sqrt() * eps - (1.0 - ab).sqrt() * x0;
        let (px, po) = Prediction::V.x0_coeffs(ab);
        assert!((px * xt + po * v - x0).abs() < 1e-12);
        let (px, po) = Prediction::Epsilon.x0_coeffs(ab);
        assert!((px * xt + po * eps - x0).abs() < 1e-12);
    }
}
