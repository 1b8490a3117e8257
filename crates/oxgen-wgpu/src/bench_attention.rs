//! The attention benchmark behind `oxgen bench attention` and `benches/attention.rs`: our flash
//! attention against burn's `attention` (its fused inference kernel where it applies) and
//! `attention_fallback` (matmul, softmax, matmul with an L×L buffer), forward and forward +
//! backward, in one run on one device.
//!
//! FLOPs follow the convention of `../shared/peers`: forward 4·B·H·L²·d (half when causal),
//! forward + backward 3.5× that. Outputs are kept alive: each call's output (or q's gradient)
//! is the next call's q, and the device is synchronised after every call. A path that fails
//! (burn's L×L buffer past the adapter's binding limit, say) is reported as failed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use burn::tensor::module::{attention as burn_attention, attention_fallback};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Distribution, Tensor};
use oxgen_models::ops::attention::AttentionOptions;
use serde::Serialize;

use crate::attention::flash_attention;

/// One shape's timings. `None`: the path failed or does not apply.
#[derive(Clone, Debug, Serialize)]
pub struct AttentionRow {
    /// Batch.
    pub batch: usize,
    /// Heads.
    pub heads: usize,
    /// Sequence length.
    pub len: usize,
    /// Head dim.
    pub dim: usize,
    /// Causal mask.
    pub causal: bool,
    /// Ours, forward, ms.
    pub ours_fwd_ms: Option<f64>,
    /// burn `attention`, forward, ms.
    pub burn_fwd_ms: Option<f64>,
    /// burn `attention_fallback`, forward, ms.
    pub fallback_fwd_ms: Option<f64>,
    /// Ours, forward + backward, ms.
    pub ours_fwd_bwd_ms: Option<f64>,
    /// `attention_fallback` through autodiff, forward + backward, ms.
    pub fallback_fwd_bwd_ms: Option<f64>,
    /// Forward FLOPs.
    pub fwd_flops: f64,
}

/// Median milliseconds of `iters` calls after one warm-up; `None` if a call panicked (an
/// allocation past the adapter's limits, say) or the device failed.
fn median<S>(iters: usize, device: &Device, state: S, mut step: impl FnMut(S) -> S) -> Option<f64> {
    let run = catch_unwind(AssertUnwindSafe(move || {
        let mut state = step(state);
        device.sync().ok()?;
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let start = Instant::now();
            state = step(state);
            device.sync().ok()?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        drop(state);
        times.sort_by(f64::total_cmp);
        Some(times[times.len() / 2])
    }));
    run.ok().flatten()
}

/// Runs the benchmark for each sequence length in `lens`.
pub fn run(
    device: &Device,
    lens: &[usize],
    batch: usize,
    heads: usize,
    dim: usize,
    causal: bool,
    iters: usize,
) -> Vec<AttentionRow> {
    let options = AttentionOptions {
        causal,
        scale: None,
    };
    let burn_options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: causal,
    };
    let autodiff = device.clone().autodiff();
    let mut rows = Vec::new();
    for &len in lens {
        let shape = [batch, heads, len, dim];
        let r = |d: &Device| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), d);
        let (q, k, v) = (r(device), r(device), r(device));
        let fwd = |f: &dyn Fn(Tensor<4>) -> Tensor<4>| median(iters, device, q.clone(), |q| f(q));
        let ours_fwd_ms = fwd(&|q| flash_attention(q, k.clone(), v.clone(), None, options).0);
        let burn_fwd_ms =
            fwd(&|q| burn_attention(q, k.clone(), v.clone(), None, None, burn_options));
        let fallback_fwd_ms =
            fwd(&|q| attention_fallback(q, k.clone(), v.clone(), None, None, burn_options));
        let (qa, ka, va) = (r(&autodiff), r(&autodiff), r(&autodiff));
        let fwd_bwd = |f: &dyn Fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>| {
            median(iters, device, qa.clone(), |q| {
                let q = q.detach().require_grad();
                let out = f(
                    q.clone(),
                    ka.clone().require_grad(),
                    va.clone().require_grad(),
                );
                let grads = out.sum().backward();
                // q's gradient becomes the next q: the backward cannot be skipped.
                Tensor::from_inner(q.grad(&grads).expect("q has a gradient"))
            })
        };
        let ours_fwd_bwd_ms = fwd_bwd(&|q, k, v| flash_attention(q, k, v, None, options).0);
        let fallback_fwd_bwd_ms =
            fwd_bwd(&|q, k, v| attention_fallback(q, k, v, None, None, burn_options));
        let full = 4.0 * (batch * heads) as f64 * (len * len) as f64 * dim as f64;
        rows.push(AttentionRow {
            batch,
            heads,
            len,
            dim,
            causal,
            ours_fwd_ms,
            burn_fwd_ms,
            fallback_fwd_ms,
            ours_fwd_bwd_ms,
            fallback_fwd_bwd_ms,
            fwd_flops: if causal { full / 2.0 } else { full },
        });
    }
    rows
}

/// The rows as a Markdown table: ms and TFLOP/s for each path.
pub fn table(rows: &[AttentionRow]) -> String {
    let cell = |ms: Option<f64>, flops: f64| match ms {
        Some(ms) => format!("{ms:.3} ({:.3})", flops / ms / 1e9),
        None => "failed".into(),
    };
    let mut s = String::from(
        "| B·H | L | d | causal | ours fwd ms (TFLOP/s) | burn attention | attention_fallback | ours fwd+bwd | fallback fwd+bwd | ours ÷ fallback (fwd+bwd) |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let ratio = match (r.ours_fwd_bwd_ms, r.fallback_fwd_bwd_ms) {
            (Some(a), Some(b)) => format!("{:.2}×", b / a),
            _ => "—".into(),
        };
        s.push_str(&format!(
            "| {}·{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.batch,
            r.heads,
            r.len,
            r.dim,
            r.causal,
            cell(r.ours_fwd_ms, r.fwd_flops),
            cell(r.burn_fwd_ms, r.fwd_flops),
            cell(r.fallback_fwd_ms, r.fwd_flops),
            cell(r.ours_fwd_bwd_ms, 3.5 * r.fwd_flops),
            cell(r.fallback_fwd_bwd_ms, 3.5 * r.fwd_flops),
            ratio
        ));
    }
    s
}
