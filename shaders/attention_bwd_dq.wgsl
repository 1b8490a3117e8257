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
// {{ d4 }}, {{ br }} (query rows per workgroup), {{ bc }} (keys per tile),
// {{ bc_d4 }} (= bc·d4), {{ causal }}, {{ bias }}, and code unrolled over the head dim (see
// attention_fwd.wgsl for why): `dot_q_k`, `dot_do_v`, `acc_add_ds_k`.
//
// Layout: as the forward. Workgroup (x, y + z·Y) = (query tile, batch·head); invocation r owns query row
// x·BR + r, with its q, dO and dQ rows in registers; K and V tiles are staged in workgroup memory.

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
    let base = (bh * p.lq + row) * D4;
    var lse_i = NEG_INF;
    var delta_i = 0.0;
    var qr: array<vec4<f32>, D4>;
    var dor: array<vec4<f32>, D4>;
    var acc: array<vec4<f32>, D4>;
    for (var c = 0u; c < D4; c++) {
        if (live) {
            qr[c] = vec4<f32>(q[base + c]) * p.scale;
            dor[c] = vec4<f32>(d_out[base + c]);
        }
        acc[c] = vec4<f32>(0.0);
    }
    if (live) {
        lse_i = lse[bh * p.lq + row];
        for (var c = 0u; c < D4; c++) {
            delta_i += dot(dor[c], vec4<f32>(o[base + c]));
        }
        delta[bh * p.lq + row] = delta_i;
    }

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
        if (live && lse_i > NEG_INF) {
            for (var j = 0u; j < BC; j++) {
                let key = t0 + j;
                var visible = key < key_len;
                if (CAUSAL) {
                    visible = visible && key + p.lq <= row + p.lk;
                }
                if (p.window > 0u) {
                    visible = visible && key + p.window + p.lq > row + p.lk;
                }
                if (visible) {
                    let kb = j * D4;
                    var s = {{ dot_q_k }};
                    let dp = {{ dot_do_v }};
                    if (BIAS) {
                        s += bias[(bh * p.lq + row) * p.lk + key];
                    }
                    let pij = exp(max(s, NEG_INF) - lse_i);
                    let ds = pij * (dp - delta_i);
                    {{ acc_add_ds_k }}
                }
            }
        }
        workgroupBarrier();
    }
    if (live) {
        for (var c = 0u; c < D4; c++) {
            dq[base + c] = S(acc[c] * p.scale);
        }
    }
}
