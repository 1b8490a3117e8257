//! The attention benchmark behind `oxgen bench attention` and `benches/attention.rs`: our flash
//! attention against burn's `attention` (its fused inference kernel where it applies) and
//! `attention_fallback` (matmul, softmax, matmul with an L×L buffer), forward and forward +
//! backward, in one run on one device.
//!
//! FLOPs follow the convention of `../shared/peers`: forward 4·B·H·L²·d (half when causal),
//! forward + backward 3.5× that. Outputs are kept alive: each call's output (or q's gradient)
//! is the next call's q, and the device is synchronised after every call. A path that fails
//! (burn's L×L buffer past the adapter's binding limit, say) is reported as failed.
//!
//! Peak memory of a forward + backward is the device pool's reserved bytes after the warm-up
//! call, with the pools emptied just before it: burn's pools only grow between cleanups, so this
//! is the call's high-water mark (inputs included), rounded up to whole pages.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use burn::tensor::module::{attention as burn_attention, attention_fallback};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Device, Distribution, Tensor};
use oxgen_models::ops::attention::AttentionOptions;
use serde::Serialize;

use oxgen_wgpu::attention::flash_attention;

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
    /// Storage dtype of q, k, v ("f32" or "f16").
    pub dtype: String,
    /// Ours, forward, ms.
    pub ours_fwd_ms: Option<f64>,
    /// Ours, forward, compiled with naga's loop bounding (cubecl's `ExecutionMode::Checked`), ms.
    pub ours_checked_fwd_ms: Option<f64>,
    /// Ours, forward, with subgroup operations off (K/V tiles in workgroup memory), ms.
    pub ours_no_subgroups_fwd_ms: Option<f64>,
    /// burn `attention`, forward, ms.
    pub burn_fwd_ms: Option<f64>,
    /// burn `attention_fallback`, forward, ms.
    pub fallback_fwd_ms: Option<f64>,
    /// Ours, forward + backward, ms.
    pub ours_fwd_bwd_ms: Option<f64>,
    /// Ours, forward + backward with subgroup operations off, ms.
    pub ours_no_subgroups_fwd_bwd_ms: Option<f64>,
    /// `attention_fallback` through autodiff, forward + backward, ms.
    pub fallback_fwd_bwd_ms: Option<f64>,
    /// Forward FLOPs.
    pub fwd_flops: f64,
    /// Ours, forward + backward: device memory at the peak, MiB.
    pub ours_peak_mib: Option<f64>,
    /// `attention_fallback`, forward + backward: device memory at the peak, MiB.
    pub fallback_peak_mib: Option<f64>,
    /// One B·H·L·L score buffer of the fallback in this dtype, MiB (its autodiff keeps several).
    pub l2_buffer_mib: f64,
    /// Whether burn's paths were run (a `None` time of theirs is then a failure).
    pub peers: bool,
}

/// What to run: the shape of each call, the dtype, and which paths.
#[derive(Clone, Copy, Debug)]
pub struct AttentionBench {
    /// Batch.
    pub batch: usize,
    /// Heads.
    pub heads: usize,
    /// Head dim.
    pub dim: usize,
    /// Causal mask.
    pub causal: bool,
    /// f16 storage (f32 arithmetic) instead of f32.
    pub half: bool,
    /// Timed calls per measurement (after one warm-up call).
    pub iters: usize,
    /// Also run burn's `attention` and `attention_fallback` (off for lengths whose L×L buffers
    /// cannot exist on the device).
    pub peers: bool,
}

const MIB: f64 = 1024.0 * 1024.0;

/// The pool's reserved bytes, in MiB.
fn reserved_mib(device: &Device) -> Option<f64> {
    device
        .memory_pool_usage()
        .map(|u| u.bytes_reserved as f64 / MIB)
}

/// Median milliseconds of `iters` calls after one warm-up, and the peak memory (MiB) of the
/// warm-up call; `None` if a call panicked (an allocation past the adapter's limits, say) or the
/// device failed.
pub(crate) fn median<S>(
    iters: usize,
    device: &Device,
    state: S,
    mut step: impl FnMut(S) -> S,
) -> Option<(f64, Option<f64>)> {
    let run = catch_unwind(AssertUnwindSafe(move || {
        device.sync().ok()?;
        device.memory_cleanup();
        let mut state = step(state);
        device.sync().ok()?;
        let peak = reserved_mib(device);
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let start = Instant::now();
            state = step(state);
            device.sync().ok()?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        drop(state);
        times.sort_by(f64::total_cmp);
        Some((times[times.len() / 2], peak))
    }));
    run.ok().flatten()
}

