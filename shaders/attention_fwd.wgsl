// attention_fwd.wgsl: tiled online-softmax attention, forward (FlashAttention-2 style).
// Reference: oxgen_models::ops::attention::attention_reference (burn's attention_fallback).
//
//   s_ij = scale · q_i·k_j (+ bias_ij);  causal: key j is visible to query i when
//          j + Lq ≤ i + Lk (bottom-right aligned, as burn's attention_fallback)
//          sliding window: and j + window + Lq > i + Lk; key lengths: and j < len[batch]
//          (padding keys are masked; no L×L buffer for any of these masks)
//   o_i  = Σ_j softmax_j(s_ij) · v_j;     lse_i = log Σ_j exp(s_ij)   (saved for the backward)
//
// Bindings (group 0), all declared read_write (CubeCL sub-allocates shared wgpu buffers):
//   0 q       in   [BH, Lq, D] as S (D/4 per row)
//   1 k       in   [BH, Lk, D] as S
//   2 v       in   [BH, Lk, D] as S
//   3 bias    in   [BH, Lq, Lk] f32, additive (−inf masks a key); any buffer when !BIAS
//   4 out     out  [BH, Lq, D] as S
//   5 lse     out  [BH, Lq] f32; −3.4e38 for a row whose keys are all masked (its output is 0)
//   6 params  in   `Args` (attention_params.wgsl: `Params`, then the key lengths)
//
// Storage: S is vec4<f32>, or vec4<f16> where the adapter has shader-f16 and the tensors are
// f16 (the half variant). Rows are converted to f32 on load; scores, softmax statistics,
// accumulators and workgroup tiles are f32; results are rounded to S once, on store. bias,
// lse and delta stay f32.
//
// Template placeholders: `enable_f16` (the f16 enable directive, or nothing), `storage` (S),
// {{ d4 }} (head dim / 4), {{ br }} (query rows per workgroup =
// invocations), {{ bc }} (keys per tile), {{ bc_d4 }} (= bc·d4), {{ causal }}, {{ bias }}, and
// code unrolled over the d4 vec4 chunks by the launcher (placeholders named in backquotes here,
// since a placeholder inside a comment would be filled with code): `dot_q_k` (an expression),
// `acc_add_pv` (statements). Unrolled because lavapipe (llvmpipe) stops every loop of an
// invocation after 65,535 iterations in total; with the head-dim loops unrolled an invocation
// makes about 2·Lk loop iterations, not 2·Lk·D.
//
// Layout: workgroup (x, y + z·Y) = (query tile, batch·head). Invocation r owns query row x·BR + r: its
// q row and output accumulator stay in registers. K and V tiles of BC rows are staged in
// workgroup memory, each loaded once per workgroup and read by all BR rows. Per tile: the BC
// scores, one rescale of the accumulator by exp(m_old − m_new), then the weighted sum of V.
// Causal: tiles wholly above the diagonal are never loaded.

{{ enable_f16 }}
alias S = {{ storage }};

// struct Params, struct Args and fn key_length: attention_params.wgsl, appended.

@group(0) @binding(0) var<storage, read_write> q: array<S>;
@group(0) @binding(1) var<storage, read_write> k: array<S>;
@group(0) @binding(2) var<storage, read_write> v: array<S>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<S>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
@group(0) @binding(6) var<storage, read_write> params: Args;

const D4: u32 = {{ d4 }}u;
const BR: u32 = {{ br }}u;
const BC: u32 = {{ bc }}u;
const CAUSAL: bool = {{ causal }};
const BIAS: bool = {{ bias }};
const NEG_INF: f32 = -3.4028235e38;

var<workgroup> ks: array<vec4<f32>, {{ bc_d4 }}>;
var<workgroup> vs: array<vec4<f32>, {{ bc_d4 }}>;
var<workgroup> shared_params: Params;
var<workgroup> shared_key_len: u32;

@compute @workgroup_size({{ br }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) grid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    if (lid == 0u) {
        shared_params = params.p;
        shared_key_len = key_length(params.p, wid.y + wid.z * grid.y);
    }
    // Uniform copy of the parameters: the tile loop below holds barriers.
    let p = workgroupUniformLoad(&shared_params);
    // Keys at or past it are padding (lk without per-sequence lengths).
    let key_len = workgroupUniformLoad(&shared_key_len);
    // (batch, head) = wid.y + wid.z · grid.y: past 65,535 the grid folds into z, and the
    // workgroups of the last z row past B·H have nothing to do (uniform: the whole workgroup).
    let bh = wid.y + wid.z * grid.y;
    if (bh >= p.bh) {
        return;
    }
    let row = wid.x * BR + lid;
    let live = row < p.lq;
    let q_base = (bh * p.lq + row) * D4;

    var qr: array<vec4<f32>, D4>;
    var acc: array<vec4<f32>, D4>;
    for (var c = 0u; c < D4; c++) {
        if (live) {
            qr[c] = vec4<f32>(q[q_base + c]) * p.scale;
        }
        acc[c] = vec4<f32>(0.0);
    }
    var m = NEG_INF;
    var l = 0.0;

    // Causal: keys past the last one any row of this workgroup may see are never loaded.
    var key_end = key_len;
    if (CAUSAL) {
        let rows_end = min(wid.x * BR + BR, p.lq);
        key_end = min(key_len, select(0u, rows_end + p.lk - p.lq, rows_end + p.lk >= p.lq));
    }
    for (var t0 = 0u; t0 < key_end; t0 += BC) {
        for (var e = lid; e < BC * D4; e += BR) {
            let key = t0 + e / D4;
            var kk = vec4<f32>(0.0);
            var vv = vec4<f32>(0.0);
            if (key < p.lk) {
                let src = (bh * p.lk + key) * D4 + e % D4;
                kk = vec4<f32>(k[src]);
                vv = vec4<f32>(v[src]);
            }
            ks[e] = kk;
            vs[e] = vv;
        }
        workgroupBarrier();

        if (live) {
            var s: array<f32, BC>;
            var tile_max = NEG_INF;
            for (var j = 0u; j < BC; j++) {
                let key = t0 + j;
                var visible = key < key_len;
                if (CAUSAL) {
                    visible = visible && key + p.lq <= row + p.lk;
                }
                if (p.window > 0u) {
                    visible = visible && key + p.window + p.lq > row + p.lk;
                }
                var sj = NEG_INF;
                if (visible) {
                    let kb = j * D4;
                    sj = {{ dot_q_k }};
                    if (BIAS) {
                        sj += bias[(bh * p.lq + row) * p.lk + key];
                    }
                    sj = max(sj, NEG_INF);
                }
                s[j] = sj;
                tile_max = max(tile_max, sj);
            }
            let m_new = max(m, tile_max);
            if (m_new > NEG_INF) {
                let correction = exp(m - m_new);
                l *= correction;
                for (var c = 0u; c < D4; c++) {
                    acc[c] *= correction;
                }
                for (var j = 0u; j < BC; j++) {
                    if (s[j] > NEG_INF) {
                        let pj = exp(s[j] - m_new);
                        l += pj;
                        let vb = j * D4;
                        {{ acc_add_pv }}
                    }
                }
                m = m_new;
            }
        }
        workgroupBarrier();
    }

    if (live) {
        let inv = select(0.0, 1.0 / l, l > 0.0);
        for (var c = 0u; c < D4; c++) {
            out[q_base + c] = S(acc[c] * inv);
        }
        lse[bh * p.lq + row] = select(NEG_INF, m + log(l), l > 0.0);
    }
}
