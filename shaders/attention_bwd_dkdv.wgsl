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
// {{ d4 }}, {{ br }} (query rows per tile), {{ bc }} (keys per workgroup
// = invocations), {{ br_d4 }} (= br·d4), {{ causal }}, {{ bias }}, and code unrolled over the
// head dim (see attention_fwd.wgsl for why): `dot_qs_k`, `dot_dos_v`, `dkdv_add`.
//
// Layout: workgroup (x, y + z·Y) = (key tile, batch·head); invocation r owns key row x·BC + r, with its
// k, v, dK and dV rows in registers. Query tiles of BR rows (q, dO, lse, Δ) are staged in
// workgroup memory. Causal: query rows that cannot see any key of the tile are skipped.

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
const CAUSAL: bool = {{ causal }};
const BIAS: bool = {{ bias }};
const NEG_INF: f32 = -3.4028235e38;

var<workgroup> qs: array<vec4<f32>, {{ br_d4 }}>;
var<workgroup> dos: array<vec4<f32>, {{ br_d4 }}>;
var<workgroup> lses: array<f32, {{ br }}>;
var<workgroup> deltas: array<f32, {{ br }}>;
var<workgroup> shared_params: Params;
var<workgroup> shared_key_len: u32;

@compute @workgroup_size({{ bc }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) grid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
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
    if (bh >= p.bh) {
        return;
    }
    let key = wid.x * BC + lid;
    let live = key < p.lk;
    let base = (bh * p.lk + key) * D4;

    var kr: array<vec4<f32>, D4>;
    var vr: array<vec4<f32>, D4>;
    var dk_acc: array<vec4<f32>, D4>;
    var dv_acc: array<vec4<f32>, D4>;
    for (var c = 0u; c < D4; c++) {
        if (live) {
            kr[c] = vec4<f32>(k[base + c]);
            vr[c] = vec4<f32>(v[base + c]);
        }
        dk_acc[c] = vec4<f32>(0.0);
        dv_acc[c] = vec4<f32>(0.0);
    }

    // Causal: row i sees key j when j + lq ≤ i + lk, so rows below first_key + lq − lk see none
    // of this workgroup's keys.
    var row_start = 0u;
    if (CAUSAL) {
        let first_key = wid.x * BC;
        row_start = select(0u, first_key + p.lq - p.lk, first_key + p.lq >= p.lk);
    }
    for (var i0 = row_start; i0 < p.lq; i0 += BR) {
        for (var e = lid; e < BR * D4; e += BC) {
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
        for (var r = lid; r < BR; r += BC) {
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
        if (live) {
            for (var r = 0u; r < BR; r++) {
                let row = i0 + r;
                var visible = row < p.lq && lses[r] > NEG_INF && key < key_len;
                if (CAUSAL) {
                    visible = visible && key + p.lq <= row + p.lk;
                }
                if (p.window > 0u) {
                    visible = visible && key + p.window + p.lq > row + p.lk;
                }
                if (visible) {
                    let qb = r * D4;
                    var s = {{ dot_qs_k }};
                    let dp = {{ dot_dos_v }};
                    if (BIAS) {
                        s += bias[(bh * p.lq + row) * p.lk + key];
                    }
                    let pij = exp(max(s, NEG_INF) - lses[r]);
                    let ds = pij * (dp - deltas[r]);
                    {{ dkdv_add }}
                }
            }
        }
        workgroupBarrier();
    }
    if (live) {
        for (var c = 0u; c < D4; c++) {
            dk[base + c] = S(dk_acc[c]);
            dv[base + c] = S(dv_acc[c]);
        }
    }
}
