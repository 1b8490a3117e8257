//! Detection power against quality cost, side by side: KGW at several biases δ and tournament
//! sampling at several depths m, each measured on fresh samples of one length, as the share
//! detected at z ≥ 4 and the rise in NLL under the unwatermarked model.

use burn::tensor::Device;
use oxgen_models::ar::DecodeOptions;
use oxgen_models::ar::watermark::{Kgw, Tournament};
use serde::Serialize;

use super::Scheme;
use super::attack::mean_nll;
use super::eval::samples;
use crate::ar::ArRun;

/// KGW's biases swept.
pub const DELTAS: [f32; 4] = [0.5, 1.0, 2.0, 4.0];
/// Tournament depths swept.
pub const LAYERS: [usize; 3] = [5, 10, 30];

/// One setting.
#[derive(Clone, Debug, Serialize)]
pub struct TradeoffPoint {
    /// "kgw" or "tournament".
    pub scheme: &'static str,
    /// δ for KGW, m for the tournament.
    pub param: f64,
    /// Share of samples detected at z ≥ 4.
    pub tpr_at_4: f64,
    /// NLL of the samples under the unwatermarked model, nats per token.
    pub nll: f64,
    /// Its rise over unwatermarked samples.
    pub nll_cost: f64,
}

/// Sweeps [`DELTAS`] (with `base`'s key, γ and seeding) and [`LAYERS`] (same key and seeding)
/// on `n` samples of `length` tokens each; `plain_nll` is the unwatermarked samples' NLL.
#[allow(clippy::too_many_arguments)]
pub fn tradeoff(
    run: &ArRun,
    base: &Kgw,
    vocab: usize,
    starts: &[u32],
    n: usize,
    length: usize,
    plain: &DecodeOptions,
    plain_nll: f64,
    seed: u64,
    device: &Device,
) -> Vec<TradeoffPoint> {
    let kgws = DELTAS.iter().map(|&delta| {
        (
            "kgw",
            f64::from(delta),
            Scheme::Kgw(Kgw {
                delta,
                ..base.clone()
            }),
        )
    });
    let tournaments = LAYERS.iter().map(|&layers| {
        (
            "tournament",
            layers as f64,
            Scheme::Tournament(Tournament {
                key: base.key,
                layers,
                seeding: base.seeding,
            }),
        )
    });
    kgws.chain(tournaments)
        .map(|(name, param, scheme)| {
            let texts = samples(
                run,
                n,
                length,
                &scheme.options(plain.clone()),
                starts,
                seed ^ param.to_bits(),
                device,
            );
            let detected = texts
                .iter()
                .filter(|t| scheme.score(t, vocab).z >= 4.0)
                .count();
            let nll = mean_nll(&run.model, &texts, device);
            TradeoffPoint {
                scheme: name,
                param,
                tpr_at_4: detected as f64 / n.max(1) as f64,
                nll,
                nll_cost: nll - plain_nll,
            }
        })
        .collect()
}
