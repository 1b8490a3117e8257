//! Differential privacy: the accountants that turn DP-SGD's noise and sampling into (ε, δ).
//!
//! Three accountants, each matching its reference implementation's published values:
//! - [`rdp`]: Rényi DP with Opacus's orders and the Balle et al. 2020 conversion;
//! - [`prv`]: the numerical composition of privacy loss random variables (Gopi et al. 2021);
//! - [`gdp`]: the Gaussian-DP central-limit approximation (Bu et al. 2020).
//!
//! A run's privacy is a history of [`Phase`]s: `steps` steps of the Poisson-subsampled Gaussian
//! mechanism with sampling rate q and noise multiplier σ (noise σ·C on gradients clipped to C).

pub mod audit;
pub mod audit_target;
pub mod dpsgd;
pub mod gdp;
pub mod prv;
pub mod rdp;
pub mod sigma;
pub mod special;
pub(crate) mod state;
pub mod utility;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Which accountant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountantKind {
    /// Rényi DP (Mironov et al. 2019; Balle et al. 2020).
    #[default]
    Rdp,
    /// Privacy loss random variables (Gopi et al. 2021).
    Prv,
    /// Gaussian DP (Dong, Roth & Su 2019); an approximation.
    Gdp,
}

impl std::str::FromStr for AccountantKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "rdp" => Ok(AccountantKind::Rdp),
            "prv" => Ok(AccountantKind::Prv),
            "gdp" => Ok(AccountantKind::Gdp),
            other => Err(Error::Privacy {
                parameter: "accountant",
                reason: format!("unknown accountant `{other}`; use rdp, prv or gdp"),
            }),
        }
    }
}

/// `steps` steps of the subsampled Gaussian mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Noise multiplier σ: the noise's standard deviation over the clipping norm.
    pub sigma: f64,
    /// Sampling rate q: each example's chance of being in a batch.
    pub q: f64,
    /// Steps taken.
    pub steps: u64,
}

impl Phase {
    /// Refuses q outside (0, 1] and σ that is not positive and finite.
    pub fn validate(&self) -> Result<()> {
        if !(self.q > 0.0 && self.q <= 1.0) {
            return Err(Error::Privacy {
                parameter: "q",
                reason: format!("the sampling rate must lie in (0, 1], got {}", self.q),
            });
        }
        if !(self.sigma > 0.0 && self.sigma.is_finite()) {
            return Err(Error::Privacy {
                parameter: "sigma",
                reason: format!(
                    "the noise multiplier must be positive and finite, got {}",
                    self.sigma
                ),
            });
        }
        Ok(())
    }
}

/// Refuses δ outside (0, 1), and δ ≥ 1/`n` when the data size `n` is known (δ must be well
/// below the chance of leaking one whole record).
pub fn validate_delta(delta: f64, n: Option<usize>) -> Result<()> {
    if !(delta > 0.0 && delta < 1.0) {
        return Err(Error::Privacy {
            parameter: "delta",
            reason: format!("δ must lie in (0, 1), got {delta}"),
        });
    }
    if let Some(n) = n
        && delta >= 1.0 / n as f64
    {
        return Err(Error::Privacy {
            parameter: "delta",
            reason: format!(
                "δ = {delta} is at least 1/N = 1/{n}: a mechanism that publishes one random record whole meets it; use δ < 1/N"
            ),
        });
    }
    Ok(())
}

/// ε at `delta` after `history`, by `kind` (PRV with Opacus's default error targets).
pub fn epsilon(kind: AccountantKind, history: &[Phase], delta: f64) -> Result<f64> {
    validate_delta(delta, None)?;
    for p in history {
        p.validate()?;
    }
    match kind {
        AccountantKind::Rdp => Ok(rdp::epsilon(history, delta, &rdp::default_orders()).0),
        AccountantKind::Prv => prv::epsilon(history, delta, &prv::PrvOptions::default()),
        AccountantKind::Gdp => Ok(gdp::epsilon(history, delta)),
    }
}

/// Writes `value` as pretty JSON to `path` atomically (a temporary file, then a rename).
pub fn write_json_atomic(path: &std::path::Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value).expect("serialises"))
        .map_err(|e| Error::io("privacy report", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("privacy report", path, e))
}

/// What a DP run spends: its accountant, δ, and its history (kept in checkpoints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// The accountant.
    pub accountant: AccountantKind,
    /// The target δ.
    pub delta: f64,
    /// The phases so far (consecutive steps of equal σ and q merge).
    pub history: Vec<Phase>,
}

impl Ledger {
    /// Records one step.
    pub fn step(&mut self, sigma: f64, q: f64) {
        match self.history.last_mut() {
            Some(p) if p.sigma == sigma && p.q == q => p.steps += 1,
            _ => self.history.push(Phase { sigma, q, steps: 1 }),
        }
    }

    /// Steps recorded.
    pub fn steps(&self) -> u64 {
        self.history.iter().map(|p| p.steps).sum()
    }

    /// ε spent so far.
    pub fn epsilon(&self) -> Result<f64> {
        epsilon(self.accountant, &self.history, self.delta)
    }
}

#[cfg(test)]
mod tests;
