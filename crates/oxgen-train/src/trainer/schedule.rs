//! The learning-rate schedule of every trainer: constant, linear or cosine decay, each after a
//! linear warmup.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The shape of the decay after warmup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// The peak rate until the end.
    Constant,
    /// A straight line from the peak to `peak · min_lr_ratio` at the last step.
    Linear,
    /// Half a cosine from the peak to `peak · min_lr_ratio` (Loshchilov and Hutter, 2017).
    #[default]
    Cosine,
}

/// A learning-rate schedule: `warmup_steps` of linear warmup to the peak, then [`Decay`].
///
/// Warmup step `s` (0-based) takes `peak · (s + 1) / warmup_steps`, so the first step already
/// moves the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// Decay after warmup.
    pub decay: Decay,
    /// Linear warmup steps.
    pub warmup_steps: usize,
    /// The final rate as a fraction of the peak (linear and cosine).
    pub min_lr_ratio: f64,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            decay: Decay::Cosine,
            warmup_steps: 100,
            min_lr_ratio: 0.05,
        }
    }
}

impl Schedule {
    /// Cosine decay to `min_lr_ratio` after `warmup_steps`.
    pub fn cosine(warmup_steps: usize, min_lr_ratio: f64) -> Self {
        Self {
            decay: Decay::Cosine,
            warmup_steps,
            min_lr_ratio,
        }
    }

    /// The rate at `step` of a run of `steps` steps peaking at `peak`.
    pub fn at(&self, peak: f64, step: usize, steps: usize) -> f64 {
        if step < self.warmup_steps {
            return peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let min = peak * self.min_lr_ratio;
        match self.decay {
            Decay::Constant => peak,
            Decay::Linear => peak - (peak - min) * progress,
            Decay::Cosine => {
                min + 0.5 * (peak - min) * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }

    /// Refuses a ratio outside [0, 1].
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(Error::Config(format!(
                "schedule.min_lr_ratio must be in [0, 1], got {}",
                self.min_lr_ratio
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_each_decay() {
        let mut s = Schedule::cosine(10, 0.1);
        // Warmup: (s + 1)/10 of the peak.
        assert_eq!(s.at(1.0, 0, 110), 0.1);
        assert_eq!(s.at(1.0, 9, 110), 1.0);
        // Cosine: peak right after warmup, midpoint halfway, floor at the end and after.
        assert_eq!(s.at(1.0, 10, 110), 1.0);
        assert!((s.at(1.0, 60, 110) - 0.55).abs() < 1e-12);
        assert!((s.at(1.0, 110, 110) - 0.1).abs() < 1e-12);
        assert!((s.at(1.0, 500, 110) - 0.1).abs() < 1e-12);
        s.decay = Decay::Linear;
        assert!((s.at(2.0, 35, 110) - (2.0 - 1.8 * 0.25)).abs() < 1e-12);
        s.decay = Decay::Constant;
        assert_eq!(s.at(2.0, 100, 110), 2.0);
        // No warmup; a run shorter than its warmup never divides by zero.
        assert_eq!(Schedule::cosine(0, 0.0).at(1.0, 0, 10), 1.0);
        assert_eq!(Schedule::cosine(50, 0.0).at(1.0, 4, 10), 0.1);
        assert!(Schedule::cosine(0, 1.5).validate().is_err());
    }
}
