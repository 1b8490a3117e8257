//! Dynamic loss scaling for f16 training (Micikevicius et al., 2018, "Mixed Precision
//! Training", §3.2): the loss is multiplied by a scale S before the backward, so that small
//! gradients survive f16's range (its smallest subnormal is 2⁻²⁴ ≈ 6·10⁻⁸); the gradients of the
//! f32 master weights are divided by S before clipping and the update. A step whose gradients
//! overflowed (a non-finite norm) makes no update and halves S; after [`GROWTH_INTERVAL`] good
//! steps in a row S doubles. The constants are PyTorch's `GradScaler` defaults.
//!
//! The scale is part of a checkpoint (`loss_scale.json`), so a resumed run scales as a straight
//! one would.

use serde::{Deserialize, Serialize};

use crate::checkpoint::Loaded;
use crate::error::{Error, Result};

/// The first scale, 2¹⁶.
pub const INITIAL_SCALE: f64 = 65536.0;
/// Good steps in a row before the scale doubles.
pub const GROWTH_INTERVAL: usize = 2000;
/// The checkpoint file.
pub const FILE: &str = "loss_scale.json";

/// The scaler's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    /// The current scale S.
    pub scale: f64,
    /// Good steps since the last change of S.
    pub good_steps: usize,
    /// Steps skipped for overflow, in all.
    pub overflows: usize,
}

impl Default for LossScale {
    fn default() -> Self {
        Self {
            scale: INITIAL_SCALE,
            good_steps: 0,
            overflows: 0,
        }
    }
}

impl LossScale {
    /// Records a step whose unscaled gradient norm was `norm`; returns whether the step may
    /// update the weights (the norm was finite).
    pub fn update(&mut self, norm: f64) -> bool {
        if !norm.is_finite() {
            self.scale /= 2.0;
            self.good_steps = 0;
            self.overflows += 1;
            return false;
        }
        self.good_steps += 1;
        if self.good_steps >= GROWTH_INTERVAL {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
        true
    }

    /// The checkpoint file.
    pub fn file(&self) -> (&'static str, Vec<u8>) {
        (
            FILE,
            serde_json::to_vec(self).expect("the loss scale serializes"),
        )
    }

    /// The state `ck` holds, or a fresh one when the checkpoint was written by an f32 run.
    pub fn restore(ck: &Loaded) -> Result<Self> {
        match ck.file(FILE) {
            Ok(bytes) => serde_json::from_slice(bytes).map_err(|e| Error::Checkpoint {
                path: ck.dir.clone(),
                reason: format!("{FILE} is unreadable: {e}"),
            }),
            Err(_) => Ok(Self::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An overflow halves S and resets the count; 2,000 good steps double it.
    #[test]
    fn overflows_halve_and_good_runs_double() {
        let mut s = LossScale::default();
        assert!(!s.update(f64::INFINITY));
        assert!(!s.update(f64::NAN));
        assert_eq!((s.scale, s.overflows), (16384.0, 2));
        for _ in 0..GROWTH_INTERVAL - 1 {
            assert!(s.update(1.0));
        }
        assert_eq!((s.scale, s.good_steps), (16384.0, GROWTH_INTERVAL - 1));
        assert!(s.update(0.5));
        assert_eq!((s.scale, s.good_steps), (32768.0, 0));
    }
}
