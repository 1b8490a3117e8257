// attention_bwd_dkdv.wgsl: attention backward, dK and dV. Rebuilds P from the saved logsumexp;
// no L×L buffer. Reference: autodiff through oxgen_models::ops::attention::attention_reference.
//
//   p_ij  = exp(s_ij − lse_i);  dV_j = Σ_i p_ij dO_i
//   ds_ij = p_ij (dO_i·v_j − Δ_i);  dK_j = scale · Σ_i ds_ij q_i
//
// Bindings (group 0), all declared read_write (CubeCL sub-allocates shared wgpu buffers):
//   0 q       in   [BH, Lq, D] as S
//   1 k       in   [BH, Lk, D] as S
//   2 v       in   [BH, Lk, D] as S
//   3 bias    in   [BH, Lq, Lk] f32; any buffer when !BIAS
//   4 d_out   in   [BH, Lq, D] as S
//   5 lse     in   [BH, Lq] f32, from the forward
//   6 delta   in   [BH, Lq] f32, Δ_i = dO_i · O_i (written by attention_bwd_dq.wgsl)
//   7 dk      out  [BH, Lk, D] as S
//   8 dv      out  [BH, Lk, D] as S
//   9 params  in   `Args` (attention_params.wgsl: `Params`, then the key lengths)
//
// Storage: S is vec4<f32>, or vec4<f16> where the adapter has shader-f16 and the tensors are
// f16 (the half variant). Rows are converted to f32 on load; scores, softmax statistics,
// accumulators and workgroup tiles are f32; results are rounded to S once, on store. bias,
// lse and delta stay f32.
//
// Template placeholders: `enable_f16` (the f16 enable directive, or nothing), `storage` (S),
// {{ d4 }}, {{ br }} (query rows per tile), {{ bc }} (keys per workgroup), {{ inv }}
// (invocations), {{ rpi }} (key rows per invocation), {{ qs }} (query rows per step),
// {{ br_d4 }}, {{ rpi_d4 }}, {{ causal }}, {{ bias }}, {{ broadcast }}, `subgroup_builtins` (as
// the forward's), and code written out by the launcher
// (attention_dkdv.rs; see attention_fwd.wgsl for why): `dkdv_keys`, `dkdv_load`, `dkdv_step`,
// `dkdv_store`.
//
// Layout: workgroup (x, y + z·Y) = (key tile, batch·head); each of the BC / RPI invocations
// owns RPI key rows (lid, lid + INV, …) with their k, v, dK and dV rows in registers. Query
// tiles of BR rows (q, dO, lse, Δ) are staged in workgroup memory, and each chunk read from
// them serves every key row of the invocation; BROADCAST, as the forward's K and V: no tiles,
// each step's q and dO chunks, lse and Δ loaded by the lanes and shared by subgroupBroadcast. Causal: query rows that cannot see any key of
// the tile are skipped. Key rows past Lk compute on a copy of the last key and store nothing.

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
@group(0) @binding(7) var<storage, read_write> dk: array<S>;
@group(0) @binding(8) var<storage, read_write> dv: array<S>;
@group(0) @binding(9) var<storage, read_write> params: Args;

const D4: u32 = {{ d4 }}u;
const BR: u32 = {{ br }}u;
const BC: u32 = {{ bc }}u;
const INV: u32 = {{ inv }}u;
const QS: u32 = {{ qs }}u;
const CAUSAL: bool = {{ causal }};
const BIAS: bool = {{ bias }};
const BROADCAST: bool = {{ broadcast }};
const NEG_INF: f32 = -3.4028235e38;

var<workgroup> qs: array<vec4<f32>, {{ br_d4 }}>;
var<workgroup> dos: array<vec4<f32>, {{ br_d4 }}>;
var<workgroup> lses: array<f32, {{ br }}>;
var<workgroup> deltas: array<f32, {{ br }}>;
var<workgroup> shared_params: Params;
var<workgroup> shared_key_len: u32;

// p_ij = exp(s_ij − lse_i) where query `row` sees `key` with a finite score, else 0
// (branch-free: `&` and `|` do not short-circuit).
fn prob(p: Params, key_len: u32, bh: u32, row: u32, key: u32, s: f32, lse_i: f32) -> f32 {
    var x = s;
    if (BIAS) {
        x += bias[(bh * p.lq + min(row, p.lq - 1u)) * p.lk + key];
    }
    x = max(x, NEG_INF);
    var seen = (row < p.lq) & (key < key_len) & (x > NEG_INF) & (lse_i > NEG_INF);
    if (CAUSAL) {
        seen = seen & (key + p.lq <= row + p.lk);
    }
    seen = seen & ((p.window == 0u) | (key + p.window + p.lq > row + p.lk));
    return select(0.0, exp(x - lse_i), seen);
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
    if (bh >= p.bh || p.lk == 0u) {
        return;
    }
    // key_r: the key row of slot r; ksrc_r: the key it computes (key_r, or the last key).
    {{ dkdv_keys }}

    var kr: array<vec4<f32>, {{ rpi_d4 }}>;
    var vr: array<vec4<f32>, {{ rpi_d4 }}>;
    var dk_acc: array<vec4<f32>, {{ rpi_d4 }}>;
    var dv_acc: array<vec4<f32>, {{ rpi_d4 }}>;
    {{ dkdv_load }}

    // Causal: row i sees key j when j + lq ≤ i + lk, so rows below first_key + lq − lk see none
    // of this workgroup's keys.
    var row_start = 0u;
    if (CAUSAL) {
        let first_key = wid.x * BC;
        row_start = select(0u, first_key + p.lq - p.lk, first_key + p.lq >= p.lk);
    }
    for (var i0 = row_start; i0 < p.lq; i0 += BR) {
        if (!BROADCAST) {
            for (var e = lid; e < BR * D4; e += INV) {
                let row = i0 + e / D4;
                var qq = vec4<f32>(0.0);
                var gg = vec4<f32>(0.0);
                if (row < p.lq) {
                    let src = (bh * p.lq + row) * D4 + e % D4;
                    qq = vec4<f32>(q[src]) * p.scale;
                    gg = vec4<f32>(d_out[src]);
                }
                qs[e] = qq;
                dos[e] = gg;
            }
            for (var r = lid; r < BR; r += INV) {
                let row = i0 + r;
                var l_r = NEG_INF;
                var d_r = 0.0;
                if (row < p.lq) {
                    l_r = lse[bh * p.lq + row];
                    d_r = delta[bh * p.lq + row];
                }
                lses[r] = l_r;
                deltas[r] = d_r;
            }
            workgroupBarrier();
        }
        for (var j = 0u; j < BR; j += QS) {
            {{ dkdv_step }}
        }
        if (!BROADCAST) {
            workgroupBarrier();
        }
    }
    {{ dkdv_store }}
}