/// Runs the benchmark for each sequence length in `lens`.
pub fn run(device: &Device, lens: &[usize], cfg: AttentionBench) -> Vec<AttentionRow> {
    let AttentionBench {
        batch,
        heads,
        dim,
        causal,
        half,
        iters,
        peers,
    } = cfg;
    let options = AttentionOptions {
        causal,
        scale: None,
        window: None,
        key_lengths: None,
    };
    let burn_options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: causal,
    };
    let dtype = if half { DType::F16 } else { DType::F32 };
    let autodiff = device.clone().autodiff();
    let mut rows = Vec::new();
    for &len in lens {
        let shape = [batch, heads, len, dim];
        let r =
            |d: &Device| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), d).cast(dtype);
        let (q, k, v) = (r(device), r(device), r(device));
        let fwd = |f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
            median(iters, device, q.clone(), |q| f(q)).map(|(ms, _)| ms)
        };
        let ours_fwd_ms =
            fwd(&|q| flash_attention(q, k.clone(), v.clone(), None, options.clone()).0);
        oxgen_wgpu::set_loop_bounding(true);
        let ours_checked_fwd_ms =
            fwd(&|q| flash_attention(q, k.clone(), v.clone(), None, options.clone()).0);
        oxgen_wgpu::set_loop_bounding(false);
        let ours_no_subgroups_fwd_ms = oxgen_wgpu::subgroups::with_enabled(Some(false), || {
            fwd(&|q| flash_attention(q, k.clone(), v.clone(), None, options.clone()).0)
        });
        let (burn_fwd_ms, fallback_fwd_ms) = if peers {
            (
                fwd(&|q| burn_attention(q, k.clone(), v.clone(), None, None, burn_options)),
                fwd(&|q| attention_fallback(q, k.clone(), v.clone(), None, None, burn_options)),
            )
        } else {
            (None, None)
        };
        drop((q, k, v));
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
        let ours = fwd_bwd(&|q, k, v| flash_attention(q, k, v, None, options.clone()).0);
        let ours_no_subgroups = oxgen_wgpu::subgroups::with_enabled(Some(false), || {
            fwd_bwd(&|q, k, v| flash_attention(q, k, v, None, options.clone()).0)
        });
        let fallback = if peers {
            fwd_bwd(&|q, k, v| attention_fallback(q, k, v, None, None, burn_options))
        } else {
            None
        };
        let full = 4.0 * (batch * heads) as f64 * (len * len) as f64 * dim as f64;
        rows.push(AttentionRow {
            batch,
            heads,
            len,
            dim,
            causal,
            dtype: if half { "f16" } else { "f32" }.into(),
            ours_fwd_ms,
            ours_checked_fwd_ms,
            ours_no_subgroups_fwd_ms,
            burn_fwd_ms,
            fallback_fwd_ms,
            ours_fwd_bwd_ms: ours.map(|(ms, _)| ms),
            ours_no_subgroups_fwd_bwd_ms: ours_no_subgroups.map(|(ms, _)| ms),
            fallback_fwd_bwd_ms: fallback.map(|(ms, _)| ms),
            fwd_flops: if causal { full / 2.0 } else { full },
            ours_peak_mib: ours.and_then(|(_, peak)| peak),
            fallback_peak_mib: fallback.and_then(|(_, peak)| peak),
            l2_buffer_mib: (batch * heads * len * len * dtype.size()) as f64 / MIB,
            peers,
        });
    }
    rows
}

/// The rows as a Markdown table: ms and TFLOP/s for each path.
pub fn table(rows: &[AttentionRow]) -> String {
    let cell = |ms: Option<f64>, flops: f64, ran: bool| match ms {
        Some(ms) => format!("{ms:.3} ({:.3})", flops / ms / 1e9),
        None if ran => "failed".into(),
        None => "not run".into(),
    };
    let mib = |m: Option<f64>| m.map_or("—".into(), |m| format!("{m:.0}"));
    let mut s = String::from(
        "| B·H | L | d | causal | dtype | ours fwd ms (TFLOP/s) | ours, loop-bounded (Checked) | Unchecked's factor | ours, subgroups off | subgroups' factor | burn attention | attention_fallback | ours fwd+bwd | ours fwd+bwd, subgroups off | subgroups' factor (fwd+bwd) | fallback fwd+bwd | ours ÷ fallback (fwd+bwd) | peak MiB ours | peak MiB fallback | one L×L buffer MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let ratio = match (r.ours_fwd_bwd_ms, r.fallback_fwd_bwd_ms) {
            (Some(a), Some(b)) => format!("{:.2}×", b / a),
            _ => "—".into(),
        };
        let factor = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}×", b / a),
            _ => "—".into(),
        };
        s.push_str(&format!(
            "| {}·{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |\n",
            r.batch,
            r.heads,
            r.len,
            r.dim,
            r.causal,
            r.dtype,
            cell(r.ours_fwd_ms, r.fwd_flops, true),
            cell(r.ours_checked_fwd_ms, r.fwd_flops, true),
            factor(r.ours_fwd_ms, r.ours_checked_fwd_ms),
            cell(r.ours_no_subgroups_fwd_ms, r.fwd_flops, true),
            factor(r.ours_fwd_ms, r.ours_no_subgroups_fwd_ms),
            cell(r.burn_fwd_ms, r.fwd_flops, r.peers),
            cell(r.fallback_fwd_ms, r.fwd_flops, r.peers),
            cell(r.ours_fwd_bwd_ms, 3.5 * r.fwd_flops, true),
            cell(r.ours_no_subgroups_fwd_bwd_ms, 3.5 * r.fwd_flops, true),
            factor(r.ours_fwd_bwd_ms, r.ours_no_subgroups_fwd_bwd_ms),
            cell(r.fallback_fwd_bwd_ms, 3.5 * r.fwd_flops, r.peers),
            ratio,
            mib(r.ours_peak_mib),
            mib(r.fallback_peak_mib),
            r.l2_buffer_mib
        ));
    }
    s
}
