// attention_fwd.wgsl: tiled online-softmax attention, forward (FlashAttention-2 style), with
// several query rows per invocation (register tiling).
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
// Layout: workgroup (x, y + z·Y) = (query tile of BR rows, batch·head); BR / RPI invocations,
// each owning RPI query rows (lid, lid + INV, lid + 2·INV, …): their q rows, output
// accumulators and softmax statistics stay in registers. K and V tiles of BC keys are staged in
// workgroup memory, each loaded once per workgroup; every K or V chunk read from a tile is used
// by all RPI rows of the invocation (on lavapipe each such read costs one scalar load per
// SIMD lane, which one row per invocation could not amortise). The keys of a tile are taken
// KS at a time: KS scores per row, one rescale of the accumulators by exp(m_old − m_new), then
// the weighted sum of the KS value rows. Causal: tiles wholly above the diagonal are never
// loaded. Rows past Lq compute on a copy of the last row and store nothing.
//
// BROADCAST (where the adapter has subgroups and the workgroup is one subgroup): no tiles in
// workgroup memory and no barriers. At each step lane t loads the K and V chunks t, t + INV, …
// of the step's KS keys straight from storage into registers, and every K or V chunk a row needs
// comes from its lane by subgroupBroadcast. On lavapipe a workgroup-memory read in a loop is one
// scalar load per SIMD lane even when all lanes read one address; a broadcast is one extract.
//
// Template placeholders: `enable_f16` (the f16 enable directive, or nothing), `storage` (S),
// {{ d4 }} (head dim / 4), {{ br }} (query rows per workgroup), {{ inv }} (invocations), {{ rpi }}
// (rows per invocation), {{ bc }} (keys per tile), {{ ks }} (keys per step), {{ bc_d4 }},
// {{ rpi_d4 }}, {{ rpi_ks }}, {{ causal }}, {{ bias }}, {{ broadcast }}, `subgroup_builtins` (the
// lane builtin when BROADCAST, else nothing), and code the launcher
// (attention_fwd.rs) writes out over rows, keys and head-dim chunks (placeholders named in
// backquotes here, since a placeholder inside a comment would be filled with code): `fwd_rows`,
// `fwd_load_q`, `fwd_step` and `fwd_store`. Written out because every array index must be a
// constant for the arrays to stay in registers, and because lavapipe (llvmpipe) stops an
// invocation after 65,535 loop iterations in total.

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
const INV: u32 = {{ inv }}u;
const BC: u32 = {{ bc }}u;
const KS: u32 = {{ ks }}u;
const CAUSAL: bool = {{ causal }};
const BIAS: bool = {{ bias }};
const BROADCAST: bool = {{ broadcast }};
const NEG_INF: f32 = -3.4028235e38;

var<workgroup> ks: array<vec4<f32>, {{ bc_d4 }}>;
var<workgroup> vs: array<vec4<f32>, {{ bc_d4 }}>;
var<workgroup> shared_params: Params;
var<workgroup> shared_key_len: u32;

// Whether `key` is visible from query `row` (branch-free: `&` and `|` do not short-circuit).
fn visible(p: Params, key_len: u32, row: u32, key: u32) -> bool {
    var seen = key < key_len;
    if (CAUSAL) {
        seen = seen & (key + p.lq <= row + p.lk);
    }
    return seen & ((p.window == 0u) | (key + p.window + p.lq > row + p.lk));
}

// The masked, biased score of `key` for query `row` (NEG_INF when masked).
fn masked(p: Params, key_len: u32, bh: u32, row: u32, key: u32, s: f32) -> f32 {
    var x = s;
    if (BIAS) {
        x += bias[(bh * p.lq + row) * p.lk + min(key, p.lk - 1u)];
    }
    return select(NEG_INF, max(x, NEG_INF), visible(p, key_len, row, key));
}

@compute @workgroup_size({{ inv }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) grid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    {{ subgroup_builtins }}
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
    if (bh >= p.bh || p.lq == 0u) {
        return;
    }
    // row_r: the query row of slot r; src_r: the row it computes (row_r, or the last row).
    {{ fwd_rows }}

    var qr: array<vec4<f32>, {{ rpi_d4 }}>;
    var acc: array<vec4<f32>, {{ rpi_d4 }}>;
    var m: array<f32, {{ rpi }}>;
    var l: array<f32, {{ rpi }}>;
    var sc: array<f32, {{ rpi_ks }}>;
    {{ fwd_load_q }}

    // Causal: keys past the last one any row of this workgroup may see are never loaded.
    var key_end = key_len;
    if (CAUSAL) {
        let rows_end = min(wid.x * BR + BR, p.lq);
        key_end = min(key_len, select(0u, rows_end + p.lk - p.lq, rows_end + p.lk >= p.lq));
    }
    for (var t0 = 0u; t0 < key_end; t0 += BC) {
        if (!BROADCAST) {
            for (var e = lid; e < BC * D4; e += INV) {
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
        }
        for (var j = 0u; j < BC; j += KS) {
            {{ fwd_step }}
        }
        if (!BROADCAST) {
            workgroupBarrier();
        }
    }

    {{ fwd_store }}
}
