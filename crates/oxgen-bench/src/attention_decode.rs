//! The decode benchmark behind `oxgen bench attention --decode`: one query row per (batch, head)
//! against a long key sequence (one new token against a KV cache). Our decode path (split over
//! the keys, `oxgen_wgpu::attention_decode`), the same with subgroup operations off, our forward
//! kernel on the same call (what ran before the decode path existed), burn's `attention` and
//! `attention_fallback`, in one run on one device. FLOPs: 4·B·H·Lk·d. Outputs are kept alive as
//! in [`crate::attention`]: each call's output is the next call's query.

use burn::tensor::module::{attention as burn_attention, attention_fallback};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Device, Distribution, Tensor};
use oxgen_models::ops::attention::AttentionOptions;
use oxgen_wgpu::attention::flash_attention;
use serde::Serialize;

use crate::attention::{AttentionBench, median};

/// One cache length's timings. `None`: the path failed or was not run.
#[derive(Clone, Debug, Serialize)]
pub struct DecodeRow {
    /// Batch.
    pub batch: usize,
    /// Heads.
    pub heads: usize,
    /// Keys in the cache.
    pub keys: usize,
    /// Head dim.
    pub dim: usize,
    /// Causal mask (every key is visible to the last query either way).
    pub causal: bool,
    /// Storage dtype of q, k, v.
    pub dtype: String,
    /// Ours, the decode path, ms (its merge reducing within subgroups where the adapter has them).
    pub decode_ms: Option<f64>,
    /// Ours, the decode path with subgroups off (the merge through workgroup memory only), ms.
    pub no_subgroups_ms: Option<f64>,
    /// Ours, the forward kernel (one query row per invocation), ms.
    pub forward_kernel_ms: Option<f64>,
    /// burn `attention`, ms.
    pub burn_ms: Option<f64>,
    /// burn `attention_fallback`, ms.
    pub fallback_ms: Option<f64>,
    /// FLOPs of one call.
    pub flops: f64,
    /// Whether burn's paths were run.
    pub peers: bool,
}

/// Runs the decode benchmark for each cache length in `keys`.
pub fn run(device: &Device, keys: &[usize], cfg: AttentionBench) -> Vec<DecodeRow> {
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
        ..Default::default()
    };
    let burn_options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: causal,
    };
    let dtype = if half { DType::F16 } else { DType::F32 };
    let mut rows = Vec::new();
    for &lk in keys {
        let r = |l: usize| {
            Tensor::<4>::random(
                [batch, heads, l, dim],
                Distribution::Normal(0.0, 1.0),
                device,
            )
            .cast(dtype)
        };
        let (q, k, v) = (r(1), r(lk), r(lk));
        let time = |f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
            median(iters, device, q.clone(), |q| f(q)).map(|(ms, _)| ms)
        };
        let ours = |q| flash_attention(q, k.clone(), v.clone(), None, options.clone()).0;
        let decode_ms = time(&ours);
        let no_subgroups_ms = oxgen_wgpu::subgroups::with_enabled(Some(false), || time(&ours));
        oxgen_wgpu::attention_decode::set_enabled(false);
        let forward_kernel_ms = time(&ours);
        oxgen_wgpu::attention_decode::set_enabled(true);
        let (burn_ms, fallback_ms) = if peers {
            (
                time(&|q| burn_attention(q, k.clone(), v.clone(), None, None, burn_options)),
                time(&|q| attention_fallback(q, k.clone(), v.clone(), None, None, burn_options)),
            )
        } else {
            (None, None)
        };
        rows.push(DecodeRow {
            batch,
            heads,
            keys: lk,
            dim,
            causal,
            dtype: if half { "f16" } else { "f32" }.into(),
            decode_ms,
            no_subgroups_ms,
            forward_kernel_ms,
            burn_ms,
            fallback_ms,
            flops: 4.0 * (batch * heads * lk * dim) as f64,
            peers,
        });
    }
    rows
}

/// The rows as a Markdown table: ms (GFLOP/s) for each path, and the decode path's factor over
/// the forward kernel and over burn's `attention`.
pub fn table(rows: &[DecodeRow]) -> String {
    let cell = |ms: Option<f64>, flops: f64, ran: bool| match ms {
        Some(ms) => format!("{ms:.3} ({:.2})", flops / ms / 1e6),
        None if ran => "failed".into(),
        None => "not run".into(),
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}×", b / a),
        _ => "—".into(),
    };
    let mut s = String::from(
        "| B·H | keys | d | causal | dtype | decode path ms (GFLOP/s) | without subgroups | subgroups ÷ without | forward kernel | decode ÷ forward kernel | burn attention | attention_fallback | decode ÷ burn attention |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {}·{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.batch,
            r.heads,
            r.keys,
            r.dim,
            r.causal,
            r.dtype,
            cell(r.decode_ms, r.flops, true),
            cell(r.no_subgroups_ms, r.flops, true),
            ratio(r.decode_ms, r.no_subgroups_ms),
            cell(r.forward_kernel_ms, r.flops, true),
            ratio(r.decode_ms, r.forward_kernel_ms),
            cell(r.burn_ms, r.flops, r.peers),
            cell(r.fallback_ms, r.flops, r.peers),
            ratio(r.decode_ms, r.burn_ms),
        ));
    }
    s
}
