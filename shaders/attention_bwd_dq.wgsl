// attention_bwd_dq.wgsl: attention backward, dQ. Rebuilds P from the saved logsumexp; no L×L
// buffer. Reference: autodiff through oxgen_models::ops::attention::attention_reference.
//
//   p_ij  = exp(s_ij − lse_i)   (s_ij as in attention_fwd.wgsl)
//   dp_ij = dO_i · v_j;  ds_ij = p_ij (dp_ij − Δ_i),  Δ_i = dO_i · O_i (computed here, from the
//          dO row in registers, and written for attention_bwd_dkdv.wgsl, launched after this)
//   dQ_i  = scale · Σ_j ds_ij k_j
//
// Bindings (group 0), all declared read_write (CubeCL sub-allocates shared wgpu buffers):
//   0 q       in   [BH, Lq, D] as S
//   1 k       in   [BH, Lk, D] as S
//   2 v       in   [BH, Lk, D] as S
//   3 bias    in   [BH, Lq, Lk] f32; any buffer when !BIAS
//   4 d_out   in   [BH, Lq, D] as S
//   5 lse     in   [BH, Lq] f32, from the forward
//   6 delta   out  [BH, Lq] f32, Δ_i
//   7 dq      out  [BH, Lq, D] as S
//   8 params  in   `Args` (attention_params.wgsl: `Params`, then the key lengths)
//   9 o       in   [BH, Lq, D] as S, the forward's output
//
// Storage: S is vec4<f32>, or vec4<f16> where the adapter has shader-f16 and the tensors are
// f16 (the half variant). Rows are converted to f32 on load; scores, softmax statistics,
// accumulators and workgroup tiles are f32; results are rounded to S once, on store. bias,
// lse and delta stay f32.
//
// Template placeholders: `enable_f16` (the f16 enable directive, or nothing), `storage` (S),
// {{ d4 }}, {{ br }} (query rows per workgroup), {{ inv }} (invocations), {{ rpi }} (rows per
// invocation), {{ bc }} (keys per tile), {{ ks }} (keys per step), {{ bc_d4 }}, {{ rpi_d4 }},
// {{ rpi_ks }}, {{ causal }}, {{ bias }}, {{ broadcast }}, `subgroup_builtins` (as the forward's),
// and code written out by the launcher
// (attention_dq.rs; see attention_fwd.wgsl for why): `fwd_rows`, `dq_load`, `dq_step`,
// `dq_store`.
//
// Layout: as the forward. Workgroup (x, y + z·Y) = (query tile, batch·head); each of the BR / RPI
// invocations owns RPI query rows (lid, lid + INV, …) with their q, dO and dQ rows in registers;
// K and V tiles are staged in workgroup memory, and each chunk read from them serves every row
// of the invocation; BROADCAST, as the forward's: no tiles, each step's chunks loaded by the
// lanes and shared by subgroupBroadcast. Rows past Lq compute on a copy of the last row and
// store nothing.

{{ enable_f16 }}
alias S = {{ storage }};

// struct Params, struct Args and fn key_length: attention_params.wgsl, appended.

@group(0) @binding(0) var<storage, read_write> q: array<S>;
@group(0) @binding(1) var<storage, read_write> k: array<S>;
@group(0) @binding(2) var<storage, read_write> v: array<S>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> d_out: array<S>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
@group(0) @binding(6) var<storage, read_write> delta: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<S>;
@group(0) @binding(8) var<storage, read_write> params: Args;
@group(0) @binding(9) var<storage, read_write> o: array<S>;

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

// p_ij = exp(s_ij − lse_i) for a visible key with a finite score, else 0.
fn prob(p: Params, key_len: u32, bh: u32, row: u32, key: u32, s: f32, lse_i: f32) -> f32 {
    var x = s;
    if (BIAS) {
        x += bias[(bh * p.lq + row) * p.lk + min(key, p.lk - 1u)];
    }
    x = max(x, NEG_INF);
    return select(0.0, exp(x - lse_i), visible(p, key_len, row, key) & (x > NEG_INF));
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
    var dor: array<vec4<f32>, {{ rpi_d4 }}>;
    var acc: array<vec4<f32>, {{ rpi_d4 }}>;
    var lse_r: array<f32, {{ rpi }}>;
    var delta_r: array<f32, {{ rpi }}>;
    var sc: array<f32, {{ rpi_ks }}>;
    var dp: array<f32, {{ rpi_ks }}>;
    {{ dq_load }}

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
            {{ dq_step }}
        }
        if (!BROADCAST) {
            workgroupBarrier();
        }
    }
    {{ dq_store }}
}
