//! Utility against privacy: the same run trained without privacy and with DP-SGD at each of
//! several target ε, its held-out likelihood bound and sample quality side by side, as a table
//! (`utility.json`) and a picture (`utility.png`).

use std::path::Path;

use serde::Serialize;

use super::dpsgd::DpConfig;
use crate::family::FamilyConfig;
use crate::family::train_family;
use crate::trainer::TrainOptions;
use crate::{Error, Result};

/// One run of the sweep.
#[derive(Clone, Debug, Serialize)]
pub struct UtilityRow {
    /// The target ε; `None` for the non-private run.
    pub target_epsilon: Option<f64>,
    /// ε the accountant gives for the run's steps.
    pub epsilon: Option<f64>,
    /// The noise multiplier.
    pub sigma: Option<f64>,
    /// Held-out IWAE bound (k = the run's `iwae_k`), bits per dimension.
    pub iwae_bits: Option<f64>,
    /// Held-out ELBO bound, bits per dimension.
    pub elbo_bits: Option<f64>,
    /// SWD of samples over its floor (held-out against held-out).
    pub swd_ratio: f64,
    /// MMD over its floor.
    pub mmd_ratio: f64,
    /// Training wall time, seconds.
    pub train_seconds: f64,
}

/// Trains `base` without privacy and with `dp` at each of `epsilons` (each run in its own
/// folder of `out`: `non-private`, `eps-1`, …), and writes `utility.json` and `utility.png`.
pub fn utility_sweep(
    base: &FamilyConfig,
    dp: &DpConfig,
    epsilons: &[f64],
    out: &Path,
    opts: &TrainOptions,
) -> Result<Vec<UtilityRow>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io("output folder", out, e))?;
    let mut rows = Vec::new();
    let runs = std::iter::once(None).chain(epsilons.iter().map(|&e| Some(e)));
    for target in runs {
        let mut config = base.clone();
        config.dp = target.map(|e| DpConfig {
            epsilon: Some(e),
            sigma: None,
            ..dp.clone()
        });
        let name = match target {
            Some(e) => format!("eps-{e}"),
            None => "non-private".into(),
        };
        let run_opts = TrainOptions {
            out: Some(out.join(&name)),
            skip_eval: false,
            ..opts.clone()
        };
        tracing::info!("utility sweep: {name}");
        let r = train_family(&config, &run_opts)?;
        let q = r.quality.as_ref().ok_or_else(|| {
            Error::Config(format!(
                "the {name} run of the sweep wrote no quality report"
            ))
        })?;
        rows.push(UtilityRow {
            target_epsilon: target,
            epsilon: r.dp.as_ref().map(|p| p.planned_epsilon),
            sigma: r.dp.as_ref().map(|p| p.sigma),
            iwae_bits: q.iwae.as_ref().and_then(|n| n.bits_per_dim()),
            elbo_bits: q.nll.bits_per_dim(),
            swd_ratio: q.quality.swd / q.quality.swd_floor.max(1e-12),
            mmd_ratio: q.quality.mmd / q.quality.mmd_floor.max(1e-12),
            train_seconds: r.train_seconds,
        });
    }
    super::write_json_atomic(&out.join("utility.json"), &rows)?;
    let pts: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.epsilon?, r.iwae_bits.or(r.elbo_bits)?)))
        .collect();
    let reference = rows[0].iwae_bits.or(rows[0].elbo_bits);
    crate::plot::curve_with_reference(
        &out.join("utility.png"),
        &format!(
            "{} on {}: held-out NLL bound against ε (δ = {:e}, clip {})",
            base.model.name(),
            base.data,
            dp.delta,
            dp.clip
        ),
        (
            "ε (DP-SGD, target of each run)",
            "held-out NLL bound, bits/dim",
        ),
        ("DP-SGD", &pts),
        reference.map(|r| ("non-private", r)),
    )?;
    Ok(rows)
}
